"""Trains one LisaCNN variant.

    python -m launch.train --config=configs/train.py:variant=NAME --workdir=DIR
"""

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from blurnet_jax import train
from blurnet_jax.defences import training as defence_training
from launch.cli import one_line_errors, parse_flags

_CONFIG = config_flags.DEFINE_config_file("config", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "checkpoints and metrics go here")
flags.mark_flags_as_required(["config", "workdir"])


@one_line_errors
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  _, results = train.train_and_evaluate(
      config, _WORKDIR.value,
      training=defence_training.training_for(config))
  print(json.dumps(results, indent=2))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
