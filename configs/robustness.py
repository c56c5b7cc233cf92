r"""The robustness checklist on every Table 2 variant (see
blurnet_jax/robustness.py).

    python -m launch.robustness --config=configs/robustness.py:runlocal \
        --workdir=/tmp/robustness_local
    python -m launch.robustness --config=configs/robustness.py:quick \
        --config.rp2_dir=../shared/rp2 --workdir=/tmp/blurnet_quick
    python -m launch.robustness --config=configs/robustness.py \
        --config.rp2_dir=../shared/rp2 --workdir=/tmp/blurnet_full

Models are trained exactly as `launch.reproduce` trains them (same fields,
same WORKDIR/models layout), so pointing both at one WORKDIR reuses them.
`variants=all` (or 'baseline+tv_1e-4', names joined by '+') picks the
models instead. `runlocal`: the synthetic baseline only, trained briefly, small budgets (a
run of tens of seconds, for tests and a first look). `quick`: the three
variants of the quick study. Default: every Table 2 variant. `rp2_dir` adds
the RP2 model on its 40 real victims with the authors' own sticker.
"""

import ml_collections

from blurnet_jax.config_args import parse_arg
from configs import train as train_configs

_TRAINING = ("seed", "rp2_dir", "lisa_dir", "data", "models",
             "num_train_steps", "warmup_steps", "batch_size", "learning_rate")


def robustness_block(size: str = "full") -> ml_collections.ConfigDict:
  """The checklist's settings; size 'full', 'quick' or 'runlocal'."""
  full, quick = size == "full", size == "quick"
  r = ml_collections.ConfigDict()
  r.victims = 40 if full else 20 if quick else 10  # synthetic stop signs
  r.mask = "camouflage"  # where the budget attacks and the sticker act
  # Budgets inside the mask: L-inf per pixel and channel, L2 per image.
  r.linf_budgets = ("0.03,0.06,0.125,0.25,0.5,1" if full
                    else "0.06,0.25,1" if quick else "0.25,1")
  r.l2_budgets = ("0.25,0.5,1,2,4,8" if full else "0.5,2,8" if quick
                  else "1,8")
  r.reference_linf = 1.0  # transfer matrix and steps curve: a linf budget
  # (1 = any colour inside the mask: the sticker threat model of RP2)
  r.pgd_steps = 100 if full else 30 if quick else 10
  r.steps_curve = "10,30,100,300" if full else "5,15,45" if quick else "2,8"
  r.square_queries = 2000 if full else 200 if quick else 60
  r.square_p_init = 0.3  # the mask is small: windows of ~sqrt(0.3 * area)
  r.eot_samples = 10 if full else 4
  r.rp2_steps = 1000 if full else 60 if quick else 15  # the physical sticker
  r.rp2_transforms = 8 if full else 2 if quick else 1
  r.angles = "0,15,30,45,60,75" if full or quick else "0,30,60"
  r.distances = "32,24,16,12,8,6,4" if full or quick else "32,16,8"
  return r


def get_config(arg=None):
  # configs/reproduce.py imports this module for robustness_block.
  from configs import reproduce as reproduce_configs  # pylint: disable=g-import-not-at-top
  arg = parse_arg(arg, runlocal=False, quick=False, variants="")
  base = reproduce_configs.get_config(
      "quick" if arg.quick or arg.runlocal else None)
  c = ml_collections.ConfigDict()
  c.name = "runlocal" if arg.runlocal else base.name
  for key in _TRAINING:
    c[key] = base[key]
  if arg.runlocal:
    c.models = ml_collections.ConfigDict({"baseline": base.models.baseline})
    c.data.train_per_class = 60
    c.data.test_per_class = 10
    c.num_train_steps = 120
    c.warmup_steps = 10
    c.batch_size = 32
  if arg.variants:  # e.g. 'all' with quick: every Table 2 variant, briefly
    names = (reproduce_configs.TABLE2_VARIANTS if arg.variants == "all"
             else tuple(v.strip() for v in arg.variants.split("+")))
    c.models = ml_collections.ConfigDict(
        {v: train_configs.get_config(f"variant={v}") for v in names})
  c.robustness = robustness_block(
      "runlocal" if arg.runlocal else "quick" if arg.quick else "full")
  return c
