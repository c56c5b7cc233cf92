"""What several study configs share (reproduce.py, robustness.py,
defences.py): the study's training settings and the models linked to
them, Table 2 on real photographs, the white-box grids and the
checklist's block. What one config file alone uses lives in that file
(the LISA arm and the proxy in reproduce.py, the defences in defences.py).

Each block is built at its full size, beside the differences of the quick
study (dicts of dotted paths, the named overrides' parts; see
blurnet_jax/config_args.py). The settings hold no links: after the
overrides, `link_models` and the arms' `link_*` build the complete train
config of every model (`models`, `real_models`, and reproduce.py's
`lisa_models` and `proxy_models`), whose shared fields are references to the study's
(ml_collections FieldReferences), so `--config.num_train_steps=1000`
reaches every model, and the config a run prints and saves is the one each
model was trained with. (An override of a linked field would set every
field of the link.)
"""

import ml_collections

from blurnet_jax import config_args
from configs import train as train_configs
from configs.data import data_config

TABLE2_VARIANTS = ("baseline", "linf_3x3", "linf_5x5", "linf_7x7", "tv_1e-4",
                   "tv_1e-5")
QUICK_VARIANTS = ("baseline", "linf_5x5", "tv_1e-4")


def study_settings(c: ml_collections.ConfigDict, variants) -> None:
  """The study's training settings on `c`, and `c.models`: the Table 2
  `variants` whose train configs `link_models` builds."""
  c.seed = 0  # attacks and evaluation draws (the root key)
  # Training seeds of every model (and the attack keys of the RP2 model):
  # each figure's interval spans them. Member i of a variant and of the
  # baseline share attack key i, so their differences are paired.
  c.seeds = (0, 1, 2)
  c.rp2_dir = ""  # the RP2 assets; '' = the packaged copy
  # --config.data.source=lisa_crops|gtsrb --config.data.manual_dir=PATH
  c.data = data_config()
  c.num_train_steps = 2000
  c.warmup_steps = 200
  c.batch_size = 128
  c.learning_rate = 1e-3
  c.models = tuple(variants)


#: The quick study's training (seeds apart): a smaller data set (300 + 50
#: per class), 240 steps of 64 images.
QUICK_TRAINING = {
    "data.train_per_class": 300,
    "data.test_per_class": 50,
    "num_train_steps": 240,
    "warmup_steps": 24,
    "batch_size": 64,
}


def link_models(c: ml_collections.ConfigDict) -> None:
  """`c.models`: the train config of each variant it names."""
  variants = c.models
  del c["models"]  # the names give way to their configs
  c.models = ml_collections.ConfigDict(
      {v: linked_train_config(c, v) for v in variants})


def linked_train_config(c: ml_collections.ConfigDict, variant: str, *,
                        steps=None, learning_rate=None, warmup=None
                        ) -> ml_collections.ConfigDict:
  """The train config of `variant` with the study's shared settings linked.

  Args:
    c: the study config, holding seed, rp2_dir, data, num_train_steps,
      warmup_steps, batch_size and learning_rate.
    variant: a name of configs/train.py's VARIANTS.
    steps, learning_rate, warmup: FieldReferences (or values) for the step
      budget, the learning rate and the warm-up (default: c's). Set here,
      on a fresh config: assigning to a field that already holds a
      reference would change the study-wide value behind it.
  """
  m = train_configs.base(variant)
  m.data = c.data  # the same block: one data set for every model
  m.seed = c.get_ref("seed")
  m.rp2_dir = c.get_ref("rp2_dir")
  steps = c.get_ref("num_train_steps") if steps is None else steps
  m.num_train_steps = steps
  m.warmup_steps = c.get_ref("warmup_steps") if warmup is None else warmup
  m.batch_size = c.get_ref("batch_size")
  m.learning_rate = (c.get_ref("learning_rate") if learning_rate is None
                     else learning_rate)
  m.eval_every = steps // 2
  m.checkpoint_every = steps // 2
  m.log_every = steps // 10
  # The seeds of the variant: one vmapped population (blurnet_jax.sweep),
  # member i exactly a single run with seed i.
  m.sweep = ml_collections.ConfigDict(dict(
      alphas=(m.penalty.alpha,), seeds=c.get_ref("seeds"), chunk=0))
  return m


def victims_grid(targets) -> ml_collections.ConfigDict:
  """The white-box grid of the arms attacked on the 40 real victims (the
  LISA arm, the proxy ablation): the RP2 settings at `targets`."""
  g = ml_collections.ConfigDict()
  g.targets = targets
  g.num_transforms = 8
  g.steps = 300
  g.eval_transforms = 10
  g.chunk = -1
  return g


#: The quick grids (Table 2's and the arms'): 40 steps x 2 transforms, so
#: that the RP2 model's programs on the real victims are shared.
QUICK_GRID = {"num_transforms": 2, "steps": 40, "eval_transforms": 4}


def real_settings(c: ml_collections.ConfigDict) -> None:
  """Table 2 on real photographs (`blurnet_jax.study.real.measure`), run instead
  of the synthetic study when `data.source` is a real source
  (`lisa_crops`, `gtsrb`, `lisa`): each variant of `c.real.variants`
  trained from scratch on the source, seed by seed (`c.seeds`), attacked
  white-box on real stop signs (`link_real` builds `c.real_models`).
  Settings that depend on the data set are keyed by its label space
  ('lisa' for the LISA sources, 'gtsrb')."""
  c.real = ml_collections.ConfigDict()
  # The input and L1 fixed blurs beside Table 2's for comparison.
  c.real.variants = TABLE2_VARIANTS + ("input_5x5", "l1_5x5")
  # Training length per label space, in steps of `c.batch_size`.
  c.real.num_train_steps = ml_collections.ConfigDict(
      {"lisa": 3000, "gtsrb": 6000})
  c.real.learning_rate = 2e-3
  # Training seeds of every variant: three, so that the seed part of each
  # interval has two degrees of freedom (two seeds give t = 12.7).
  c.real.seeds = (0, 1, 2)
  # Held-out stop signs attacked (beside the RP2 authors' 40 on LISA),
  # drawn (spread over tracks) before any model is trained.
  c.real.victims = 40
  c.real.victim_seed = 0
  # The grid of the other arms on real victims, at Table 2's full length,
  # with targets per label space; () = every class but stop.
  c.real.grid = victims_grid(ml_collections.ConfigDict(
      {"lisa": (), "gtsrb": ()}))
  c.real.grid.steps = 1000
  # Replication by physical sign (lisa_crops): 0 = one split (80/20 by
  # track); k >= 2 = a grouped k-fold by track, every variant trained once
  # per fold (seeds x folds members) and attacked on the stop tracks its
  # fold holds out, `frames_per_sign` frames of each (the held-out set
  # replaces `victims`), so every stop track is a victim once.
  c.real.folds = 0
  c.real.frames_per_sign = 4
  # Shorter attacks run beside grid.steps on the same victims and keys:
  # each row's convergence curve (() = none).
  c.real.ladder = ()


#: The quick real study: the quick study's variants, shorter training, 20
#: victims, RP2's own target (speedLimit45 on LISA, speedLimit80 on GTSRB)
#: and one more.
QUICK_REAL = {
    "real.variants": QUICK_VARIANTS,
    "real.num_train_steps.lisa": 600,
    "real.num_train_steps.gtsrb": 1000,
    "real.victims": 20,
    **config_args.under("real.grid", QUICK_GRID),
    "real.grid.targets.lisa": (5, 12),
    "real.grid.targets.gtsrb": (1, 5),
}


#: The decisive real study on a 2-core CPU (lisa_crops): a grouped 5-fold
#: by track, one seed per fold (the folds are the replicates), every stop
#: track a victim in 4 frames; the quick training length; the slides' TV
#: alpha and one ten times stronger; RP2 at 160 steps beside 40 (the
#: convergence curve).
DECIDE_REAL = {
    "real.variants": ("baseline", "linf_5x5", "tv_1e-4", "tv_1e-3"),
    "real.num_train_steps.lisa": 600,
    "real.seeds": (0,),
    "real.folds": 5,
    "real.frames_per_sign": 4,
    **config_args.under("real.grid", {**QUICK_GRID, "steps": 160}),
    "real.grid.targets.lisa": (5, 12),
    "real.ladder": (40,),
}


def link_real(c: ml_collections.ConfigDict) -> None:
  """`c.real_models`: the train config of each of `c.real.variants`."""
  c.real_models = ml_collections.ConfigDict(
      {v: linked_train_config(c, v, learning_rate=c.real.get_ref(
          "learning_rate")) for v in c.real.variants})


def robustness_block() -> ml_collections.ConfigDict:
  """The checklist's settings at full size."""
  r = ml_collections.ConfigDict()
  r.victims = 40  # synthetic stop signs
  # Seeds of each trained model the checklist runs on (member j attacked
  # with key j; the RP2 model gets as many attack keys): every rate's
  # interval spans them.
  r.members = 3
  r.mask = "camouflage"  # where the budget attacks and the sticker act
  # Budgets inside the mask: L-inf per pixel and channel, L2 per image.
  r.linf_budgets = (0.03, 0.06, 0.125, 0.25, 0.5, 1.0)
  r.l2_budgets = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
  r.reference_linf = 1.0  # transfer matrix and steps curve: a linf budget
  # (1 = any colour inside the mask: the sticker threat model of RP2)
  r.pgd_steps = 100
  # PGD steps at the reference budget; the point at pgd_steps is the
  # budget curve's own run.
  r.steps_curve = (10, 30, 100, 300)
  r.square_queries = 2000
  r.square_p_init = 0.3  # the mask is small: windows of ~sqrt(0.3 * area)
  r.eot_samples = 10
  r.rp2_steps = 1000  # the physical sticker
  r.rp2_transforms = 8
  r.angles = (0.0, 15.0, 30.0, 45.0, 60.0, 75.0)
  r.distances = (32, 24, 16, 12, 8, 6, 4)
  return r


#: The checklist at the quick study's size, on `robustness_block`. 20
#: victims, as many as Table 2's quick grid, so the physical sticker's RP2
#: program (same settings) is the grid's own compiled program, not a second
#: compilation per architecture; the first seed, one key.
QUICK_ROBUSTNESS = {
    "victims": 20,
    "members": 1,
    "linf_budgets": (0.25, 1.0),
    "l2_budgets": (2.0, 8.0),
    "pgd_steps": 30,
    "steps_curve": (10, 30),
    "square_queries": 100,
    "eot_samples": 4,
    "rp2_steps": 40,
    "rp2_transforms": 2,
}
