"""Trains a population of models (alphas x seeds) as one vmapped program.

    python -m launch.sweep --config=configs/sweep.py --workdir=DIR
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from etils import epath

from blurnet_jax import plots
from blurnet_jax import sweep
from launch.cli import one_line_errors, parse_flags

_CONFIG = config_flags.DEFINE_config_file("config", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "checkpoints and results go here")
flags.mark_flags_as_required(["config", "workdir"])


@one_line_errors
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  rows = sweep.run_sweep(config, _WORKDIR.value)
  plots.plot_sweep(rows, epath.Path(_WORKDIR.value) / "sweep.png", title=(
      f"{config.penalty.kind} penalty: test accuracy against alpha "
      f"({config.num_train_steps} steps)"))
  print(f"{'alpha':>10} {'seed':>5} {'test acc':>9} {'victims->stop':>14}")
  for r in rows:
    v = r.get("victims", r["synthetic_victims"])
    print(f"{r['alpha']:>10g} {r['seed']:>5d} {r['test_accuracy']:>9.4f} "
          f"{v['stop']:>10d}/{v['n']}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
