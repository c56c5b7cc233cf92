"""A train config's defence: the 'none' path is train_step bit for bit,
each defended variant trains through the loop and checkpoints, a defended
population is one vmapped program, smoothing's held-out accuracy is the
vote's, and bad settings are one-line errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from blurnet_jax import checkpoint
from blurnet_jax import models
from blurnet_jax import sweep
from blurnet_jax import train
from blurnet_jax.data import masks
from blurnet_jax.defences import adversarial
from blurnet_jax.defences import occlusion
from blurnet_jax.defences import smoothing
from blurnet_jax.defences import training
from configs import train as train_configs
from tests.helpers import tiny_train_config

#: Attacks cut to a few steps: the wiring is under test, not the attacks.
SMALL_ATTACKS = {"defence.steps": 2, "defence.pgd_steps": 2,
                 "defence.candidates": 3}


def _batches(n=16, count=3):
  rng = np.random.default_rng(0)
  return [(jnp.asarray(rng.random((n, 32, 32, 3), np.float32)),
           jnp.asarray(rng.integers(0, 18, n), jnp.int32))
          for _ in range(count)]


def _defended(variant, data_dir, **overrides):
  return tiny_train_config(variant, data_dir, **{**SMALL_ATTACKS,
                                                 **overrides})


@pytest.mark.slow
def test_no_defence_is_train_step_bit_for_bit():
  """The 'none' step is `train_step` with the config's statics: the same
  program, the same numbers, alone and vmapped over a population."""
  config = train_configs.get_config("variant=tv_1e-4")
  assert config.defence.kind == "none"
  step = training.training_for(config).step
  reference = functools.partial(train.train_step, penalty_kind="tv",
                                augment=True)
  model = models.model_for(config)
  batches = _batches()
  state = train.create_train_state(config, model, jax.random.key(0))
  assert str(jax.make_jaxpr(step)(state, batches[0], jax.random.key(1))) == (
      str(jax.make_jaxpr(reference)(state, batches[0], jax.random.key(1))))
  ours, theirs = (train.create_train_state(config, model, jax.random.key(0))
                  for _ in range(2))
  for i, batch in enumerate(batches):
    ours, m_ours = step(ours, batch, jax.random.key(i))
    theirs, m_theirs = reference(theirs, batch, jax.random.key(i))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(m_ours),
                 jax.device_get(m_theirs))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(ours.params),
               jax.device_get(theirs.params))

  config.sweep = {"alphas": (1e-4,), "seeds": (0, 1), "chunk": 2}
  keys = jax.random.split(jax.random.key(2), 2)
  ours, theirs = (sweep.create_population(config, model, [1e-4] * 2, [0, 1])
                  for _ in range(2))
  population_step = sweep.population_step(config, 2)
  vmapped = jax.jit(jax.vmap(reference, in_axes=(0, None, 0)))
  for batch in batches:
    ours, _ = population_step(ours, batch, keys)
    theirs, _ = vmapped(theirs, batch, keys)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(ours.params),
               jax.device_get(theirs.params))


def test_each_defence_gets_its_step_and_settings():
  pgd = training.training_for(train_configs.get_config("variant=pgd_at"))
  assert pgd.step.func is adversarial.adversarial_train_step
  assert pgd.step.keywords["cfg"] == adversarial.AdversarialConfig(
      kind="pgd_mask", epsilon=1.0, steps=7, fraction=0.5)
  np.testing.assert_array_equal(pgd.step.keywords["mask"],
                                masks.get_mask("camouflage"))
  doa = training.training_for(train_configs.get_config("variant=doa"))
  assert doa.step.keywords["cfg"] == adversarial.AdversarialConfig(
      kind="roa", fraction=0.5, roa=occlusion.RoaConfig(
          height=7, width=7, stride=2, search="gradient", candidates=10,
          pgd_steps=10))
  assert doa.step.keywords["mask"] is None
  both = train_configs.get_config("variant=doa_linf_5x5")
  assert both.penalty.to_dict() == {"kind": "linf", "alpha": 0.1}
  assert training.training_for(both).step.keywords["penalty_kind"] == "linf"
  assert models.model_for(both) == models.model_for(
      train_configs.get_config("variant=linf_5x5"))
  smooth = training.training_for(train_configs.get_config(
      "variant=smoothing"))
  assert smooth.step.func is training.smoothing_train_step
  assert smooth.step.keywords["band"] == 4
  assert set(train_configs.SLIDE_VARIANTS) == set(train_configs.VARIANTS) - {
      "pgd_at", "doa", "smoothing", "doa_linf_5x5"}


@pytest.mark.parametrize("variant", [
    "pgd_at", "doa", pytest.param("smoothing", marks=pytest.mark.slow),
    pytest.param("doa_linf_5x5", marks=pytest.mark.slow)])
def test_a_defended_variant_trains_through_the_loop_and_checkpoints(
    tiny_data_dir, tmp_path, variant):
  config = _defended(variant, tiny_data_dir, num_train_steps=4,
                     eval_every=4, checkpoint_every=2)
  state, results = train.train_and_evaluate(
      config, tmp_path, training=training.training_for(config))
  assert checkpoint.latest_step(tmp_path / "checkpoints") == 4
  assert int(state.step) == 4
  assert 0 <= results["test"]["accuracy"] <= 1
  assert np.isfinite(results["test"]["loss"])
  assert results["synthetic_victims"]["n"] == 40
  kernel = state.params["conv1"]["kernel"].shape
  assert kernel == ((8, 8, 6, 64) if variant == "smoothing" else
                    (8, 8, 3, 64))
  assert ("blur" in state.params) == (variant == "doa_linf_5x5")


@pytest.mark.slow
def test_a_doa_population_of_two_seeds_is_one_vmapped_program(
    tiny_data_dir, tmp_path, monkeypatch):
  config = _defended("doa", tiny_data_dir, num_train_steps=3, eval_every=3,
                     checkpoint_every=3)
  config.sweep = {"alphas": (0.0,), "seeds": (0, 1), "chunk": 2}
  programs = []

  def recorded(*args, **kwargs):
    programs.append(population_step(*args, **kwargs))
    return programs[-1]

  population_step = sweep.population_step
  monkeypatch.setattr(sweep, "population_step", recorded)
  rows, params, _ = sweep.train_population(config, tmp_path)
  (program,) = programs
  assert program._cache_size() == 1  # pylint: disable=protected-access
  assert [r["seed"] for r in rows] == [0, 1] and len(params) == 2
  assert all(0 <= r["test_accuracy"] <= 1 for r in rows)
  assert checkpoint.latest_step(tmp_path / "checkpoints") == 3


def test_the_smoothed_evaluation_is_the_vote_over_every_band():
  config = train_configs.get_config("variant=smoothing")
  model = models.model_for(config)
  assert model.input_channels == 6
  state = train.create_train_state(config, model, jax.random.key(0))
  images, labels = _batches(n=8, count=1)[0]
  images, labels = np.asarray(images), np.array(labels)
  apply_fn = models.apply_fn_for(model)
  votes = smoothing.column_votes(apply_fn, state.params, images, 4, 18)
  voted = np.asarray(smoothing.smoothed_predict(votes))
  labels[:4] = voted[:4]  # half of them right, at least
  # Batches of 5: the second is padded, and the padding is not counted.
  got = training.training_for(config).evaluate(state, images, labels,
                                               batch_size=5)
  want = np.mean(voted == labels)
  assert got["accuracy"] == pytest.approx(want) and want >= 0.5
  ce = np.mean([np.asarray(jax.nn.log_softmax(apply_fn(
      state.params, smoothing.ablate_columns(images, s, 4))))[
          np.arange(8), labels] for s in range(32)], axis=0)
  assert got["loss"] == pytest.approx(-ce.mean(), rel=1e-5)


@pytest.mark.slow
def test_the_smoothing_step_trains_on_ablated_bands():
  config = train_configs.get_config("variant=smoothing")
  state = train.create_train_state(config, models.model_for(config),
                                   jax.random.key(0))
  assert state.params["conv1"]["kernel"].shape == (8, 8, 6, 64)
  batch = _batches(n=8, count=1)[0]
  rng = jax.random.key(3)
  ablated = smoothing.random_ablation(jax.random.fold_in(rng, 1),
                                      batch[0], 4)
  _, expected = train.gradient_step(state, ablated, batch[1],
                                    penalty_kind="none")
  _, metrics = training.smoothing_train_step(state, batch, rng, band=4,
                                             augment=False)
  for name in ("loss", "grad_norm"):
    np.testing.assert_allclose(metrics[name], expected[name], rtol=1e-5)
  # Another band position: another loss (the ablation is what it sees).
  _, other = training.smoothing_train_step(
      train.create_train_state(config, models.model_for(config),
                               jax.random.key(0)),
      batch, jax.random.key(4), band=4, augment=False)
  assert not np.isclose(float(other["loss"]), float(metrics["loss"]),
                        rtol=1e-4)


@pytest.mark.parametrize("variant,field,value,message", [
    ("baseline", "kind", "mixup", "defence.kind='mixup'; use one of"),
    ("pgd_at", "fraction", 1.5, "defence.fraction=1.5 must lie in [0, 1]"),
    ("pgd_at", "steps", 0, "defence.steps=0 must be an int >= 1"),
    ("pgd_at", "epsilon", -1.0, "defence.epsilon=-1.0 must be finite"),
    ("pgd_at", "mask", "heart", "defence.mask='heart': unknown mask"),
    ("doa", "stride", 0, "defence.stride=0 must be an int >= 1"),
    ("doa", "height", 40, "defence.height=40 exceeds the image"),
    ("doa", "search", "random", "defence.search='random'; use one of"),
    ("doa", "candidates", 500, "defence.candidates=500 exceeds the 169"),
    ("smoothing", "band", 0, "defence.band=0 must be an int in 1..32"),
    ("smoothing", "band", 33, "defence.band=33 must be an int in 1..32"),
])
def test_a_bad_defence_setting_is_one_line_naming_the_field(
    variant, field, value, message):
  config = train_configs.get_config(f"variant={variant}")
  config.defence[field] = value
  with pytest.raises(ValueError) as error:
    training.training_for(config)
  assert message in str(error.value) and "\n" not in str(error.value)


def test_settings_a_defence_rules_out_are_one_line_errors(tiny_data_dir,
                                                           tmp_path):
  config = train_configs.get_config("variant=smoothing")
  config.init = "rp2"
  with pytest.raises(ValueError, match=r"^defence.kind='smoothing' .* use "
                                       r"init='scratch'$"):
    training.training_for(config)
  # A defended config never trains undefended by default.
  config = tiny_train_config("doa", tiny_data_dir)
  with pytest.raises(ValueError, match=r"^defence.kind='doa' needs its own "
                                       r"training step: pass training="):
    train.train_and_evaluate(config, tmp_path)
