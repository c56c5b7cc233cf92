"""Prepares a data set and writes its contact sheet and summary.

    python -m launch.data --config=configs/data.py --workdir=DIR
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from blurnet_jax.study import describe
from launch.cli import one_line_errors, parse_flags

_CONFIG = config_flags.DEFINE_config_file("config", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "where outputs go")
flags.mark_flags_as_required(["config", "workdir"])


@one_line_errors
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  summary = describe.prepare_and_describe(_CONFIG.value, _WORKDIR.value)
  print(describe.format_summary(summary))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
