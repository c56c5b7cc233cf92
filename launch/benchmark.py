"""Speed benchmark: training, the RP2 grid and the data, beside references.

    python -m launch.benchmark --config=configs/benchmark.py --workdir=/tmp/b
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from blurnet_jax import benchmark
from launch.cli import one_line_errors, parse_flags

_CONFIG = config_flags.DEFINE_config_file("config", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "where benchmark.json goes")
flags.mark_flags_as_required(["config", "workdir"])


@one_line_errors
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  benchmark.run_benchmark(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
