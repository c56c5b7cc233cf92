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
What the two files of a checkpoint hold and how they are verified is
`checkpoint_format`; this module is the crash-safe protocol around them
(temp files, renames, `LATEST`, pruning, falling back on restore).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from typing import Any

from absl import logging
import numpy as np

from blurnet_jax import checkpoint_format

LATEST = "LATEST"

_TMP_RE = re.compile(r"^\.(ckpt_\d+\.(msgpack|json)|LATEST)\.tmp-[0-9a-f]+$")


# ------------------------------------------------------------------- dir ---


def _steps_on_disk(ckpt_dir: str) -> list[int]:
  """Steps that have a msgpack file in `ckpt_dir`, ascending."""
  steps = []
  for name in os.listdir(ckpt_dir):
    step = checkpoint_format.data_step(name)
    if step is not None:
      steps.append(step)
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
  step = checkpoint_format.data_step(name)
  if step is None:
    logging.warning("Ignoring %s: it names %r, not a checkpoint file.", path,
                    name[:100])
  return step


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
                    os.path.join(ckpt_dir, LATEST),
                    checkpoint_format.data_name(pointed))
  older = [s for s in steps if s < pointed][::-1]
  return ([pointed] if pointed in steps else []) + older


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


# ------------------------------------------------------------- arguments ---


def _check_step(step: Any) -> int:
  if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or (
      step < 0):
    raise ValueError(f"step must be a non-negative int, got {step!r}; pass "
                     "the training step as an int, e.g. int(state.step)")
  return int(step)


def _check_keep(keep: Any) -> None:
  if keep is not None and (isinstance(keep, bool) or
                           not isinstance(keep, int) or keep < 1):
    raise ValueError(f"keep must be an int >= 1 or None, got {keep!r}; pass "
                     "e.g. keep=3 (or None to keep every checkpoint)")


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
  _check_keep(keep)
  config_json = checkpoint_format.config_json(config)
  ckpt_dir = os.fspath(ckpt_dir)
  os.makedirs(ckpt_dir, exist_ok=True)
  data, sidecar = checkpoint_format.encode(state, step, config_json)
  data_path = _publish(ckpt_dir, step, data, sidecar)
  _point_latest(ckpt_dir, step)
  _prune(ckpt_dir, step, keep)
  return data_path


def _publish(ckpt_dir: str, step: int, data: bytes, sidecar: bytes) -> str:
  """Gives the sidecar and the msgpack of `step` their final names: each is
  written to a temp file and synced, then renamed, then the dir is synced.
  A failure leaves no temp file. Returns the path of the msgpack."""
  data_name = checkpoint_format.data_name(step)
  sidecar_name = checkpoint_format.sidecar_name(step)
  tmp_sidecar = _write_temp(ckpt_dir, sidecar_name, sidecar)
  try:
    tmp_data = _write_temp(ckpt_dir, data_name, data)
  except BaseException:
    _remove_quietly(tmp_sidecar)
    raise
  try:
    # Sidecar first: a msgpack on disk always has its sidecar (a crash in
    # between leaves at most a sidecar with no msgpack, which is ignored).
    os.replace(tmp_sidecar, os.path.join(ckpt_dir, sidecar_name))
    os.replace(tmp_data, os.path.join(ckpt_dir, data_name))
    _fsync_dir(ckpt_dir)
  finally:
    _remove_quietly(tmp_sidecar)
    _remove_quietly(tmp_data)
  return os.path.join(ckpt_dir, data_name)


def _point_latest(ckpt_dir: str, step: int) -> None:
  """Points `LATEST` at the msgpack of `step` (temp file + `os.replace`,
  atomic), then syncs the dir."""
  tmp_pointer = _write_temp(
      ckpt_dir, LATEST,
      (checkpoint_format.data_name(step) + "\n").encode("utf-8"))
  try:
    os.replace(tmp_pointer, os.path.join(ckpt_dir, LATEST))
  except BaseException:
    _remove_quietly(tmp_pointer)
    raise
  _fsync_dir(ckpt_dir)


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
    _remove_quietly(os.path.join(ckpt_dir, checkpoint_format.data_name(s)))
    _remove_quietly(os.path.join(ckpt_dir, checkpoint_format.sidecar_name(s)))
  kept = set(steps) - doomed
  for name in os.listdir(ckpt_dir):
    of_step = checkpoint_format.sidecar_step(name)
    if (of_step is not None and of_step not in kept) or _TMP_RE.match(name):
      _remove_quietly(os.path.join(ckpt_dir, name))  # Left by a crash.


# --------------------------------------------------------------- restore ---


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


def sidecar(ckpt_dir: str | os.PathLike) -> dict[str, Any] | None:
  """The sidecar of the checkpoint a restore tries first (its step, the
  config it was trained with, its tree), or None when there is none or it
  cannot be read (a restore then says why). Reads no msgpack."""
  step = latest_step(ckpt_dir)
  if step is None:
    return None
  path = os.path.join(os.fspath(ckpt_dir), checkpoint_format.sidecar_name(step))
  try:
    with open(path, "rb") as f:
      out = json.loads(f.read().decode("utf-8"))
  except (OSError, ValueError):
    return None
  return out if isinstance(out, dict) else None


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
  if step is None:
    return _restore_newest_good(ckpt_dir, target)
  step = _check_step(step)
  if not os.path.isfile(
      os.path.join(ckpt_dir, checkpoint_format.data_name(step))):
    raise FileNotFoundError(
        f"no checkpoint of step {step} in {ckpt_dir} (steps there: "
        f"{_steps_on_disk(ckpt_dir)}); pass one of those or step=None")
  return checkpoint_format.load(ckpt_dir, step, target), step


def _restore_newest_good(ckpt_dir: str, target: Any) -> tuple[Any, int]:
  """`restore` from `LATEST`: the first good one of `_candidates`, with a
  warning for each one skipped."""
  candidates = _candidates(ckpt_dir)
  if not candidates:
    raise FileNotFoundError(
        f"no checkpoint in {ckpt_dir}; use restore_or_init to start from "
        "scratch")
  failures = []
  for s in candidates:
    try:
      state = checkpoint_format.load(ckpt_dir, s, target)
    except (checkpoint_format.CorruptError,
            checkpoint_format.MismatchError) as e:
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
  if all(isinstance(e, checkpoint_format.MismatchError) for e in failures):
    raise checkpoint_format.MismatchError(str(failures[0]))
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
