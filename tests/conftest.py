"""Shared test fixtures: the packaged RP2 assets, a tiny data folder.
Helpers (tiny configs, small models) are in tests/helpers.py."""

import gc
from pathlib import Path

import jax
import pytest

from blurnet_jax.data import rp2_assets


#: Memory maps a test process may hold before a module's end frees the
#: compiled programs (the kernel's default vm.max_map_count is 65530).
MAX_MAPS = 30_000


def _memory_maps() -> int:
  try:
    with open("/proc/self/maps", "rb") as f:
      return sum(1 for _ in f)
  except OSError:  # not Linux: no such limit to watch
    return 0


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """Frees the compiled programs at a module's end once the process holds
  MAX_MAPS memory maps. XLA:CPU maps every compiled program into memory; a
  whole suite's worth in one process reaches the kernel's limit on maps
  (vm.max_map_count), where compiling crashes the process. Below the
  bound the programs stay cached for the modules that share them."""
  yield
  if _memory_maps() > MAX_MAPS:
    jax.clear_caches()
    gc.collect()


@pytest.fixture(scope="session")
def rp2_dir() -> Path:
  """The RP2 assets shipped with the package."""
  return rp2_assets.rp2_dir()


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
  """One tiny synthetic set shared by every training test of the session."""
  return tmp_path_factory.mktemp("tfds")
