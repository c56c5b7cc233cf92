"""Benchmarks the synthetic sign generator: steady-state images/s.

    python -m launch.bench_data [--per_class=500] [--workers=0] [--repeats=3]

Prints a table (1 worker and `workers` threads; 0 means one per core) and
one JSON line with the figures. Compilation is timed apart.
"""

import json

from absl import app
from absl import flags

from blurnet_jax import benchmark

_PER_CLASS = flags.DEFINE_integer("per_class", 500,
                                  "images per class of each timed split")
_WORKERS = flags.DEFINE_integer("workers", 0,
                                "threads of the parallel figure; 0: all cores")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timed runs per worker count")
_SEED = flags.DEFINE_integer("seed", 0, "seed of the first timed run")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  result = benchmark.render_speed(_PER_CLASS.value, workers=_WORKERS.value,
                               repeats=_REPEATS.value, seed=_SEED.value)
  print(benchmark.format_render_speed(result))
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
