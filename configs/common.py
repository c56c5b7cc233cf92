"""Blocks shared by the study configs (reproduce.py and robustness.py).

`study_training(c, quick)` puts the training settings of the study on `c`
and one complete train config per Table 2 variant under `c.models`, whose
shared fields are references to `c`'s (ml_collections FieldReferences), so
`--config.num_train_steps=1000` reaches every model, and the config a run
prints and saves is the one each model was trained with.
"""

import ml_collections

from configs import train as train_configs
from configs.data import data_config

TABLE2_VARIANTS = ("baseline", "linf_3x3", "linf_5x5", "linf_7x7", "tv_1e-4",
                   "tv_1e-5")
QUICK_VARIANTS = ("baseline", "linf_5x5", "tv_1e-4")


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
  m = train_configs.get_config(f"variant={variant}")
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


def real_victims_grid(quick: bool, *, targets) -> ml_collections.ConfigDict:
  """The white-box grid of the arms attacked on the 40 real victims (the
  LISA arm, the proxy ablation): the RP2 settings at `targets`; quick:
  target 12 alone, 40 steps x 2 transforms, the length of the quick Table 2
  grid, so that the RP2 model's programs are shared."""
  g = ml_collections.ConfigDict()
  g.targets = (12,) if quick else tuple(targets)
  g.num_transforms = 2 if quick else 8
  g.steps = 40 if quick else 300
  g.eval_transforms = 4 if quick else 10
  g.chunk = -1
  return g


def lisa_arm(c: ml_collections.ConfigDict, *, quick: bool, forms=None
             ) -> ml_collections.ConfigDict:
  """The LISA-initialised arm: each Table 2 variant fine-tuned from the RP2
  authors' weights (`c.lisa_models`), in two forms, beside a baseline
  fine-tuned the same way (the control of the 'full' form; the control of
  the 'frozen' form is the RP2 model itself), attacked on the 40 real
  victims. `c.lisa` holds the arm's settings."""
  c.lisa = ml_collections.ConfigDict()
  c.lisa.variants = (("linf_5x5", "tv_1e-4") if quick
                     else TABLE2_VARIANTS[1:])
  # full: every layer trains; frozen: only what the variant adds (the
  # learned kernel; for TV the first layer). Quick: the full form alone
  # (a reduction the report lists), to fit the 10 minutes.
  if forms is None:
    forms = ("full",) if quick else ("full", "frozen")
  c.lisa.forms = tuple(forms)
  c.lisa.num_train_steps = 60 if quick else 300
  c.lisa.learning_rate = 1e-4
  c.lisa.grid = real_victims_grid(quick, targets=(12, 5, 1))
  steps = c.lisa.get_ref("num_train_steps")
  models = {}
  for form in c.lisa.forms:
    for variant in (("baseline",) if form == "full" else ()) + tuple(
        c.lisa.variants):
      m = linked_train_config(
          c, variant, steps=steps, warmup=steps // 10,
          learning_rate=c.lisa.get_ref("learning_rate"))
      m.init = "rp2"
      m.trainable = "all" if form == "full" else "added"
      models[f"{form}_{variant}"] = m
  c.lisa_models = ml_collections.ConfigDict(models)
  return c


def real_arm(c: ml_collections.ConfigDict, *, quick: bool
             ) -> ml_collections.ConfigDict:
  """Table 2 on real photographs (`blurnet_jax.study.real`), run instead
  of the synthetic study when `data.source` is a real source
  (`lisa_crops`, `gtsrb`, `lisa`): each variant of `c.real.variants`
  trained from scratch on the source, seed by seed (`c.seeds`), attacked
  white-box on real stop signs. Settings that depend on the data set are
  keyed by its label space ('lisa' for the LISA sources, 'gtsrb')."""
  c.real = ml_collections.ConfigDict()
  # The input and L1 fixed blurs beside Table 2's for comparison (full).
  c.real.variants = (("baseline", "linf_5x5", "tv_1e-4") if quick else
                     TABLE2_VARIANTS + ("input_5x5", "l1_5x5"))
  # Training length per label space, in steps of `c.batch_size`.
  c.real.num_train_steps = ml_collections.ConfigDict(
      {"lisa": 600, "gtsrb": 1000} if quick else
      {"lisa": 3000, "gtsrb": 6000})
  c.real.learning_rate = 2e-3
  # Training seeds of every variant: three, so that the seed part of each
  # interval has two degrees of freedom (two seeds give t = 12.7).
  c.real.seeds = (0, 1, 2)
  # Held-out stop signs attacked (beside the RP2 authors' 40 on LISA),
  # drawn (spread over tracks) before any model is trained.
  c.real.victims = 20 if quick else 40
  c.real.victim_seed = 0
  # The grid of the other arms on real victims, but with targets per label
  # space; () = every class but stop. Quick: RP2's own (speedLimit45 on
  # LISA, speedLimit80 on GTSRB) and one more.
  grid = real_victims_grid(quick, targets=()).to_dict()
  grid["steps"] = 40 if quick else 1000  # Table 2's full length
  grid["targets"] = ml_collections.ConfigDict(
      {"lisa": (5, 12), "gtsrb": (1, 5)} if quick else
      {"lisa": (), "gtsrb": ()})
  c.real.grid = ml_collections.ConfigDict(grid)
  c.real_models = ml_collections.ConfigDict(
      {v: linked_train_config(c, v, learning_rate=c.real.get_ref(
          "learning_rate")) for v in c.real.variants})
  return c


#: The proxy ablation's settings: the knobs each baseline changes from the
#: study's data and training (data: corruption, balance, train_per_class;
#: training: augment, and the length as a multiple of proxy.num_train_steps).
PROXY_SETTINGS = {
    "default": {},
    "clean": {"corruption": 0.0},
    "no_augment": {"augment": False},
    "lisa_balance": {"balance": "lisa"},
    "clean_no_augment": {"corruption": 0.0, "augment": False},
    "long": {"steps_factor": 3},
}
QUICK_PROXY_SETTINGS = ("default", "clean")
PROXY_DATA_KNOBS = ("corruption", "balance", "train_per_class")


def proxy_train_config(c: ml_collections.ConfigDict, setting: str
                       ) -> ml_collections.ConfigDict:
  """The baseline of one proxy setting: the study's baseline config with
  the setting's knobs. Its data block links every field of `c.data` except
  the knobs it changes (so its tfds config name differs only by them)."""
  if setting not in PROXY_SETTINGS:
    raise ValueError(f"unknown proxy setting {setting!r}; known: "
                     f"{', '.join(PROXY_SETTINGS)}")
  knobs = PROXY_SETTINGS[setting]
  steps = c.proxy.get_ref("num_train_steps") * knobs.get("steps_factor", 1)
  m = linked_train_config(c, "baseline", steps=steps, warmup=steps // 10)
  if any(k in knobs for k in PROXY_DATA_KNOBS):
    data = ml_collections.ConfigDict()
    for k in c.data.keys():
      data[k] = knobs[k] if k in knobs else c.data.get_ref(k)
    m.data = data
  m.augment = knobs.get("augment", True)
  # A fresh block: `m.sweep.seeds` holds the study's seeds reference, and
  # assigning to it would change the study-wide value behind it.
  m.sweep = ml_collections.ConfigDict(dict(
      alphas=(0.0,), seeds=c.proxy.get_ref("seeds"), chunk=0))
  return m


def proxy_arm(c: ml_collections.ConfigDict, *, quick: bool
              ) -> ml_collections.ConfigDict:
  """The proxy ablation (`blurnet_jax.study.proxy`): one baseline
  population per setting of `PROXY_SETTINGS` (`c.proxy_models`), each and
  the RP2 model attacked with the white-box grid on the 40 real victims
  with the same keys. `c.proxy` holds the arm's settings."""
  c.proxy = ml_collections.ConfigDict()
  # Quick: two settings, a shorter training and one seed (reductions the
  # report lists); full: every setting at the study's length and seeds.
  c.proxy.num_train_steps = 60 if quick else c.get_ref("num_train_steps")
  c.proxy.seeds = (0,) if quick else c.get_ref("seeds")
  c.proxy.grid = real_victims_grid(quick, targets=(1, 5, 12))
  # Table 2's variants trained again at a proxy setting and attacked with
  # Table 2's grid: '' (none; quick), 'closest' (the setting whose baseline
  # is nearest the RP2 model's success) or a setting's name.
  c.proxy.table2 = "" if quick else "closest"
  settings = QUICK_PROXY_SETTINGS if quick else tuple(PROXY_SETTINGS)
  c.proxy_models = ml_collections.ConfigDict(
      {s: proxy_train_config(c, s) for s in settings})
  return c


def study_training(c: ml_collections.ConfigDict, *, quick: bool,
                   variants=None) -> ml_collections.ConfigDict:
  """Adds the study's training block and `c.models` to `c`."""
  c.seed = 0  # attacks and evaluation draws (the root key)
  # Training seeds of every model (and the attack keys of the RP2 model):
  # each figure's interval spans them. Member i of a variant and of the
  # baseline share attack key i, so their differences are paired.
  c.seeds = (0, 1) if quick else (0, 1, 2)
  c.rp2_dir = ""  # the RP2 assets; '' = the packaged copy
  # --config.data.source=lisa_crops|gtsrb --config.data.manual_dir=PATH
  c.data = data_config()
  if quick:
    c.data.train_per_class = 300
    c.data.test_per_class = 50
  c.num_train_steps = 240 if quick else 2000
  c.warmup_steps = 24 if quick else 200
  c.batch_size = 64 if quick else 128
  c.learning_rate = 1e-3
  if variants is None:
    variants = QUICK_VARIANTS if quick else TABLE2_VARIANTS
  c.models = ml_collections.ConfigDict(
      {v: linked_train_config(c, v) for v in variants})
  return c


def robustness_block(size: str = "full") -> ml_collections.ConfigDict:
  """The checklist's settings; size 'full', 'quick' or 'runlocal'."""
  full, quick = size == "full", size == "quick"
  r = ml_collections.ConfigDict()
  # Synthetic stop signs. Quick: 20, as many as Table 2's quick grid, so
  # the physical sticker's RP2 program (same settings) is the grid's own
  # compiled program, not a second compilation per architecture.
  r.victims = 40 if full else 20 if quick else 10
  # Seeds of each trained model the checklist runs on (member j attacked
  # with key j; the RP2 model gets as many attack keys): every rate's
  # interval spans them. Quick: the first seed, one key.
  r.members = 3 if full else 1
  r.mask = "camouflage"  # where the budget attacks and the sticker act
  # Budgets inside the mask: L-inf per pixel and channel, L2 per image.
  r.linf_budgets = ((0.03, 0.06, 0.125, 0.25, 0.5, 1.0) if full
                    else (0.25, 1.0))
  r.l2_budgets = ((0.25, 0.5, 1.0, 2.0, 4.0, 8.0) if full
                  else (2.0, 8.0) if quick else (1.0, 8.0))
  r.reference_linf = 1.0  # transfer matrix and steps curve: a linf budget
  # (1 = any colour inside the mask: the sticker threat model of RP2)
  r.pgd_steps = 100 if full else 30 if quick else 10
  # PGD steps at the reference budget; the point at pgd_steps is the
  # budget curve's own run.
  r.steps_curve = ((10, 30, 100, 300) if full else (10, 30) if quick
                   else (2, 10))
  r.square_queries = 2000 if full else 100 if quick else 60
  r.square_p_init = 0.3  # the mask is small: windows of ~sqrt(0.3 * area)
  r.eot_samples = 10 if full else 4
  r.rp2_steps = 1000 if full else 40 if quick else 15  # the physical sticker
  r.rp2_transforms = 8 if full else 2 if quick else 1
  r.angles = ((0.0, 15.0, 30.0, 45.0, 60.0, 75.0) if full or quick
              else (0.0, 30.0, 60.0))
  r.distances = (32, 24, 16, 12, 8, 6, 4) if full or quick else (32, 16, 8)
  return r
