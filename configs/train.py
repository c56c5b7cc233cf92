r"""Trains one LisaCNN variant of the BlurNet slides.

    python -m launch.train --config=configs/train.py:variant=baseline \
        --workdir=/tmp/blurnet/baseline
    python -m launch.train --config=configs/train.py:variant=l1_5x5,runlocal \
        --workdir=/tmp/blurnet/quick

Variants (the rows of the slides' Tables 1 and 2):
  baseline                        no filter
  input_3x3, input_5x5, input_7x7 fixed box filter on the input
  l1_3x3, l1_5x5, l1_7x7          fixed box filter on the L1 feature maps
  linf_3x3 (alpha 1e-5), linf_5x5 (0.1), linf_7x7 (0.1)
                                  learned depthwise L1 filter, L-inf penalty
  tv_1e-4, tv_1e-5                total-variation penalty on the L1 maps
Defences beside BlurNet (the `defence` block; blurnet_jax/defences):
  pgd_at        adversarial training, masked PGD inside the sticker mask
  doa           adversarial training on the rectangular occlusion attack
                (DOA, Wu et al. ICLR 2020: a 7x7 rectangle on LISA)
  smoothing     derandomized column smoothing (Levine & Feizi 2020): the
                base classifier takes 6 channels and trains on random bands
  doa_linf_5x5  linf_5x5 (learned 5x5 L1 filter, L-inf penalty) plus DOA
Default budget: 2,000 steps of 128 images on the synthetic set (~7 epochs);
`runlocal` shrinks data and steps to a run of seconds (for tests).
`init=rp2` starts from the RP2 authors' LISA-trained weights (the variant's
filter inserted, a learned kernel as the box of its size), and with
`trainable=added` trains only what the variant adds (the learned kernel; for
a TV variant the first layer).

Every run reports how many of the 40 real RP2 victims (the packaged assets,
or `--config.rp2_dir`) and of 40 synthetic stop signs it classifies as stop.
"""

import ml_collections

from blurnet_jax import config_args
from configs import data as data_configs
from configs.distributed import distributed_config

# name -> (model fields, penalty kind, alpha, defence kind)
VARIANTS = {
    "baseline": ({}, "none", 0.0, "none"),
    **{f"input_{k}x{k}": (dict(filter_where="input", filter_kernel="box",
                               filter_size=k), "none", 0.0, "none")
       for k in (3, 5, 7)},
    **{f"l1_{k}x{k}": (dict(filter_where="l1", filter_kernel="box",
                            filter_size=k), "none", 0.0, "none")
       for k in (3, 5, 7)},
    **{f"linf_{k}x{k}": (dict(filter_where="l1", filter_kernel="learned",
                              filter_size=k), "linf", alpha, "none")
       for k, alpha in ((3, 1e-5), (5, 0.1), (7, 0.1))},
    **{f"tv_{a}": ({}, "tv", float(a), "none")
       for a in ("1e-4", "1e-5", "1e-3", "1e-2")},
    "pgd_at": ({}, "none", 0.0, "pgd_mask"),
    "doa": ({}, "none", 0.0, "doa"),
    "smoothing": ({}, "none", 0.0, "smoothing"),
}
VARIANTS["doa_linf_5x5"] = (*VARIANTS["linf_5x5"][:3], "doa")
#: The variants of the slides (no defence).
SLIDE_VARIANTS = tuple(name for name, (*_, defence) in VARIANTS.items()
                       if defence == "none")


def model_config(**fields) -> ml_collections.ConfigDict:
  m = ml_collections.ConfigDict()
  m.filter_where = "none"  # none | input | l1
  m.filter_kernel = "box"  # box | gaussian | learned
  m.filter_size = 3  # 3 | 5 | 7
  m.filter_padding = "zeros"  # zeros | reflect
  m.filter_position = "after_relu"  # after_relu | before_relu (l1 only)
  m.conv_impl = "auto"  # auto | xla | s2d (same numbers; see models.conv2d)
  m.update(fields)
  return m


def defence_config(kind: str) -> ml_collections.ConfigDict:
  """The defence a model trains with (blurnet_jax.defences.training); every
  kind's settings, each read by its kind alone."""
  d = ml_collections.ConfigDict()
  d.kind = kind  # none | pgd_mask | doa | smoothing
  # pgd_mask, doa: the share of each batch replaced by its adversarial
  # examples against the current parameters (the rest stays clean).
  d.fraction = 0.5
  # pgd_mask: PGD inside a sticker mask (blurnet_jax.data.masks.get_mask:
  # a built-in name or a 32x32 PNG), L-inf budget per pixel (1: any colour).
  d.mask = "camouflage"
  d.epsilon = 1.0
  d.steps = 7
  # doa: the rectangular occlusion attack, a height x width rectangle (7x7
  # on LISA in the paper) placed on a grid of step `stride`, by 'gradient'
  # search (the `candidates` positions of largest input gradient are
  # evaluated) or 'exhaustive' (every position), then `pgd_steps` of PGD.
  d.height = 7
  d.width = 7
  d.stride = 2
  d.search = "gradient"
  d.candidates = 10
  d.pgd_steps = 10
  # smoothing: the base classifier sees `band` adjacent columns of the 32
  # (Levine & Feizi's CIFAR-10 band is 4 of 32).
  d.band = 4
  return d


def base(variant: str) -> ml_collections.ConfigDict:
  """The full training run of `variant` (a name of VARIANTS)."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; known: "
                     f"{', '.join(VARIANTS)}")
  fields, kind, alpha, defence = VARIANTS[variant]
  c = ml_collections.ConfigDict()
  c.variant = variant
  c.seed = 0  # init and augmentation (batch order: data.shuffle_seed)
  c.data = data_configs.data_config()
  c.model = model_config(**fields)
  c.penalty = ml_collections.ConfigDict({"kind": kind, "alpha": alpha})
  c.defence = defence_config(defence)
  c.batch_size = 128
  c.num_train_steps = 2000
  c.learning_rate = 1e-3
  c.warmup_steps = 200
  c.augment = True  # on-device shifts and brightness/contrast jitter
  c.init = "scratch"  # scratch | rp2 (the RP2 authors' LISA weights)
  c.trainable = "all"  # all | added (rp2 init: only what the variant adds)
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.rp2_dir = ""  # RP2 assets whose real victims are reported; '' = packaged
  c.distributed = distributed_config()  # several processes: see there
  return c


#: Named overrides of `base` (see blurnet_jax/config_args.py).
OVERRIDES = {
    # A run of seconds (tests): data.py's runlocal set, 60 steps.
    "runlocal": {
        **config_args.under("data", data_configs.OVERRIDES["runlocal"]),
        "num_train_steps": 60,
        "warmup_steps": 10,
        "log_every": 10,
        "eval_every": 30,
        "checkpoint_every": 30,
    },
}


def get_config(arg=None):
  return config_args.configure(arg, base, OVERRIDES, variant="baseline")
