"""Tests for blurnet_jax.checkpoint."""

import hashlib
import json
import logging
import os
import time

import flax.linen as nn
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from blurnet_jax import checkpoint


_MODELS = {features: nn.Dense(features) for features in (4, 5)}


def _make_state(features: int = 4, seed: int = 0) -> train_state.TrainState:
  model = _MODELS[features]  # Shared, so jitted steps compile once.
  params = model.init(jax.random.key(seed), jnp.ones((1, 3)))
  return train_state.TrainState.create(
      apply_fn=model.apply, params=params, tx=optax.adam(1e-2))


@jax.jit
def _train_step(state: train_state.TrainState) -> train_state.TrainState:
  def loss(params):
    return jnp.sum(state.apply_fn(params, jnp.ones((2, 3))) ** 2)
  return state.apply_gradients(grads=jax.grad(loss)(state.params))


def _trained(state: train_state.TrainState, n: int) -> train_state.TrainState:
  """Takes `n` Adam steps so params, opt_state and step are all non-trivial."""
  for _ in range(n):
    state = _train_step(state)
  return state


def _assert_trees_equal(a, b):
  leaves_a, tree_a = jax.tree_util.tree_flatten(a)
  leaves_b, tree_b = jax.tree_util.tree_flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert np.asarray(x).dtype == np.asarray(y).dtype


def _latest_name(ckpt_dir) -> str:
  with open(os.path.join(ckpt_dir, checkpoint.LATEST)) as f:
    return f.read().strip()


class _Warnings:
  """The messages of warnings logged (via absl) while a test runs."""

  def __init__(self, caplog):
    self._caplog = caplog

  def _messages(self):
    return [r.getMessage() for r in self._caplog.records
            if r.levelno == logging.WARNING]

  def __iter__(self):
    return iter(self._messages())

  def __len__(self):
    return len(self._messages())


@pytest.fixture(name="warnings")
def fixture_warnings(caplog):
  caplog.set_level(logging.WARNING)
  return _Warnings(caplog)


@pytest.fixture(name="three_saved")
def fixture_three_saved(tmp_path):
  """A dir with checkpoints of steps 1, 2, 3 holding distinct states."""
  states = {}
  state = _make_state()
  for s in (1, 2, 3):
    state = _trained(state, 1)
    states[s] = state
    checkpoint.save(tmp_path, state, step=s)
  return tmp_path, states


def test_round_trip_train_state_is_exact(tmp_path):
  state = _trained(_make_state(), 3)
  path = checkpoint.save(tmp_path, state, step=3)
  assert os.path.basename(path) == "ckpt_00000003.msgpack"
  assert checkpoint.latest_step(tmp_path) == 3

  restored, step = checkpoint.restore(tmp_path, _make_state(seed=1))
  assert step == 3
  assert int(restored.step) == 3
  _assert_trees_equal(restored.params, state.params)
  _assert_trees_equal(restored.opt_state, state.opt_state)
  # The restored state still trains.
  assert int(_trained(restored, 1).step) == 4


def test_round_trip_of_a_plain_dict(tmp_path):
  tree = {"w": jnp.arange(6.0).reshape(2, 3), "n": np.int32(7),
          "nested": {"b": jnp.ones((4,), jnp.bfloat16)}}
  checkpoint.save(tmp_path, tree, step=0)
  target = jax.tree_util.tree_map(jnp.zeros_like, tree)
  restored, step = checkpoint.restore(tmp_path, target, step=0)
  assert step == 0
  _assert_trees_equal(restored, tree)


def test_keep_n_prunes_oldest_after_pointer(tmp_path):
  state = _make_state()
  for s in range(1, 6):
    checkpoint.save(tmp_path, state, step=s * 100, keep=3)
    latest = _latest_name(tmp_path)
    # LATEST always names a complete, existing checkpoint.
    assert latest == f"ckpt_{s * 100:08d}.msgpack"
    assert os.path.isfile(os.path.join(tmp_path, latest))
  assert sorted(os.listdir(tmp_path)) == [
      "LATEST",
      "ckpt_00000300.json", "ckpt_00000300.msgpack",
      "ckpt_00000400.json", "ckpt_00000400.msgpack",
      "ckpt_00000500.json", "ckpt_00000500.msgpack",
  ]
  checkpoint.save(tmp_path, state, step=600, keep=1)
  assert sorted(os.listdir(tmp_path)) == [
      "LATEST", "ckpt_00000600.json", "ckpt_00000600.msgpack"]


def test_config_sidecar(tmp_path):
  config = ml_collections.ConfigDict(
      {"lr": 0.01, "model": {"features": 4}, "name": "lisa"})
  state = _trained(_make_state(), 1)
  path = checkpoint.save(tmp_path, state, step=1200, config=config)
  with open(os.path.join(tmp_path, "ckpt_00001200.json")) as f:
    sidecar = json.load(f)
  assert sidecar["step"] == 1200
  assert sidecar["file"] == "ckpt_00001200.msgpack"
  assert sidecar["config"] == {"lr": 0.01, "model": {"features": 4},
                               "name": "lisa"}
  with open(path, "rb") as f:
    assert sidecar["sha256"] == hashlib.sha256(f.read()).hexdigest()
  assert sidecar["tree"]["params/params/kernel"] == {
      "shape": [3, 4], "dtype": "float32"}
  assert sidecar["tree"]["opt_state/0/count"] == {"shape": [],
                                                  "dtype": "int32"}
  assert sidecar["num_params"] > 3 * 16

  # A plain dict works too, with numpy values made JSON-able.
  checkpoint.save(tmp_path, state, step=1300,
                  config={"lr": np.float32(0.5), "sizes": (1, 2)})
  with open(os.path.join(tmp_path, "ckpt_00001300.json")) as f:
    assert json.load(f)["config"] == {"lr": 0.5, "sizes": [1, 2]}


def test_bad_arguments_raise_clear_errors(tmp_path):
  state = _make_state()
  with pytest.raises(ValueError, match="step must be a non-negative int"):
    checkpoint.save(tmp_path, state, step=-1)
  with pytest.raises(ValueError, match="keep must be an int >= 1"):
    checkpoint.save(tmp_path, state, step=1, keep=0)
  with pytest.raises(ValueError, match="config must be an ml_collections"):
    checkpoint.save(tmp_path, state, step=1, config="lr=0.1")
  assert not os.listdir(tmp_path)


def test_truncated_latest_falls_back_with_warning(three_saved, warnings):
  ckpt_dir, states = three_saved
  path = os.path.join(ckpt_dir, "ckpt_00000003.msgpack")
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[: len(data) // 2])

  restored, step = checkpoint.restore(ckpt_dir, _make_state())
  assert step == 2
  _assert_trees_equal(restored.params, states[2].params)
  assert any("ckpt_00000003.msgpack is corrupt (sha256 mismatch)" in w
             for w in warnings)
  restored, step = checkpoint.restore_or_init(ckpt_dir, _make_state())
  assert step == 2

  with pytest.raises(
      ValueError,
      match=r"checkpoint .*ckpt_00000003\.msgpack is corrupt \(sha256 "
            r"mismatch\): .*; delete it or restore an earlier step$"):
    checkpoint.restore(ckpt_dir, _make_state(), step=3)


def test_flipped_bytes_fall_back_with_warning(three_saved, warnings):
  ckpt_dir, states = three_saved
  path = os.path.join(ckpt_dir, "ckpt_00000003.msgpack")
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))

  restored, step = checkpoint.restore_or_init(ckpt_dir, _make_state())
  assert step == 2
  _assert_trees_equal(restored.opt_state, states[2].opt_state)
  assert any("is corrupt (sha256 mismatch)" in w for w in warnings)
  with pytest.raises(ValueError, match=r"ckpt_00000003\.msgpack is corrupt "
                                       r"\(sha256 mismatch\)"):
    checkpoint.restore(ckpt_dir, _make_state(), step=3)


def test_missing_sidecar_is_corrupt(three_saved, warnings):
  ckpt_dir, _ = three_saved
  os.remove(os.path.join(ckpt_dir, "ckpt_00000003.json"))
  assert checkpoint.restore(ckpt_dir, _make_state())[1] == 2
  assert any("sidecar" in w for w in warnings)
  with pytest.raises(ValueError, match=r"is corrupt \(cannot decode\): its "
                                       r"sidecar .* is missing"):
    checkpoint.restore(ckpt_dir, _make_state(), step=3)


def test_all_corrupt_raises(three_saved, warnings):
  ckpt_dir, _ = three_saved
  for s in (1, 2, 3):
    with open(os.path.join(ckpt_dir, f"ckpt_{s:08d}.msgpack"), "wb") as f:
      f.write(b"\x00garbage")
  with pytest.raises(ValueError, match=r"no checkpoint in .* can be restored "
                                       r"\(tried steps \[3, 2, 1\]"):
    checkpoint.restore_or_init(ckpt_dir, _make_state())
  assert len(warnings) == 3


def test_another_model_shape_raises_naming_the_leaf(tmp_path, warnings):
  checkpoint.save(tmp_path, _make_state(features=5), step=10)
  checkpoint.save(tmp_path, _make_state(features=5), step=20)
  message = (r"checkpoint .*ckpt_00000020\.msgpack holds params of another "
             r"model: leaf params/params/(bias|kernel) has shape \((3, 5|5,)\)"
             r" but the model expects \((3, 4|4,)\)"
             r".*; use a workdir of this model$")
  # All checkpoints of another model: a clear error, not a silent restart.
  with pytest.raises(ValueError, match=message):
    checkpoint.restore_or_init(tmp_path, _make_state(features=4))
  assert len(warnings) == 2
  with pytest.raises(ValueError, match=message):
    checkpoint.restore(tmp_path, _make_state(features=4), step=20)


def test_dtype_mismatch_is_another_model(tmp_path):
  checkpoint.save(tmp_path, {"w": np.zeros((2,), np.float16)}, step=1)
  with pytest.raises(ValueError, match=r"leaf w has dtype float16 but the "
                                       r"model expects float32"):
    checkpoint.restore(tmp_path, {"w": np.zeros((2,), np.float32)}, step=1)


def test_failing_save_keeps_previous_good(tmp_path, monkeypatch):
  state1 = _trained(_make_state(), 1)
  checkpoint.save(tmp_path, state1, step=1)
  before = sorted(os.listdir(tmp_path))

  real_write = checkpoint._write_and_sync  # pylint: disable=protected-access

  def failing_write(f, data):
    if ".msgpack.tmp-" in f.name:  # The new checkpoint, not its sidecar.
      f.write(data[: len(data) // 2])
      f.flush()
      raise OSError("disk full (simulated)")
    real_write(f, data)

  monkeypatch.setattr(checkpoint, "_write_and_sync", failing_write)
  with pytest.raises(OSError, match="disk full"):
    checkpoint.save(tmp_path, _trained(state1, 1), step=2)
  monkeypatch.undo()

  assert sorted(os.listdir(tmp_path)) == before  # No partial/temp files.
  assert _latest_name(tmp_path) == "ckpt_00000001.msgpack"
  restored, step = checkpoint.restore(tmp_path, _make_state())
  assert step == 1
  _assert_trees_equal(restored.params, state1.params)


def test_crash_leftovers_are_ignored_and_cleaned(tmp_path):
  state = _make_state()
  checkpoint.save(tmp_path, state, step=1)
  # What a process killed mid-save can leave behind.
  for name in (".ckpt_00000002.msgpack.tmp-abc123", "ckpt_00000002.json",
               ".LATEST.tmp-0f"):
    with open(os.path.join(tmp_path, name), "wb") as f:
      f.write(b"partial")
  assert checkpoint.latest_step(tmp_path) == 1
  assert checkpoint.restore(tmp_path, state)[1] == 1
  checkpoint.save(tmp_path, state, step=2)
  assert sorted(os.listdir(tmp_path)) == [
      "LATEST", "ckpt_00000001.json", "ckpt_00000001.msgpack",
      "ckpt_00000002.json", "ckpt_00000002.msgpack"]


def test_resaving_a_step_after_fallback_replaces_it(three_saved):
  ckpt_dir, _ = three_saved
  with open(os.path.join(ckpt_dir, "ckpt_00000003.msgpack"), "wb") as f:
    f.write(b"broken")
  state, step = checkpoint.restore_or_init(ckpt_dir, _make_state())
  assert step == 2
  state = _trained(state, 1)
  checkpoint.save(ckpt_dir, state, step=3)
  restored, step = checkpoint.restore(ckpt_dir, _make_state(), step=3)
  _assert_trees_equal(restored.params, state.params)


def test_restore_or_init_on_empty_or_missing_dir(tmp_path):
  target = _make_state()
  for ckpt_dir in (tmp_path, tmp_path / "does_not_exist"):
    state, step = checkpoint.restore_or_init(ckpt_dir, target)
    assert state is target
    assert step == 0
    assert checkpoint.latest_step(ckpt_dir) is None
  with pytest.raises(FileNotFoundError, match=r"no checkpoint in .*; use "
                                              r"restore_or_init"):
    checkpoint.restore(tmp_path, target)


def test_restore_missing_dir_or_step_raises_file_not_found(tmp_path):
  missing = tmp_path / "no_such_workdir"
  with pytest.raises(FileNotFoundError,
                     match=r"checkpoint dir .*no_such_workdir does not exist; "
                           r"check the path"):
    checkpoint.restore(missing, _make_state(), step=5)
  checkpoint.save(tmp_path, _make_state(), step=1)
  with pytest.raises(FileNotFoundError,
                     match=r"no checkpoint of step 5 in .* \(steps there: "
                           r"\[1\]\); pass one of those or step=None"):
    checkpoint.restore(tmp_path, _make_state(), step=5)


def test_save_is_fast_for_a_million_params(tmp_path):
  state = {"w": jnp.ones((1000, 1000)), "b": jnp.zeros((1000,))}
  start = time.perf_counter()
  checkpoint.save(tmp_path, state, step=1)
  elapsed = time.perf_counter() - start
  assert elapsed < 2.0, f"save of 1M params took {elapsed:.2f}s"
  restored, _ = checkpoint.restore(tmp_path, state)
  _assert_trees_equal(restored, state)

