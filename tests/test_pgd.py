"""PGD: one step against a hand computation on a linear model, the
projection invariants, budgets under vmap, universal mode, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from blurnet_jax.attacks import pgd
from blurnet_jax.classes import IMAGE_SHAPE, STOP
from tests.helpers import D, images, linear_apply, linear_params, stripe_mask

def hand_ce_gradient(params, x, labels):
  """dCE/dx of a linear model: W (softmax(z) - onehot(y)), in numpy."""
  w, b = np.asarray(params["w"], np.float64), np.asarray(params["b"],
                                                         np.float64)
  z = x.reshape(len(x), -1).astype(np.float64) @ w + b
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  p[np.arange(len(x)), labels] -= 1.0
  return (p @ w.T).reshape(x.shape), z


def one_step(norm, targeted, eps):
  cfg = pgd.PGDConfig(norm=norm, steps=1, step_size=1.0, random_start=False,
                      targeted=targeted)
  params, x, mask = linear_params(), images(), stripe_mask()
  labels = np.full(len(x), 3 if targeted else STOP)
  out = pgd.pgd_attack(linear_apply, params, x, labels, mask,
                       jax.random.key(0), eps, cfg=cfg)
  return params, x, mask, labels, out


@pytest.mark.parametrize("targeted", [False, True])
def test_one_linf_step_matches_the_hand_computation(targeted):
  eps = 0.01  # small: the first-order step lowers the loss, so it is kept
  params, x, mask, labels, out = one_step("linf", targeted, eps)
  g, _ = hand_ce_gradient(params, x, labels)
  # Untargeted ascends the CE of the true class, targeted descends that of
  # the target; step = 1.0 * eps / 1 step, then the L-inf ball and [0, 1].
  direction = -np.sign(g) if targeted else np.sign(g)
  expected = np.clip(x + mask * eps * direction, 0, 1)
  np.testing.assert_allclose(out["adversarial"], expected, atol=1e-6)
  np.testing.assert_allclose(out["delta"], expected - x, atol=1e-6)


@pytest.mark.parametrize("targeted", [False, True])
def test_one_l2_step_matches_the_hand_computation(targeted):
  eps = 0.05
  params, x, mask, labels, out = one_step("l2", targeted, eps)
  g, _ = hand_ce_gradient(params, x, labels)
  g = mask * (-g if targeted else g)
  unit = g / np.linalg.norm(g.reshape(len(x), -1), axis=1)[:, None, None,
                                                             None]
  expected = np.clip(x + eps * unit, 0, 1)
  np.testing.assert_allclose(out["adversarial"], expected, atol=1e-6)
  norms = np.linalg.norm(np.asarray(out["delta"]).reshape(len(x), -1), axis=1)
  np.testing.assert_allclose(norms, eps, rtol=1e-5)


def test_the_first_loss_is_the_hand_cross_entropy():
  _, x, _, labels, out = one_step("linf", False, 0.01)
  _, z = hand_ce_gradient(linear_params(), x, labels)
  ce = -(z[np.arange(len(x)), labels] - np.log(np.exp(z).sum(1)))
  np.testing.assert_allclose(out["losses"][0], -ce.mean(), rtol=1e-5)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_stays_in_the_ball_the_mask_and_the_image(norm):
  params, x, mask = linear_params(), images(6), stripe_mask()
  eps = 0.2 if norm == "linf" else 1.5
  cfg = pgd.PGDConfig(norm=norm, steps=5)
  for seed in range(3):
    out = pgd.pgd_attack(linear_apply, params, x, STOP, mask,
                         jax.random.key(seed), eps, cfg=cfg)
    delta, adv = np.asarray(out["delta"]), np.asarray(out["adversarial"])
    assert np.all(pgd.norms(out["delta"], norm) <= eps * (1 + 1e-5) + 1e-6)
    assert np.all(delta * (1 - mask) == 0)
    assert adv.min() >= 0 and adv.max() <= 1
    np.testing.assert_allclose(adv, np.clip(x + mask * delta, 0, 1),
                               atol=1e-6)
    assert np.abs(delta).max() > 0  # it moved


def test_zero_budget_leaves_the_images_alone():
  params, x = linear_params(), images()
  for norm in ("linf", "l2"):
    out = pgd.pgd_attack(linear_apply, params, x, STOP, None,
                         jax.random.key(0), 0.0,
                         cfg=pgd.PGDConfig(norm=norm, steps=3))
    np.testing.assert_array_equal(out["adversarial"], x)


def test_budgets_under_vmap_equal_one_call_per_budget():
  params, x, mask = linear_params(), images(), stripe_mask()
  budgets = [0.05, 0.1, 0.3]
  cfg = pgd.PGDConfig(steps=4)
  batched = jax.vmap(lambda e: pgd.pgd_attack(
      linear_apply, params, x, STOP, mask, jax.random.key(2), e, cfg=cfg))(
          jnp.asarray(budgets))
  for i, eps in enumerate(budgets):
    single = pgd.pgd_attack(linear_apply, params, x, STOP, mask,
                            jax.random.key(2), eps, cfg=cfg)
    np.testing.assert_allclose(batched["adversarial"][i],
                               single["adversarial"], atol=1e-6)


def test_the_same_key_gives_the_same_result_and_another_key_another():
  params, x, mask = linear_params(), images(), stripe_mask()
  run = lambda k: np.asarray(pgd.pgd_attack(
      linear_apply, params, x, STOP, mask, jax.random.key(k), 0.1,
      cfg=pgd.PGDConfig(steps=3))["delta"])
  np.testing.assert_array_equal(run(5), run(5))
  assert not np.array_equal(run(5), run(6))


def test_an_unbounded_attack_fools_every_image():
  params, x = linear_params(), images(8)
  for norm, eps in (("linf", 1.0), ("l2", float(np.sqrt(D)))):
    out = pgd.pgd_attack(linear_apply, params, x, STOP, None,
                         jax.random.key(0), eps,
                         cfg=pgd.PGDConfig(norm=norm, steps=20))
    pred = np.argmax(linear_apply(params, out["adversarial"]), -1)
    assert np.all(pred != STOP), norm


def test_more_steps_do_not_raise_the_loss_of_the_kept_iterate():
  params, x, mask = linear_params(scale=0.02), images(), stripe_mask()
  losses = []
  for steps in (1, 5, 20):
    out = pgd.pgd_attack(linear_apply, params, x, STOP, mask,
                         jax.random.key(0), 0.2,
                         cfg=pgd.PGDConfig(steps=steps, random_start=False))
    z = linear_apply(params, out["adversarial"])
    losses.append(float(jnp.mean(jax.nn.log_softmax(z)[:, STOP])))
  assert losses[0] > losses[1] > losses[2]  # log p(stop) falls


def test_universal_mode_shares_one_perturbation():
  params, x, mask = linear_params(), images(5), stripe_mask()
  out = pgd.pgd_attack(linear_apply, params, x, STOP, mask,
                       jax.random.key(0), 0.1,
                       cfg=pgd.PGDConfig(universal=True, steps=4))
  assert out["delta"].shape == IMAGE_SHAPE
  np.testing.assert_allclose(out["adversarial"],
                             np.clip(x + mask * np.asarray(out["delta"]), 0, 1),
                             atol=1e-6)
  assert float(jnp.abs(out["delta"]).max()) <= 0.1 + 1e-6


def test_eot_transforms_run_and_keep_the_invariants():
  from blurnet_jax.attacks.transforms import TransformConfig  # pylint: disable=g-import-not-at-top
  params, x, mask = linear_params(), images(3), stripe_mask()
  cfg = pgd.PGDConfig(steps=3, num_transforms=2,
                      transforms=TransformConfig.physical())
  out = pgd.pgd_attack(linear_apply, params, x, STOP, mask,
                       jax.random.key(0), 0.1, cfg=cfg)
  assert np.all(np.isfinite(out["losses"]))
  assert float(jnp.abs(out["delta"]).max()) <= 0.1 + 1e-6


@pytest.mark.parametrize("kwargs,match", [
    (dict(norm="l3"), "norm='l3'"),
    (dict(steps=0), "steps=0"),
    (dict(step_size=0.0), "step_size"),
])
def test_bad_configs_are_one_clear_error(kwargs, match):
  with pytest.raises(ValueError, match=match):
    pgd.PGDConfig(**kwargs)


@pytest.mark.parametrize("args,match", [
    (dict(epsilon=-0.1), "epsilon=-0.1 must be finite and >= 0"),
    (dict(epsilon=float("nan")), "must be finite"),
    (dict(mask=np.ones((16, 16, 1))), "mask must have shape"),
    (dict(labels=18), "outside 0..17"),
    (dict(labels=np.zeros(3, np.int32)), "int vector of 4 classes"),
    (dict(images=np.zeros((4, 28, 28, 3))), "images must have shape"),
])
def test_bad_inputs_are_one_clear_error(args, match):
  call = dict(images=images(), labels=STOP, mask=None, epsilon=0.1)
  call.update(args)
  with pytest.raises(ValueError, match=match):
    pgd.pgd_attack(linear_apply, linear_params(), call["images"],
                   call["labels"], call["mask"], jax.random.key(0),
                   call["epsilon"])


def test_vmapped_over_models_and_targets_equals_one_call_each():
  x, mask = images(3), stripe_mask()
  stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), linear_params(0),
                         linear_params(1))
  targets = jnp.asarray([2, 7])
  cfg = pgd.PGDConfig(steps=3, targeted=True)
  batched = jax.vmap(lambda p, t: pgd.pgd_attack(
      linear_apply, p, x, t, mask, jax.random.key(0), 0.2, cfg=cfg))(
          stacked, targets)
  for i, seed in enumerate((0, 1)):
    single = pgd.pgd_attack(linear_apply, linear_params(seed), x,
                            int(targets[i]), mask, jax.random.key(0), 0.2,
                            cfg=cfg)
    np.testing.assert_allclose(batched["delta"][i], single["delta"],
                               atol=1e-6)


@pytest.mark.parametrize("universal", [False, True])
def test_one_program_over_norms_and_step_counts_matches_each_own_run(
    universal):
  """l2 and steps given per call (vmapped) give what a config with that
  norm and that many steps gives (to float rounding: the step size is
  divided by a traced count)."""
  params, x = linear_params(), images(4)
  mask, key = stripe_mask(), jax.random.key(5)
  base = dict(universal=universal, random_start=True)
  members = [("linf", 0.3, 9), ("l2", 3.0, 9), ("linf", 0.3, 4),
             ("l2", 3.0, 1)]
  mixed = jax.vmap(lambda e, l2, s: pgd.pgd_attack(
      linear_apply, params, x, STOP, mask, key, e,
      cfg=pgd.PGDConfig(steps=9, **base), l2=l2, steps=s)["adversarial"])(
          jnp.asarray([e for _, e, _ in members]),
          jnp.asarray([n == "l2" for n, _, _ in members]),
          jnp.asarray([s for *_, s in members]))
  for i, (norm, eps, steps) in enumerate(members):
    own = pgd.pgd_attack(linear_apply, params, x, STOP, mask, key, eps,
                         cfg=pgd.PGDConfig(norm=norm, steps=steps, **base))
    np.testing.assert_allclose(mixed[i], own["adversarial"], atol=1e-6)
  # the runs differ from each other: the test could fail
  assert float(jnp.abs(mixed[0] - mixed[2]).max()) > 1e-3
  assert float(jnp.abs(mixed[0] - mixed[1]).max()) > 1e-3


def test_a_step_count_outside_the_config_is_one_error():
  with pytest.raises(ValueError, match=r"steps=12 must lie in 1\.\.9"):
    pgd.pgd_attack(linear_apply, linear_params(), images(2), STOP, None,
                   jax.random.key(0), 0.1, cfg=pgd.PGDConfig(steps=9),
                   steps=12)


def test_one_mask_per_image_equals_one_call_per_image():
  """A (N, 32, 32, 1) mask: image i is attacked inside its own mask, as a
  call with that mask alone would (no random start: the runs are
  independent per image)."""
  params, x = linear_params(), images(3)
  masks = np.zeros((3, 32, 32, 1), np.float32)
  masks[0, 2:9, 3:10] = masks[1, 20:27, 0:7] = masks[2, 10:17, 25:32] = 1
  cfg = pgd.PGDConfig(steps=4, random_start=False)
  out = pgd.pgd_attack(linear_apply, params, x, STOP, masks,
                       jax.random.key(0), 0.3, cfg=cfg)
  delta = np.asarray(out["delta"])
  assert np.all(delta * (1 - masks) == 0) and np.abs(delta).max() > 0
  for i in range(3):
    own = pgd.pgd_attack(linear_apply, params, x[i:i + 1], STOP, masks[i],
                         jax.random.key(0), 0.3, cfg=cfg)
    np.testing.assert_allclose(out["adversarial"][i], own["adversarial"][0],
                               atol=1e-6)
  with pytest.raises(ValueError, match="universal perturbation takes one"):
    pgd.pgd_attack(linear_apply, params, x, STOP, masks, jax.random.key(0),
                   0.3, cfg=pgd.PGDConfig(universal=True))
  with pytest.raises(ValueError, match=r"or \(3, 32, 32, 1\|3\)"):
    pgd.pgd_attack(linear_apply, params, x, STOP, masks[:2],
                   jax.random.key(0), 0.3, cfg=cfg)
