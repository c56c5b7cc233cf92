"""Shared test fixtures: the packaged RP2 assets, a tiny data folder.
Helpers (tiny configs, small models) are in tests/helpers.py."""

from pathlib import Path

import pytest

from blurnet_jax.data import rp2_assets


@pytest.fixture(scope="session")
def rp2_dir() -> Path:
  """The RP2 assets shipped with the package."""
  return rp2_assets.rp2_dir()


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
  """One tiny synthetic set shared by every training test of the session."""
  return tmp_path_factory.mktemp("tfds")
