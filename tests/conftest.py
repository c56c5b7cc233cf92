"""Shared test fixtures: the packaged RP2 assets, a tiny data folder.
Helpers (tiny configs, small models) are in tests/helpers.py."""

import gc
from pathlib import Path

import jax
import pytest

from blurnet_jax.data import rp2_assets


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """Frees each test module's compiled programs when it ends. XLA:CPU maps
  every compiled program into memory; a whole suite's worth in one process
  runs into the kernel's limit on memory maps (vm.max_map_count), where
  compilation crashes the process."""
  yield
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
