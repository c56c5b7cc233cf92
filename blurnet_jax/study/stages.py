"""The stage runner: a header per stage, its wall seconds recorded; in a
multi-process run every stage ends at a barrier, so no process reads what
process 0 has not finished writing."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

from blurnet_jax import distributed
from blurnet_jax.progress import format_seconds


class Stages:
  """`with stages("train"): ...` prints a header and records the seconds."""

  def __init__(self, names: tuple[str, ...]):
    self.names = names
    self.seconds: dict[str, float] = {}
    self.t0 = time.perf_counter()

  @contextlib.contextmanager
  def __call__(self, name: str) -> Iterator[None]:
    i = self.names.index(name) + 1
    print(f"\n== stage {i}/{len(self.names)}: {name} "
          f"(elapsed {format_seconds(time.perf_counter() - self.t0)}) ==",
          flush=True)
    t0 = time.perf_counter()
    yield
    distributed.barrier(f"stage {name}")
    self.seconds[name] = round(time.perf_counter() - t0, 1)
    print(f"== {name} done in {format_seconds(self.seconds[name])} ==",
          flush=True)
