"""A workdir's record stays true: one run at a time holds it, and a
training workdir's config.json is the config its checkpoints were trained
with.

  with workdirs.lock("/tmp/study"):
    ...  # a second process's lock of it raises WorkdirBusyError
  workdirs.claim(config, "/tmp/study/models/baseline")  # before any write

`claim` compares a config (its data block pinned to its files) with the
one the newest checkpoint's sidecar records (`RUN_ONLY` settings aside)
and only then writes config.json; a mismatch is one line, and nothing in
the workdir is touched.

The lock is an advisory `flock` on WORKDIR/.lock, which also records the
holder (pid, host, start, command) for the error a second run gets. The
kernel drops it when its process ends, however it ends, so a crash never
leaves a workdir locked: the next run finds the record of a holder that no
longer runs, says so in one line and takes the lock. Locks nest within a
process (a study's stages train models in their own workdirs, and a study
run may call another that locks the same folder). In a multi-process run
process 0 takes it for all.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
from pathlib import Path
import socket
import sys
from typing import Any, Iterator

from etils import epath
import ml_collections

from blurnet_jax import checkpoint
from blurnet_jax import distributed
from blurnet_jax.jsonio import jsonable, write_json

LOCK_FILE = ".lock"
#: The workdirs this process holds, by real path: (file descriptor, depth).
_HELD: dict[str, list[int]] = {}


class WorkdirBusyError(RuntimeError):
  """Another running process holds the workdir."""


def _holder(path: Path) -> dict:
  try:
    return json.loads(path.read_text() or "{}")
  except (OSError, ValueError):
    return {}


def _describe(holder: dict) -> str:
  if not holder:
    return "another process"
  return (f"pid {holder.get('pid')} on {holder.get('host')} since "
          f"{holder.get('started')} ({holder.get('command')})")


def _running_here(holder: dict) -> bool:
  """Whether the recorded holder is a live process of this host."""
  if holder.get("host") != socket.gethostname():
    return False
  try:
    os.kill(int(holder["pid"]), 0)
  except (KeyError, ValueError, ProcessLookupError):
    return False
  except PermissionError:
    return True
  return True


def _acquire(folder: Path) -> int:
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / LOCK_FILE
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    os.close(fd)
    raise WorkdirBusyError(
        f"workdir {folder} is in use by {_describe(_holder(path))}; wait for "
        "that run to end or pass another --workdir") from None
  earlier = _holder(path)
  if earlier and earlier.get("pid") != os.getpid():
    note = ("which is no longer running" if not _running_here(earlier)
            else "which no longer holds it")
    print(f"workdir {folder}: taking over the lock of a run that stopped "
          f"without releasing it ({_describe(earlier)}), {note}",
          file=sys.stderr, flush=True)
  record = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)[:300]}
  os.ftruncate(fd, 0)
  os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
  return fd


def _release(fd: int) -> None:
  # Emptied, not deleted: deleting would let a waiting process lock the old
  # file while a third creates and locks a new one.
  os.ftruncate(fd, 0)
  fcntl.flock(fd, fcntl.LOCK_UN)
  os.close(fd)


@contextlib.contextmanager
def lock(folder: str | os.PathLike[str]) -> Iterator[None]:
  """Holds `folder` (created if needed) for the run inside the block.

  Raises:
    WorkdirBusyError: another live process holds it (one line naming the
      holder and the fix).
  """
  if not distributed.is_writer():
    yield
    return
  folder = Path(folder)
  key = os.path.realpath(folder)
  if key in _HELD:
    _HELD[key][1] += 1
  else:
    _HELD[key] = [_acquire(folder), 1]
  try:
    yield
  finally:
    _HELD[key][1] -= 1
    if not _HELD[key][1]:
      _release(_HELD.pop(key)[0])


#: Settings that change how a run is logged, checkpointed, laid out or
#: where it finds its files, never the numbers it trains: a workdir's
#: checkpoints may be resumed under other values of these.
RUN_ONLY = ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
            "distributed", "rp2_dir", "data.data_dir", "data.manual_dir",
            "data.workers", "model.conv_impl", "sweep.chunk")


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  """A nested dict as {dotted key: leaf}."""
  if not isinstance(tree, dict):
    return {prefix: tree}
  out = {}
  for k, v in tree.items():
    out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {
        f"{prefix}{k}": v}
  return out


def config_differences(saved: dict, config: ml_collections.ConfigDict
                       ) -> list[str]:
  """The settings (dotted keys, `RUN_ONLY` aside) in which `config` differs
  from a saved config (a checkpoint sidecar's), as 'key: saved -> new'."""
  new = _flat(json.loads(json.dumps(jsonable(config.to_dict()))))
  old = _flat(saved or {})
  keep = lambda k: not any(k == r or k.startswith(r + ".") for r in RUN_ONLY)
  missing = object()
  return [f"{k}: {old.get(k, 'absent')!r} -> {new.get(k, 'absent')!r}"
          for k in sorted(set(new) | set(old))
          if keep(k) and old.get(k, missing) != new.get(k, missing)]


def claim(config: ml_collections.ConfigDict, workdir: epath.Path) -> None:
  """Before a training run writes anything into `workdir`: checks that
  the checkpoints there (if any) were trained with `config` (its data block
  pinned to its files by the caller, `datasets.pin_data`, before it took
  the workdir), and only then records it as WORKDIR/config.json, so that
  file is always the config its checkpoints were trained with.

  Raises:
    ValueError: one line naming the first differing setting; nothing in
      the workdir is touched.
  """
  ckpt_dir = workdir / "checkpoints"
  saved = checkpoint.sidecar(ckpt_dir)
  if saved is not None:
    diff = config_differences(saved.get("config") or {}, config)
    if diff:
      more = f" (and {len(diff) - 1} more)" if len(diff) > 1 else ""
      raise ValueError(
          f"{workdir} holds checkpoints of another config ({diff[0]}{more}, "
          f"step {saved.get('step')}); pass a new --workdir, or delete "
          f"{ckpt_dir} to train this config there")
  if distributed.is_writer():
    workdir.mkdir(parents=True, exist_ok=True)
  write_json(workdir / "config.json", config.to_dict(), sort_keys=True)
