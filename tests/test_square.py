"""Square Attack: the budget, mask and image invariants, the schedule, the
margin loss, and success where gradients are useless."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from blurnet_jax.attacks import pgd
from blurnet_jax.attacks import square
from blurnet_jax.classes import STOP
from tests.helpers import (images, linear_apply, linear_params,
                           quantised_apply, stripe_mask)


def test_margins_by_hand():
  logits = jnp.asarray([[1.0, 3.0, 2.0], [5.0, 0.0, 1.0]])
  labels = jnp.asarray([1, 2])
  np.testing.assert_allclose(pgd.margins(logits, labels, False), [1.0, -4.0])
  np.testing.assert_allclose(pgd.margins(logits, labels, True), [-1.0, 4.0])


def test_p_schedule_halves_at_the_papers_breakpoints():
  p = lambda i, n: float(square.p_schedule(jnp.asarray(i), n, 0.5))
  assert p(0, 10000) == 0.5
  assert p(10, 10000) == 0.5 and p(11, 10000) == 0.25
  assert p(51, 10000) == 0.125
  assert p(9999, 10000) == 0.5 / 512
  assert p(50, 1000) == 0.5 / 8  # 500 of 10,000: three halvings


def test_bump_has_opposite_halves_inside_its_window_only():
  b = np.asarray(square._bump(jnp.asarray(4), jnp.asarray(6), jnp.asarray(6),
                              jnp.asarray(False), (32, 32)))[..., 0]
  inside = np.zeros((32, 32), bool)
  inside[4:10, 6:12] = True
  assert np.all(b[~inside] == 0)
  assert np.all(b[4:7, 6:12] > 0) and np.all(b[7:10, 6:12] < 0)
  assert b[5, 8] == b[5, 9] == pytest.approx(1 / 1)  # centre of the top half
  assert b[4, 6] == pytest.approx(1 / 9)  # corner: third ring


@pytest.mark.parametrize("norm,eps", [("linf", 0.3), ("l2", 2.0)])
def test_stays_in_the_ball_the_mask_and_the_image(norm, eps):
  params, x, mask = linear_params(), images(6), stripe_mask()
  out = square.square_attack(linear_apply, params, x, STOP, mask,
                             jax.random.key(0), eps,
                             cfg=square.SquareConfig(norm=norm, queries=40))
  delta, adv = np.asarray(out["delta"]), np.asarray(out["adversarial"])
  assert np.all(pgd.norms(out["delta"], norm) <= eps * (1 + 1e-5) + 1e-6)
  assert np.all(delta * (1 - mask) == 0)
  assert adv.min() >= 0 and adv.max() <= 1
  np.testing.assert_allclose(adv, np.clip(x + mask * delta, 0, 1), atol=1e-6)
  # The margins it reports are those of the images it returns.
  z = linear_apply(params, out["adversarial"])
  np.testing.assert_allclose(out["margins"],
                             pgd.margins(z, jnp.full(6, STOP), False),
                             rtol=1e-5, atol=1e-5)
  trace = np.asarray(out["mean_margins"])
  assert np.all(np.diff(trace) <= 1e-6)  # random search never goes back
  assert trace[-1] < trace[0]  # and it found something


def test_queries_count_the_first_success():
  params, x = linear_params(), images(8)
  out = square.square_attack(linear_apply, params, x, STOP, None,
                             jax.random.key(0), 0.5,
                             cfg=square.SquareConfig(queries=60, p_init=0.3))
  fooled = np.asarray(out["margins"]) < 0
  queries = np.asarray(out["queries"])
  assert fooled.any()
  assert np.all((queries > 0) == fooled)
  assert queries.max() <= 61


def test_it_fools_a_model_whose_gradient_is_zero_where_pgd_cannot():
  params, x = linear_params(scale=0.1), images(8)
  params["b"] = params["b"].at[STOP].add(3.0)  # every clean image is stop
  g = jax.grad(lambda v: jnp.sum(quantised_apply(params, v)))(jnp.asarray(x))
  assert float(jnp.abs(g).max()) == 0.0  # gradients carry nothing
  mask, eps = stripe_mask(), 0.5
  p_out = pgd.pgd_attack(quantised_apply, params, x, STOP, mask,
                         jax.random.key(0), eps,
                         cfg=pgd.PGDConfig(steps=20, random_start=False))
  s_out = square.square_attack(quantised_apply, params, x, STOP, mask,
                               jax.random.key(0), eps,
                               cfg=square.SquareConfig(queries=200,
                                                       p_init=0.3))
  fooled = lambda adv: float(np.mean(
      np.argmax(quantised_apply(params, adv), -1) != STOP))
  assert fooled(x) == 0.0
  assert fooled(p_out["adversarial"]) == 0.0  # PGD stands still
  assert fooled(s_out["adversarial"]) >= 0.75


def test_budgets_under_vmap_equal_one_call_per_budget():
  params, x, mask = linear_params(), images(), stripe_mask()
  cfg = square.SquareConfig(norm="l2", queries=15)
  budgets = [0.5, 2.0]
  batched = jax.vmap(lambda e: square.square_attack(
      linear_apply, params, x, STOP, mask, jax.random.key(1), e, cfg=cfg))(
          jnp.asarray(budgets))
  for i, eps in enumerate(budgets):
    single = square.square_attack(linear_apply, params, x, STOP, mask,
                                  jax.random.key(1), eps, cfg=cfg)
    np.testing.assert_allclose(batched["delta"][i], single["delta"],
                               atol=1e-6)


def test_zero_budget_leaves_the_images_alone():
  params, x = linear_params(), images()
  for norm in ("linf", "l2"):
    out = square.square_attack(linear_apply, params, x, STOP, None,
                               jax.random.key(0), 0.0,
                               cfg=square.SquareConfig(norm=norm, queries=5))
    np.testing.assert_array_equal(out["adversarial"], x)


@pytest.mark.parametrize("kwargs,match", [
    (dict(norm="l1"), "norm='l1'"),
    (dict(queries=0), "queries=0"),
    (dict(p_init=0.0), "p_init"),
])
def test_bad_configs_are_one_clear_error(kwargs, match):
  with pytest.raises(ValueError, match=match):
    square.SquareConfig(**kwargs)


def test_a_wrong_mask_is_one_clear_error():
  with pytest.raises(ValueError, match="mask must have shape"):
    square.square_attack(linear_apply, linear_params(), images(), STOP,
                         np.ones((32, 32, 2)), jax.random.key(0), 0.1)


def test_one_program_over_both_norms_matches_each_own_run():
  params, x, key = linear_params(), images(4), jax.random.key(2)
  mask = stripe_mask()
  members = [("linf", 0.3), ("l2", 2.0)]
  mixed = jax.vmap(lambda e, l2: square.square_attack(
      linear_apply, params, x, STOP, mask, key, e,
      cfg=square.SquareConfig(queries=15), l2=l2)["adversarial"])(
          jnp.asarray([e for _, e in members]),
          jnp.asarray([n == "l2" for n, _ in members]))
  for i, (norm, eps) in enumerate(members):
    own = square.square_attack(linear_apply, params, x, STOP, mask, key, eps,
                               cfg=square.SquareConfig(norm=norm, queries=15))
    np.testing.assert_allclose(mixed[i], own["adversarial"], atol=1e-6)
  assert float(jnp.abs(mixed[0] - mixed[1]).max()) > 1e-3
