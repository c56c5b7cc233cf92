r"""The BlurNet study end to end: Tables 1 and 2, spectra, sweeps, a report.

    python -m launch.reproduce --config=configs/reproduce.py:quick \
        --workdir=/tmp/blurnet_quick
    python -m launch.reproduce --config=configs/reproduce.py \
        --workdir=/tmp/blurnet_full
    python -m launch.reproduce --config=configs/reproduce.py:quick \
        --config.data.source=lisa_crops --config.data.manual_dir=PATH/lisa \
        --workdir=/tmp/blurnet_lisa_crops
    python -m launch.reproduce --config=configs/reproduce.py:quick \
        --config.data.source=gtsrb --config.data.manual_dir=PATH/gtsrb \
        --workdir=/tmp/blurnet_gtsrb

Writes WORKDIR/report/index.html and report.md (the findings first: a
verdict per claim of the slides; tables beside the slides' numbers with 95%
intervals, figures, config, versions, seconds per stage), table1.json,
table2.json, lisa.json, spectral.json, sweep.json, robustness.json,
findings.json, study.json and config.json; models under WORKDIR/models (a second run reuses them, an
interrupted one resumes). `python -m launch.report --workdir=WORKDIR`
renders the report again from those files.

The real-data parts (Table 1 on the RP2 model, its camouflage perturbation
and the 40 real victims, the slides' exact protocol; the white-box grid and
the robustness checks on the RP2 model; spectra of real victims) use the
RP2 assets shipped with the package; `rp2_dir` points at another folder
laid out the same way.

On a real source (`data.source=lisa_crops`, `gtsrb` or `lisa`, read from
`data.manual_dir`) the study is Table 2 on real photographs instead
(`blurnet_jax.study.real.measure`, settings in `real` and `real_models`): the
victims, training, the RP2 model's reading of the LISA crops, Table 2 with
the treatment checks and verdicts, the report.

Every Table 2 variant is trained once per seed of `seeds` (a vmapped
population); the LISA-initialised arm (`lisa`, `lisa_models`) fine-tunes
each variant from the RP2 weights in two forms beside its control.

Full: every Table 2 variant trained 2,000 steps x 3 seeds, the white-box grid over
all 17 targets x 40 victims x 8 transforms x 1,000 steps per model, 8-alpha
sweeps of each penalty with a 4-target grid per member: GPU work (see the
README's speed section). `quick` is sized for a 2-core CPU: smaller data
(300 + 50 per class), 240 training steps of 64 images x 2 seeds, three
Table 2 variants (baseline, linf_5x5, tv_1e-4), a 3-target grid of 20
victims x 2 transforms x 40 steps, a LISA arm of two variants in its full
form only (60 fine-tuning steps, a 1-target grid), two proxy settings (one
seed), two alphas per sweep (60 steps, one seed, a 1-target grid per
member), the robustness checklist at its quick size on the first seed;
the report lists every reduction. `variants=("baseline", "tv_1e-4")` (a
tuple of configs/train.py's names) trains other Table 2 variants, at
either size.
"""

import ml_collections

from blurnet_jax.attacks.grid import ALL_TARGETS
from blurnet_jax import config_args
from configs import common
from configs import sweep as sweep_configs
from configs.distributed import distributed_config

def link_unset(block: ml_collections.ConfigDict, key: str,
               c: ml_collections.ConfigDict) -> None:
  """`block[key]`, where None, becomes a link to the study's `c[key]`."""
  if block[key] is None:
    block[key] = c.get_ref(key)


def lisa_settings(c: ml_collections.ConfigDict) -> None:
  """The LISA-initialised arm's settings, `c.lisa`: each Table 2 variant
  fine-tuned from the RP2 authors' weights in two forms, beside a baseline
  fine-tuned the same way (the control of the 'full' form; the control of
  the 'frozen' form is the RP2 model itself), attacked on the 40 real
  victims. `link_lisa` builds their train configs (`c.lisa_models`)."""
  c.lisa = ml_collections.ConfigDict()
  c.lisa.variants = common.TABLE2_VARIANTS[1:]
  # full: every layer trains; frozen: only what the variant adds (the
  # learned kernel; for TV the first layer).
  c.lisa.forms = ("full", "frozen")
  c.lisa.num_train_steps = 300
  c.lisa.learning_rate = 1e-4
  c.lisa.grid = common.victims_grid((12, 5, 1))


#: The quick LISA arm: two variants in the full form alone (a reduction the
#: report lists), to fit the 10 minutes; target 12 alone.
QUICK_LISA = {
    "lisa.variants": ("linf_5x5", "tv_1e-4"),
    "lisa.forms": ("full",),
    "lisa.num_train_steps": 60,
    **config_args.under("lisa.grid", {**common.QUICK_GRID, "targets": (12,)}),
}


def link_lisa(c: ml_collections.ConfigDict) -> None:
  """`c.lisa_models`: the train configs of the LISA arm (see
  `lisa_settings`), linked to `c.lisa`'s steps and learning rate."""
  steps = c.lisa.get_ref("num_train_steps")
  models = {}
  for form in c.lisa.forms:
    for variant in (("baseline",) if form == "full" else ()) + tuple(
        c.lisa.variants):
      m = common.linked_train_config(
          c, variant, steps=steps, warmup=steps // 10,
          learning_rate=c.lisa.get_ref("learning_rate"))
      m.init = "rp2"
      m.trainable = "all" if form == "full" else "added"
      models[f"{form}_{variant}"] = m
  c.lisa_models = ml_collections.ConfigDict(models)


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
  m = common.linked_train_config(c, "baseline", steps=steps, warmup=steps // 10)
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
  """The proxy ablation's settings (`blurnet_jax.study.synthetic.proxy`), `c.proxy`:
  one baseline population per setting of `PROXY_SETTINGS`, each and the
  RP2 model attacked with the white-box grid on the 40 real victims with
  the same keys. `c.proxy_models` names the settings; `link_proxy` makes
  them train configs."""
  c.proxy = ml_collections.ConfigDict()
  # None: the study's steps and seeds (linked by `link_proxy`).
  c.proxy.num_train_steps = None
  c.proxy.seeds = None
  c.proxy.grid = common.victims_grid((1, 5, 12))
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
    **config_args.under("proxy.grid", {**common.QUICK_GRID, "targets": (12,)}),
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


TABLE2_VARIANTS = common.TABLE2_VARIANTS


def base(variants) -> ml_collections.ConfigDict:
  """The full study's settings; `link` makes the model configs."""
  c = ml_collections.ConfigDict()
  c.name = "full"
  # Training: seed, rp2_dir, data, the step budget, batch and learning rate,
  # linked into every model of `c.models` (one train config per variant).
  common.study_settings(c, variants)

  # The LISA-initialised arm (see lisa_settings below).
  lisa_settings(c)

  # Table 2 on real photographs, the study run on a real data source
  # (see configs/common.py: real_settings).
  common.real_settings(c)

  # The proxy ablation: baselines under settings of the synthetic set's
  # knobs beside the RP2 model (see proxy_settings below).
  proxy_settings(c)

  # Table 1: fixed filters inserted into the undefended model (no retraining).
  c.table1 = ml_collections.ConfigDict()
  c.table1.sizes = (3, 5, 7)
  c.table1.kernels = ("box", "gaussian")
  c.table1.padding = "zeros"  # zeros | reflect
  c.table1.position = "after_relu"  # after_relu | before_relu (L1 filters)
  c.table1.attack_steps = 1000  # the synthetic camouflage RP2

  # Table 2: the white-box RP2 grid (camouflage settings) on each variant.
  c.grid = ml_collections.ConfigDict()
  c.grid.targets = ALL_TARGETS  # class indices
  c.grid.victims = 40
  c.grid.num_transforms = 8
  c.grid.steps = 1000
  c.grid.eval_transforms = 10
  c.grid.chunk = -1  # targets per program; 0 = all; -1 = by backend

  # Spectral analysis: share of power above this radius (x Nyquist).
  c.spectral_radius = 0.5

  # Alpha sweeps (vmapped populations), each member attacked white-box.
  c.sweep = ml_collections.ConfigDict()
  c.sweep.num_train_steps = 1500
  c.sweep.targets = (1, 5, 12, 17)
  c.sweep.steps = 300  # attack steps per member
  c.sweep.num_transforms = 4
  # The members of each penalty's population; seeds None: the study's
  # (linked by `link`). Each becomes the penalty's train config.
  c.sweeps = ml_collections.ConfigDict({
      penalty: {"sweep": {"alphas": alphas, "seeds": None, "chunk": 0}}
      for penalty, alphas in sweep_configs.ALPHAS.items()})

  # Beyond the slides: the robustness checklist on every trained variant
  # and the RP2 model; see configs/robustness.py.
  c.robustness = common.robustness_block()
  c.distributed = distributed_config()  # several processes: see there
  return c


#: Named overrides of `base` (see blurnet_jax/config_args.py).
OVERRIDES = {
    # Sized for a 2-core CPU (see above); the report lists every reduction.
    "quick": {
        "name": "quick",
        "seeds": (0, 1),
        "variants": common.QUICK_VARIANTS,
        **common.QUICK_TRAINING,
        **QUICK_LISA,
        **common.QUICK_REAL,
        **QUICK_PROXY,
        "table1.attack_steps": 300,
        # Three targets (addedLane, pedestrianCrossing, speedLimit45: the
        # last is RP2's own), the set of the proxy ablation's full grid.
        **config_args.under("grid", {
            **common.QUICK_GRID, "targets": (1, 5, 12), "victims": 20}),
        # The quick Table 2 grid's length and transforms, so that each
        # member's attack runs the program Table 2 compiled for its
        # architecture; two alphas and one seed per penalty.
        "sweep.num_train_steps": 60,
        "sweep.targets": (12,),
        "sweep.steps": 40,
        "sweep.num_transforms": 2,
        "sweeps.linf.sweep.alphas": (0.0, 0.1),
        "sweeps.linf.sweep.seeds": (0,),
        "sweeps.tv.sweep.alphas": (0.0, 1e-4),
        "sweeps.tv.sweep.seeds": (0,),
        **config_args.under("robustness", common.QUICK_ROBUSTNESS),
    },
    # The decisive form of the real study (sized for a 2-core CPU; see
    # configs/common.py DECIDE_REAL): physical signs as the unit, a grouped
    # 5-fold by track as the replicates. Real sources (lisa_crops) only.
    "decide": {"name": "decide", **common.DECIDE_REAL},
}


def link(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The train config of every model of the study, linked to its settings
  (see configs/common.py)."""
  common.link_models(c)
  link_lisa(c)
  common.link_real(c)
  link_proxy(c)
  steps = c.sweep.get_ref("num_train_steps")
  sweeps = {}
  for penalty, members in c.sweeps.items():
    s = common.linked_train_config(c, sweep_configs.VARIANT[penalty],
                                   steps=steps)
    s.variant = f"sweep_{penalty}"
    link_unset(members.sweep, "seeds", c)
    s.sweep = members.sweep
    sweeps[penalty] = s
  c.sweeps = ml_collections.ConfigDict(sweeps)
  return c


def get_config(arg=None):
  return link(config_args.configure(arg, base, OVERRIDES,
                                    variants=TABLE2_VARIANTS))
