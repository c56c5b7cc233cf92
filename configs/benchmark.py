r"""Speed, one measurement per run: the suite (training, the RP2 white-box
grid and the data, beside references), the synthetic renderer, a vmapped
population against its members alone, a job's scaling over devices, and
each defence's training step against the baseline's.

    python -m launch.benchmark --config=configs/benchmark.py --workdir=/tmp/b
    python -m launch.benchmark --config=configs/benchmark.py:runlocal \
        --workdir=/tmp/b
    python -m launch.benchmark --config=configs/benchmark.py \
        --config.sections='("grid",)' --config.grid_steps=30 --config.repeats=3 \
        --config.torch_python=/path/to/venv-with-torch/bin/python \
        --workdir=/tmp/b
    python -m launch.benchmark --config=configs/benchmark.py:render
    python -m launch.benchmark --config=configs/benchmark.py:populations
    python -m launch.benchmark \
        --config=configs/benchmark.py:populations,penalty=tv
    python -m launch.benchmark --config=configs/benchmark.py:scaling
    python -m launch.benchmark --config=configs/benchmark.py:defences
    python -m launch.benchmark --config=configs/benchmark.py:defences \
        --config.defences.variants='("baseline", "doa")' \
        --config.defences.repeats=3

Measurements (at most one of suite, render, populations, scaling,
defences; none = suite; each combines with runlocal):
  suite        the fields at the top: the train step, the grid and the
               renderer, `repeats` times, interleaved with the references.
               Prints a table and writes WORKDIR/benchmark.json (every run,
               medians, the ratios, device and versions). With
               `reference_dir` (default: the optional reference benchmarks
               in ../shared/bench beside the repo, when present) the bare-JAX
               reference runs in the same session, interleaved, and the
               PyTorch one too where `torch_python` imports torch. Default
               run on a 2-core CPU: about 15 minutes (the references' grids
               are most of it); runlocal about 2 minutes.
  render       `render`: the synthetic renderer's steady-state images/s with
               1 worker and `render.workers` (0: one per core); a table and
               one JSON line.
  populations  `populations.steps` steps of the `population` (a sweep of
               configs/sweep.py: `penalty`, every alpha, batch 128) as one
               vmapped program, per chunk size, against each member alone;
               one JSON line.
  scaling      `scaling.steps` steps of the `population` (here
               configs/sweep.py's runlocal, 2 alphas x 4 seeds, batch 64) and
               of an RP2 grid of `scaling.grid_targets` targets, on every
               device of the job: run it on every process of a multi-process
               job (configs/distributed.py); process 0 prints one JSON line
               per workload.
  defences     `defences.steps` train steps of each of `defences.variants`
               (configs/train.py's, the baseline among them), each its
               population of `defences.seeds` seeds at batch
               `defences.batch`, run as sweep.train_population runs it (the
               defence's own step), compile excluded, one shared random
               batch; `defences.repeats` interleaved repetitions (medians).
               Prints a table (s/step, images/s, x baseline: s/step over the
               baseline's, compile s) and one JSON line.
  runlocal     fewer steps, transforms, images, members and variants
               (tests, a first look).
The suite alone needs --workdir; the others print only.
"""

from pathlib import Path

import ml_collections

from blurnet_jax import config_args
from configs import sweep as sweep_configs
from configs import train as train_configs
from configs.distributed import distributed_config

# Optional: the reference benchmarks beside the repository, when present.
_BENCH = Path(__file__).resolve().parents[1].parent / "shared" / "bench"


def _existing(path: Path) -> str:
  return str(path) if path.exists() else ""


def base(penalty: str) -> ml_collections.ConfigDict:
  """The suite at full size, every section, one repetition; the other
  measurements' blocks at theirs (`penalty`: the population's)."""
  c = ml_collections.ConfigDict()
  c.measure = "suite"  # suite | render | populations | scaling | defences
  c.sections = ("train", "grid", "data")  # any of these
  c.repeats = 1  # interleaved repetitions; the report gives medians
  # train: the jitted train step, batch of random images.
  c.batch = 128
  c.train_steps = 60  # timed steps (after 5 untimed ones)
  c.conv_impls = ("auto", "xla")  # LisaCNN.conv_impl values to time
  # grid: 17 targets x victims x num_transforms x grid_steps.
  # The RP2 model, its camouflage mask and (victims='rp2') its 40 real
  # victims, from the packaged assets or rp2_dir; victims='synthetic': 40
  # synthetic stop signs.
  c.rp2_dir = ""
  c.victims = "rp2"
  c.grid_steps = 10
  c.num_transforms = 8
  # Targets per program to time, e.g. (1, 0) (0 = all 17); () = the
  # backend's: 1 and all on a CPU, all on an accelerator.
  c.grid_chunks = ()
  # 'reference': the reference scripts' transforms (like for like);
  # 'physical': the project's default physical transforms.
  c.grid_transforms = "reference"
  # data: the synthetic renderer.
  c.data_per_class = 200
  # references: the folder of jax_ref.py / torch_ref.py ('' = none).
  c.reference_dir = _existing(_BENCH)
  c.torch_python = ""  # interpreter with torch; '' = this one
  # The references' grid forms: all targets in one vmap, one at a time.
  c.reference_modes = ("batched", "sequential")
  # render: images per class of each timed split, threads of the parallel
  # figure (0 = one per core), timed runs per worker count, first seed.
  c.render = ml_collections.ConfigDict(dict(
      per_class=500, workers=0, repeats=3, seed=0))
  # populations and scaling: the sweep they time, and their timed steps.
  c.population = population(penalty)
  c.populations = ml_collections.ConfigDict(dict(steps=20))
  c.scaling = ml_collections.ConfigDict(dict(steps=5, grid_targets=8))
  # defences: the variants timed (the baseline among them: every ratio is
  # against it), training seeds per population, timed steps, batch,
  # interleaved repetitions.
  c.defences = ml_collections.ConfigDict(dict(
      variants=("baseline", "linf_5x5", "tv_1e-4", "pgd_at", "doa",
                "doa_linf_5x5", "smoothing"),
      seeds=2, steps=20, batch=128, repeats=1))
  c.distributed = distributed_config()  # several processes: see there
  return c


def population(penalty: str) -> ml_collections.ConfigDict:
  """configs/sweep.py's full sweep of `penalty`, less its `distributed`
  block (the job's is the benchmark's)."""
  config = sweep_configs.base(penalty)
  del config.distributed
  return config


def defence_configs(block: ml_collections.ConfigDict
                    ) -> dict[str, ml_collections.ConfigDict]:
  """configs/train.py's config of each of `block.variants` (the
  `defences` block) at batch `block.batch`, with the `sweep` block the
  studies give a variant (configs/common.py): its alpha, seeds 0 ..
  `block.seeds` - 1, one population, chunk by backend."""
  variants = block.variants
  if isinstance(variants, str) or not variants or len(set(variants)) != len(
      variants):
    raise ValueError(f"defences.variants={variants!r}: give a tuple of "
                     "distinct variant names of configs/train.py, e.g. "
                     "--config.defences.variants='(\"baseline\", \"doa\")'")
  if isinstance(block.seeds, bool) or not isinstance(
      block.seeds, int) or block.seeds < 1:
    raise ValueError(f"defences.seeds={block.seeds!r} must be an int >= 1")
  out = {}
  for variant in variants:
    config = train_configs.base(variant)
    config.batch_size = block.batch
    config.sweep = ml_collections.ConfigDict(dict(
        alphas=(config.penalty.alpha,), seeds=tuple(range(block.seeds)),
        chunk=0))
    out[variant] = config
  return out


#: Named overrides of `base` (see blurnet_jax/config_args.py).
OVERRIDES = {
    "suite": {},
    "render": {"measure": "render"},
    "populations": {"measure": "populations"},
    # The workload of docs/multihost.md's table: 8 members of batch 64.
    "scaling": {
        "measure": "scaling",
        **config_args.under("population", sweep_configs.OVERRIDES["runlocal"]),
        "population.sweep.seeds": (0, 1, 2, 3),
        "population.batch_size": 64,
    },
    "defences": {"measure": "defences"},
    # Fewer steps, transforms, images, members and variants (see above).
    "runlocal": {
        "train_steps": 10,
        "grid_steps": 2,
        "num_transforms": 2,
        "data_per_class": 20,
        "render.per_class": 20,
        **config_args.under("population", sweep_configs.OVERRIDES["runlocal"]),
        "population.sweep.seeds": lambda c: c.population.sweep.seeds[:1],
        "populations.steps": 5,
        "scaling.steps": 2,
        "scaling.grid_targets": 2,
        "defences.variants": ("baseline", "pgd_at", "doa", "smoothing"),
        "defences.steps": 3,
        "defences.batch": 16,
    },
}


def get_config(arg=None):
  return config_args.configure(
      arg, base, OVERRIDES, penalty="linf",
      exclusive=("suite", "render", "populations", "scaling", "defences"))
