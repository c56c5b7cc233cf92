"""Deeper checks (minutes each): `python -m pytest -m slow`.

They run the defaults a user runs and assert the targets the project is
held to, on this machine's CPU.
"""

import json

import pytest

from blurnet_jax import train
from blurnet_jax.study import describe
from configs import data as data_configs
from configs import train as train_configs

pytestmark = pytest.mark.slow


def test_full_synthetic_set_is_balanced_and_renders_fast(tmp_path):
  config = data_configs.get_config()
  config.data_dir = str(tmp_path / "tfds")
  summary = describe.prepare_and_describe(config, tmp_path / "out")
  assert summary["splits"]["train"]["per_class"] == [2000] * 18
  assert summary["splits"]["test"]["per_class"] == [300] * 18
  assert summary["generation_images_per_second"] >= 5000


def test_baseline_reaches_targets_on_synthetic_and_real_victims(tmp_path,
                                                                rp2_dir):
  """>= 95% on the synthetic test split; >= 36/40 real RP2 victims -> stop."""
  config = train_configs.get_config("variant=baseline")
  config.rp2_dir = str(rp2_dir)
  _, results = train.train_and_evaluate(config, tmp_path)
  assert results["test"]["accuracy"] >= 0.95, json.dumps(results)
  assert results["victims"]["stop"] >= 36, json.dumps(results)
