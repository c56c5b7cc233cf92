"""The speed suite: the project's jitted paths, side by side with reference
programs (`launch.benchmark --config=configs/benchmark.py`).

Three workloads, each timed after compilation (compile seconds reported on
their own):
  * train: the project's `train.train_step` (augmentation, penalty, metrics)
    on batches of random images, images/s, per `conv_impl`;
  * grid: the RP2 white-box grid of the slides (17 targets x N victims x T
    transforms x S steps) through `attacks.grid.attack_targets` and
    `evaluate_targets`, i.e. with the project's transforms, metrics and
    progress, per chunk size (targets per compiled program);
  * data: the synthetic renderer, images/s (`bench.render`).
When `reference_dir` holds the bare-JAX and PyTorch reference scripts
(`bench.references`), they run in subprocesses in the same session,
interleaved with ours, and the report gives the ratios. Figures on a shared
machine are noisy: compare ratios of one run, not absolute numbers of
different runs.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from typing import Any

from etils import epath
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from blurnet_jax import host_memory
from blurnet_jax import models
from blurnet_jax import train
from blurnet_jax.attacks import rp2
from blurnet_jax.attacks import grid as attack_grid
from blurnet_jax.attacks.transforms import TransformConfig
from blurnet_jax.bench import references
from blurnet_jax.bench import render
from blurnet_jax.classes import NUM_CLASSES, STOP
from blurnet_jax.jsonio import write_json
from blurnet_jax.data import synthetic
from blurnet_jax.data import rp2_assets
from blurnet_jax.progress import format_seconds

#: The transforms of the reference scripts' grid: rotation +-15 degrees,
#: scale 0.9..1.1, brightness +-0.1, zero padding; used for a like-for-like
#: comparison ('physical' adds perspective, colour, blur and noise).
REFERENCE_TRANSFORMS = TransformConfig(rotation_deg=15.0, scale=(0.9, 1.1),
                                       brightness=0.1, padding="zeros")
FORWARD_FLOP = 31e6  # one LisaCNN forward pass, per image (rounded)
_TRAIN_POOL = 8  # distinct random batches cycled through by the train bench


def environment() -> dict[str, Any]:
  """The device and versions a figure was measured with."""
  device = jax.devices()[0]
  return {
      "backend": jax.default_backend(),
      "device": getattr(device, "device_kind", str(device)),
      "devices": jax.device_count(),
      "cores": os.cpu_count(),
      "load_average_1min": round(os.getloadavg()[0], 2),
      "python": platform.python_version(),
      "jax": jax.__version__,
      "flax": flax.__version__,
      "optax": optax.__version__,
      # Whether glibc keeps freed host memory (cli.setup_process).
      "host_memory_reuse": host_memory.applied(),
  }


def train_throughput(*, conv_impl: str = "auto", batch: int = 128,
                     steps: int = 30, warmup: int = 5,
                     seed: int = 0) -> dict[str, Any]:
  """Images/s of the baseline's jitted `train_step` on random batches."""
  config = ml_collections.ConfigDict({
      "learning_rate": 1e-3, "warmup_steps": 10,
      "num_train_steps": warmup + steps,
      "penalty": {"kind": "none", "alpha": 0.0}})
  model = models.LisaCNN(conv_impl=conv_impl)
  state = train.create_train_state(config, model, jax.random.key(seed))
  rng = np.random.default_rng(seed)
  pool = [(jnp.asarray(rng.random((batch, 32, 32, 3), np.float32)),
           jnp.asarray(rng.integers(0, NUM_CLASSES, batch), jnp.int32))
          for _ in range(_TRAIN_POOL)]
  root = jax.random.key(seed)
  t0 = time.perf_counter()
  for i in range(warmup):  # the first step compiles
    state, metrics = train.train_step(state, pool[i % _TRAIN_POOL],
                                      jax.random.fold_in(root, i))
  jax.block_until_ready(metrics)
  t1 = time.perf_counter()
  for i in range(warmup, warmup + steps):
    state, metrics = train.train_step(state, pool[i % _TRAIN_POOL],
                                      jax.random.fold_in(root, i))
  jax.block_until_ready(metrics)
  wall = time.perf_counter() - t1
  images_per_s = steps * batch / wall
  return {"bench": "train", "impl": f"blurnet_jax ({conv_impl})",
          "batch": batch, "steps": steps, "warmup_s": round(t1 - t0, 2),
          "wall_s": round(wall, 3), "images_per_s": round(images_per_s, 1),
          "gflops_nominal": round(images_per_s * FORWARD_FLOP * 3 / 1e9, 1)}


def grid_throughput(apply_fn, params, images: np.ndarray, mask: np.ndarray, *,
                    steps: int, num_transforms: int, chunk: int,
                    transforms: TransformConfig = REFERENCE_TRANSFORMS,
                    eval_transforms: int = 10, seed: int = 0
                    ) -> dict[str, Any]:
  """The white-box grid as `launch.attack` runs it, timed by part.

  `wall_s` is the attack's execution (all chunks), `eval_s` the metrics
  (success, L2, success under `eval_transforms` physical draws; timed on a
  second call, after compilation) and `total_s` their sum: what the project
  costs beyond compilation.
  """
  targets = [t for t in range(NUM_CLASSES) if t != STOP]
  cfg = rp2.RP2Config(steps=steps, num_transforms=num_transforms,
                      transforms=transforms)
  attack_key, eval_key = jax.random.split(jax.random.key(seed))
  timings: dict[str, float] = {}
  out = attack_grid.attack_targets(apply_fn, params, images, mask, targets,
                                  attack_key, cfg=cfg, chunk=chunk,
                                  timings=timings)
  def evaluate():
    return attack_grid.evaluate_targets(apply_fn, params, images,
                                       out["adversarial"], targets, eval_key,
                                       eval_transforms=eval_transforms)[0]

  evaluate()  # compiles the metrics program (cached), not timed
  t0 = time.perf_counter()
  rows = evaluate()
  eval_s = time.perf_counter() - t0
  wall = timings["run_s"]
  images_per_s = len(targets) * len(images) * num_transforms * steps / wall
  summary = attack_grid.average_and_worst(rows)
  return {
      "bench": "rp2grid", "impl": f"blurnet_jax (chunk {chunk or 'all'})",
      "chunk": chunk, "targets": len(targets), "victims": len(images),
      "T": num_transforms, "S": steps,
      "compile_s": round(timings["compile_s"], 2),
      "wall_s": round(wall, 2), "eval_s": round(eval_s, 2),
      "total_s": round(wall + eval_s, 2),
      "grid_steps_per_s": round(steps / wall, 4),
      "images_per_s": round(images_per_s, 1),
      "gflops_input_grad": round(images_per_s * FORWARD_FLOP * 2 / 1e9, 1),
      "targeted_success_mean": summary["average_targeted_success"],
      "average_success": summary["average_success"],
  }


def median_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per (bench, impl): the median of every numeric field."""
  groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
  for row in rows:
    groups.setdefault((row["bench"], row["impl"]), []).append(row)
  out = []
  for (bench, impl), group in groups.items():
    merged = {"bench": bench, "impl": impl, "runs": len(group)}
    for k, v in group[0].items():
      if k in merged:
        continue
      if isinstance(v, (int, float)) and not isinstance(v, bool):
        merged[k] = statistics.median(r[k] for r in group)
      elif isinstance(v, (str, bool)):
        merged[k] = v
    out.append(merged)
  return out


def format_table(medians: list[dict[str, Any]]) -> str:
  """A plain-text table of the median figures."""
  lines = [f"{'bench':8s} {'implementation':34s} {'runs':>4s} "
           f"{'wall s':>9s} {'+eval s':>8s} {'compile s':>9s} "
           f"{'steps/s':>8s} {'images/s':>10s}"]
  for r in medians:
    steps = r.get("grid_steps_per_s")
    lines.append(
        f"{r['bench']:8s} {r['impl']:34s} {r['runs']:4d} "
        f"{r.get('wall_s', float('nan')):9.2f} "
        f"{r.get('eval_s', float('nan')):8.2f} "
        f"{r.get('compile_s', float('nan')):9.2f} "
        f"{steps if steps is not None else float('nan'):8.4f} "
        f"{r.get('images_per_s', float('nan')):10.1f}")
  return "\n".join(lines)


def data_throughput(per_class: int, workers: int) -> dict[str, Any]:
  """The synthetic renderer's images/s (best of 3, steady state)."""
  result = render.render_speed(per_class, workers=workers, repeats=3)
  best = max(r["best"] for r in result["results"])
  return {"bench": "data", "impl": "blurnet_jax synthetic renderer",
          "images_per_s": round(best, 1),
          "compile_s": round(result["compile_seconds"], 2),
          "workers": [r["workers"] for r in result["results"]]}


def _chunks(spec) -> list[int]:
  """Targets per program to time: `spec`, or () for the backend's default
  chunk and all targets at once."""
  if not spec:
    default = attack_grid.AUTO_CHUNK.get(jax.default_backend(), 0)
    return sorted({default, 0}, reverse=True)
  if any(isinstance(c, bool) or not isinstance(c, int) or c < 0
         for c in spec):
    raise ValueError(f"grid_chunks={tuple(spec)!r} must be a tuple of ints "
                     ">= 0 (0: all targets in one program), or () for the "
                     "backend's")
  return list(spec)


def run_benchmark(config: ml_collections.ConfigDict,
                  workdir: str | os.PathLike[str]) -> dict[str, Any]:
  """Runs the sections of `config` (see configs/benchmark.py), repeated and
  interleaved with the references, prints a table and writes
  `benchmark.json` (every run, the medians, the ratios, the environment).
  """
  workdir = epath.Path(workdir)
  sections = list(config.sections)
  unknown = set(sections) - {"train", "grid", "data"}
  if unknown or isinstance(config.sections, str):
    raise ValueError(f"sections={config.sections!r}: give a tuple of train, "
                     "grid, data, e.g. --config.sections='(\"grid\",)'")
  jobs = references.reference_jobs(config)  # run first in each repetition
  grid_inputs = None
  if "grid" in sections:
    assets = rp2_assets.load_rp2_assets(config.rp2_dir)
    if config.victims not in ("rp2", "synthetic"):
      raise ValueError(f"victims={config.victims!r}; use 'rp2' (the 40 real "
                       "victims) or 'synthetic'")
    images = (assets.victims if config.victims == "rp2"
              else synthetic.synthetic_victims(40, seed=0))
    grid_inputs = (models.apply_fn_for(models.LisaCNN()), assets.params,
                   images, assets.camouflage_mask)
  transforms = {"reference": REFERENCE_TRANSFORMS,
                "physical": TransformConfig.physical()}.get(
                    config.grid_transforms)
  if transforms is None:
    raise ValueError(f"grid_transforms={config.grid_transforms!r}; use "
                     "'reference' (the reference scripts' ranges) or "
                     "'physical'")

  if "train" in sections:
    for impl in config.conv_impls:
      jobs.append((f"train ({impl})", lambda i=impl: train_throughput(
          conv_impl=i, batch=config.batch, steps=config.train_steps)))
  if "grid" in sections:
    kind = "" if config.grid_transforms == "reference" else " physical"
    for chunk in _chunks(config.grid_chunks):
      jobs.append((f"grid{kind} (chunk {chunk or 'all'})", lambda c=chunk:
                   grid_throughput(*grid_inputs, steps=config.grid_steps,
                                   num_transforms=config.num_transforms,
                                   chunk=c, transforms=transforms)))
  if "data" in sections:
    jobs.append(("data", lambda: data_throughput(config.data_per_class, 0)))

  rows = []
  t0 = time.perf_counter()
  total = config.repeats * len(jobs)
  for r in range(config.repeats):
    # Alternate the order each repetition so that slow drift of a shared
    # machine does not favour whoever runs first.
    order = jobs if r % 2 == 0 else jobs[::-1]
    for label, job in order:
      done = len(rows)
      print(f"[{done + 1}/{total}] {label} (repeat {r + 1}, "
            f"{format_seconds(time.perf_counter() - t0)} so far)", flush=True)
      row = job()
      row["repeat"] = r
      rows.append(row)
  medians = median_rows(rows)
  result = {"environment": environment(), "settings": config.to_dict(),
            "medians": medians, "ratios": references.ratios(medians),
            "runs": rows, "seconds": round(time.perf_counter() - t0, 1)}
  workdir.mkdir(parents=True, exist_ok=True)
  write_json(workdir / "benchmark.json", result)
  print(format_table(medians))
  print(json.dumps(result["ratios"]))
  return result
