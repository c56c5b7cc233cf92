"""The RP2 launcher: configs, model loading, single and grid runs, reports."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from blurnet_jax import train
from blurnet_jax.attacks import grid
from blurnet_jax.study import attack as run
from blurnet_jax.study import zoo
from blurnet_jax.classes import NUM_CLASSES, STOP
from configs import rp2 as rp2_configs
from tests.helpers import tiny_train_config

REPO = Path(__file__).resolve().parents[1]


def _config(rp2_dir, arg, **overrides):
  config = rp2_configs.get_config(arg)
  config.rp2_dir = str(rp2_dir)
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def poster(rp2_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("poster")
  config = _config(rp2_dir, "poster,runlocal")
  assert config.mask == "rp2_octagon"  # the authors' poster mask
  return workdir, run.run_attack(config, workdir)


def test_poster_writes_reports(poster):
  workdir, results = poster
  on_disk = json.loads((workdir / "attack.json").read_text())
  assert on_disk == results
  assert results["settings"]["steps"] == 5
  assert results["clean_stop_rate"] == 1.0  # README: all 40 are stop
  (row,) = results["targets"]
  assert row["target"] == 12 and row["target_name"] == "speedLimit45"
  # The authors' poster attack reaches the target from its first steps
  # (the RP2 facts), so 5 steps fool nearly every victim.
  assert row["targeted_success"] >= 0.9
  assert row["success"] >= row["targeted_success"]
  assert 0 < row["l2"] < 1
  assert 0 <= row["transform_targeted_success"] <= 1
  assert sum(row["predicted"].values()) == 40
  noise = np.load(workdir / "perturbation.npy", allow_pickle=False)
  assert noise.shape == (32, 32, 3) and noise.dtype == np.float32
  assert np.all(np.abs(noise) <= 20)
  for name in ("perturbation.png", "victims.png"):
    with Image.open(workdir / name) as image:
      assert image.mode == "RGB" and min(image.size) > 90


def test_grid_rows_and_summary(rp2_dir, tmp_path):
  # 3 targets in chunks of 2: one program, the last chunk padded.
  config = _config(rp2_dir, "grid,runlocal", targets=(1, 5, 12), chunk=2,
                   steps=3, num_transforms=1, eval_transforms=1)
  results = run.run_attack(config, tmp_path)
  rows = results["targets"]
  assert [r["target"] for r in rows] == [1, 5, 12]
  for key in ("success", "targeted_success", "transform_success",
              "transform_targeted_success"):
    values = [r[key] for r in rows]
    assert all(0 <= v <= 1 for v in values)
    assert results["summary"][f"average_{key}"] == pytest.approx(
        np.mean(values), abs=1e-5)
    assert results["summary"][f"worst_{key}"] == pytest.approx(max(values))
  assert results["summary"]["average_l2"] == pytest.approx(
      np.mean([r["l2"] for r in rows]), abs=1e-5)
  assert np.load(tmp_path / "perturbation.npy").shape == (3, 32, 32, 3)
  table = run.format_table(results)
  assert "slides baseline" in table and "49.18%" in table


def test_chunking_does_not_change_a_target(rp2_dir):
  apply_fn, params, _ = zoo.load_model(rp2_dir / "rp2_lisa_cnn.npz")
  images = np.zeros((2, 32, 32, 3), np.float32) + 0.5
  mask = np.ones((32, 32, 1), np.float32)
  cfg = run.rp2_config(rp2_configs.get_config("runlocal"))
  key = jax.random.key(3)
  one = grid.attack_targets(apply_fn, params, images, mask, [5], key, cfg=cfg)
  three = grid.attack_targets(apply_fn, params, images, mask, [1, 5, 12], key,
                             cfg=cfg, chunk=2)
  np.testing.assert_allclose(three["noise"][1], one["noise"][0], atol=1e-5)


def test_parse_targets():
  assert grid.parse_targets((12,)) == [12]
  assert grid.parse_targets(grid.ALL_TARGETS) == [
      c for c in range(NUM_CLASSES) if c != STOP]
  assert grid.parse_targets((12, "yield", 1, 12)) == [1, 12, 17]
  with pytest.raises(ValueError, match="not a class"):
    grid.parse_targets((1, 99))
  with pytest.raises(ValueError, match="true class"):
    grid.parse_targets((14,))
  # () is every class of the label space but stop: the full grid.
  assert grid.parse_targets(()) == list(grid.ALL_TARGETS)
  config = rp2_configs.get_config("poster")
  assert run.run_targets(config) == [12]  # () means just `target`


def test_load_model_from_training_workdir(tiny_data_dir, tmp_path):
  config = tiny_train_config("l1_3x3", tiny_data_dir, num_train_steps=2,
                             warmup_steps=1, log_every=2, eval_every=2,
                             checkpoint_every=2)
  state, _ = train.train_and_evaluate(config, tmp_path)
  apply_fn, params, description = zoo.load_model(tmp_path)
  assert "l1" in description and "step 2" in description
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(4, 32, 32, 3)),
                  jnp.float32)
  np.testing.assert_allclose(
      apply_fn(params, x), state.apply_fn({"params": state.params}, x),
      rtol=1e-6, atol=1e-6)


def test_bad_inputs(rp2_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    zoo.load_model(tmp_path / "nope.npz")
  _, _, description = zoo.load_model("")  # the packaged RP2 model
  assert "rp2_lisa_cnn.npz" in description
  with pytest.raises(FileNotFoundError, match="has no rp2_lisa_cnn.npz"):
    zoo.load_model("", rp2_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="no config.json"):
    zoo.load_model(tmp_path)
  (tmp_path / "config.json").write_text(json.dumps(
      tiny_train_config("baseline", tmp_path).to_dict()))
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    zoo.load_model(tmp_path)
  not_rp2 = tmp_path / "other.npz"
  np.savez(not_rp2, a=np.zeros(3))
  with pytest.raises(ValueError):
    zoo.load_model(not_rp2)
  empty = tmp_path / "empty"
  empty.mkdir()
  for overrides, error, match in (
      (dict(mask="hexagon"), ValueError, "unknown mask"),
      (dict(victims=str(empty)), ValueError, "no images in"),
      (dict(victims=""), ValueError, "not a victim set"),
      (dict(transforms="sunny"), ValueError, "transforms"),
      (dict(model=str(tmp_path / "missing.npz")), FileNotFoundError,
       "does not exist")):
    with pytest.raises(error, match=match):
      run.run_attack(_config(rp2_dir, "runlocal", **overrides),
                     tmp_path / "out")
  with pytest.raises(ValueError, match="at most one"):
    rp2_configs.get_config("poster,grid")


def test_launcher_reports_one_line_error(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "launch.attack", "--config=configs/rp2.py",
       f"--config.model={tmp_path / 'missing.npz'}",
       f"--workdir={tmp_path / 'out'}"],
      cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 2
  assert "error: model" in proc.stderr and "does not exist" in proc.stderr
  assert "Traceback" not in proc.stderr


_SHARDED_SCRIPT = """
import json, sys, jax, jax.numpy as jnp, numpy as np
sys.path.insert(0, {repo!r})
from blurnet_jax.attacks import RP2Config, TransformConfig, grid
from blurnet_jax.data import synthetic, masks

def apply_fn(params, x):  # a linear classifier: fast, real gradients
  return x.reshape(x.shape[0], -1) @ params

params = jax.random.normal(jax.random.key(0), (32 * 32 * 3, 18)) * 0.01
images = synthetic.synthetic_victims(4, seed=0)
cfg = RP2Config(steps=4, num_transforms=2,
                transforms=TransformConfig.physical())
out = grid.attack_targets(apply_fn, params, images,
                         masks.get_mask("camouflage"), [1, 5, 12],
                         jax.random.key(7), cfg=cfg)
print("RESULT", json.dumps({{"devices": len(jax.local_devices()),
    "size": grid.chunk_size(3, 0),
    "noise": np.asarray(out["noise"]).ravel()[::97].tolist()}}))
"""


def _sharded_run(devices):
  env = dict(__import__("os").environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  out = subprocess.run([sys.executable, "-c",
                        _SHARDED_SCRIPT.format(repo=str(REPO))],
                       env=env, capture_output=True, text=True, timeout=600,
                       check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  line = [l for l in out.stdout.splitlines() if l.startswith("RESULT")][-1]
  return json.loads(line[len("RESULT "):])


def test_targets_shard_over_two_devices_with_the_same_results():
  one, two = _sharded_run(1), _sharded_run(2)
  assert (one["devices"], one["size"]) == (1, 3)
  assert (two["devices"], two["size"]) == (2, 4)  # padded to split evenly
  np.testing.assert_allclose(one["noise"], two["noise"], rtol=1e-5,
                             atol=1e-6)


def test_grid_program_has_no_host_callback_so_it_can_be_cached(capsys):
  """JAX's persistent compilation cache skips programs with host callbacks;
  the grid reports its progress between programs instead."""
  def apply_fn(params, x):  # a linear classifier
    return x.reshape(x.shape[0], -1) @ params

  params = jnp.zeros((32 * 32 * 3, NUM_CLASSES))
  images = np.full((2, 32, 32, 3), 0.5, np.float32)
  mask = np.ones((32, 32, 1), np.float32)
  cfg = run.rp2_config(rp2_configs.get_config("runlocal"))
  grid.attack_targets(apply_fn, params, images, mask, [1, 5], jax.random.key(0),
                      cfg=cfg, chunk=1, desc="probe")
  assert "probe: 2 target(s) in 2 program(s): 10/10" in capsys.readouterr().err
  program = grid._grid_program(  # pylint: disable=protected-access
      apply_fn, cfg, params, jnp.asarray(images), jnp.asarray(mask), 1)
  text = program.as_text()
  assert "custom_call_target=\"xla_python" not in text
  assert "callback" not in " ".join(
      l for l in text.splitlines() if "custom-call" in l).lower()
