"""Training: the pure step, the loop, resumption, NaN handling, configs."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from blurnet_jax import checkpoint
from blurnet_jax import losses
from blurnet_jax import models
from blurnet_jax import train
from configs import train as train_configs
from tests.helpers import tiny_train_config


def _batch(n=16, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.random((n, 32, 32, 3), np.float32)),
          jnp.asarray(rng.integers(0, 18, n), jnp.int32))


def test_linf_step_loss_is_ce_plus_hand_penalty():
  config = train_configs.get_config("variant=linf_5x5")
  model = models.model_from_config(config.model)
  state = train.create_train_state(config, model, jax.random.key(0))
  batch = _batch()
  logits = model.apply({"params": state.params}, batch[0])
  ce = float(losses.cross_entropy(logits, batch[1]))
  _, m = train.train_step(state, batch, jax.random.key(1), penalty_kind="linf",
                          augment=False)
  # A box-initialised 5x5 kernel has max |w| = 1/25 in each of K channels:
  # alpha / K * K * (1/25).
  np.testing.assert_allclose(float(m["penalty"]), 0.1 / 25, rtol=1e-6)
  np.testing.assert_allclose(float(m["loss"]), ce + 0.1 / 25, rtol=1e-5)


def test_tv_penalty_uses_layer1_maps():
  config = train_configs.get_config("variant=tv_1e-4")
  model = models.model_from_config(config.model)
  state = train.create_train_state(config, model, jax.random.key(0))
  batch = _batch()
  _, feats = model.apply({"params": state.params}, batch[0],
                         return_features=True)
  f = np.asarray(feats["l1"], np.float64)
  tv = (np.abs(np.diff(f, axis=1)).sum() + np.abs(np.diff(f, axis=2)).sum())
  want = 1e-4 * tv / (f.shape[0] * f.shape[-1])
  _, m = train.train_step(state, batch, jax.random.key(1), penalty_kind="tv",
                          augment=False)
  np.testing.assert_allclose(float(m["penalty"]), want, rtol=1e-4)


def test_linf_penalty_without_learned_filter_is_an_error():
  config = train_configs.get_config("variant=baseline")
  model = models.model_from_config(config.model)
  state = train.create_train_state(config, model, jax.random.key(0))
  with pytest.raises(ValueError, match="learned filter"):
    train.train_step(state, _batch(), jax.random.key(1), penalty_kind="linf")


def test_steps_reduce_the_loss_on_a_fixed_batch():
  config = train_configs.get_config("variant=baseline")
  config.warmup_steps = 1
  model = models.model_from_config(config.model)
  state = train.create_train_state(config, model, jax.random.key(0))
  batch = _batch(32)
  step = functools.partial(train.train_step, augment=False)
  first = None
  for i in range(40):
    state, m = step(state, batch, jax.random.key(i))
    first = float(m["loss"]) if first is None else first
  assert float(m["loss"]) < 0.5 * first
  assert int(state.step) == 40


@pytest.mark.parametrize("bad", ["variant=nope", "bogus=1", "runlocal=maybe"])
def test_config_arguments_are_checked(bad):
  with pytest.raises(ValueError, match="unknown|boolean"):
    train_configs.get_config(bad)


def test_every_slide_variant_has_a_config():
  names = set(train_configs.VARIANTS)
  assert {"baseline", "input_3x3", "input_5x5", "l1_3x3", "l1_5x5",
          "linf_3x3", "linf_5x5", "linf_7x7", "tv_1e-4", "tv_1e-5"} <= names
  assert train_configs.get_config("variant=linf_3x3").penalty.alpha == 1e-5
  assert train_configs.get_config("variant=linf_7x7").penalty.alpha == 0.1
  assert train_configs.get_config("variant=tv_1e-5").penalty.alpha == 1e-5


def test_train_and_evaluate_writes_outputs(tiny_data_dir, tmp_path):
  config = tiny_train_config("baseline", tiny_data_dir)
  _, results = train.train_and_evaluate(config, tmp_path)
  assert (tmp_path / "config.json").exists()
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text()
           .splitlines()]
  assert [l["step"] for l in lines] == [2, 4, 6, 8]
  assert "test_accuracy" in lines[1] and "test_accuracy" in lines[3]
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved == json.loads(json.dumps(results))
  assert 0 <= results["test"]["accuracy"] <= 1
  assert results["synthetic_victims"]["n"] == 40
  assert checkpoint.latest_step(tmp_path / "checkpoints") == 8


def test_killed_and_resumed_run_equals_uninterrupted(tiny_data_dir, tmp_path,
                                                    monkeypatch):
  config = tiny_train_config("linf_3x3", tiny_data_dir)
  full, _ = train.train_and_evaluate(config, tmp_path / "full")

  real_step = train.train_step
  calls = {"n": 0}

  def dying_step(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] == 6:  # after the checkpoint at step 4
      raise KeyboardInterrupt
    return real_step(*args, **kwargs)

  monkeypatch.setattr(train, "train_step", dying_step)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, tmp_path / "killed")
  assert checkpoint.latest_step(tmp_path / "killed" / "checkpoints") == 4
  monkeypatch.setattr(train, "train_step", real_step)
  resumed, _ = train.train_and_evaluate(config, tmp_path / "killed")
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(full.params),
               jax.device_get(resumed.params))
  assert int(resumed.step) == 8


def test_nan_loss_stops_with_a_clear_error_and_keeps_checkpoints(
    tiny_data_dir, tmp_path):
  config = tiny_train_config("baseline", tiny_data_dir, learning_rate=1e30,
                             warmup_steps=1, checkpoint_every=1)
  # Adam moves every weight by about the learning rate: 1e30 per weight
  # overflows the float32 parameter norm in the first update that has a
  # non-zero rate, while that step's loss (taken before the update) is
  # still finite. The stop names the norm, not a later NaN loss.
  with pytest.raises(train.NonFiniteLossError,
                     match=r"^param_norm is \[?inf\]? at step \d+; lower "
                           r"learning_rate"):
    train.train_and_evaluate(config, tmp_path)
  ckpt = tmp_path / "checkpoints"
  last = checkpoint.latest_step(ckpt)
  assert last is not None and last >= 1
  model = models.model_from_config(config.model)
  target = train.create_train_state(config, model, jax.random.key(0))
  _, step = checkpoint.restore(ckpt, target)
  assert step == last


@pytest.mark.parametrize("variant,trains", [("linf_5x5", {"blur"}),
                                            ("tv_1e-4", {"conv1"})])
def test_rp2_init_and_the_frozen_form_train_only_what_the_variant_adds(
    tiny_data_dir, tmp_path, variant, trains):
  """init='rp2' starts from the RP2 authors' weights (a learned kernel as
  the box filter); trainable='added' leaves every other layer as it was."""
  from blurnet_jax.data import rp2_assets  # pylint: disable=g-import-not-at-top
  config = tiny_train_config(variant, tiny_data_dir, num_train_steps=3,
                             learning_rate=1e-2)
  config.init, config.trainable = "rp2", "added"
  model = models.model_from_config(config.model)
  start = train.create_train_state(config, model, jax.random.key(0))
  rp2 = rp2_assets.load_rp2_assets().params
  for layer in rp2:
    np.testing.assert_array_equal(start.params[layer]["kernel"],
                                  rp2[layer]["kernel"])
  if "blur" in start.params:
    np.testing.assert_allclose(start.params["blur"]["kernel"], 1 / 25)
  state, _ = train.train_and_evaluate(config, tmp_path)
  changed = {layer for layer in state.params
             if not np.array_equal(np.asarray(state.params[layer]["kernel"]),
                                   np.asarray(start.params[layer]["kernel"]))}
  assert changed == trains


def test_bad_init_settings_are_one_clear_error(tiny_data_dir):
  config = tiny_train_config("baseline", tiny_data_dir)
  config.trainable = "added"
  with pytest.raises(ValueError, match="needs init='rp2'"):
    train.make_optimizer(config)
  config.init = "rp2"
  with pytest.raises(ValueError, match="adds nothing to train"):
    train.make_optimizer(config)
  config.init = "imagenet"
  with pytest.raises(ValueError, match="init='imagenet'"):
    train.make_optimizer(config)
