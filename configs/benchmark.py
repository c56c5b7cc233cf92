r"""Speed of training, the RP2 white-box grid and the data, beside references.

    python -m launch.benchmark --config=configs/benchmark.py --workdir=/tmp/b
    python -m launch.benchmark --config=configs/benchmark.py:runlocal \
        --workdir=/tmp/b
    python -m launch.benchmark --config=configs/benchmark.py \
        --config.sections='("grid",)' --config.grid_steps=30 --config.repeats=3 \
        --config.torch_python=/path/to/venv-with-torch/bin/python \
        --workdir=/tmp/b

Prints a table and writes WORKDIR/benchmark.json (every run, medians, the
ratios, device and versions). With `reference_dir` (default: the optional
reference benchmarks in ../shared/bench beside the repo, when present) the bare-JAX reference runs in the same session,
interleaved, and the PyTorch one too where `torch_python` imports torch.
Default run on a 2-core CPU: about 15 minutes (the references' grids are
most of it); runlocal about 2 minutes.
"""

from pathlib import Path

import ml_collections

from blurnet_jax import config_args
from configs.distributed import distributed_config

# Optional: the reference benchmarks beside the repository, when present.
_BENCH = Path(__file__).resolve().parents[1].parent / "shared" / "bench"


def _existing(path: Path) -> str:
  return str(path) if path.exists() else ""


def base() -> ml_collections.ConfigDict:
  """The default benchmark: every section, one repetition."""
  c = ml_collections.ConfigDict()
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
  c.distributed = distributed_config()  # several processes: see there
  return c


#: Named overrides of `base` (see blurnet_jax/config_args.py).
OVERRIDES = {
    # Fewer steps, transforms and images (see above).
    "runlocal": {
        "train_steps": 10,
        "grid_steps": 2,
        "num_transforms": 2,
        "data_per_class": 20,
    },
}


def get_config(arg=None):
  return config_args.configure(arg, base, OVERRIDES)
