"""The robustness checklist on every model (see configs/robustness.py).

    python -m launch.robustness --config=configs/robustness.py:runlocal \
        --workdir=/tmp/robustness_local
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from blurnet_jax.study import robustness
from launch.cli import one_line_errors, parse_flags

_CONFIG = config_flags.DEFINE_config_file("config", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "models, robustness.json, figures, report")
flags.mark_flags_as_required(["config", "workdir"])


@one_line_errors
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  robustness.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
