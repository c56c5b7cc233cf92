r"""An alpha sweep: alphas x seeds of one penalty, trained as one vmapped run.

    python -m launch.sweep --config=configs/sweep.py --workdir=/tmp/sweep_linf
    python -m launch.sweep --config=configs/sweep.py:penalty=tv --workdir=...
    python -m launch.sweep --config=configs/sweep.py:runlocal --workdir=...

Default: the L-inf penalty on a learned 5x5 L1 filter, 8 alphas x 1 seed,
1,500 steps of 128 images (a population step costs about as much CPU as the
8 single steps, so the full sweep is ~8x one short run on a 2-core CPU and
~1x on a GPU). `penalty=tv` sweeps the total-variation weight instead.
`--config.sweep.alphas='(0., 1e-3)'` and `--config.sweep.seeds='(0, 1)'` pick
the members; with several devices (local, or of several processes) the
member axis is split over them, padded to a multiple of their count.
"""

import ml_collections

from blurnet_jax.config_args import parse_arg
from configs import train as train_configs

ALPHAS = {
    "linf": (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.3, 1.0),
    "tv": (0.0, 1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 1e-2),
}
VARIANT = {"linf": "linf_5x5", "tv": "tv_1e-4"}


def sweep_block(penalty: str, *, runlocal: bool = False
                ) -> ml_collections.ConfigDict:
  """The members of a sweep: alphas x seeds, and members per vmap."""
  return ml_collections.ConfigDict(dict(
      alphas=ALPHAS[penalty][:2] if runlocal else ALPHAS[penalty],
      seeds=(0,), chunk=0))  # chunk: members per vmap; 0 = by backend


def get_config(arg=None):
  arg = parse_arg(arg, penalty="linf", runlocal=False, benchmark=False)
  if arg.penalty not in ALPHAS:
    raise ValueError(f"unknown penalty {arg.penalty!r}; use linf or tv")
  config = train_configs.get_config(
      f"variant={VARIANT[arg.penalty]},runlocal={arg.runlocal}")
  config.variant = f"sweep_{arg.penalty}"
  config.sweep = sweep_block(arg.penalty, runlocal=arg.runlocal)
  if not arg.runlocal:
    config.num_train_steps = 1500
    config.eval_every = 500
  config.benchmark_steps = 20  # launch.bench_sweep: timed steps per program
  return config
