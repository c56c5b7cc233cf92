"""Keeps freed host memory for reuse, so XLA:CPU stops page-faulting per call.

XLA:CPU allocates every call's buffers with `posix_memalign` and frees them
when the call ends: one temporary block per program (86 MB for a LisaCNN
train step at batch 128) and one per output. glibc serves a block above
32 MB (64 MB in a thread's own arena) with a fresh `mmap` and unmaps it on
free, so every call touches new pages, and the kernel zero-fills them one
4 KiB fault at a time: about 10,000 faults for 40 MB, a cost of the order
of the largest convolution's matmul (the README's "Speed" section).

`reuse_freed_memory` tells glibc to serve every block from the one main heap
(`M_ARENA_MAX=1`), never from `mmap` (`M_MMAP_MAX=0`), and to keep up to
2 GiB of freed memory instead of returning it (`M_TRIM_THRESHOLD`). Freed
blocks are then reused by the next call, already mapped. The price: the
process keeps its peak heap until it exits. It must run before JAX starts
its CPU client (its worker threads pick their arena when they start). The
launchers call it (`cli.setup_process`); importing the package does not,
so a notebook that wants it calls `host_memory.reuse_freed_memory()` before
its first computation. Set `BLURNET_JAX_MALLOC=system` in the environment
to leave glibc's defaults even in the launchers.

On anything but Linux with glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

ENV_VAR = "BLURNET_JAX_MALLOC"
# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_KEEP_BYTES = 2**31 - 1  # mallopt takes a C int

_applied: bool | None = None


def glibc() -> bool:
  """Whether this process runs on Linux with glibc, where the settings exist."""
  return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def reuse_freed_memory() -> bool:
  """Sets glibc's malloc to keep and reuse freed memory (see the module doc).

  Idempotent. Returns whether the settings are in place: False where the C
  library is not glibc, or where `BLURNET_JAX_MALLOC=system`.
  """
  global _applied
  if _applied is not None:
    return _applied
  _applied = False
  if os.environ.get(ENV_VAR, "").lower() == "system":
    return False
  if not glibc():
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  mallopt.restype = ctypes.c_int
  _applied = all(mallopt(param, value) == 1 for param, value in (
      (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _KEEP_BYTES)))
  return _applied


def applied() -> bool:
  """Whether `reuse_freed_memory` changed malloc's settings in this process."""
  return bool(_applied)
