"""Crash-safe checkpoints of any pytree with `flax.serialization` msgpack.

Layout of a checkpoint dir (local filesystem, one writing process)::

  ckpt_00001200.msgpack   # flax.serialization.to_bytes(state), written whole
  ckpt_00001200.json      # sidecar: step, config, sha256, tree summary
  LATEST                  # the file name of the newest checkpoint

A save writes the sidecar and the msgpack to hidden temp files, flushes and
`os.fsync`s them, renames them to their final names, fsyncs the dir, and only
then points `LATEST` at the new file (temp file + `os.replace`, atomic). Older
checkpoints beyond the `keep` newest are deleted only after that. A save that
fails midway removes its temp files and leaves `LATEST` and every checkpoint
already saved untouched.

A restore verifies the sha256 recorded in the sidecar and that the tree,
shapes and dtypes stored match the `target` it restores into. From `LATEST` it
falls back (with a warning) to earlier good checkpoints, newest first; for an
explicit step it raises.

Typical use::

  state, step = checkpoint.restore_or_init(workdir, state)
  for step in range(step + 1, num_steps + 1):
    state = train_step(state, batch)
    if step % save_every == 0:
      checkpoint.save(workdir, state, step=step, config=config)

Call `save` from one process only (e.g. `jax.process_index() == 0`).
"""

from __future__ import annotations

import collections.abc
import hashlib
import json
import os
import re
import uuid
from typing import Any

from absl import logging
import flax.serialization
import jax
import ml_collections
import numpy as np

LATEST = "LATEST"
FORMAT = "blurnet_jax.checkpoint/1"

_PREFIX = "ckpt_"
_DATA_RE = re.compile(r"^ckpt_(\d+)\.msgpack$")
_SIDECAR_RE = re.compile(r"^ckpt_(\d+)\.json$")
_TMP_RE = re.compile(r"^\.(ckpt_\d+\.(msgpack|json)|LATEST)\.tmp-[0-9a-f]+$")


class _CorruptError(ValueError):
  """The checkpoint bytes are damaged (sha256 mismatch, cannot decode)."""


class _MismatchError(ValueError):
  """The checkpoint is intact but holds another model's tree."""


# ----------------------------------------------------------------- names ---


def _data_name(step: int) -> str:
  return f"{_PREFIX}{step:08d}.msgpack"


def _sidecar_name(step: int) -> str:
  return f"{_PREFIX}{step:08d}.json"


def _steps_on_disk(ckpt_dir: str) -> list[int]:
  """Steps that have a msgpack file in `ckpt_dir`, ascending."""
  steps = []
  for name in os.listdir(ckpt_dir):
    match = _DATA_RE.match(name)
    if match:
      steps.append(int(match.group(1)))
  return sorted(steps)


def _read_pointer(ckpt_dir: str) -> int | None:
  """The step named by `LATEST`, or None if it is absent or unreadable."""
  path = os.path.join(ckpt_dir, LATEST)
  try:
    with open(path, "r", encoding="utf-8") as f:
      name = f.read().strip()
  except FileNotFoundError:
    return None
  except (OSError, UnicodeDecodeError) as e:
    logging.warning("Ignoring unreadable %s: %s.", path, e)
    return None
  match = _DATA_RE.match(name)
  if not match:
    logging.warning("Ignoring %s: it names %r, not a checkpoint file.", path,
                    name[:100])
    return None
  return int(match.group(1))


def _candidates(ckpt_dir: str) -> list[int]:
  """Steps a restore from `LATEST` tries, in order (newest first).

  The step `LATEST` names, then older steps. Steps newer than `LATEST` (left
  by a run that was resumed from an earlier checkpoint) are not considered.
  Without a usable `LATEST`, every step on disk, newest first.

  Args:
    ckpt_dir: an existing checkpoint dir.

  Returns:
    The steps to try, newest first.
  """
  steps = _steps_on_disk(ckpt_dir)
  pointed = _read_pointer(ckpt_dir)
  if pointed is None:
    return steps[::-1]
  if pointed not in steps:
    logging.warning("%s names %s, which is missing; using older checkpoints.",
                    os.path.join(ckpt_dir, LATEST), _data_name(pointed))
  older = [s for s in steps if s < pointed][::-1]
  return ([pointed] if pointed in steps else []) + older


# ------------------------------------------------------------ tree summary ---


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  """Flattens a flax state dict into {'a/b': leaf}; empty dicts are leaves."""
  if isinstance(tree, collections.abc.Mapping) and tree:
    flat = {}
    for key, value in tree.items():
      flat.update(_flatten(value, f"{prefix}{key}/"))
    return flat
  return {prefix[:-1] if prefix else "<root>": tree}


def _describe(leaf: Any) -> dict[str, Any]:
  """JSON-able shape/dtype summary of one state-dict leaf."""
  if isinstance(leaf, (np.ndarray, np.generic, jax.Array)):
    return {"shape": list(np.shape(leaf)), "dtype": str(leaf.dtype)}
  if isinstance(leaf, collections.abc.Mapping):  # An empty container.
    return {"shape": None, "dtype": "empty"}
  if isinstance(leaf, (bool, int, float, complex)):
    # A Python number, e.g. TrainState.step before any jitted update.
    return {"shape": [], "dtype": type(leaf).__name__}
  return {"shape": None, "dtype": type(leaf).__name__}  # None, str, ...


def _summary(state_dict: Any) -> dict[str, dict[str, Any]]:
  return {path: _describe(leaf) for path, leaf in _flatten(state_dict).items()}


def _shape_str(desc: dict[str, Any]) -> str:
  return "no array" if desc["shape"] is None else str(tuple(desc["shape"]))


def _leaf_mismatch(path: str, got: dict[str, Any] | None,
                   want: dict[str, Any] | None) -> str | None:
  """One-phrase description of how a saved leaf differs, or None if it fits."""
  if got is None:
    return f"leaf {path} is missing but the model has it"
  if want is None:
    return f"leaf {path} is saved but the model has no such leaf"
  if got["shape"] != want["shape"]:
    return (f"leaf {path} has shape {_shape_str(got)} but the model expects "
            f"{_shape_str(want)}")
  py_scalars = {"bool", "int", "float", "complex"}
  if got["dtype"] in py_scalars or want["dtype"] in py_scalars:
    return None  # A Python number and a 0-d array of any dtype restore fine.
  if got["dtype"] != want["dtype"]:
    return (f"leaf {path} has dtype {got['dtype']} but the model expects "
            f"{want['dtype']}")
  return None


def _check_matches(path: str, saved: dict[str, Any], target: Any) -> None:
  """Raises _MismatchError unless `saved` fits the tree of `target`."""
  got = _summary(saved)
  want = _summary(flax.serialization.to_state_dict(target))
  problems = [(p, _leaf_mismatch(p, got.get(p), want.get(p)))
              for p in list(want) + [p for p in got if p not in want]]
  problems = [(p, msg) for p, msg in problems if msg is not None]
  if not problems:
    return
  # Report the most direct leaf (params before optimizer copies of them).
  problems.sort(key=lambda item: item[0].count("/"))
  more = ""
  if len(problems) > 1:
    more = f" ({len(problems) - 1} more leaves differ)"
  raise _MismatchError(
      f"checkpoint {path} holds params of another model: {problems[0][1]}"
      f"{more}; use a workdir of this model")


# ------------------------------------------------------------------- I/O ---


def _write_and_sync(f, data: bytes) -> None:
  """Writes `data` to the open binary file `f` and forces it to disk."""
  f.write(data)
  f.flush()
  os.fsync(f.fileno())


def _fsync_dir(ckpt_dir: str) -> None:
  """Makes renames in `ckpt_dir` durable (no-op where dirs cannot be opened)."""
  try:
    fd = os.open(ckpt_dir, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def _write_temp(ckpt_dir: str, final_name: str, data: bytes) -> str:
  """Writes `data` to a new hidden temp file; removes it if writing fails."""
  tmp = os.path.join(ckpt_dir, f".{final_name}.tmp-{uuid.uuid4().hex}")
  try:
    with open(tmp, "xb") as f:
      _write_and_sync(f, data)
  except BaseException:
    _remove_quietly(tmp)
    raise
  return tmp


def _remove_quietly(path: str) -> None:
  try:
    os.remove(path)
  except FileNotFoundError:
    pass
  except OSError as e:
    logging.warning("Could not remove %s: %s.", path, e)


def _json_default(obj: Any) -> Any:
  """Best-effort JSON for config values json cannot encode."""
  if isinstance(obj, np.generic):
    return obj.item()
  if isinstance(obj, (np.ndarray, jax.Array)):
    return np.asarray(obj).tolist()
  if isinstance(obj, (set, frozenset)):
    return sorted(obj, key=repr)
  return repr(obj)


def _config_json(config: Any) -> Any:
  """The config as a JSON-able value (None, ConfigDict or mapping)."""
  if config is None:
    return None
  if isinstance(config, ml_collections.ConfigDict):
    return json.loads(config.to_json_best_effort())
  if isinstance(config, collections.abc.Mapping):
    return json.loads(json.dumps(dict(config), default=_json_default))
  raise ValueError(
      f"config must be an ml_collections.ConfigDict, a dict or None, got "
      f"{type(config).__name__}; pass config.to_dict() or leave it out")


def _check_step(step: Any) -> int:
  if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or (
      step < 0):
    raise ValueError(f"step must be a non-negative int, got {step!r}; pass "
                     "the training step as an int, e.g. int(state.step)")
  return int(step)


# ------------------------------------------------------------------ save ---


def save(ckpt_dir: str | os.PathLike, state: Any, *, step: int,
         config: Any = None, keep: int | None = 3) -> str:
  """Saves `state` as a new checkpoint of `step` and points `LATEST` at it.

  Nothing already saved is lost if this fails: the new files are written to
  temp files first (removed on failure), and old checkpoints are pruned only
  after `LATEST` names the new one. Saving a step that already exists (e.g.
  after resuming from an earlier checkpoint) replaces it.

  Args:
    ckpt_dir: the checkpoint dir (created with its parents if missing).
    state: any pytree flax can serialize (a `TrainState`, a dict of arrays);
      device arrays are fetched with `jax.device_get`.
    step: the training step, a non-negative int; names the file.
    config: an `ml_collections.ConfigDict` or dict saved (as JSON) in the
      sidecar, or None.
    keep: how many of the newest checkpoints (up to this step) to keep, >= 1;
      None keeps all. Checkpoints newer than `step` are never deleted.

  Returns:
    The path of the new msgpack file.

  Raises:
    ValueError: on a bad `step`, `keep` or `config`.
    OSError: if writing fails (nothing already saved is touched).
  """
  step = _check_step(step)
  if keep is not None and (isinstance(keep, bool) or
                           not isinstance(keep, int) or keep < 1):
    raise ValueError(f"keep must be an int >= 1 or None, got {keep!r}; pass "
                     "e.g. keep=3 (or None to keep every checkpoint)")
  config_json = _config_json(config)
  ckpt_dir = os.fspath(ckpt_dir)
  os.makedirs(ckpt_dir, exist_ok=True)

  state_dict = flax.serialization.to_state_dict(jax.device_get(state))
  data = flax.serialization.msgpack_serialize(state_dict)
  tree = _summary(state_dict)
  sidecar = {
      "format": FORMAT,
      "step": step,
      "file": _data_name(step),
      "sha256": hashlib.sha256(data).hexdigest(),
      "num_bytes": len(data),
      "num_params": int(sum(np.prod(d["shape"]) for d in tree.values()
                            if d["shape"] is not None)),
      "config": config_json,
      "tree": tree,
  }
  sidecar_bytes = (json.dumps(sidecar, indent=1) + "\n").encode("utf-8")

  data_path = os.path.join(ckpt_dir, _data_name(step))
  sidecar_path = os.path.join(ckpt_dir, _sidecar_name(step))
  tmp_sidecar = _write_temp(ckpt_dir, _sidecar_name(step), sidecar_bytes)
  try:
    tmp_data = _write_temp(ckpt_dir, _data_name(step), data)
  except BaseException:
    _remove_quietly(tmp_sidecar)
    raise
  try:
    # Sidecar first: a msgpack on disk always has its sidecar (a crash in
    # between leaves at most a sidecar with no msgpack, which is ignored).
    os.replace(tmp_sidecar, sidecar_path)
    os.replace(tmp_data, data_path)
    _fsync_dir(ckpt_dir)
    tmp_pointer = _write_temp(ckpt_dir, LATEST,
                              (_data_name(step) + "\n").encode("utf-8"))
    try:
      os.replace(tmp_pointer, os.path.join(ckpt_dir, LATEST))
    except BaseException:
      _remove_quietly(tmp_pointer)
      raise
    _fsync_dir(ckpt_dir)
  finally:
    _remove_quietly(tmp_sidecar)
    _remove_quietly(tmp_data)

  _prune(ckpt_dir, step, keep)
  return data_path


def _prune(ckpt_dir: str, step: int, keep: int | None) -> None:
  """Deletes checkpoints beyond the `keep` newest up to `step`, stale temps."""
  steps = _steps_on_disk(ckpt_dir)
  newer = [s for s in steps if s > step]
  if newer:
    logging.warning(
        "Checkpoints of steps %s in %s are newer than step %d just saved; they "
        "are kept, but LATEST now names step %d.", newer, ckpt_dir, step, step)
  doomed = set()
  if keep is not None:
    doomed = set([s for s in steps if s <= step][::-1][keep:])
  for s in sorted(doomed):
    # Msgpack first: a sidecar without its msgpack is ignored by restore.
    _remove_quietly(os.path.join(ckpt_dir, _data_name(s)))
    _remove_quietly(os.path.join(ckpt_dir, _sidecar_name(s)))
  kept = set(steps) - doomed
  for name in os.listdir(ckpt_dir):
    match = _SIDECAR_RE.match(name)
    if (match and int(match.group(1)) not in kept) or _TMP_RE.match(name):
      _remove_quietly(os.path.join(ckpt_dir, name))  # Left by a crash.


# --------------------------------------------------------------- restore ---


def _load(ckpt_dir: str, step: int, target: Any) -> Any:
  """Reads, verifies and restores one checkpoint into the tree of `target`."""
  data_path = os.path.join(ckpt_dir, _data_name(step))
  sidecar_path = os.path.join(ckpt_dir, _sidecar_name(step))
  fix = "delete it or restore an earlier step"
  try:
    with open(sidecar_path, "rb") as f:
      sidecar = json.loads(f.read().decode("utf-8"))
    expected_sha = sidecar["sha256"]
    if sidecar.get("step") != step:
      raise ValueError(f"sidecar says step {sidecar.get('step')!r}")
  except FileNotFoundError:
    raise _CorruptError(f"checkpoint {data_path} is corrupt (cannot decode): "
                        f"its sidecar {sidecar_path} is missing; {fix}"
                        ) from None
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise _CorruptError(f"checkpoint {data_path} is corrupt (cannot decode): "
                        f"bad sidecar {sidecar_path}: {e}; {fix}") from None
  with open(data_path, "rb") as f:
    data = f.read()
  sha = hashlib.sha256(data).hexdigest()
  if sha != expected_sha:
    raise _CorruptError(
        f"checkpoint {data_path} is corrupt (sha256 mismatch): {len(data)} "
        f"bytes hash to {sha[:12]}.., the sidecar recorded "
        f"{str(expected_sha)[:12]}.. for {sidecar.get('num_bytes')} bytes; "
        f"{fix}")
  try:
    saved = flax.serialization.msgpack_restore(data)
  except Exception as e:  # pylint: disable=broad-except
    raise _CorruptError(f"checkpoint {data_path} is corrupt (cannot decode): "
                        f"{type(e).__name__}: {e}; {fix}") from None
  _check_matches(data_path, saved, target)
  try:
    return flax.serialization.from_state_dict(target, saved)
  except (ValueError, KeyError, TypeError) as e:
    raise _MismatchError(
        f"checkpoint {data_path} holds params of another model: "
        f"{type(e).__name__}: {e}; use a workdir of this model") from None


def _check_dir(ckpt_dir: str) -> None:
  if not os.path.isdir(ckpt_dir):
    raise FileNotFoundError(
        f"checkpoint dir {ckpt_dir} does not exist; check the path, or use "
        "restore_or_init to start from scratch")


def latest_step(ckpt_dir: str | os.PathLike) -> int | None:
  """The step a restore from `LATEST` tries first, or None if there is none.

  Cheap: it does not read or verify the checkpoint (`restore` does, and may
  fall back to an earlier step).

  Args:
    ckpt_dir: the checkpoint dir; a missing dir has no checkpoint.

  Returns:
    The step, or None when `ckpt_dir` is missing or holds no checkpoint.
  """
  ckpt_dir = os.fspath(ckpt_dir)
  if not os.path.isdir(ckpt_dir):
    return None
  candidates = _candidates(ckpt_dir)
  return candidates[0] if candidates else None


def restore(ckpt_dir: str | os.PathLike, target: Any, *,
            step: int | None = None) -> tuple[Any, int]:
  """Restores a checkpoint into the tree structure of `target`.

  Every checkpoint is verified: the sha256 of its bytes must match the one in
  its sidecar, and its tree, shapes and dtypes must match `target`.

  With `step=None` the checkpoint named by `LATEST` is restored; if it is
  corrupt (or of another model) a warning is logged and earlier checkpoints
  are tried, newest first. If none is good, ValueError is raised: when every
  checkpoint holds another model's tree, the error names the first leaf that
  differs (the workdir belongs to another model; starting from scratch there
  would silently mix two models' checkpoints in one dir).

  Args:
    ckpt_dir: the checkpoint dir.
    target: a pytree of the model to restore (e.g. a freshly created
      `TrainState`); its values are replaced, its structure is kept. Restored
      arrays are numpy arrays on the host.
    step: the step to restore; None for the newest good one.

  Returns:
    (state, step): the restored state and its step.

  Raises:
    FileNotFoundError: if `ckpt_dir` or the checkpoint of `step` is missing,
      or `ckpt_dir` holds no checkpoint.
    ValueError: if the checkpoint of `step` (or, with `step=None`, every
      checkpoint) is corrupt or holds another model.
  """
  ckpt_dir = os.fspath(ckpt_dir)
  _check_dir(ckpt_dir)
  if step is not None:
    step = _check_step(step)
    if not os.path.isfile(os.path.join(ckpt_dir, _data_name(step))):
      raise FileNotFoundError(
          f"no checkpoint of step {step} in {ckpt_dir} (steps there: "
          f"{_steps_on_disk(ckpt_dir)}); pass one of those or step=None")
    return _load(ckpt_dir, step, target), step

  candidates = _candidates(ckpt_dir)
  if not candidates:
    raise FileNotFoundError(
        f"no checkpoint in {ckpt_dir}; use restore_or_init to start from "
        "scratch")
  failures = []
  for s in candidates:
    try:
      state = _load(ckpt_dir, s, target)
    except (_CorruptError, _MismatchError) as e:
      logging.warning("Skipping checkpoint of step %d: %s", s, e)
      failures.append(e)
      continue
    except OSError as e:
      logging.warning("Skipping checkpoint of step %d: cannot read it: %s", s,
                      e)
      failures.append(e)
      continue
    if failures:
      logging.warning("Restored step %d from %s after skipping %d unusable "
                      "newer checkpoint(s).", s, ckpt_dir, len(failures))
    return state, s
  if all(isinstance(e, _MismatchError) for e in failures):
    raise _MismatchError(str(failures[0]))
  raise ValueError(
      f"no checkpoint in {ckpt_dir} can be restored (tried steps "
      f"{candidates}; newest: {failures[0]}); fix or delete them, or use a "
      "fresh workdir")


def restore_or_init(ckpt_dir: str | os.PathLike,
                    target: Any) -> tuple[Any, int]:
  """Restores the newest good checkpoint, or returns `(target, 0)` if none.

  A missing or empty `ckpt_dir` starts from scratch. A dir with checkpoints
  that are all unusable raises instead (see `restore`): if they hold another
  model, starting over would hide that the workdir is the wrong one.

  Args:
    ckpt_dir: the checkpoint dir (need not exist).
    target: the freshly initialized state, returned as is if there is no
      checkpoint, else the structure to restore into.

  Returns:
    (state, step): the restored state and step, or (target, 0).

  Raises:
    ValueError: if checkpoints exist but none is intact and of this model.
  """
  if latest_step(ckpt_dir) is None:
    return target, 0
  return restore(ckpt_dir, target)
