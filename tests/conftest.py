"""Shared test fixtures: the RP2 assets beside the repo, tiny configs."""

from pathlib import Path

import pytest

RP2_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "rp2"


@pytest.fixture(scope="session")
def rp2_dir() -> Path:
  if not (RP2_DIR / "rp2_lisa_cnn.npz").exists():
    pytest.skip(f"RP2 reference assets not found at {RP2_DIR}")
  return RP2_DIR


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
  """One tiny synthetic set shared by every training test of the session."""
  return tmp_path_factory.mktemp("tfds")


def tiny_data(data, data_dir):
  """Points a data block at the session's 72-image synthetic set (4 train
  + 2 test images per class), so every test that trains shares it."""
  data.data_dir = str(data_dir)
  data.train_per_class = 4
  data.test_per_class = 2
  data.workers = 1
  return data


def tiny_train_config(variant: str, data_dir, **overrides):
  """A training config of a few seconds on a 72-image synthetic set."""
  from configs import train as train_configs  # pylint: disable=g-import-not-at-top
  config = train_configs.get_config(f"variant={variant},runlocal")
  tiny_data(config.data, data_dir)
  config.batch_size = 16
  config.num_train_steps = 8
  config.warmup_steps = 2
  config.log_every = 2
  config.eval_every = 4
  config.checkpoint_every = 4
  for key, value in overrides.items():
    target = config
    *path, leaf = key.split(".")
    for p in path:
      target = target[p]
    target[leaf] = value
  return config


def tiny_robustness(rc):
  """Shrinks a robustness block to seconds. Every test that runs the
  checklist on a trained LisaCNN uses it, so that the compiled programs
  (same shapes, same settings) are shared within the session."""
  rc.victims, rc.pgd_steps = 4, 3
  rc.linf_budgets, rc.l2_budgets, rc.steps_curve = "0.25,1", "2", "1,2"
  rc.square_queries, rc.eot_samples, rc.rp2_steps = 3, 1, 2
  rc.rp2_transforms = 1
  rc.angles, rc.distances = "0,45", "32,8"
  return rc
