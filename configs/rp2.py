r"""RP2 attacks on a LisaCNN: the authors' runs and the white-box grid.

    python -m launch.attack --config=configs/rp2.py:poster \
        --config.model=../shared/rp2/rp2_lisa_cnn.npz \
        --config.victims=../shared/rp2/victim-set \
        --config.mask=../shared/rp2/masks/octagon.png --workdir=/tmp/poster
    python -m launch.attack --config=configs/rp2.py:camouflage \
        --config.victims=../shared/rp2/victim-set --workdir=/tmp/camouflage
    python -m launch.attack --config=configs/rp2.py:grid \
        --config.victims=../shared/rp2/victim-set --workdir=/tmp/grid
    python -m launch.attack --config=configs/rp2.py:grid,runlocal \
        --config.targets=1,5,12 --config.chunk=2 --workdir=/tmp/quick
    python -m launch.attack --config=configs/rp2.py:grid \
        --config.model=/tmp/blurnet/l1_5x5 --workdir=/tmp/grid_l1_5x5

Variants (at most one of poster, camouflage, grid; none = poster):
  poster      the authors' subliminal poster run: octagon mask, 300 steps,
              target 12 (speedLimit45), no transforms. On the RP2 model and
              victims every victim is speedLimit45 within a few steps.
  camouflage  the authors' camouflage sticker run: the rectangles mask,
              1000 steps, target 12, no transforms.
  grid        the white-box evaluation of the slides' Table 2: camouflage
              settings, one attack per target class (every class but stop),
              8 physical transforms per victim per step; reports the average
              and worst success (slides' baseline: 49.18%, 90%, L2 0.207).
  runlocal    5 steps, 2 transforms, 2 evaluation draws (tests, smoke runs).

Runtime (measured): poster and camouflage runlocal ~25 s on a 2-core CPU
including start-up and compilation; the full grid (17 targets x 40 victims
x 8 transforms) ~5.2 s per step there, i.e. ~1h30 for its 1000 steps, and
about 8 ms per step on an H100 (1000 steps in ~8 s plus ~25 s compiling).

`model` is an RP2 .npz or a workdir of launch.train (its filter comes from
its config.json); it defaults to ../shared/rp2/rp2_lisa_cnn.npz beside the
repo when present. `victims` is a folder of 32x32 PNGs (default: the RP2
victim set when present) or '' for 40 synthetic stop signs. `mask` is
'octagon', 'camouflage' (built-in) or a mask PNG. `targets` is '' (just
`target`), 'all' or a comma list ('1,5,12'). `chunk` targets are attacked
per compiled program (0: all at once; -1, the default: 1 on a CPU, where
it ran 9% faster than 17, all elsewhere); small chunks bound the memory of a
CPU run.
"""

from pathlib import Path

import ml_collections

from blurnet_jax.config_args import parse_arg

_RP2_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "rp2"


def _asset(relative: str, fallback: str) -> str:
  """A file of the RP2 assets beside the repo if present, else `fallback`."""
  path = _RP2_DIR / relative
  return str(path) if path.exists() else fallback


def get_config(arg=None):
  arg = parse_arg(arg, poster=False, camouflage=False, grid=False,
                  runlocal=False)
  if arg.poster + arg.camouflage + arg.grid > 1:
    raise ValueError("pick at most one of poster, camouflage, grid")
  sticker = arg.camouflage or arg.grid
  c = ml_collections.ConfigDict()
  # '' -> error asking for --config.model; the RP2 model when it is there.
  c.model = _asset("rp2_lisa_cnn.npz", "")
  c.victims = _asset("victim-set", "")  # a PNG folder, '' = synthetic
  c.mask = (_asset("masks/mask_l1loss_uniform_rectangles.png", "camouflage")
            if sticker else _asset("masks/octagon.png", "octagon"))
  c.target = 12  # speedLimit45, the authors' target
  c.targets = "all" if arg.grid else ""  # '' = just `target`; 'all'; '1,5'
  c.steps = 1000 if sticker else 300
  c.lr = 0.1  # Adam
  c.lam = 0.02  # weight of ||mask * noise||_p
  c.norm_p = 2.0
  c.noise_clip = 20.0  # noise clipped to [-noise_clip, noise_clip]
  c.nps_weight = 0.0  # non-printability term (authors: off)
  c.num_transforms = 8 if arg.grid else 1  # EOT draws per victim per step
  c.transforms = "physical" if arg.grid else "none"  # none | physical
  c.eval_transforms = 10  # K fresh physical draws for the robust success
  c.chunk = -1  # targets per program; 0 = all; -1 = by backend (CPU 1)
  c.seed = 0
  if arg.runlocal:
    c.steps = 5
    c.num_transforms = min(c.num_transforms, 2)
    c.eval_transforms = 2
  return c
