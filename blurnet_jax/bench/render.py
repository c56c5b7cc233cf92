"""The synthetic renderer's speed: steady-state images/s of
`synthetic.generate_split` with 1 worker and with several, compilation timed
apart (`launch.benchmark --config=configs/benchmark.py:render`; the suite's
data section reports its best figure).
"""

from __future__ import annotations

import os
import time

import numpy as np

from blurnet_jax.classes import NUM_CLASSES
from blurnet_jax.data import synthetic


def render_speed(per_class: int = 500, *, workers: int = 0,
                 repeats: int = 3, seed: int = 0) -> dict:
  """Steady-state images/s of `synthetic.generate_split`, for 1 worker and
  `workers`.

  Compilation is timed on its own first (the first chunk rendered in this
  process, minus a steady-state chunk); each figure is the best and median of
  `repeats` runs over a train split of `per_class * 18` images, with a new
  seed each run.

  Args:
    per_class: images per class of each timed split.
    workers: threads of the parallel figure; 0 means one per core.
    repeats: timed runs per worker count.
    seed: seed of the first timed run.

  Returns:
    {"compile_seconds", "images", "chunk", "cores", "load_average",
    "results": [{"workers", "best", "median", "runs", "per_cpu_second"},
    ...]}: figures in images/s of wall time; `per_cpu_second` is images per
    second of this process's CPU time (best run), which other load on a
    shared machine disturbs less; `load_average` is the 1-minute load
    before the runs.
  """
  for name, value, low in (("per_class", per_class, 1), ("workers", workers, 0),
                           ("repeats", repeats, 1)):
    if not isinstance(value, (int, np.integer)) or value < low:
      raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
  workers = workers or synthetic.default_workers()
  compiling = synthetic.compile_seconds(seed)
  total = per_class * NUM_CLASSES
  load = os.getloadavg()[0]
  results = []
  for w in sorted({1, workers}):
    runs, cpu_runs = [], []
    for r in range(repeats):
      start, cpu = time.perf_counter(), time.process_time()
      n = sum(len(images) for images, _ in synthetic.generate_split(
          per_class, seed=seed + r, split="train", workers=w))
      runs.append(n / (time.perf_counter() - start))
      cpu_runs.append(n / max(time.process_time() - cpu, 1e-9))
    results.append({"workers": w, "best": round(max(runs), 1),
                    "median": round(float(np.median(runs)), 1),
                    "runs": [round(v, 1) for v in runs],
                    "per_cpu_second": round(max(cpu_runs), 1)})
  return {"compile_seconds": round(compiling, 2), "images": total,
          "chunk": synthetic.CHUNK, "cores": len(os.sched_getaffinity(0)),
          "load_average": round(load, 2), "results": results}


def format_render_speed(result: dict) -> str:
  """A small table of a `render_speed` result."""
  lines = [f"{'workers':>7} {'best img/s':>11} {'median img/s':>13} "
           f"{'img/cpu-s':>10}"]
  for r in result["results"]:
    lines.append(f"{r['workers']:>7} {r['best']:>11.0f} {r['median']:>13.0f} "
                 f"{r['per_cpu_second']:>10.0f}")
  lines.append(f"{result['images']} images a run, chunks of {result['chunk']},"
               f" {result['cores']} cores, load average "
               f"{result['load_average']}; compile "
               f"{result['compile_seconds']} s (not in the figures)")
  return "\n".join(lines)
