r"""The BlurNet study end to end: Tables 1 and 2, spectra, sweeps, a report.

    python -m launch.reproduce --config=configs/reproduce.py:quick \
        --workdir=/tmp/blurnet_quick
    python -m launch.reproduce --config=configs/reproduce.py \
        --config.rp2_dir=../shared/rp2 --workdir=/tmp/blurnet_full
    python -m launch.reproduce --config=configs/reproduce.py \
        --config.lisa_dir=/data/lisa --workdir=/tmp/blurnet_lisa

Writes WORKDIR/report/index.html and report.md (tables beside the slides'
numbers, figures, config, versions, seconds per stage), table1.json,
table2.json, spectral.json, sweep.json, robustness.json; models under WORKDIR/models (a
second run reuses them, an interrupted one resumes).

`rp2_dir` (a folder laid out like ../shared/rp2: rp2_lisa_cnn.npz,
victim-set/, masks/) adds the real-data parts: Table 1 on the RP2 model, its
camouflage perturbation and the 40 real victims (the slides' exact
protocol), the white-box grid on the RP2 model, spectra of real victims.
`lisa_dir` trains on LISA instead of the synthetic set.

Full: every Table 2 variant trained 2,000 steps, the white-box grid over
all 17 targets x 40 victims x 8 transforms x 1,000 steps per model, 8-alpha
sweeps of each penalty with a 4-target grid per member. That is GPU work
(the grid is hours on a 2-core CPU; see the README's speed section).
`quick` (under 10 minutes on a 2-core CPU): smaller data (300 + 50 per
class), 300 training steps of 64 images, three Table 2 variants (baseline,
linf_5x5, tv_1e-4), a 4-target grid of 20 victims x 2 transforms x 60 steps,
two alphas per sweep (100 steps, a 1-target grid per member), the
robustness checklist at its quick size; the report lists every reduction.
"""

import ml_collections

from blurnet_jax.config_args import parse_arg
from configs import sweep as sweep_configs
from configs.robustness import robustness_block
from configs import train as train_configs
from configs.data import data_config

TABLE2_VARIANTS = ("baseline", "linf_3x3", "linf_5x5", "linf_7x7", "tv_1e-4",
                   "tv_1e-5")


def get_config(arg=None):
  arg = parse_arg(arg, quick=False)
  q = arg.quick
  c = ml_collections.ConfigDict()
  c.name = "quick" if q else "full"
  c.seed = 0  # model init, attacks, evaluation draws
  c.rp2_dir = ""  # a folder like ../shared/rp2: adds the real-data parts
  c.lisa_dir = ""  # the extracted LISA folder: train on LISA instead
  c.data = data_config()
  if q:
    c.data.train_per_class = 300
    c.data.test_per_class = 50

  # Training. The model and penalty of each variant come from
  # configs/train.py; `data`, `seed`, the step budget, the batch and the
  # learning rate here apply to every model (Table 2 variants and sweeps).
  variants = ("baseline", "linf_5x5", "tv_1e-4") if q else TABLE2_VARIANTS
  c.models = ml_collections.ConfigDict(
      {v: train_configs.get_config(f"variant={v}") for v in variants})
  c.num_train_steps = 300 if q else 2000
  c.warmup_steps = 30 if q else 200
  c.batch_size = 64 if q else 128
  c.learning_rate = 1e-3

  # Table 1: fixed filters inserted into the undefended model (no retraining).
  c.table1 = ml_collections.ConfigDict()
  c.table1.sizes = "3,5,7"
  c.table1.kernels = "box,gaussian"
  c.table1.padding = "zeros"  # zeros | reflect
  c.table1.position = "after_relu"  # after_relu | before_relu (L1 filters)
  c.table1.attack_steps = 300 if q else 1000  # the synthetic camouflage RP2

  # Table 2: the white-box RP2 grid (camouflage settings) on each variant.
  c.grid = ml_collections.ConfigDict()
  c.grid.targets = "1,5,12,17" if q else "all"  # 'all' = every non-stop class
  c.grid.victims = 20 if q else 40
  c.grid.num_transforms = 2 if q else 8
  c.grid.steps = 60 if q else 1000
  c.grid.eval_transforms = 4 if q else 10
  c.grid.chunk = -1  # targets per program; 0 = all; -1 = by backend

  # Spectral analysis: share of power above this radius (x Nyquist).
  c.spectral_radius = 0.5

  # Alpha sweeps (vmapped populations), each member attacked white-box.
  c.sweeps = ml_collections.ConfigDict(
      {p: sweep_configs.get_config(f"penalty={p}") for p in ("linf", "tv")})
  if q:
    c.sweeps.linf.sweep.alphas = (0.0, 0.1)
    c.sweeps.tv.sweep.alphas = (0.0, 1e-4)
  c.sweep = ml_collections.ConfigDict()
  c.sweep.num_train_steps = 100 if q else 1500
  c.sweep.targets = "12" if q else "1,5,12,17"
  c.sweep.steps = 30 if q else 300  # attack steps per member
  c.sweep.num_transforms = 1 if q else 4

  # Beyond the slides: the robustness checklist on every trained variant
  # (and the RP2 model with rp2_dir); see configs/robustness.py.
  c.robustness = robustness_block("quick" if q else "full")
  return c
