"""The rectangular occlusion attack: the position search finds a planted
worst rectangle and agrees with a brute-force loop, the masks, the attack
lowers a trained classifier's accuracy and touches only its rectangles."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from blurnet_jax.defences import occlusion
from blurnet_jax.defences.occlusion import (RoaConfig, rectangle_masks,
                                            roa_attack, roa_positions)
from tests.helpers import images, linear_apply, linear_params

#: The planted worst rectangle: on the stride-2 grid of a 7x7 rectangle.
PLANTED = (12, 18)


def planted_apply(scale, x):
  """Logit 0 grows with the squared distance from grey of the 7x7 region at
  PLANTED, the others are 0: the cross-entropy of class 0 is largest when
  exactly that region is grey."""
  r, c = PLANTED
  region = x[:, r:r + 7, c:c + 7, :]
  s = jnp.mean((region - 0.5) ** 2, axis=(1, 2, 3))
  return jnp.zeros((x.shape[0], 18)).at[:, 0].set(scale * s)


def far_from_grey(n, seed=0):
  """Images whose every pixel is >= 0.2 away from grey (so a rectangle
  that misses part of the planted region leaves it some distance)."""
  rng = np.random.default_rng(seed)
  x = rng.uniform(0.0, 0.3, (n, 32, 32, 3))
  return np.where(rng.random(x.shape) < 0.5, x, 1.0 - x).astype(np.float32)


@pytest.mark.parametrize("search,candidates", [
    ("exhaustive", 10), ("gradient", 3), ("gradient", 1)])
def test_the_search_finds_the_planted_rectangle(search, candidates):
  cfg = RoaConfig(search=search, candidates=candidates)
  positions = roa_positions(planted_apply, 40.0, far_from_grey(4), 0, cfg)
  assert positions.dtype == jnp.int32
  np.testing.assert_array_equal(positions, np.tile(PLANTED, (4, 1)))


def grey_losses(params, x, labels, cfg):
  """float64 (N, P) cross-entropy of the linear model with the rectangle
  grey at every grid position, by a plain loop in numpy."""
  w = np.asarray(params["w"], np.float64)
  b = np.asarray(params["b"], np.float64)
  out = []
  for r, c in cfg.grid():
    filled = np.array(x, np.float64)
    filled[:, r:r + cfg.height, c:c + cfg.width] = 0.5
    z = filled.reshape(len(x), -1) @ w + b
    z -= z.max(1, keepdims=True)
    out.append(np.log(np.exp(z).sum(1)) - z[np.arange(len(x)), labels])
  return np.stack(out, 1)


def test_exhaustive_search_keeps_each_images_worst_grid_position():
  params, x = linear_params(), images(5)
  labels = np.array([3, 14, 0, 7, 14])
  cfg = RoaConfig(height=5, width=9, stride=3)
  positions = np.asarray(roa_positions(linear_apply, params, x, labels, cfg))
  losses = grey_losses(params, x, labels, cfg)
  grid = [tuple(p) for p in cfg.grid()]
  chosen = [losses[i, grid.index(tuple(p))] for i, p in enumerate(positions)]
  np.testing.assert_allclose(chosen, losses.max(1), rtol=1e-5)
  # the positions differ between images: each image has its own worst
  assert len({tuple(p) for p in positions}) > 1


def test_gradient_search_over_every_position_is_the_exhaustive_search():
  params, x = linear_params(), images(4)
  exhaustive = RoaConfig(stride=4)
  everything = RoaConfig(stride=4, search="gradient",
                         candidates=exhaustive.num_positions)
  np.testing.assert_array_equal(
      roa_positions(linear_apply, params, x, 5, exhaustive),
      roa_positions(linear_apply, params, x, 5, everything))


def test_the_grid_and_the_masks():
  cfg = RoaConfig(height=5, width=9, stride=3)
  assert cfg.grid_shape == (10, 8)  # rows 0..27 by 3, columns 0..23 by 3
  grid = cfg.grid()
  assert grid.shape == (80, 2) and grid.max(0).tolist() == [27, 21]
  masks = np.asarray(rectangle_masks(grid, cfg))
  assert masks.shape == (80, 32, 32, 1) and masks.dtype == np.float32
  np.testing.assert_array_equal(masks.sum((1, 2, 3)), 45.0)
  rows, cols = np.nonzero(masks[7, ..., 0])
  assert (rows.min(), rows.max(), cols.min(), cols.max()) == (
      grid[7, 0], grid[7, 0] + 4, grid[7, 1], grid[7, 1] + 8)
  seven = np.asarray(rectangle_masks(np.array([[0, 0], [25, 25]]),
                                     RoaConfig()))
  np.testing.assert_array_equal(seven.sum((1, 2, 3)), 49.0)
  with pytest.raises(ValueError, match=r"positions must be int \(N, 2\)"):
    rectangle_masks(np.zeros((3,), np.int32), cfg)


#: The square of the images that tells their classes apart (a "sign" on a
#: grey background).
SIGN = slice(11, 21)


def trained_linear(seed=0):
  """A linear classifier fitted to four noisy class prototypes that differ
  only on the SIGN square, and fresh test images of those classes."""
  rng = np.random.default_rng(seed)
  protos = np.full((4, 32, 32, 3), 0.5)
  protos[:, SIGN, SIGN] = rng.uniform(0.0, 1.0, (4, 10, 10, 3))

  def draw(n):
    labels = rng.integers(0, 4, n)
    x = np.clip(protos[labels] + rng.normal(0, 0.1, (n, 32, 32, 3)), 0, 1)
    return jnp.asarray(x, jnp.float32), jnp.asarray(labels, jnp.int32)

  x, y = draw(64)
  params = jax.tree.map(jnp.zeros_like, linear_params())
  tx = optax.adam(1e-2)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt):
    grads = jax.grad(lambda p: jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(
            linear_apply(p, x), y)))(params)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(params, updates), opt

  for _ in range(50):
    params, opt = step(params, opt)
  return params, draw(16)


def test_the_attack_lowers_accuracy_and_changes_only_the_rectangles():
  params, (x, y) = trained_linear()
  cfg = RoaConfig(pgd_steps=10)
  out = roa_attack(linear_apply, params, x, y, jax.random.key(0), cfg)
  clean = float(jnp.mean(jnp.argmax(linear_apply(params, x), -1) == y))
  attacked = float(jnp.mean(
      jnp.argmax(linear_apply(params, out["adversarial"]), -1) == y))
  assert clean == 1.0 and attacked <= 0.5
  adv, masks = np.asarray(out["adversarial"]), np.asarray(out["masks"])
  assert np.all(masks[:, SIGN, SIGN].sum((1, 2, 3)) > 0)  # on the sign
  np.testing.assert_array_equal(masks, rectangle_masks(out["positions"], cfg))
  np.testing.assert_array_equal(adv * (1 - masks), np.asarray(x) * (1 - masks))
  assert adv.min() >= 0 and adv.max() <= 1
  # PGD starts at the grey rectangle the search scored and keeps its best
  # iterate: the loss is at least the searched one.
  ce = lambda z: optax.softmax_cross_entropy_with_integer_labels(
      linear_apply(params, z), y)
  grey = occlusion._fill(x, masks)  # pylint: disable=protected-access
  assert np.all(np.asarray(ce(adv)) >= np.asarray(ce(grey)) - 1e-5)
  assert float(jnp.mean(ce(adv))) > float(jnp.mean(ce(grey)))


def test_the_attack_is_jittable_and_its_key_drives_the_random_start():
  params, x = linear_params(), images(3)
  cfg = RoaConfig(stride=5, pgd_steps=3, random_start=True)
  attack = jax.jit(roa_attack, static_argnames=("apply_fn", "cfg"))
  eager = roa_attack(linear_apply, params, x, 2, jax.random.key(1), cfg)
  jitted = attack(linear_apply, params, x, 2, jax.random.key(1), cfg=cfg)
  np.testing.assert_allclose(jitted["adversarial"], eager["adversarial"],
                             atol=1e-6)
  other = roa_attack(linear_apply, params, x, 2, jax.random.key(2), cfg)
  assert not np.array_equal(other["adversarial"], eager["adversarial"])


@pytest.mark.parametrize("kwargs,match", [
    (dict(search="random"), "search='random'"),
    (dict(height=0), "height=0 must be an int >= 1"),
    (dict(width=33), "width=33 exceeds the image"),
    (dict(stride=1.5), "stride=1.5"),
    (dict(search="gradient", candidates=200), "exceeds the 169 grid"),
    (dict(step_size=0.0), "step_size"),
])
def test_bad_configs_are_one_clear_error(kwargs, match):
  with pytest.raises(ValueError, match=match):
    RoaConfig(**kwargs)


def test_bad_inputs_are_one_clear_error():
  with pytest.raises(ValueError, match="cfg must be a RoaConfig"):
    roa_positions(linear_apply, linear_params(), images(2), 0, cfg=None)
  with pytest.raises(ValueError, match="images must have shape"):
    roa_attack(linear_apply, linear_params(), np.zeros((2, 28, 28, 3)), 0,
               jax.random.key(0))
