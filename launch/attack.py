"""Runs the RP2 attack of a config on a LisaCNN (see configs/rp2.py).

    python -m launch.attack --config=configs/rp2.py:poster --workdir=DIR
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from blurnet_jax.study import attack as run
from launch.cli import one_line_errors, parse_flags

_CONFIG = config_flags.DEFINE_config_file("config", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "reports go here")
flags.mark_flags_as_required(["config", "workdir"])


@one_line_errors
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  results = run.run_attack(_CONFIG.value, _WORKDIR.value)
  print(f"model: {results['model']}\nvictims: {results['victims']}\n"
        f"mask: {results['mask']}\n{results['seconds']} s, "
        f"{results['steps_per_s']} steps/s\n")
  print(run.format_table(results))
  print(f"\nwrote attack.json, perturbation.npy/.png, victims.png to "
        f"{_WORKDIR.value}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
