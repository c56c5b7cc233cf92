"""Wall time of an N-model vmapped sweep step against N single-model runs.

    python -m launch.bench_sweep --config=configs/sweep.py
Prints one JSON object (seconds and ratios, backend, device count).
"""

import json

from absl import app
from ml_collections import config_flags

from blurnet_jax import distributed
from blurnet_jax import sweep
from launch.cli import one_line_errors, parse_flags

_CONFIG = config_flags.DEFINE_config_file("config", lock_config=True)


@one_line_errors
def main(argv):
  del argv
  config = _CONFIG.value
  result = sweep.benchmark(config, steps=config.benchmark_steps)
  if distributed.is_writer():
    print(json.dumps(result))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
