"""The white-box target grid: `rp2_attack` for many target classes at once.

  out = attack_targets(apply_fn, params, victims, mask, [1, 5, 12], key,
                       cfg=RP2Config(steps=300))
  rows, predictions = evaluate_targets(apply_fn, params, victims,
                                       out["adversarial"], [1, 5, 12], key,
                                       eval_transforms=10)
  average_and_worst(rows)  # average and worst success over the targets

Targets go through one compiled program per chunk (`jax.vmap` over the
target axis, split over every device of the job: the local ones, and those
of the other processes in a multi-process run, `blurnet_jax.distributed`;
every process gets every result), and each target's result
depends only on its own key `fold_in(key, target)`. The metrics follow the
slides: success is a prediction changed against the clean one; the
transform figures count victims not classified as stop under fresh
physical transforms.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

from blurnet_jax import distributed
from blurnet_jax.attacks import rp2
from blurnet_jax.models import ApplyFn
from blurnet_jax.attacks.transforms import TransformConfig
from blurnet_jax.classes import LISA, LabelSpace
from blurnet_jax.progress import Progress

#: Every LISA class but stop: the targets of the full white-box grid.
ALL_TARGETS: tuple[int, ...] = LISA.targets


def parse_targets(targets, labels: LabelSpace = LISA) -> list[int]:
  """The target classes of a grid: a sequence of class indices or names.

  Args:
    targets: e.g. (1, 5, 12), ('yield', 12) or `ALL_TARGETS`; () for every
      class of `labels` but stop.
    labels: the victims' label space (classes and the stop class).

  Returns:
    Sorted distinct class indices.
  """
  names, stop = labels.class_names, labels.stop
  if isinstance(targets, (str, int)):
    targets = (targets,)
  if len(targets) == 0:  # pylint: disable=g-explicit-length-test
    return list(labels.targets)
  out = []
  for token in targets:
    if isinstance(token, str) and token.strip() in names:
      out.append(names.index(token.strip()))
      continue
    try:
      value = int(token)
    except (TypeError, ValueError):
      value = -1
    if isinstance(token, bool) or not 0 <= value < labels.num_classes:
      raise ValueError(
          f"target {token!r} is not a class ({labels.name}); give a tuple of "
          f"indices in 0..{labels.num_classes - 1} or class names, e.g. "
          "(1, 5, 12)")
    out.append(value)
  if stop in out:
    raise ValueError(f"target {stop} ({names[stop]}) is the victims' "
                     "true class; a targeted attack toward it is no attack")
  return sorted(set(out))


_COMPILED: dict[Any, Any] = {}


def target_sharding(size: int):
  """How a chunk of `size` targets is laid out: split over every device of
  the job (like a sweep's members) when there are several and they divide
  it, else None (one device)."""
  mesh = distributed.global_mesh("target")
  if mesh is None or size % mesh.size:
    return None
  return NamedSharding(mesh, P("target"))


#: Targets per program when `chunk` is -1, by backend, the faster choice in
#: `launch.benchmark` (README, "Speed"): one at a time on a CPU, all at once
#: elsewhere.
AUTO_CHUNK = {"cpu": 1}


def chunk_size(num_targets: int, chunk: int) -> int:
  """Targets per compiled program: `chunk` (0: all; -1: by backend, see
  `AUTO_CHUNK`, all where not listed), rounded up to a multiple of the
  job's devices so that the target axis shards evenly."""
  n = jax.device_count()
  if chunk < 0:
    chunk = AUTO_CHUNK.get(jax.default_backend(), 0)
  size = min(chunk or num_targets, num_targets)
  return -(-size // n) * n


def _check_chunk(chunk: Any) -> None:
  if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < -1:
    raise ValueError(f"chunk={chunk!r} must be an int: targets per compiled "
                     "program, 0 for all, -1 to choose by backend")


def _grid_program(apply_fn, cfg, params, images, mask, size):
  """The compiled `size`-target grid, cached by architecture and shapes.

  The program holds no host callback, so JAX's persistent compilation
  cache (turned on by the launchers) can keep it across processes; progress
  is reported between programs."""
  signature = jax.tree.map(lambda x: (x.shape, x.dtype), (params, images,
                                                          mask))
  sharding = target_sharding(size)
  cache_key = (apply_fn, cfg, size, jax.tree.structure(signature),
               tuple(jax.tree.leaves(signature)), sharding)
  if cache_key not in _COMPILED:
    def one(params, images, mask, target, key):
      return rp2.rp2_attack(
          apply_fn, params, images, mask, target,
          jax.random.fold_in(key, target), cfg=cfg)

    if size == 1:
      # One target: the unbatched program. XLA:CPU runs the vmapped one
      # (batch axis of 1 on every gather, scatter and matmul) slower; the
      # results are the same.
      def single(params, images, mask, targets, key):
        out = one(params, images, mask, targets[0], key)
        return jax.tree.map(lambda x: x[None], out)

      fn = jax.jit(single)
    else:
      fn = jax.jit(jax.vmap(one, in_axes=(None, None, None, 0, None)))
    targets = jax.ShapeDtypeStruct((size,), jnp.int32, sharding=sharding)
    _COMPILED[cache_key] = fn.lower(params, images, mask, targets,
                                    jax.random.key(0)).compile()
  return _COMPILED[cache_key]


def attack_targets(apply_fn: ApplyFn, params: Any, images: np.ndarray,
                   mask: np.ndarray, targets: list[int], key: jax.Array, *,
                   cfg: rp2.RP2Config, chunk: int = -1,
                   desc: str | None = None,
                   timings: dict[str, float] | None = None
                   ) -> dict[str, np.ndarray]:
  """`rp2_attack` for every target, `jax.vmap`ped in chunks.

  Each compiled program attacks `chunk` targets at once (0: all; -1: by
  backend, see `chunk_size`; rounded up to a multiple of the devices of
  the job, over which the target axis is split as a sweep's members are);
  the last chunk is padded with copies of its last target so that one
  program serves every chunk. Target t uses the key
  `fold_in(key, t)`, so its result does not depend on the chunking, the
  devices or the other targets.

  Args:
    desc: if given, a progress line with this label counts the attack
      steps (chunks x `cfg.steps`), updated after each chunk's program.
    timings: if given, receives 'compile_s' (ahead-of-time compilation of
      the chunk program) and 'run_s' (executing every chunk).

  Returns:
    Host arrays with a leading target axis: 'noise' (T, 32, 32, 3),
    'adversarial' (T, N, 32, 32, 3), 'losses' and 'success' (T, steps).
  """
  if not targets:
    raise ValueError("no targets to attack")
  _check_chunk(chunk)
  size = chunk_size(len(targets), chunk)
  sharding = target_sharding(size)
  if distributed.multi_process():
    # Host values: a multi-process program takes them as replicated inputs
    # (an array on one local device would not fit its global layout).
    params, images, mask = jax.device_get((params, images, mask))
    images, mask = np.asarray(images), np.asarray(mask)
  else:
    images, mask = jnp.asarray(images), jnp.asarray(mask)
  if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.wrap_key_data(key)  # a raw uint32 key
  chunks = -(-len(targets) // size)
  progress = None if desc is None else Progress(
      chunks * cfg.steps, f"{desc}: {len(targets)} target(s) in {chunks} "
      "program(s)", unit="step")
  t0 = time.perf_counter()
  grid = _grid_program(apply_fn, cfg, params, images, mask, size)
  t1 = time.perf_counter()
  parts = []
  for start in range(0, len(targets), size):
    part = targets[start:start + size]
    padded = part + part[-1:] * (size - len(part))
    chunk_targets = jnp.asarray(padded, jnp.int32)
    if sharding is not None:
      chunk_targets = jax.device_put(chunk_targets, sharding)
    out = distributed.to_host(grid(params, images, mask, chunk_targets, key))
    parts.append({k: np.asarray(v)[:len(part)] for k, v in out.items()})
    if progress is not None:
      progress.update(len(parts) * cfg.steps)
  if progress is not None:
    progress.close()
  if timings is not None:
    timings.update(compile_s=t1 - t0, run_s=time.perf_counter() - t1)
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@functools.lru_cache(maxsize=32)
def _metrics_program(apply_fn: ApplyFn, eval_transforms: int, stop: int):
  """Jitted metrics of a (T, N, ...) stack of perturbed victim sets."""
  physical = TransformConfig.physical()

  @jax.jit
  @functools.partial(jax.vmap, in_axes=(None, None, 0, 0, 0))
  def metrics(params, images, adv, target, key):
    clean = jnp.argmax(apply_fn(params, images), -1)
    pred = jnp.argmax(apply_fn(params, adv), -1)
    moved = rp2.predictions_under_transforms(
        key, apply_fn, params, adv, transforms=physical,
        num_samples=eval_transforms)
    return pred, {
        "success": rp2.attack_success_rate(clean, pred),
        "targeted_success": rp2.targeted_success(pred, target),
        "l2": rp2.l2_dissimilarity(images, adv),
        "transform_success": jnp.mean((moved != stop).astype(jnp.float32)),
        "transform_targeted_success": jnp.mean(
            (moved == target).astype(jnp.float32)),
    }

  return metrics


def evaluate_targets(apply_fn: ApplyFn, params: Any, images: np.ndarray,
                     adversarial: np.ndarray, targets: list[int],
                     key: jax.Array, *, eval_transforms: int,
                     labels: LabelSpace = LISA
                     ) -> tuple[list[dict[str, Any]], np.ndarray]:
  """The metrics of each target's perturbed victims.

  Returns:
    (rows, predictions): one row per target: 'success' (prediction changed
    vs the clean one), 'targeted_success', 'l2' (dissimilarity), and under
    `eval_transforms` fresh `TransformConfig.physical()` draws:
    'transform_success' (not classified as stop) and
    'transform_targeted_success'; plus the counts of the adversarial
    predictions. predictions: int (T, N), the classes of `adversarial`.
  """
  # One target per call: the program's shape does not depend on how many
  # targets a grid has, so every grid of one model and victim set (Table
  # 2's, the sweeps', the arms' on the real victims) shares one compiled
  # program. Target t's key is fold_in(key, t) however they are batched.
  metrics = _metrics_program(apply_fn, eval_transforms, labels.stop)
  images = jnp.asarray(images)
  rows, preds = [], []
  for i, t in enumerate(targets):
    target = jnp.asarray([t], jnp.int32)
    pred, values = jax.device_get(metrics(
        params, images, jnp.asarray(adversarial[i:i + 1]), target,
        jax.random.fold_in(key, t)[None]))
    pred = pred[0]
    values = {k: v[0] for k, v in values.items()}
    preds.append(pred)
    counts = np.bincount(pred, minlength=labels.num_classes)
    rows.append({"target": int(t), "target_name": labels.class_names[t],
                 **{k: round(float(v), 6) for k, v in values.items()},
                 "predicted": {labels.class_names[c]: int(n)
                               for c, n in enumerate(counts) if n}})
  return rows, np.stack(preds)


def average_and_worst(rows: list[dict[str, Any]]) -> dict[str, float]:
  """Average and worst (max over targets: where the attack does best)."""
  out = {}
  for k in ("success", "targeted_success", "transform_success",
            "transform_targeted_success", "l2"):
    values = np.asarray([r[k] for r in rows], np.float64)
    out[f"average_{k}"] = round(float(values.mean()), 6)
    if k != "l2":
      out[f"worst_{k}"] = round(float(values.max()), 6)
  return out
