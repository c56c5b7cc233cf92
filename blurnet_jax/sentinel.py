"""The last line of a process that JAX's runtime ended.

In a multi-process run, JAX's coordination client ends a process from one
of its own threads when the coordinator goes away or the coordination
service reports a lost peer (a fatal log and an abort, which no Python code
of that process can intercept). `distributed.initialize` therefore starts
this script beside every process, with the process's runtime log (where its
native stderr goes) and a pipe: a process that ends through Python writes
`done` to the pipe first; if the pipe closes without it, the process was
ended from outside Python, and this script writes the one line that names
why to the process's own stderr.

Run as a script (it imports nothing of the package, nor JAX):
    python sentinel.py ADDRESS PROCESS_ID NUM_PROCESSES LOG_PATH
"""

import re
import socket
import sys

DONE = b"done"


def reachable(address: str, seconds: float = 1.0) -> bool:
  """Whether something accepts a TCP connection at 'host:port' ('[v6]:port'
  too) within `seconds`."""
  host, _, port = address.rpartition(":")
  try:
    with socket.create_connection((host.strip("[]"), int(port)),
                                  timeout=seconds):
      return True
  except (OSError, ValueError):
    return False


def lost_processes(log: str) -> list[int]:
  """Process ids the runtime's log names as lost (stopped heartbeats)."""
  ids: set[int] = set()
  for m in re.finditer(r"Task (\d+) heartbeat timeout", log):
    ids.add(int(m.group(1)))
  for m in re.finditer(r"tasks are unhealthy \(stopped sending heartbeats\)"
                       r":\s*([\d\s,]+)", log):
    ids.update(int(x) for x in re.findall(r"\d+", m.group(1)))
  return sorted(ids)


def message(address: str, process_id: int, num_processes: int,
            log_path: str, log: str) -> str:
  """The line for a process that ended without saying `done`."""
  here = f"this is process {process_id} of {num_processes}"
  if process_id != 0 and address and not reachable(address):
    lost = "process 0 (the coordinator)"
  else:
    gone = [i for i in lost_processes(log) if i != process_id]
    lost = ("process " + ", ".join(map(str, gone))) if gone else ""
  if not lost:
    return (f"error: {here} and it was ended outside Python (killed, out of "
            f"memory, or by JAX's runtime: see {log_path}); restart every "
            "process: the run resumes from the last checkpoint")
  return (f"error: {lost} was lost ({here}, ended by JAX's runtime; its log: "
          f"{log_path}); restart every process: the run resumes from the "
          "last checkpoint")


def main(argv: list[str]) -> int:
  address, process_id, num_processes, log_path = argv[1:5]
  said = sys.stdin.buffer.read()  # blocks until the watched process ends
  if said.endswith(DONE):
    return 0
  try:
    with open(log_path, encoding="utf-8", errors="replace") as f:
      log = f.read()[-200_000:]
  except OSError:
    log = ""
  sys.stderr.write(message(address, int(process_id), int(num_processes),
                           log_path, log) + "\n")
  sys.stderr.flush()
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
