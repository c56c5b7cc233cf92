r"""The robustness checklist on every Table 2 variant (see
blurnet_jax/study/robustness.py).

    python -m launch.robustness --config=configs/robustness.py:runlocal \
        --workdir=/tmp/robustness_local
    python -m launch.robustness --config=configs/robustness.py:quick \
        --workdir=/tmp/blurnet_quick
    python -m launch.robustness --config=configs/robustness.py \
        --workdir=/tmp/blurnet_full

Models are trained exactly as `launch.reproduce` trains them (same fields,
same WORKDIR/models layout), so pointing both at one WORKDIR reuses them.
Default: every Table 2 variant. `quick`: the three variants of the quick
study at its size. `runlocal`: the synthetic baseline only, trained
briefly, small budgets (a run of tens of seconds, for tests and a first
look). `all` (e.g. `quick,all`) trains every Table 2 variant at any size;
`variants=("baseline", "tv_1e-4")`, a tuple of configs/train.py's names,
picks the models instead (quote it for the shell:
`--config='configs/robustness.py:quick,variants=("baseline", "tv_1e-4")'`).
The RP2 model is checked on its 40 real victims with the authors' own
sticker (the packaged assets, or `rp2_dir`).

`defences` runs the defence study instead (blurnet_jax/study/
defence_stages.py; docs/defences.md), on a real source:

    python -m launch.robustness --config=configs/robustness.py:defences,quick \
        --config.data.source=lisa_crops --config.data.manual_dir=PATH/lisa \
        --workdir=/tmp/defences_lisa

Each defence of `real.variants` (`common.DEFENCE_VARIANTS`: the baseline,
BlurNet's linf_5x5 and tv_1e-4, masked-PGD adversarial training, DOA,
BlurNet plus DOA, column smoothing) is trained on the source as Table 2 on
real photographs trains its variants (`real`), and the input
transformations of `defences.transforms` wrap the baseline; all are
attacked adaptively on one victim set (`defences`). Full: 3 seeds, 3000 /
6000 steps, every target, 1000-step RP2, 100-step PGD, 2000 Square
queries: GPU work. `defences,quick`: 2 seeds, 300 steps with cheaper
adversarial training (3 PGD steps, 4 DOA positions), 20 held-out victims,
RP2's own target, 40-step RP2 over 2 transforms, 30-step PGD, 100 Square
queries (under 20 minutes on a 2-core CPU).
"""

import ml_collections

from blurnet_jax import config_args
from configs import common
from configs import defences as defences_configs
from configs.distributed import distributed_config


def base(variants) -> ml_collections.ConfigDict:
  """The checklist at full size on the models of `variants`."""
  c = ml_collections.ConfigDict()
  c.name = "full"
  common.study_settings(c, variants)
  c.seeds = (0,)  # the checklist attacks one model per variant
  c.robustness = common.robustness_block()
  # 'checklist' (the checklist on the synthetic study's models) or
  # 'defences' (BlurNet beside other defences on a real source; see
  # blurnet_jax/study/defence_stages.py).
  c.study = "checklist"
  common.real_settings(c)
  common.defence_settings(c)
  c.distributed = distributed_config()  # several processes: see there
  return c


#: The three variants of the quick study at its size.
QUICK = {
    "name": "quick",
    "variants": common.QUICK_VARIANTS,
    **common.QUICK_TRAINING,
    **config_args.under("robustness", common.QUICK_ROBUSTNESS),
    **common.QUICK_DEFENCES,
}

#: Named overrides of `base` (see blurnet_jax/config_args.py).
OVERRIDES = {
    "quick": QUICK,
    # The quick checklist on the baseline alone, smaller and shorter.
    "runlocal": {
        **QUICK,
        "name": "runlocal",
        "variants": ("baseline",),
        "data.train_per_class": 60,
        "data.test_per_class": 10,
        "num_train_steps": 120,
        "warmup_steps": 10,
        "batch_size": 32,
        **config_args.under("robustness", common.RUNLOCAL_ROBUSTNESS),
    },
    "all": {"variants": common.TABLE2_VARIANTS},  # at any size
}


def get_config(arg=None):
  parts = [p.strip() for p in config_args.split(arg or "")]
  if "defences" in parts:  # the alias of configs/defences.py
    return defences_configs.get_config(
        ",".join(p for p in parts if p != "defences") or None)
  c = config_args.configure(arg, base, OVERRIDES,
                            variants=common.TABLE2_VARIANTS)
  common.link_models(c)
  common.link_real(c)
  common.link_defences(c)
  return c
