"""Several processes, one program: JAX's multi-controller runtime.

The same launcher runs on every host (or as several local processes); after
`initialize` every process sees all devices of the job (`jax.devices()`),
and arrays laid out on `global_mesh()` span them. Nothing here schedules
work: each process runs the same Python, and XLA splits each compiled
program over the devices.

    setup = distributed.Setup.from_config(config.get("distributed"))
    distributed.initialize(setup)        # no-op for a single process
    distributed.check_same_config(config)
    mesh = distributed.global_mesh("member")
    states = distributed.shard_leading(states, mesh)  # member axis split
    rows = distributed.to_host(metrics)   # every process gets the values
    if distributed.is_writer(): write(...)  # process 0 only
    distributed.barrier("written")

The switch: `Setup` comes from the config block `distributed` (see
configs/distributed.py) or, where its fields are unset, the environment
(`BLURNET_JAX_COORDINATOR`, `BLURNET_JAX_NUM_PROCESSES`,
`BLURNET_JAX_PROCESS_ID`). A coordinator address of 'auto' lets
`jax.distributed.initialize()` find the cluster itself (TPU pod slices,
SLURM). With neither, the run is one process and nothing changes.

Failures end with one line instead of a hang or an abort: a coordinator
that cannot be reached or processes that never join (a watchdog fires
before JAX's own deadline, which would abort the process), processes
started with different configs (`check_same_config`), and a process lost
during the run (`lost_process_message`, used by `cli.one_line_errors`).
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from typing import Any, Mapping

import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from blurnet_jax.sentinel import reachable

ENV_COORDINATOR = "BLURNET_JAX_COORDINATOR"
ENV_NUM_PROCESSES = "BLURNET_JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "BLURNET_JAX_PROCESS_ID"
#: The coordinator address that asks JAX to detect the cluster itself.
AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class Setup:
  """How this process joins a job.

  coordinator_address: 'host:port' of process 0's coordination service;
    'auto' for JAX's cluster detection; '' for a single process.
  num_processes, process_id: the job's size and this process's rank (-1:
    unset; 'auto' finds them).
  initialization_timeout: seconds to wait for the coordinator and for every
    process to join.
  heartbeat_timeout: seconds after which a silent process counts as lost.
  """

  coordinator_address: str = ""
  num_processes: int = -1
  process_id: int = -1
  initialization_timeout: int = 120
  heartbeat_timeout: int = 30

  @property
  def multi_process(self) -> bool:
    return self.coordinator_address == AUTO or self.num_processes > 1

  @classmethod
  def from_config(cls, block: Mapping[str, Any] | None,
                  environ: Mapping[str, str] | None = None) -> "Setup":
    """The setup of a config's `distributed` block (None: no block), each
    unset field ('' or -1) taken from the environment."""
    environ = os.environ if environ is None else environ
    block = dict(block or {})

    def field(name, env, cast, unset):
      value = block.get(name, unset)
      if value == unset or value is None:
        value = environ.get(env, unset)
      try:
        return cast(value)
      except (TypeError, ValueError):
        raise ValueError(f"distributed.{name}={value!r} (or ${env}) must be "
                         f"{'an int' if cast is int else 'a string'}"
                         ) from None

    setup = cls(
        coordinator_address=field("coordinator_address", ENV_COORDINATOR,
                                  str, "").strip(),
        num_processes=field("num_processes", ENV_NUM_PROCESSES, int, -1),
        process_id=field("process_id", ENV_PROCESS_ID, int, -1),
        initialization_timeout=int(block.get("initialization_timeout",
                                             cls.initialization_timeout)),
        heartbeat_timeout=int(block.get("heartbeat_timeout",
                                        cls.heartbeat_timeout)))
    setup.validate()
    return setup

  def validate(self) -> None:
    """Raises ValueError (one line, with the fix) on an incomplete setup."""
    if self.initialization_timeout < 1 or self.heartbeat_timeout < 1:
      raise ValueError("distributed.initialization_timeout and "
                       "heartbeat_timeout must be >= 1 second")
    if self.coordinator_address in ("", AUTO):
      if self.coordinator_address == "" and self.num_processes > 1:
        raise ValueError(
            f"distributed.num_processes={self.num_processes} needs a "
            "coordinator: set distributed.coordinator_address=HOST:PORT "
            f"(or ${ENV_COORDINATOR}), or 'auto' on a TPU pod or SLURM")
      return
    if ":" not in self.coordinator_address:
      raise ValueError(f"distributed.coordinator_address="
                       f"{self.coordinator_address!r} must be HOST:PORT "
                       "(or 'auto')")
    if self.num_processes < 1 or not 0 <= self.process_id < (
        self.num_processes):
      raise ValueError(
          f"coordinator {self.coordinator_address} needs "
          f"distributed.num_processes >= 1 and 0 <= process_id < "
          f"num_processes (got {self.num_processes} and {self.process_id}; "
          f"or ${ENV_NUM_PROCESSES} and ${ENV_PROCESS_ID})")


_SETUP: Setup | None = None  # what `initialize` started, if anything


def multi_process() -> bool:
  """Whether `initialize` joined this process to a job of several."""
  return _SETUP is not None


def stop(message: str, status: int = 2) -> None:
  """Writes `error: message` and ends the process at once: after a failed
  collective or start, JAX's own shutdown would wait or abort."""
  _tell_sentinel_done()
  sys.stdout.flush()
  sys.stderr.write(f"error: {message}\n")
  sys.stderr.flush()
  os._exit(status)  # pylint: disable=protected-access


def initialize(setup: Setup) -> bool:
  """Joins the job described by `setup`; returns whether it is multi-process.

  Single process: does nothing. Otherwise, on a CPU, XLA's collectives go
  through gloo (over TCP), and `jax.distributed.initialize` runs under a
  watchdog: if the coordinator cannot be reached or not every process has
  joined after `setup.initialization_timeout` seconds, the process ends
  with one line naming the address and the timeout (JAX's own deadline,
  a few seconds later, would abort with a stack trace).

  Then the process's native stderr (JAX's and XLA's C++ logs) goes to a
  runtime log in the temporary folder, Python's `sys.stderr` stays on the
  terminal, and `sentinel.py` watches the process: if JAX's runtime ends
  it from a native thread (the coordinator lost), the sentinel writes the
  one line naming the lost process (read from the runtime log, or the
  coordinator itself when it no longer answers). A loss that reaches the
  process as a failed collective first gets the same line from
  `lost_process_message`.
  """
  global _SETUP
  if not setup.multi_process:
    return False
  if _SETUP is not None:
    return True
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kwargs: dict[str, Any] = {
      "initialization_timeout": setup.initialization_timeout + 10,
      "heartbeat_timeout_seconds": setup.heartbeat_timeout}
  if setup.coordinator_address != AUTO:
    kwargs.update(coordinator_address=setup.coordinator_address,
                  num_processes=setup.num_processes,
                  process_id=setup.process_id)

  def expire():
    address = setup.coordinator_address
    if address != AUTO and not reachable(address):
      stop(f"coordinator {address} is not reachable after "
            f"{setup.initialization_timeout} s (distributed."
            "initialization_timeout); start process 0 there, or check the "
            "address and port")
    stop(f"not every one of {setup.num_processes} processes joined "
          f"coordinator {address} within {setup.initialization_timeout} s "
          "(distributed.initialization_timeout); start them all with the "
          "same num_processes and distinct process ids")

  watchdog = threading.Timer(setup.initialization_timeout, expire)
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(**kwargs)
  finally:
    watchdog.cancel()
  _SETUP = setup
  _watch()
  return True


_SENTINEL: subprocess.Popen | None = None


def _watch() -> None:
  """Sends native stderr to a runtime log and starts the sentinel."""
  global _SENTINEL
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
  address = getattr(jax_distributed.global_state, "coordinator_address",
                    None) or ""
  index, count = jax.process_index(), jax.process_count()
  log_path = os.path.join(tempfile.gettempdir(),
                          f"blurnet_jax-runtime-{os.getpid()}.log")
  sys.stderr.flush()
  terminal = os.dup(2)
  log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
  os.dup2(log_fd, 2)
  os.close(log_fd)
  sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding="utf-8",
                         errors="backslashreplace")
  _SENTINEL = subprocess.Popen(  # pylint: disable=consider-using-with
      [sys.executable, os.path.join(os.path.dirname(__file__), "sentinel.py"),
       address, str(index), str(count), log_path],
      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=terminal)
  atexit.register(_tell_sentinel_done)
  sys.stderr.write(f"process {index} of {count}: JAX's runtime log is "
                   f"{log_path}\n")


def _tell_sentinel_done() -> None:
  """Tells the sentinel that this process ends through Python (it then
  writes nothing)."""
  global _SENTINEL
  if _SENTINEL is None:
    return
  try:
    _SENTINEL.stdin.write(b"done")
    _SENTINEL.stdin.close()
  except OSError:
    pass
  _SENTINEL = None


# --------------------------------------------------------------- checks --


def _hash(obj: Any) -> int:
  text = json.dumps(obj, sort_keys=True, default=repr)
  return int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")


def config_fingerprint(config: Any, *extra: Any) -> int:
  """A hash of a config (its `distributed.process_id` left out: it is the
  one field that differs between processes) and any `extra` values."""
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  config = json.loads(json.dumps(config, default=repr))
  if isinstance(config, dict) and isinstance(config.get("distributed"), dict):
    config["distributed"].pop("process_id", None)
  return _hash([config, *extra])


def check_same_config(config: Any, *extra: Any) -> None:
  """Raises ValueError naming the processes whose config (and `extra`
  values, e.g. the workdir) differs from process 0's. Every process must
  call it; a single process returns at once."""
  if jax.process_count() == 1:
    return
  mine = config_fingerprint(config, *extra)
  every = np.asarray(multihost_utils.process_allgather(
      np.asarray([mine], np.int64))).reshape(-1)
  odd = [i for i, h in enumerate(every) if h != every[0]]
  if odd:
    raise ValueError(
        f"process(es) {odd} were started with another config than process 0 "
        f"(hash {int(every[odd[0]]):x} against {int(every[0]):x}); start "
        "every process with the same --config flags and --workdir")


def same_on_every_process(value: int, what: str, fix: str) -> int:
  """`value` (an int) after checking that every process holds the same."""
  if jax.process_count() == 1:
    return value
  every = np.asarray(multihost_utils.process_allgather(
      np.asarray([value], np.int64))).reshape(-1).tolist()
  if len(set(every)) > 1:
    raise ValueError(f"the processes disagree on {what}: {every} (by process "
                     f"id); {fix}")
  return value


class _CoordinatorGone(Exception):
  """Process 0's coordination service no longer answers."""


def lost_process_message(error: BaseException) -> str:
  """One line for a collective that failed because a process went away,
  naming the processes the coordination service no longer hears from (it
  answers once their heartbeat timeout has passed, so this can take
  `heartbeat_timeout` seconds)."""
  lost = "another process"
  try:
    from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
    state = jax_distributed.global_state
    address = (_SETUP.coordinator_address if _SETUP is not None
               and _SETUP.coordinator_address != AUTO
               else getattr(state, "coordinator_address", None))
    if jax.process_index() != 0 and address and not reachable(address, 0.5):
      # Asking a dead coordinator would wait, and JAX aborts the process as
      # soon as its own poll notices: answer at once.
      raise _CoordinatorGone
    client = state.client
    n = jax.process_count()
    result: dict[str, Any] = {}

    def ask():
      try:
        result["live"] = client.get_live_nodes(list(range(n)))
      except Exception:  # pylint: disable=broad-except
        pass  # the coordinator itself is gone

    # The service names a silent process lost once its heartbeat timeout
    # has passed: the answer can take that long.
    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    asking.join((_SETUP.heartbeat_timeout if _SETUP else 30) + 5.0)
    if "live" in result:
      gone = sorted(set(range(n)) - set(result["live"]))
      if gone:
        lost = "process " + ", ".join(str(g) for g in gone)
    elif jax.process_index() != 0:
      lost = "process 0 (the coordinator)"
  except _CoordinatorGone:
    lost = "process 0 (the coordinator)"
  except Exception:  # pylint: disable=broad-except
    pass
  first = str(error).strip().splitlines()[0][:160] if str(error) else ""
  return (f"{lost} was lost (this is process {jax.process_index()} of "
          f"{jax.process_count()}; {type(error).__name__}: {first}); "
          "restart every process: the run resumes from the last checkpoint")


def is_collective_failure(error: BaseException) -> bool:
  """Whether `error` is XLA's report of a failed collective or runtime call
  (a status such as 'UNKNOWN: Gloo AllGather failed'), which some paths
  raise as ValueError; the project's own errors never start so."""
  return str(error).startswith(("UNKNOWN:", "UNAVAILABLE:", "INTERNAL:",
                                "DEADLINE_EXCEEDED:", "ABORTED:"))


def stop_on_lost_process(error: BaseException) -> None:
  """Ends a multi-process run at once with `lost_process_message`; returns
  (doing nothing) for a single process."""
  if _SETUP is None:
    return
  stop(lost_process_message(error), status=3)


# --------------------------------------------------------------- writes --


def is_writer() -> bool:
  """Whether this process writes files (results, figures, checkpoints):
  process 0 of a job, or the only process."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (no-op alone)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


# --------------------------------------------------------------- arrays --


def global_mesh(axis: str) -> Mesh | None:
  """A 1-d mesh named `axis` over every device of the job (all processes),
  or None where there is one device."""
  devices = jax.devices()
  if len(devices) == 1:
    return None
  return Mesh(np.asarray(devices), (axis,))


def padded_size(n: int) -> int:
  """`n` rounded up to a multiple of the job's device count."""
  d = jax.device_count()
  return -(-n // d) * d


def pad_leading(tree: Any, size: int) -> Any:
  """Host copies of `tree`'s leaves with the leading axis padded to `size`
  by repeating the last entry (padding rows compute a duplicate and are
  dropped by the caller)."""
  def pad(x):
    x = np.asarray(x)
    if len(x) == size:
      return x
    return np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)])
  return jax.tree.map(pad, tree)


def shard_leading(tree: Any, mesh: Mesh | None) -> Any:
  """`tree` with the leading axis of every leaf split over `mesh`'s axis
  (None: unchanged). Every process passes the same values (it computed
  them from the same config); each keeps the rows of its own devices."""
  if mesh is None:
    return tree
  return _put(tree, NamedSharding(mesh, P(mesh.axis_names[0])))


def replicate(tree: Any, mesh: Mesh | None) -> Any:
  """`tree` copied whole to every device of `mesh` (None: unchanged)."""
  if mesh is None:
    return tree
  return _put(tree, NamedSharding(mesh, P()))


def _put(tree: Any, sharding: NamedSharding) -> Any:
  """Host values of `tree` laid out by `sharding`; PRNG keys through their
  raw data (a multi-process layout takes host arrays only)."""
  def put(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(
        x.dtype, jax.dtypes.prng_key):
      impl = jax.random.key_impl(x)
      return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=impl)
    return jax.device_put(np.asarray(x), sharding)
  return jax.tree.map(put, to_host(tree))


def to_host(tree: Any) -> Any:
  """`tree` as numpy arrays holding the global values, on every process
  (a collective: every process must call it)."""
  if jax.process_count() == 1:
    return jax.device_get(tree)

  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(np.asarray(get(
            jax.random.key_data(x))))
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return jax.device_get(x)

  return jax.tree.map(get, tree)
