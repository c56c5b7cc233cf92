"""RP2 runs from a config: one target or the white-box grid, with reports.

The library side of `launch/attack.py` (see `configs/rp2.py`), usable from a
notebook:

  config = configs.rp2.get_config("poster")
  results = run_attack(config, "/tmp/poster")

`run_attack` loads a model (`load_model`), the victims and the mask, runs
`rp2_attack` vmapped over the target classes in chunks of `config.chunk`
targets per compiled program, measures every target as REFERENCE.md defines
it, and writes `attack.json`, `perturbation.npy`, `perturbation.png` and
`victims.png` into the workdir.
"""

from __future__ import annotations

from collections.abc import Callable
import functools
import json
import os
from pathlib import Path
import time
from typing import Any

from etils import epath
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np

from blurnet_jax import checkpoint
from blurnet_jax import models
from blurnet_jax import train
from blurnet_jax import viz
from blurnet_jax.attacks import rp2
from blurnet_jax.attacks.transforms import TransformConfig
from blurnet_jax.classes import CLASS_NAMES, NUM_CLASSES, STOP
from blurnet_jax.data import masks as masks_lib
from blurnet_jax.data import synthetic
from blurnet_jax.data import victims as victims_lib
from blurnet_jax.progress import Progress

ApplyFn = Callable[[Any, jax.Array], jax.Array]

#: The slides' Table 2 baseline row (white-box RP2 on the undefended model).
SLIDES_BASELINE = {"average_success": 0.4918, "worst_success": 0.90,
                   "l2": 0.207}
TRANSFORMS = ("none", "physical")
_VICTIMS_SHOWN = 8  # victims per row of victims.png
_TILES_PER_ROW = 9  # targets per row of perturbation.png


# ---------------------------------------------------------------- inputs --


def load_model(spec: str | os.PathLike[str]) -> tuple[ApplyFn, Any, str]:
  """A classifier from an RP2 `.npz` file or a training workdir.

  Args:
    spec: the path of `rp2_lisa_cnn.npz` (loaded into the unfiltered
      `LisaCNN`), or a workdir of `launch.train` (its `config.json` rebuilds
      the model, the newest good checkpoint in `checkpoints/` gives the
      params).

  Returns:
    (apply_fn, params, description): `apply_fn(params, images) -> logits`,
    the same function object for every model of one architecture
    (`models.apply_fn_for`), so the jitted attack compiles once for them.

  Raises:
    FileNotFoundError: no such path, or a folder that is not a training
      workdir or holds no checkpoint.
    ValueError: an empty spec, or a file that is not an RP2 LisaCNN.
  """
  if not os.fspath(spec):
    raise ValueError("no model given; pass --config.model=PATH (an RP2 .npz "
                     "file or a training workdir)")
  path = Path(spec)
  if not path.exists():
    raise FileNotFoundError(f"model {str(path)!r} does not exist; pass an RP2 "
                            ".npz file or a training workdir")
  if path.is_file():
    model = models.LisaCNN()
    params = models.params_from_rp2(path)
    description = f"RP2 LisaCNN from {path}"
  else:
    config_file = path / "config.json"
    if not config_file.is_file():
      raise FileNotFoundError(
          f"model folder {str(path)!r} has no config.json; pass a workdir of "
          "launch.train or an RP2 .npz file")
    try:
      config = ml_collections.ConfigDict(json.loads(config_file.read_text()))
    except json.JSONDecodeError as e:
      raise ValueError(f"{config_file} is not valid JSON: {e}") from None
    if "model" not in config:
      raise ValueError(f"{config_file} has no 'model' block; it is not the "
                       "config of a training run")
    model = models.model_from_config(config.model)
    ckpt_dir = path / "checkpoints"
    if checkpoint.latest_step(ckpt_dir) is None:
      raise FileNotFoundError(
          f"training workdir {str(path)!r} has no checkpoint in {ckpt_dir}; "
          "train it first or pass another model")
    target = train.create_train_state(config, model, jax.random.key(0))
    state, step = checkpoint.restore(ckpt_dir, target)
    params = jax.tree.map(jnp.asarray, state.params)
    fields = ", ".join(f"{k}={v}" for k, v in config.model.items())
    description = (f"LisaCNN({fields}) from {path}, variant "
                   f"{config.get('variant', '?')}, step {step}")

  return models.apply_fn_for(model), params, description


@functools.lru_cache(maxsize=None)
def _predict_program(apply_fn: ApplyFn):
  return jax.jit(lambda p, x: jnp.argmax(apply_fn(p, x), -1))


def predict(apply_fn: ApplyFn, params: Any, images) -> np.ndarray:
  """int (N,) classes of `images`; one compiled program per `apply_fn`."""
  return np.asarray(_predict_program(apply_fn)(params, jnp.asarray(images)))


def load_victims(spec: str) -> tuple[np.ndarray, str]:
  """(images float32 (N, 32, 32, 3), description): a folder, or '' -> 40
  synthetic stop signs."""
  if not spec:
    return synthetic.synthetic_victims(40, seed=0), "40 synthetic stop signs"
  images = victims_lib.load_victims(spec)
  return images, f"{len(images)} victims from {spec}"


def parse_targets(target: Any, targets: str) -> list[int]:
  """The target classes of a run.

  Args:
    target: the single target, used when `targets` is ''.
    targets: '' | 'all' (every class but stop, the victims' true class) |
      a comma list of class indices or names, e.g. '1,5,12' or 'yield,12'.

  Returns:
    Sorted distinct class indices.
  """
  if not targets.strip():
    tokens = [str(target)]
  elif targets.strip() == "all":
    return [c for c in range(NUM_CLASSES) if c != STOP]
  else:
    tokens = [t.strip() for t in targets.split(",") if t.strip()]
  out = []
  for token in tokens:
    if token in CLASS_NAMES:
      out.append(CLASS_NAMES.index(token))
      continue
    try:
      value = int(token)
    except ValueError:
      value = -1
    if not 0 <= value < NUM_CLASSES:
      raise ValueError(
          f"target {token!r} is not a class; use 'all', or indices in "
          f"0..{NUM_CLASSES - 1} or class names, comma separated")
    out.append(value)
  if STOP in out:
    raise ValueError(f"target {STOP} ({CLASS_NAMES[STOP]}) is the victims' "
                     "true class; a targeted attack toward it is no attack")
  return sorted(set(out))


def rp2_config(config: ml_collections.ConfigDict) -> rp2.RP2Config:
  """The `RP2Config` of a run config (see configs/rp2.py)."""
  if config.transforms not in TRANSFORMS:
    raise ValueError(f"transforms={config.transforms!r}; use one of "
                     f"{TRANSFORMS}")
  if not config.noise_clip > 0:
    raise ValueError(f"noise_clip={config.noise_clip!r} must be > 0 (the "
                     "noise is clipped to [-noise_clip, noise_clip])")
  transforms = (TransformConfig.physical() if config.transforms == "physical"
                else TransformConfig.none())
  return rp2.RP2Config(
      learning_rate=float(config.lr), lambda_norm=float(config.lam),
      norm_p=float(config.norm_p),
      noise_clip=(-float(config.noise_clip), float(config.noise_clip)),
      steps=int(config.steps), nps_weight=float(config.nps_weight),
      num_transforms=int(config.num_transforms), transforms=transforms)


# ---------------------------------------------------------------- attack --


class _StepReporter:
  """The host end of the attack's progress callback.

  One object for every run, so that the compiled grid (for which it is a
  static argument) is reused; `attack_targets` points it at its Progress.
  """

  def __init__(self):
    self.progress: Progress | None = None
    self.offset = 0  # steps of the chunks already finished

  def __call__(self, steps_done) -> None:
    if self.progress is not None:
      self.progress.update(self.offset + int(steps_done))


_REPORTER = _StepReporter()
_COMPILED: dict[Any, Any] = {}


def target_sharding(size: int):
  """How a chunk of `size` targets is laid out: split over the local devices
  (like a sweep's members) when there are several and they divide it, else
  None (one device)."""
  devices = jax.local_devices()
  if len(devices) == 1 or size % len(devices):
    return None
  return NamedSharding(Mesh(np.asarray(devices), ("target",)), P("target"))


#: Targets per program when `chunk` is -1, by backend, as measured (17
#: targets x 40 victims x 8 transforms, `launch.benchmark`): on a 2-core CPU
#: one target at a time ran 9% faster than all 17 in one program (cache);
#: on an H100 all 17 in one program ran 1.9x faster than one at a time.
AUTO_CHUNK = {"cpu": 1}


def chunk_size(num_targets: int, chunk: int) -> int:
  """Targets per compiled program: `chunk` (0: all; -1: by backend, see
  `AUTO_CHUNK`, all where not listed), rounded up to a multiple of the
  local devices so that the target axis shards evenly."""
  n = len(jax.local_devices())
  if chunk < 0:
    chunk = AUTO_CHUNK.get(jax.default_backend(), 0)
  size = min(chunk or num_targets, num_targets)
  return -(-size // n) * n


def _check_chunk(chunk: Any) -> None:
  if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < -1:
    raise ValueError(f"chunk={chunk!r} must be an int: targets per compiled "
                     "program, 0 for all, -1 to choose by backend")


def _grid_program(apply_fn, cfg, report, params, images, mask, size):
  """The compiled `size`-target grid, cached by architecture and shapes."""
  signature = jax.tree.map(lambda x: (x.shape, x.dtype), (params, images,
                                                          mask))
  sharding = target_sharding(size)
  cache_key = (apply_fn, cfg, report, size, jax.tree.structure(signature),
               tuple(jax.tree.leaves(signature)), sharding)
  if cache_key not in _COMPILED:
    def one(params, images, mask, target, key):
      return rp2.rp2_attack(
          apply_fn, params, images, mask, target,
          jax.random.fold_in(key, target), cfg=cfg,
          on_step=_REPORTER if report else None,
          report_every=max(1, min(50, cfg.steps // 20)))

    if size == 1:
      # One target: the unbatched program. XLA:CPU runs the vmapped one
      # (batch axis of 1 on every gather, scatter and matmul) about 40%
      # slower; the results are the same.
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
  backend, see `chunk_size`; rounded up to a multiple of the local devices,
  over which the target axis is split as a sweep's members are); the last chunk is padded with copies of its
  last target so that one program serves every chunk. Target t uses the key
  `fold_in(key, t)`, so its result does not depend on the chunking, the
  devices or the other targets.

  Args:
    desc: if given, a progress line with this label counts the attack
      steps (chunks x `cfg.steps`), updated from inside the compiled loop
      every few steps.
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
  images, mask = jnp.asarray(images), jnp.asarray(mask)
  if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.wrap_key_data(key)  # a raw uint32 key
  chunks = -(-len(targets) // size)
  progress = None if desc is None else Progress(
      chunks * cfg.steps, f"{desc}: {len(targets)} target(s) in {chunks} "
      "program(s)", unit="step")
  t0 = time.perf_counter()
  grid = _grid_program(apply_fn, cfg, progress is not None, params, images,
                       mask, size)
  t1 = time.perf_counter()
  _REPORTER.progress, _REPORTER.offset = progress, 0
  parts = []
  try:
    for start in range(0, len(targets), size):
      part = targets[start:start + size]
      padded = part + part[-1:] * (size - len(part))
      chunk_targets = jnp.asarray(padded, jnp.int32)
      if sharding is not None:
        chunk_targets = jax.device_put(chunk_targets, sharding)
      out = jax.device_get(grid(params, images, mask, chunk_targets, key))
      parts.append({k: np.asarray(v)[:len(part)] for k, v in out.items()})
      _REPORTER.offset += cfg.steps
  finally:
    _REPORTER.progress = None
  if progress is not None:
    progress.close()
  if timings is not None:
    timings.update(compile_s=t1 - t0, run_s=time.perf_counter() - t1)
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@functools.lru_cache(maxsize=32)
def _metrics_program(apply_fn: ApplyFn, eval_transforms: int):
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
        "transform_success": jnp.mean((moved != STOP).astype(jnp.float32)),
        "transform_targeted_success": jnp.mean(
            (moved == target).astype(jnp.float32)),
    }

  return metrics


def evaluate_targets(apply_fn: ApplyFn, params: Any, images: np.ndarray,
                     adversarial: np.ndarray, targets: list[int],
                     key: jax.Array, *, eval_transforms: int
                     ) -> tuple[list[dict[str, Any]], np.ndarray]:
  """The REFERENCE.md metrics of each target's perturbed victims.

  Returns:
    (rows, predictions): one row per target: 'success' (prediction changed
    vs the clean one), 'targeted_success', 'l2' (dissimilarity), and under
    `eval_transforms` fresh `TransformConfig.physical()` draws:
    'transform_success' (not classified as stop) and
    'transform_targeted_success'; plus the counts of the adversarial
    predictions. predictions: int (T, N), the classes of `adversarial`.
  """
  targets_arr = jnp.asarray(targets, jnp.int32)
  keys = jax.vmap(lambda t: jax.random.fold_in(key, t))(targets_arr)
  all_pred, all_values = jax.device_get(_metrics_program(
      apply_fn, eval_transforms)(params, jnp.asarray(images),
                                 jnp.asarray(adversarial), targets_arr, keys))
  rows, preds = [], []
  for i, t in enumerate(targets):
    pred = all_pred[i]
    values = {k: v[i] for k, v in all_values.items()}
    preds.append(pred)
    counts = np.bincount(pred, minlength=NUM_CLASSES)
    rows.append({"target": int(t), "target_name": CLASS_NAMES[t],
                 **{k: round(float(v), 6) for k, v in values.items()},
                 "predicted": {CLASS_NAMES[c]: int(n)
                               for c, n in enumerate(counts) if n}})
  return rows, np.stack(preds)


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
  """Average and worst (max over targets: where the attack does best)."""
  out = {}
  for k in ("success", "targeted_success", "transform_success",
            "transform_targeted_success", "l2"):
    values = np.asarray([r[k] for r in rows], np.float64)
    out[f"average_{k}"] = round(float(values.mean()), 6)
    if k != "l2":
      out[f"worst_{k}"] = round(float(values.max()), 6)
  return out


# --------------------------------------------------------------- reports --


def _perturbation_tile(noise: np.ndarray, mask: np.ndarray,
                       noise_clip: float) -> np.ndarray:
  """What the attack adds, `mask * clip(noise)`, shown as grey + delta.

  Changes beyond +-1 saturate any image in [0, 1], so the tile maps
  [-1, 1] onto [0, 1]: mid-grey where nothing is added.
  """
  added = mask * np.clip(noise, -noise_clip, noise_clip)
  return 0.5 + 0.5 * np.clip(added, -1.0, 1.0)


def _names(pred: np.ndarray) -> list[str]:
  return [CLASS_NAMES[int(p)] for p in pred]


def write_pictures(workdir: epath.Path, images: np.ndarray, mask: np.ndarray,
                   targets: list[int], out: dict[str, np.ndarray],
                   clean_pred: np.ndarray, adv_pred: np.ndarray,
                   noise_clip: float) -> None:
  """`perturbation.png` (a tile per target with the perturbation and victim
  0 wearing it) and `victims.png` (a few victims clean and attacked, each
  captioned with its predicted class: `clean_pred` (N,), `adv_pred`
  (T, N))."""
  tiles = np.stack([_perturbation_tile(n, mask, noise_clip)
                    for n in out["noise"]])
  first = out["adversarial"][:, 0]
  rows, titles, captions = [], [], []
  for s in range(0, len(targets), _TILES_PER_ROW):
    names = [CLASS_NAMES[t] for t in targets[s:s + _TILES_PER_ROW]]
    rows += [tiles[s:s + _TILES_PER_ROW], first[s:s + _TILES_PER_ROW]]
    titles += ["perturbation", "on victim 0"]
    captions += [names, _names(adv_pred[s:s + _TILES_PER_ROW, 0])]
  viz.image_grid(rows, titles, captions, workdir / "perturbation.png")

  shown = images[:_VICTIMS_SHOWN]
  rows = [shown]
  titles = ["clean"]
  captions = [_names(clean_pred[:_VICTIMS_SHOWN])]
  for t, adv, pred in zip(targets, out["adversarial"], adv_pred):
    rows.append(adv[:_VICTIMS_SHOWN])
    titles.append(CLASS_NAMES[t])
    captions.append(_names(pred[:_VICTIMS_SHOWN]))
  viz.image_grid(rows, titles, captions, workdir / "victims.png")


def format_table(results: dict[str, Any]) -> str:
  """The per-target table, plus average/worst and the slides' baseline."""
  header = (f"{'target':<22}{'success':>9}{'targeted':>10}{'transf.':>9}"
            f"{'transf.tgt':>11}{'L2':>8}")
  lines = [header]
  for r in results["targets"]:
    lines.append(
        f"{r['target']:>2} {r['target_name']:<19}{r['success']:>9.1%}"
        f"{r['targeted_success']:>10.1%}{r['transform_success']:>9.1%}"
        f"{r['transform_targeted_success']:>11.1%}{r['l2']:>8.3f}")
  if len(results["targets"]) > 1:
    s, b = results["summary"], SLIDES_BASELINE
    lines += [
        "",
        f"{'':<22}{'avg succ.':>10}{'worst succ.':>13}{'L2':>8}",
        f"{'ours':<22}{s['average_success']:>10.2%}"
        f"{s['worst_success']:>13.1%}{s['average_l2']:>8.3f}",
        f"{'slides baseline':<22}{b['average_success']:>10.2%}"
        f"{b['worst_success']:>13.1%}{b['l2']:>8.3f}",
    ]
  return "\n".join(lines)


def run_attack(config: ml_collections.ConfigDict,
               workdir: epath.PathLike) -> dict[str, Any]:
  """Runs the RP2 attack(s) of `config` and writes the reports to `workdir`.

  Writes `attack.json` (settings, model, per-target rows, average/worst,
  seconds, steps/s), `perturbation.npy` (float32 (32, 32, 3), or (T, 32, 32,
  3) for several targets: the final noise, clipped to +-noise_clip, before
  the mask), `perturbation.png` and `victims.png`.

  Returns:
    The contents of attack.json.
  """
  workdir = epath.Path(workdir)
  cfg = rp2_config(config)
  targets = parse_targets(config.target, config.targets)
  if not (isinstance(config.eval_transforms, int)
          and config.eval_transforms >= 1):
    raise ValueError(f"eval_transforms={config.eval_transforms!r} must be an "
                     "int >= 1")
  apply_fn, params, model_description = load_model(config.model)
  images, victims_description = load_victims(config.victims)
  mask = masks_lib.get_mask(config.mask)
  workdir.mkdir(parents=True, exist_ok=True)

  attack_key, eval_key = jax.random.split(jax.random.key(config.seed))
  timings = {}
  t0 = time.perf_counter()
  out = attack_targets(apply_fn, params, images, mask, targets, attack_key,
                       cfg=cfg, chunk=config.chunk, desc="rp2",
                       timings=timings)
  seconds = time.perf_counter() - t0
  rows, adv_pred = evaluate_targets(apply_fn, params, images,
                                    out["adversarial"], targets, eval_key,
                                    eval_transforms=config.eval_transforms)
  clean = predict(apply_fn, params, images)
  results = {
      "settings": config.to_dict(),
      "model": model_description,
      "victims": victims_description,
      "mask": f"{config.mask} ({float(mask.mean()):.1%} of pixels)",
      "clean_stop_rate": round(float(np.mean(clean == STOP)), 6),
      "targets": rows,
      "summary": summarize(rows),
      "slides_baseline": SLIDES_BASELINE,
      "seconds": round(seconds, 2),
      "compile_seconds": round(timings["compile_s"], 2),
      "steps_per_s": round(len(targets) * cfg.steps / seconds, 2),
  }
  train.write_json(workdir / "attack.json", results, sort_keys=False)
  noise = out["noise"].astype(np.float32)
  with (workdir / "perturbation.npy").open("wb") as f:
    np.save(f, noise if len(targets) > 1 else noise[0], allow_pickle=False)
  write_pictures(workdir, images, mask, targets, out, clean, adv_pred,
                 float(config.noise_clip))
  return results
