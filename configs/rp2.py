r"""RP2 attacks on a LisaCNN: the authors' runs and the white-box grid.

    python -m launch.attack --config=configs/rp2.py:poster --workdir=/tmp/poster
    python -m launch.attack --config=configs/rp2.py:camouflage \
        --workdir=/tmp/camouflage
    python -m launch.attack --config=configs/rp2.py:grid --workdir=/tmp/grid
    python -m launch.attack --config=configs/rp2.py:grid,runlocal \
        --config.targets='(1, 5, 12)' --config.chunk=2 --workdir=/tmp/quick
    python -m launch.attack --config=configs/rp2.py:grid \
        --config.model=/tmp/blurnet/l1_5x5 --workdir=/tmp/grid_l1_5x5

Variants (at most one of poster, camouflage, grid; none = poster):
  poster      the authors' subliminal poster run: octagon mask, 300 steps,
              target 12 (speedLimit45), no transforms.
  camouflage  the authors' camouflage sticker run: the rectangles mask,
              1000 steps, target 12, no transforms.
  grid        the white-box evaluation of the slides' Table 2: camouflage
              settings, one attack per target class (every class but stop),
              8 physical transforms per victim per step; reports the average
              and worst success beside the slides' baseline row.
  runlocal    5 steps, 2 transforms, 2 evaluation draws (tests, smoke runs).

`model` is '' (the RP2 authors' model of the assets), an RP2 .npz, a
workdir of launch.train or of a sweep, or a study's WORKDIR/models/NAME
(its filter comes from its config.json); `member` picks one member (seed)
of a population, in the order of its config's sweep.alphas x sweep.seeds. `victims`
is 'rp2' (the 40 real victims of the assets), 'synthetic' (40 synthetic
stop signs) or a folder of 32x32 PNGs. `mask` is 'rp2_camouflage' or
'rp2_octagon' (the authors' masks), 'camouflage' or 'octagon' (built-in)
or a mask PNG. The assets are the packaged copy, or `rp2_dir`. `targets`
is () (just `target`) or a tuple of class indices or names. `chunk` targets
are attacked per compiled program (0: all at once; -1, the default: by
backend); small chunks bound the memory of a CPU run.
"""

import ml_collections

from blurnet_jax.attacks.grid import ALL_TARGETS
from blurnet_jax.classes import RP2_TARGET
from blurnet_jax import config_args
from configs.distributed import distributed_config


def base() -> ml_collections.ConfigDict:
  """The authors' poster run."""
  c = ml_collections.ConfigDict()
  c.rp2_dir = ""  # the RP2 assets; '' = the packaged copy
  c.model = ""  # '' = the assets' RP2 model; an .npz or a training workdir
  c.member = 0  # which seed of a population's workdir (WORKDIR/models/NAME)
  c.victims = "rp2"  # rp2 | synthetic | a folder of 32x32 PNGs
  c.mask = "rp2_octagon"
  c.target = RP2_TARGET  # 12, speedLimit45, the authors' target
  c.targets = ()  # () = just `target`
  c.steps = 300
  c.lr = 0.1  # Adam
  c.lam = 0.02  # weight of ||mask * noise||_p
  c.norm_p = 2.0
  c.noise_clip = 20.0  # noise clipped to [-noise_clip, noise_clip]
  c.nps_weight = 0.0  # non-printability term (authors: off)
  c.num_transforms = 1  # EOT draws per victim per step
  c.transforms = "none"  # none | physical
  c.eval_transforms = 10  # K fresh physical draws for the robust success
  c.chunk = -1  # targets per program; 0 = all; -1 = by backend
  c.seed = 0
  c.distributed = distributed_config()  # several processes: see there
  return c


CAMOUFLAGE = {"mask": "rp2_camouflage", "steps": 1000}

#: Named overrides of `base` (see blurnet_jax/config_args.py).
OVERRIDES = {
    "poster": {},
    "camouflage": CAMOUFLAGE,
    "grid": {**CAMOUFLAGE, "targets": ALL_TARGETS, "num_transforms": 8,
             "transforms": "physical"},
    "runlocal": {"steps": 5,
                 "num_transforms": lambda c: min(c.num_transforms, 2),
                 "eval_transforms": 2},
}


def get_config(arg=None):
  return config_args.configure(arg, base, OVERRIDES,
                               exclusive=("poster", "camouflage", "grid"))
