r"""BlurNet beside other defences on real photographs (the defence study,
blurnet_jax/study/defences/stages.py; docs/defences.md).

    python -m launch.robustness --config=configs/defences.py:quick \
        --config.data.source=lisa_crops --config.data.manual_dir=PATH/lisa \
        --workdir=/tmp/defences_lisa

(`configs/robustness.py:defences[,quick]` is an alias of this config.)

Each defence of `real.variants` (`DEFENCE_VARIANTS`: the baseline,
BlurNet's linf_5x5 and tv_1e-4, masked-PGD adversarial training, DOA,
BlurNet plus DOA, column smoothing) is trained on the source as Table 2 on
real photographs trains its variants (`real`), and the input
transformations of `defences.transforms` wrap the baseline; all are
attacked adaptively on one victim set (`defences`). Full: 3 seeds, 3000 /
6000 steps, every target, 1000-step RP2, 100-step PGD, 2000 Square
queries: GPU work. `quick`: 2 seeds, 300 steps with cheaper adversarial
training (3 PGD steps, 4 DOA positions), 20 held-out victims, RP2's own
target, 40-step RP2 over 2 transforms, 30-step PGD, 100 Square queries
(under 20 minutes on a 2-core CPU).
"""

import ml_collections

from blurnet_jax import config_args
from configs import common
from configs.distributed import distributed_config


#: The defences of the defence study (configs/train.py's names), each
#: trained on the real source like Table 2's variants: the undefended
#: baseline, BlurNet's learned filter and TV (Table 2), masked-PGD
#: adversarial training, DOA, column smoothing, BlurNet plus DOA.
DEFENCE_VARIANTS = ("baseline", "linf_5x5", "tv_1e-4", "pgd_at", "doa",
                    "doa_linf_5x5", "smoothing")


def defence_settings(c: ml_collections.ConfigDict) -> None:
  """The defence study's settings (`blurnet_jax.study.defences.stages`),
  `c.defences`: the trained defences are `c.real.variants` (set to
  `DEFENCE_VARIANTS` by the study's override), trained as Table 2 on real
  photographs trains them (`c.real`); the input transformations wrap the
  baseline at test time; every defence is attacked on one victim set per
  label space with the same keys, and paired against the baseline and
  against `reference` (BlurNet)."""
  d = c.defences = ml_collections.ConfigDict()
  d.reference = "linf_5x5"
  # The adversarial training's effort (configs/train.py: defence_config),
  # linked into the `defence` block of every adversarially trained model
  # by `link_defences`: PGD steps of pgd_at; positions tried and PGD steps
  # of DOA's occlusion attack.
  d.training = ml_collections.ConfigDict(dict(steps=7, candidates=10,
                                               pgd_steps=10))
  # Input transformations of the baseline (blurnet_jax.defences.transforms).
  d.transforms = ml_collections.ConfigDict({
      "median_3x3": {"kind": "median", "size": 3, "quality": 75},
      "jpeg_75": {"kind": "jpeg", "size": 3, "quality": 75}})
  # Held-out images of the clean accuracy and the stop-bias share: a
  # seeded draw of this many, the same for every defence (0: all).
  d.test_images = 0
  # The victims: 'rp2' (the RP2 authors' 40, LISA only) or 'held_out'.
  d.victim_set = ml_collections.ConfigDict({"lisa": "rp2",
                                            "gtsrb": "held_out"})
  # White-box RP2 at the slides' settings (camouflage mask), per target;
  # () = every class but stop.
  d.targets = ml_collections.ConfigDict({"lisa": (), "gtsrb": ()})
  d.steps = 1000
  d.num_transforms = 8
  d.chunk = -1
  # Masked PGD and Square inside the same mask (L-inf 1: any colour).
  d.pgd_steps = 100
  d.square_queries = 2000
  d.square_p_init = 0.3
  # The occlusion attack (ROA, 7x7 as DOA trains against), every position.
  d.roa = ml_collections.ConfigDict(dict(
      height=7, width=7, stride=2, search="exhaustive", candidates=10,
      pgd_steps=30))


#: The quick defence study: two seeds, shorter training with cheaper
#: adversarial examples (3 PGD steps; DOA tries 4 positions), 20 held-out
#: victims, RP2's own target, shorter attacks (ROA tries the 10 positions
#: of largest gradient, not all 169), clean accuracy on 2,000 held-out
#: images at most (column smoothing votes 32 times per image).
QUICK_DEFENCES = {
    "real.seeds": (0, 1),
    "real.num_train_steps.lisa": 300,
    "real.num_train_steps.gtsrb": 300,
    "defences.test_images": 2000,
    "defences.training.steps": 3,
    "defences.training.candidates": 4,
    "defences.training.pgd_steps": 3,
    "real.victims": 20,
    "defences.targets.lisa": (12,),
    "defences.targets.gtsrb": (5,),
    "defences.steps": 40,
    "defences.num_transforms": 2,
    "defences.pgd_steps": 30,
    "defences.square_queries": 100,
    "defences.roa.search": "gradient",
    "defences.roa.pgd_steps": 10,
}


def link_defences(c: ml_collections.ConfigDict) -> None:
  """Links `c.defences.training` into the `defence` block of every model
  of `c.real_models` trained on adversarial examples (after `link_real`)."""
  for m in c.real_models.values():
    if m.defence.kind in ("pgd_mask", "doa"):
      for field in c.defences.training.keys():
        m.defence[field] = c.defences.training.get_ref(field)


def base() -> ml_collections.ConfigDict:
  """The defence study at full size."""
  c = ml_collections.ConfigDict()
  c.name = "full"
  c.study = "defences"
  common.study_settings(c, ())
  del c["models"]  # the trained defences are real_models
  c.seeds = (0,)
  common.real_settings(c)
  c.real.variants = DEFENCE_VARIANTS
  defence_settings(c)
  c.distributed = distributed_config()  # several processes: see there
  return c


#: Named overrides of `base` (see blurnet_jax/config_args.py).
OVERRIDES = {
    "quick": {"name": "quick", **common.QUICK_TRAINING,
              **QUICK_DEFENCES},
}


def get_config(arg=None):
  c = config_args.configure(arg, base, OVERRIDES)
  common.link_real(c)
  link_defences(c)
  return c
