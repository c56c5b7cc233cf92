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
`variants=all` (or 'baseline+tv_1e-4', names joined by '+') picks the
models instead. `runlocal`: the synthetic baseline only, trained briefly,
small budgets (a run of tens of seconds, for tests and a first look).
`quick`: the three variants of the quick study. Default: every Table 2
variant. The RP2 model is checked on its 40 real victims with the authors'
own sticker (the packaged assets, or `rp2_dir`).
"""

import ml_collections

from blurnet_jax.config_args import parse_arg
from configs import common
from configs.distributed import distributed_config


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False, quick=False, variants="")
  quick = arg.quick or arg.runlocal
  if arg.variants == "all":
    variants = common.TABLE2_VARIANTS
  elif arg.variants:
    variants = tuple(v.strip() for v in arg.variants.split("+"))
  else:
    variants = ("baseline",) if arg.runlocal else None
  c = ml_collections.ConfigDict()
  c.name = "runlocal" if arg.runlocal else "quick" if quick else "full"
  common.study_training(c, quick=quick, variants=variants)
  c.seeds = (0,)  # the checklist attacks one model per variant
  if arg.runlocal:
    c.data.train_per_class = 60
    c.data.test_per_class = 10
    c.num_train_steps = 120
    c.warmup_steps = 10
    c.batch_size = 32
  c.robustness = common.robustness_block(
      "runlocal" if arg.runlocal else "quick" if arg.quick else "full")
  c.distributed = distributed_config()  # several processes: see there
  return c
