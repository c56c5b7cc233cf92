"""Trains several variants one after another and prints one table.

    python -m launch.train_all --variants='("baseline", "l1_5x5")' \
        --workdir=DIR [--runlocal] [--rp2_dir=PATH]

Each variant goes to DIR/NAME (resumed or reused like `launch.train`);
DIR/variants.json collects every results.json.
"""

from absl import app
from absl import flags
from etils import epath

from blurnet_jax import config_args
from blurnet_jax import train
from blurnet_jax.defences import training as defence_training
from blurnet_jax.jsonio import write_json
from configs import train as train_configs
from launch.cli import one_line_errors, parse_flags

_VARIANTS = flags.DEFINE_string(
    "variants", repr(train_configs.SLIDE_VARIANTS),
    "a tuple of variant names (configs/train.py; default: the slides')")
_WORKDIR = flags.DEFINE_string("workdir", None, "one folder per variant here")
_RUNLOCAL = flags.DEFINE_bool("runlocal", False, "tiny runs (seconds)")
_RP2_DIR = flags.DEFINE_string("rp2_dir", "", "RP2 assets whose real victims "
                               "are reported; '' = the packaged copy")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "tfds data_dir")
flags.mark_flags_as_required(["workdir"])


@one_line_errors
def main(argv):
  del argv
  rows = []
  for name in config_args.option_value("variants", _VARIANTS.value, ()):
    config = train_configs.get_config(
        f"variant={name},runlocal={_RUNLOCAL.value}")
    config.rp2_dir = _RP2_DIR.value
    config.data.data_dir = _DATA_DIR.value
    _, results = train.train_and_evaluate(
        config, epath.Path(_WORKDIR.value) / name,
        training=defence_training.training_for(config))
    rows.append(results)
    write_json(epath.Path(_WORKDIR.value) / "variants.json", rows)
  print(f"{'variant':<12} {'alpha':>8} {'test acc':>9} {'synth victims':>14} "
        f"{'real victims':>13} {'train s':>8}")
  for r in rows:
    real = r.get("victims")
    print(f"{r['variant']:<12} {r['penalty']['alpha']:>8g} "
          f"{r['test']['accuracy']:>9.4f} "
          f"{r['synthetic_victims']['stop']:>11d}/40 "
          f"{(str(real['stop']) + '/' + str(real['n'])) if real else '-':>13} "
          f"{r['train_seconds_this_run']:>8}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
