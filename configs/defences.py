r"""BlurNet beside other defences on real photographs (the defence study,
blurnet_jax/study/defence_stages.py; docs/defences.md).

    python -m launch.robustness --config=configs/defences.py:quick \
        --config.data.source=lisa_crops --config.data.manual_dir=PATH/lisa \
        --workdir=/tmp/defences_lisa

(`configs/robustness.py:defences[,quick]` is an alias of this config.)

Each defence of `real.variants` (`common.DEFENCE_VARIANTS`: the baseline,
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


def base() -> ml_collections.ConfigDict:
  """The defence study at full size."""
  c = ml_collections.ConfigDict()
  c.name = "full"
  c.study = "defences"
  common.study_settings(c, ())
  del c["models"]  # the trained defences are real_models
  c.seeds = (0,)
  common.real_settings(c)
  c.real.variants = common.DEFENCE_VARIANTS
  common.defence_settings(c)
  c.distributed = distributed_config()  # several processes: see there
  return c


#: Named overrides of `base` (see blurnet_jax/config_args.py).
OVERRIDES = {
    "quick": {"name": "quick", **common.QUICK_TRAINING,
              **common.QUICK_DEFENCES},
}


def get_config(arg=None):
  c = config_args.configure(arg, base, OVERRIDES)
  common.link_real(c)
  common.link_defences(c)
  return c
