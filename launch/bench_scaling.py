"""A sweep and a target grid timed on the devices of the job: run it as one
process, or on every process of a multi-process job (README, "Several
hosts"); process 0 prints one JSON line per workload.

    python -m launch.bench_scaling --config=configs/sweep.py:runlocal \
        --steps=5 --grid_targets=8
"""

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from blurnet_jax import distributed
from blurnet_jax import scaling
from launch.cli import one_line_errors, parse_flags

_CONFIG = config_flags.DEFINE_config_file("config", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 5, "timed steps of each workload")
_TARGETS = flags.DEFINE_integer("grid_targets", 8, "targets of the grid")


@one_line_errors
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  rows = [scaling.time_sweep(config, steps=_STEPS.value),
          scaling.time_grid(config, targets=_TARGETS.value,
                            steps=_STEPS.value)]
  if distributed.is_writer():
    for row in rows:
      print(json.dumps(row), flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
