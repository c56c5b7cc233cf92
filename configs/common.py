"""Blocks shared by the study configs (reproduce.py and robustness.py).

Each block is built at its full size, beside the differences of the quick
study (dicts of dotted paths, the named overrides' parts; see
blurnet_jax/config_args.py). The settings hold no links: after the
overrides, `link_models` and the arms' `link_*` build the complete train
config of every model (`models`, `lisa_models`, `real_models`,
`proxy_models`), whose shared fields are references to the study's
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


def link_unset(block: ml_collections.ConfigDict, key: str,
               c: ml_collections.ConfigDict) -> None:
  """`block[key]`, where None, becomes a link to the study's `c[key]`."""
  if block[key] is None:
    block[key] = c.get_ref(key)


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


def lisa_settings(c: ml_collections.ConfigDict) -> None:
  """The LISA-initialised arm's settings, `c.lisa`: each Table 2 variant
  fine-tuned from the RP2 authors' weights in two forms, beside a baseline
  fine-tuned the same way (the control of the 'full' form; the control of
  the 'frozen' form is the RP2 model itself), attacked on the 40 real
  victims. `link_lisa` builds their train configs (`c.lisa_models`)."""
  c.lisa = ml_collections.ConfigDict()
  c.lisa.variants = TABLE2_VARIANTS[1:]
  # full: every layer trains; frozen: only what the variant adds (the
  # learned kernel; for TV the first layer).
  c.lisa.forms = ("full", "frozen")
  c.lisa.num_train_steps = 300
  c.lisa.learning_rate = 1e-4
  c.lisa.grid = victims_grid((12, 5, 1))


#: The quick LISA arm: two variants in the full form alone (a reduction the
#: report lists), to fit the 10 minutes; target 12 alone.
QUICK_LISA = {
    "lisa.variants": ("linf_5x5", "tv_1e-4"),
    "lisa.forms": ("full",),
    "lisa.num_train_steps": 60,
    **config_args.under("lisa.grid", {**QUICK_GRID, "targets": (12,)}),
}


def link_lisa(c: ml_collections.ConfigDict) -> None:
  """`c.lisa_models`: the train configs of the LISA arm (see
  `lisa_settings`), linked to `c.lisa`'s steps and learning rate."""
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


def real_settings(c: ml_collections.ConfigDict) -> None:
  """Table 2 on real photographs (`blurnet_jax.study.real`), run instead
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


def link_real(c: ml_collections.ConfigDict) -> None:
  """`c.real_models`: the train config of each of `c.real.variants`."""
  c.real_models = ml_collections.ConfigDict(
      {v: linked_train_config(c, v, learning_rate=c.real.get_ref(
          "learning_rate")) for v in c.real.variants})


#: The defences of the defence study (configs/train.py's names), each
#: trained on the real source like Table 2's variants: the undefended
#: baseline, BlurNet's learned filter and TV (Table 2), masked-PGD
#: adversarial training, DOA, column smoothing, BlurNet plus DOA.
DEFENCE_VARIANTS = ("baseline", "linf_5x5", "tv_1e-4", "pgd_at", "doa",
                    "doa_linf_5x5", "smoothing")


def defence_settings(c: ml_collections.ConfigDict) -> None:
  """The defence study's settings (`blurnet_jax.study.defence_stages`),
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


def proxy_settings(c: ml_collections.ConfigDict) -> None:
  """The proxy ablation's settings (`blurnet_jax.study.proxy`), `c.proxy`:
  one baseline population per setting of `PROXY_SETTINGS`, each and the
  RP2 model attacked with the white-box grid on the 40 real victims with
  the same keys. `c.proxy_models` names the settings; `link_proxy` makes
  them train configs."""
  c.proxy = ml_collections.ConfigDict()
  # None: the study's steps and seeds (linked by `link_proxy`).
  c.proxy.num_train_steps = None
  c.proxy.seeds = None
  c.proxy.grid = victims_grid((1, 5, 12))
  # Table 2's variants trained again at a proxy setting and attacked with
  # Table 2's grid: '' (none), 'closest' (the setting whose baseline is
  # nearest the RP2 model's success) or a setting's name.
  c.proxy.table2 = "closest"
  c.proxy_models = tuple(PROXY_SETTINGS)


#: The quick proxy ablation: two settings, a shorter training and one seed
#: (reductions the report lists), target 12 alone, no Table 2 again.
QUICK_PROXY = {
    "proxy.num_train_steps": 60,
    "proxy.seeds": (0,),
    **config_args.under("proxy.grid", {**QUICK_GRID, "targets": (12,)}),
    "proxy.table2": "",
    "proxy_models": ("default", "clean"),
}


def link_proxy(c: ml_collections.ConfigDict) -> None:
  """`c.proxy_models`: the baseline of each setting it names, and the
  study's steps and seeds where `c.proxy` leaves them None."""
  link_unset(c.proxy, "num_train_steps", c)
  link_unset(c.proxy, "seeds", c)
  settings = c.proxy_models
  del c["proxy_models"]  # the names give way to their configs
  c.proxy_models = ml_collections.ConfigDict(
      {s: proxy_train_config(c, s) for s in settings})


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

#: The quick checklist, smaller still (a run of tens of seconds).
RUNLOCAL_ROBUSTNESS = {
    **QUICK_ROBUSTNESS,
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
