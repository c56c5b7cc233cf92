"""The robustness checklist on every model (configs/robustness.py), or
BlurNet beside other defences on a real source (configs/defences.py).

    python -m launch.robustness --config=configs/robustness.py:runlocal \
        --workdir=/tmp/robustness_local
    python -m launch.robustness --config=configs/defences.py:quick \
        --config.data.source=lisa_crops --config.data.manual_dir=PATH/lisa \
        --workdir=/tmp/defences_lisa
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from blurnet_jax.study import studies
from launch.cli import one_line_errors, parse_flags

_CONFIG = config_flags.DEFINE_config_file("config", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "models, robustness.json, figures, report")
_RESUME = flags.DEFINE_bool(
    "resume", True, "read back the stages a run of the same config in "
    "WORKDIR finished; --noresume runs every stage again (trained models "
    "are reused either way)")
flags.mark_flags_as_required(["config", "workdir"])


@one_line_errors
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  studies.run(_CONFIG.value, _WORKDIR.value, resume=_RESUME.value)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
