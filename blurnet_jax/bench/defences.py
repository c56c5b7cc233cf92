"""Each defence's training cost against the undefended baseline's: the
steady-state seconds per train step of every variant given, each run
exactly as `sweep.train_population` runs it (its train config,
`configs/train.py`'s, at the benchmark's batch size; its seeds as one
population; its step `sweep.population_step`, which routes through the
defence's own step, `defences.training.training_for`), compile excluded, on
one shared random batch
(`launch.benchmark --config=configs/benchmark.py:defences`).

    configs = benchmark_configs.defence_configs(config.defences)
    result = defences.defence_speed(configs, steps=20)
    print(defences.format_defence_speed(result))

Every variant's ratio is its seconds per step over the baseline's, measured
in the same session (the baseline's is 1 by definition): what a defence
multiplies a training run's time by, on this machine. With `repeats` > 1
the variants' timed runs are interleaved (order alternating each
repetition, as the suite's) and every figure is the median.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from blurnet_jax import distributed
from blurnet_jax import models
from blurnet_jax import sweep
from blurnet_jax.classes import NUM_CLASSES
from blurnet_jax.defences import training as defence_training

BASELINE = "baseline"


def _check(configs: Mapping[str, ml_collections.ConfigDict], steps: int,
           repeats: int) -> int:
  """The batch size every config shares, after the checks."""
  if BASELINE not in configs:
    raise ValueError(f"defences.variants={tuple(configs)!r} must include "
                     f"{BASELINE!r}: every ratio is against the baseline's "
                     "seconds per step")
  for name, value in (("steps", steps), ("repeats", repeats)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
  batches = {int(c.batch_size) for c in configs.values()}
  if len(batches) != 1:
    raise ValueError(f"the variants' batch sizes differ ({sorted(batches)}); "
                     "one shared batch times them all")
  return batches.pop()


class _Workload:
  """One variant's population and its compiled step, as
  `sweep.train_population` builds them."""

  def __init__(self, variant: str, config: ml_collections.ConfigDict):
    self.variant = variant
    self.defence = defence_training.defence_kind(config)
    pairs = sweep.members(config)
    self.members = len(pairs)
    mesh, size = sweep.member_mesh(len(pairs))
    padded = pairs + pairs[-1:] * (size - len(pairs))
    model = models.model_for(config)
    self.state = distributed.shard_leading(sweep.create_population(
        config, model, [a for a, _ in padded], [s for _, s in padded]), mesh)
    self.keys = distributed.shard_leading(jax.vmap(jax.random.key)(
        jnp.asarray([s for _, s in padded], jnp.uint32)), mesh)
    self.chunk = sweep.member_chunk(config, size)
    self.step_fn = sweep.population_step(config, size)

  def run(self, batch, steps: int) -> float:
    """Wall seconds of `steps` population steps (the state carried)."""
    start = time.perf_counter()
    for _ in range(steps):
      self.state, metrics = self.step_fn(self.state, batch, self.keys)
    jax.block_until_ready(metrics)
    return time.perf_counter() - start


def defence_speed(configs: Mapping[str, ml_collections.ConfigDict], *,
                  steps: int = 20, repeats: int = 1,
                  seed: int = 0) -> dict[str, Any]:
  """Seconds per train step of each variant's population, and its ratio to
  the baseline's.

  Args:
    configs: variant name -> its train config with a `sweep` block (its
      members: alpha x seeds), e.g. `configs/benchmark.py`'s
      `defence_configs`; the baseline among them, every one of one batch
      size.
    steps: timed steps per variant and repetition.
    repeats: interleaved repetitions (the figures are their medians).
    seed: numpy seed of the shared batch.

  Every variant's population and step are built as `sweep.train_population`
  builds them; one untimed call compiles the step (its seconds, compile
  or a read of the persistent compilation cache and the first step, are
  reported apart), then `steps` steps are timed on one random batch shared
  by every variant (images float32 in [0, 1], labels of the LISA
  classes). With `repeats` > 1 the timed runs of the variants
  are interleaved, the order alternating each repetition.

  Returns:
    {"variants", "steps", "batch", "repeats", "backend", "devices", "cores",
    "load_average", "rows": [{"variant", "defence", "members", "chunk",
    "seconds_per_step", "images_per_s", "x_baseline", "compile_seconds",
    "runs"}, ...]}, rows in the order of `configs`; `images_per_s` is batch
    x members / seconds per step; `x_baseline` is `seconds_per_step` over
    the baseline's (1.0 for it); `runs` the seconds per step of each
    repetition. Seconds are rounded to the microsecond, and `x_baseline`
    is the rounded seconds' ratio rounded to 4 decimals.

  Raises:
    ValueError: no baseline among `configs` (one line), batch sizes that
      differ, or a count below 1.
  """
  batch = _check(configs, steps, repeats)
  rng = np.random.default_rng(seed)
  data = (jnp.asarray(rng.random((batch, 32, 32, 3), np.float32)),
          jnp.asarray(rng.integers(0, NUM_CLASSES, batch), jnp.int32))
  load = os.getloadavg()[0]
  workloads, compile_s = [], {}
  for variant, config in configs.items():
    w = _Workload(variant, config)
    compile_s[variant] = w.run(data, 1)  # compile and the first step
    workloads.append(w)
  runs: dict[str, list[float]] = {w.variant: [] for w in workloads}
  for r in range(repeats):
    # Alternate the order each repetition so that slow drift of a shared
    # machine does not favour whoever runs first.
    for w in workloads if r % 2 == 0 else workloads[::-1]:
      runs[w.variant].append(w.run(data, steps) / steps)
  per_step = {v: round(statistics.median(r), 6) for v, r in runs.items()}
  rows = []
  for w in workloads:
    s = per_step[w.variant]
    rows.append({
        "variant": w.variant, "defence": w.defence, "members": w.members,
        "chunk": w.chunk, "seconds_per_step": s,
        "images_per_s": round(batch * w.members / s, 1),
        "x_baseline": round(s / per_step[BASELINE], 4),
        "compile_seconds": round(compile_s[w.variant], 2),
        "runs": [round(v, 6) for v in runs[w.variant]]})
  return {"variants": list(configs), "steps": steps, "batch": batch,
          "repeats": repeats, "backend": jax.default_backend(),
          "devices": jax.device_count(),
          "cores": len(os.sched_getaffinity(0)),
          "load_average": round(load, 2), "rows": rows}


def format_defence_speed(result: dict[str, Any]) -> str:
  """A plain-text table of a `defence_speed` result."""
  lines = [f"{'variant':14s} {'defence':10s} {'s/step':>9s} "
           f"{'images/s':>9s} {'x baseline':>10s} {'compile s':>9s}"]
  for r in result["rows"]:
    lines.append(f"{r['variant']:14s} {r['defence']:10s} "
                 f"{r['seconds_per_step']:9.4f} {r['images_per_s']:9.1f} "
                 f"{r['x_baseline']:10.2f} {r['compile_seconds']:9.2f}")
  members = result["rows"][0]["members"]
  lines.append(
      f"{members} members x batch {result['batch']} per step, "
      f"{result['steps']} timed steps x {result['repeats']} repetition(s) "
      f"(medians), {result['backend']} x{result['devices']}, "
      f"{result['cores']} cores, load average {result['load_average']}; "
      "compile s: compile (or a persistent-cache read) and the first step, "
      "not in the figures")
  return "\n".join(lines)
