"""Adversarial training: the batch keeps its clean part, the perturbed part
changes only inside the mask (or the rectangles) and is not
differentiated; the step is train_step at fraction 0, lowers the
adversarial loss, and vmaps over a population compiled once."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from blurnet_jax import models
from blurnet_jax import train
from blurnet_jax.defences import adversarial
from blurnet_jax.defences.adversarial import (AdversarialConfig,
                                              adversarial_batch,
                                              adversarial_train_step)
from blurnet_jax.defences.occlusion import RoaConfig
from tests.helpers import images, linear_apply, linear_params, stripe_mask

PGD = AdversarialConfig(kind="pgd_mask", steps=3)
ROA = AdversarialConfig(kind="roa", roa=RoaConfig(stride=5, pgd_steps=3))
#: One model object: states of one model share one pytree structure (its
#: `apply` is static), so they stack into a population.
MODEL = models.LisaCNN()


def test_only_the_first_fraction_changes_and_only_inside_the_mask():
  params, x, mask = linear_params(), images(6), stripe_mask()
  out = np.asarray(adversarial_batch(linear_apply, params, x, 4,
                                     jax.random.key(0), PGD, mask))
  np.testing.assert_array_equal(out[3:], x[3:])
  diff = out[:3] - x[:3]
  assert np.all(diff * (1 - mask) == 0) and np.all(np.abs(diff).max(
      (1, 2, 3)) > 0)
  # one mask per image: each perturbed image inside its own
  masks = np.zeros((6, 32, 32, 1), np.float32)
  for i in range(6):
    masks[i, 4 * i:4 * i + 5, 3:20] = 1
  out = np.asarray(adversarial_batch(linear_apply, params, x, 4,
                                     jax.random.key(0), PGD, masks))
  np.testing.assert_array_equal(out[3:], x[3:])
  assert np.all((out[:3] - x[:3]) * (1 - masks[:3]) == 0)


def test_roa_changes_one_rectangle_of_each_perturbed_image():
  params, x = linear_params(), images(4)
  out = np.asarray(adversarial_batch(linear_apply, params, x, 9,
                                     jax.random.key(0), ROA))
  np.testing.assert_array_equal(out[2:], x[2:])
  for i in range(2):
    rows, cols = np.nonzero(np.abs(out[i] - x[i]).max(-1))
    assert len(rows) and rows.max() - rows.min() < 7 and (
        cols.max() - cols.min() < 7)


@pytest.mark.parametrize("fraction,batch,count", [
    (0.5, 6, 3), (0.25, 6, 2), (0.0, 6, 0), (1.0, 5, 5), (0.1, 4, 0)])
def test_the_perturbed_count_rounds_halves_up(fraction, batch, count):
  cfg = AdversarialConfig(fraction=fraction, steps=2)
  assert cfg.count(batch) == count
  x = images(batch)
  out = np.asarray(adversarial_batch(linear_apply, linear_params(), x, 1,
                                     jax.random.key(3), cfg, stripe_mask()))
  changed = np.abs(out - x).max((1, 2, 3)) > 0
  assert changed.tolist() == [True] * count + [False] * (batch - count)


def test_the_attack_is_not_differentiated():
  """The gradient of a loss on the batch is the gradient with the
  perturbed images held constant."""
  params, x, mask = linear_params(), images(4), stripe_mask()
  cfg = AdversarialConfig(steps=2, fraction=1.0)

  def loss(p, batch):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        linear_apply(p, batch), jnp.full(4, 2)))

  through = jax.grad(lambda p: loss(p, adversarial_batch(
      linear_apply, p, x, 2, jax.random.key(0), cfg, mask)))(params)
  fixed = adversarial_batch(linear_apply, params, x, 2, jax.random.key(0),
                            cfg, mask)
  held = jax.grad(lambda p: loss(p, fixed))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               through, held)


def test_the_batch_is_jittable():
  params, x, mask = linear_params(), images(4), stripe_mask()
  jitted = jax.jit(adversarial_batch, static_argnames=("apply_fn", "cfg"))
  for cfg, m in ((PGD, mask), (ROA, None)):
    np.testing.assert_allclose(
        jitted(linear_apply, params, x, 1, jax.random.key(4), cfg=cfg,
               mask=m),
        adversarial_batch(linear_apply, params, x, 1, jax.random.key(4), cfg,
                          m), atol=1e-6)


def lisa_state(seed=0, tx=None):
  """A LisaCNN train state with a constant learning rate (the configs warm
  up from 0, which would make a first step a no-op)."""
  return train.create_train_state(
      ml_collections.ConfigDict(), MODEL, jax.random.key(seed),
      alpha=0.0, tx=optax.adam(1e-3) if tx is None else tx)


def fixed_batch(n=8, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.random((n, 32, 32, 3)), jnp.float32),
          jnp.asarray(rng.integers(0, 18, n), jnp.int32))


def test_fraction_zero_is_the_train_step_bit_for_bit():
  batch, key = fixed_batch(), jax.random.key(7)
  clean, clean_metrics = train.train_step(lisa_state(), batch, key)
  adv, adv_metrics = adversarial_train_step(
      lisa_state(), batch, key, cfg=AdversarialConfig(fraction=0.0),
      mask=stripe_mask())
  jax.tree.map(np.testing.assert_array_equal, clean.params, adv.params)
  jax.tree.map(np.testing.assert_array_equal, clean_metrics, adv_metrics)


def adversarial_loss(state, batch, cfg, mask):
  """Mean CE over the batch attacked whole, with a fixed key."""
  apply_fn = models.apply_fn_for(MODEL)
  x = adversarial_batch(apply_fn, state.params, batch[0], batch[1],
                        jax.random.key(11), cfg, mask)
  return float(jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
      apply_fn(state.params, x), batch[1])))


def test_adversarial_training_lowers_the_adversarial_loss():
  batch, mask = fixed_batch(), stripe_mask()
  cfg = AdversarialConfig(steps=3, fraction=1.0)
  state = lisa_state()
  before = adversarial_loss(state, batch, cfg, mask)
  for i in range(6):
    state, metrics = adversarial_train_step(
        state, batch, jax.random.key(i), cfg=cfg, mask=mask, augment=False)
    assert np.isfinite(float(metrics["loss"]))
  assert adversarial_loss(state, batch, cfg, mask) < before


def test_a_doa_step_is_finite_and_differs_from_the_clean_step():
  batch, key = fixed_batch(), jax.random.key(2)
  clean, _ = train.train_step(lisa_state(), batch, key)
  doa, metrics = adversarial_train_step(lisa_state(), batch, key, cfg=ROA,
                                        mask=None)
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(clean.params), jax.tree.leaves(doa.params)))


def test_a_population_vmaps_compiled_once_and_each_member_runs_alone():
  tx = optax.adam(1e-3)  # one tx object: the states share one structure
  singles = [lisa_state(s, tx) for s in (0, 1)]
  stack = lambda: jax.tree.map(lambda *a: jnp.stack(a), *singles)
  mask = stripe_mask()
  step = jax.jit(jax.vmap(
      lambda s, b, k: adversarial_train_step(s, b, k, cfg=PGD, mask=mask),
      in_axes=(0, None, 0)))
  keys = jax.random.split(jax.random.key(5), 2)
  batch = fixed_batch()
  population, metrics = step(stack(), batch, keys)
  step(population, fixed_batch(seed=1), keys)  # new values, same shapes
  assert step._cache_size() == 1  # pylint: disable=protected-access
  for i in range(2):
    alone, alone_metrics = adversarial_train_step(
        lisa_state((0, 1)[i], tx), batch, keys[i], cfg=PGD, mask=mask)
    # The tolerance of test_sweep: vmapped convolutions sum in another
    # order, and Adam's first step divides by each gradient's magnitude.
    for got, want in zip(jax.tree.leaves(population.params),
                         jax.tree.leaves(alone.params)):
      np.testing.assert_allclose(got[i], want, rtol=1e-4, atol=5e-5)
    np.testing.assert_allclose(metrics["loss"][i], alone_metrics["loss"],
                               rtol=1e-5)
  assert not np.allclose(metrics["loss"][0], metrics["loss"][1])


@pytest.mark.parametrize("kwargs,match", [
    (dict(kind="fgsm"), "kind='fgsm'"),
    (dict(epsilon=-1.0), "epsilon=-1.0"),
    (dict(steps=0), "steps=0"),
    (dict(step_size=0), "step_size=0"),
    (dict(fraction=1.5), "fraction=1.5 must lie in"),
    (dict(roa="7x7"), "roa must be a RoaConfig"),
])
def test_bad_configs_are_one_clear_error(kwargs, match):
  with pytest.raises(ValueError, match=match):
    AdversarialConfig(**kwargs)


def test_a_missing_or_extra_mask_is_one_clear_error():
  params, x = linear_params(), images(2)
  with pytest.raises(ValueError, match="needs the sticker mask"):
    adversarial_batch(linear_apply, params, x, 0, jax.random.key(0), PGD)
  with pytest.raises(ValueError, match="places its own rectangles"):
    adversarial_batch(linear_apply, params, x, 0, jax.random.key(0), ROA,
                      stripe_mask())
  with pytest.raises(ValueError, match="cfg must be an AdversarialConfig"):
    adversarial_batch(linear_apply, params, x, 0, jax.random.key(0),
                      RoaConfig(), None)
  assert adversarial.ADVERSARIAL_KINDS == ("pgd_mask", "roa")
