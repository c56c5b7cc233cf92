"""Speed: one measurement of configs/benchmark.py per run (see there).

    python -m launch.benchmark --config=configs/benchmark.py --workdir=/tmp/b
    python -m launch.benchmark --config=configs/benchmark.py:render
    python -m launch.benchmark --config=configs/benchmark.py:populations
    python -m launch.benchmark --config=configs/benchmark.py:scaling
    python -m launch.benchmark --config=configs/benchmark.py:defences

The suite prints a table and its ratios and writes WORKDIR/benchmark.json;
render prints a table and one JSON line, populations one JSON line, scaling
one JSON line per workload (on process 0 of a multi-process job; run it on
every process), defences a table (each variant's seconds per train step,
images/s and ratio to the baseline's) and one JSON line.
"""

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from blurnet_jax import distributed
from blurnet_jax.bench import defences
from blurnet_jax.bench import populations
from blurnet_jax.bench import render
from blurnet_jax.bench import scaling
from blurnet_jax.bench import suite
from configs import benchmark as benchmark_configs
from launch.cli import one_line_errors, parse_flags

_CONFIG = config_flags.DEFINE_config_file("config", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "where the suite writes benchmark.json (the other "
    "measurements print only)")
flags.mark_flags_as_required(["config"])


def _suite(config, workdir):
  if not workdir:
    raise ValueError("the suite writes benchmark.json: give --workdir=DIR")
  suite.run_benchmark(config, workdir)


def _render(config, workdir):
  del workdir  # prints only
  result = render.render_speed(
      config.render.per_class, workers=config.render.workers,
      repeats=config.render.repeats, seed=config.render.seed)
  print(render.format_render_speed(result))
  print(json.dumps(result))


def _populations(config, workdir):
  del workdir  # prints only
  result = populations.population_vs_singles(config.population,
                                             steps=config.populations.steps)
  if distributed.is_writer():
    print(json.dumps(result))


def _scaling(config, workdir):
  del workdir  # prints only
  steps = config.scaling.steps
  rows = [scaling.time_sweep(config.population, steps=steps),
          scaling.time_grid(config.population,
                            targets=config.scaling.grid_targets, steps=steps)]
  if distributed.is_writer():
    for row in rows:
      print(json.dumps(row), flush=True)


def _defences(config, workdir):
  del workdir  # prints only
  block = config.defences
  result = defences.defence_speed(
      benchmark_configs.defence_configs(block), steps=block.steps,
      repeats=block.repeats)
  if distributed.is_writer():
    print(defences.format_defence_speed(result))
    print(json.dumps(result), flush=True)


MEASURES = {"suite": _suite, "render": _render, "populations": _populations,
            "scaling": _scaling, "defences": _defences}


@one_line_errors
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  if config.measure not in MEASURES:
    raise ValueError(f"measure={config.measure!r}; use one of "
                     f"{', '.join(MEASURES)}")
  MEASURES[config.measure](config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
