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

from blurnet_jax import config_args
from configs import train as train_configs

ALPHAS = {
    "linf": (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.3, 1.0),
    "tv": (0.0, 1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 1e-2),
}
VARIANT = {"linf": "linf_5x5", "tv": "tv_1e-4"}


def base(penalty: str) -> ml_collections.ConfigDict:
  """The full sweep of `penalty`: train.py's config of its variant, every
  alpha, one seed, 1,500 steps."""
  if penalty not in ALPHAS:
    raise ValueError(f"unknown penalty {penalty!r}; use linf or tv")
  config = train_configs.base(VARIANT[penalty])
  config.variant = f"sweep_{penalty}"
  # The members: alphas x seeds; chunk: members per vmap, 0 = by backend.
  config.sweep = ml_collections.ConfigDict(dict(
      alphas=ALPHAS[penalty], seeds=(0,), chunk=0))
  config.num_train_steps = 1500
  return config


#: Named overrides of `base` (see blurnet_jax/config_args.py).
OVERRIDES = {
    # train.py's runlocal, and the first two alphas.
    "runlocal": {**train_configs.OVERRIDES["runlocal"],
                 "sweep.alphas": lambda c: c.sweep.alphas[:2]},
}


def get_config(arg=None):
  return config_args.configure(arg, base, OVERRIDES, penalty="linf")
