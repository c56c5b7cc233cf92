r"""The robustness checklist on every Table 2 variant (see
blurnet_jax/study/robustness/checklist.py).

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

`defences` (e.g. `defences,quick`) is an alias of configs/defences.py, the
defence study's own config: it returns that config.
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
  c.study = "checklist"  # the study this config runs (study/studies.py)
  c.distributed = distributed_config()  # several processes: see there
  return c


#: The quick checklist, smaller still (a run of tens of seconds).
RUNLOCAL_ROBUSTNESS = {
    **common.QUICK_ROBUSTNESS,
    "victims": 10,
    "l2_budgets": (1.0, 8.0),
    "pgd_steps": 10,
    "steps_curve": (2, 10),
    "square_queries": 60,
    "rp2_steps": 15,
    "rp2_transforms": 1,
    "angles": (0.0, 30.0, 60.0),
    "distances": (32, 16, 8),
}


#: The three variants of the quick study at its size.
QUICK = {
    "name": "quick",
    "variants": common.QUICK_VARIANTS,
    **common.QUICK_TRAINING,
    **config_args.under("robustness", common.QUICK_ROBUSTNESS),
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
        **config_args.under("robustness", RUNLOCAL_ROBUSTNESS),
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
  return c
