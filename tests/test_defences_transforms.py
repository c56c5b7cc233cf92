"""Input-transformation defences: the median filter against explicit
windows, JPEG against its definition and against libjpeg (Pillow), BPDA's
gradient, and `defended`'s cache."""

import dataclasses
import functools
import io

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
import scipy.fft

from blurnet_jax.attacks import PGDConfig, pgd_attack
from blurnet_jax.defences import (InputTransform, bpda, defended, jpeg,
                                  median_filter, quantisation_tables)
from helpers import linear_apply, linear_params


def _reflect(i, n):
  """numpy's 'reflect' index: mirrored about the edge pixel."""
  if i < 0:
    return -i
  if i >= n:
    return 2 * (n - 1) - i
  return i


def _median_reference(images, size):
  n, h, w, c = images.shape
  r = size // 2
  out = np.empty_like(images)
  for row in range(h):
    for col in range(w):
      rows = [_reflect(row + d, h) for d in range(-r, r + 1)]
      cols = [_reflect(col + d, w) for d in range(-r, r + 1)]
      window = images[:, rows][:, :, cols]  # (n, size, size, c)
      out[:, row, col] = np.median(window.reshape(n, -1, c), axis=1)
  return out


@pytest.mark.parametrize("size", [1, 3, 5])
def test_median_filter_is_the_median_of_reflected_windows(size):
  images = np.random.default_rng(size).uniform(
      0, 1, (2, 9, 11, 3)).astype(np.float32)
  got = np.asarray(median_filter(images, size))
  np.testing.assert_allclose(got, _median_reference(images, size), atol=0)
  jitted = jax.jit(functools.partial(median_filter, size=size))
  np.testing.assert_allclose(np.asarray(jitted(images)), got, atol=0)


def test_median_filter_removes_an_isolated_spike():
  images = np.full((1, 32, 32, 3), 0.25, np.float32)
  images[0, 10, 12, 1] = 1.0
  np.testing.assert_array_equal(np.asarray(median_filter(images, 3)),
                                np.full_like(images, 0.25))


def test_median_filter_rejects_bad_sizes():
  x = np.zeros((1, 4, 4, 3), np.float32)
  for size in (2, 0, True, 3.0):
    with pytest.raises(ValueError, match="odd int"):
      median_filter(x, size)
  with pytest.raises(ValueError, match="smaller size"):
    median_filter(x, 9)


def test_quantisation_tables_follow_the_ijg_scaling():
  q50 = quantisation_tables(50)
  assert q50[0, :4, 0].tolist() == [16, 11, 10, 16]   # standard luminance
  assert q50[7, 7, 0] == 99 and q50[0, 0, 1] == 17 and q50[7, 7, 2] == 99
  np.testing.assert_array_equal(q50[..., 1], q50[..., 2])
  assert np.all(quantisation_tables(100) == 1)
  assert np.all(quantisation_tables(1) == 255)  # baseline clip
  # quality 10: scale 5000 / 10 = 500, floor((16 * 500 + 50) / 100) = 80;
  # quality 90: scale 200 - 180 = 20, floor((11 * 20 + 50) / 100) = 2.
  assert quantisation_tables(10)[0, 0, 0] == 80
  assert quantisation_tables(90)[0, 1, 0] == 2
  for quality in (0, 101, 7.5):
    with pytest.raises(ValueError, match="1..100"):
      quantisation_tables(quality)


def _smooth_images(seed=0, n=4):
  """uint8-valued images with structure at several scales."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 1, (n, 8, 8, 3))
  x = np.asarray(jax.image.resize(coarse, (n, 32, 32, 3), "linear"))
  x = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)
  return (np.round(x * 255) / 255).astype(np.float32)


def _pillow_jpeg(images, quality):
  out = []
  for image in images:
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(
        buffer, "JPEG", quality=quality, subsampling=0)
    out.append(np.asarray(Image.open(buffer), np.float32) / 255)
  return np.stack(out)


def test_jpeg_at_quality_100_is_near_the_identity():
  x = np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 3)).astype(
      np.float32)
  y = np.asarray(jpeg(x, 100))
  assert y.shape == x.shape and y.dtype == np.float32
  # Every coefficient moves by at most half a step of 1/255.
  assert np.abs(y - x).max() < 0.02


@pytest.mark.parametrize("quality", [10, 50])
def test_jpeg_is_what_libjpeg_decodes(quality):
  """Pillow at 4:4:4 and the same quality: the two differ by libjpeg's
  integer DCT and 8-bit output only, far less than either differs from the
  input (wrong tables, transposed or swapped, differ by much more)."""
  x = _smooth_images()
  ours = np.asarray(jpeg(x, quality))
  theirs = _pillow_jpeg(x, quality)
  assert np.abs(ours - theirs).mean() < 0.2 * np.abs(theirs - x).mean()


def _high_frequency_energy(images):
  n = images.shape[0]
  blocks = images.reshape(n, 4, 8, 4, 8, 3).transpose(0, 1, 3, 5, 2, 4)
  coef = scipy.fft.dctn(blocks, axes=(-2, -1), norm="ortho")
  u = np.arange(8)
  high = (u[:, None] + u[None, :]) >= 4
  return float((coef[..., high] ** 2).sum())


def test_jpeg_at_quality_10_is_blockwise_smoother_and_nearly_idempotent():
  x = np.random.default_rng(1).uniform(0, 1, (4, 32, 32, 3)).astype(
      np.float32)
  once = np.asarray(jpeg(x, 10))
  twice = np.asarray(jpeg(once, 10))
  assert _high_frequency_energy(once) < 0.5 * _high_frequency_energy(x)
  assert np.abs(twice - once).mean() < 0.05 * np.abs(once - x).mean()


@pytest.mark.parametrize("quality, grey", [(50, 136), (10, 138)])
def test_a_constant_block_on_the_quantisation_grid_survives(quality, grey):
  """Grey g: Y - 128 = g - 128, Cb = Cr = 0, only the DC coefficient
  8 (g - 128) is nonzero: 64 = 4 x 16 at quality 50, 80 = 1 x 80 at 10.
  The other blocks are noise and change; blocks do not mix."""
  x = np.random.default_rng(2).uniform(0, 1, (1, 32, 32, 3)).astype(
      np.float32)
  x[0, 8:16, 16:24] = grey / 255
  y = np.asarray(jpeg(x, quality))
  np.testing.assert_allclose(y[0, 8:16, 16:24], grey / 255, atol=1e-5)
  assert np.abs(y[0, :8] - x[0, :8]).max() > 0.05


def test_jpeg_rejects_shapes_it_cannot_block():
  with pytest.raises(ValueError, match="multiples of 8"):
    jpeg(np.zeros((1, 30, 32, 3), np.float32), 75)
  with pytest.raises(ValueError, match="RGB"):
    jpeg(np.zeros((1, 32, 32, 1), np.float32), 75)


def test_input_transform_is_a_hashable_static_transform():
  x = _smooth_images(n=2)
  median = InputTransform("median", size=3)
  np.testing.assert_array_equal(np.asarray(median(x)),
                                np.asarray(median_filter(x, 3)))
  np.testing.assert_array_equal(
      np.asarray(InputTransform("jpeg", quality=30)(x)),
      np.asarray(jpeg(x, 30)))
  assert hash(median) == hash(InputTransform("median", size=3))
  run = jax.jit(lambda t, images: t(images), static_argnums=0)
  np.testing.assert_array_equal(np.asarray(run(median, x)),
                                np.asarray(median(x)))
  for bad in (dict(kind="blur"), dict(kind="median", size=4),
              dict(kind="jpeg", quality=0)):
    with pytest.raises(ValueError):
      InputTransform(**bad)


def _loss(y, w):
  return jnp.sum(jnp.sin(3.0 * y) * w)


@pytest.mark.parametrize("transform", [InputTransform("median", size=3),
                                       InputTransform("jpeg", quality=50)])
def test_bpda_is_the_transform_forward_and_the_identity_backward(transform):
  x = jnp.asarray(_smooth_images(n=2))
  w = jnp.asarray(np.random.default_rng(3).normal(size=x.shape), jnp.float32)
  approx = bpda(transform)
  assert approx is bpda(transform)
  np.testing.assert_array_equal(np.asarray(approx(x)),
                                np.asarray(transform(x)))
  got = jax.grad(lambda v: _loss(approx(v), w))(x)
  # The gradient of the loss with the transform replaced by the identity,
  # taken at the transformed point.
  want = jax.grad(_loss)(transform(x), w)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
  through = jax.grad(lambda v: _loss(transform(v), w))(x)
  assert not np.allclose(np.asarray(through), np.asarray(got))
  jitted = jax.jit(jax.grad(lambda v: _loss(approx(v), w)))(x)
  np.testing.assert_allclose(np.asarray(jitted), np.asarray(got), rtol=1e-6)


def test_bpda_needs_a_shape_keeping_hashable_transform():
  with pytest.raises(ValueError, match="keeps shape"):
    bpda(lambda x: x[..., :1])(jnp.zeros((1, 8, 8, 3)))

  @dataclasses.dataclass
  class Unhashable:  # eq without frozen: __hash__ is None
    def __call__(self, x):
      return x

  with pytest.raises(ValueError, match="hashable callable"):
    bpda(Unhashable())
  with pytest.raises(ValueError, match="hashable callable"):
    defended(linear_apply, Unhashable())


def test_defended_is_the_model_through_the_transform_one_object_each():
  transform = functools.partial(median_filter, size=3)
  f = defended(linear_apply, transform)
  assert f is defended(linear_apply, transform)
  assert f is defended(linear_apply, transform, adaptive=False)
  g = defended(linear_apply, transform, adaptive=True)
  assert g is defended(linear_apply, transform, adaptive=True) and g is not f
  jpeg50 = InputTransform("jpeg", quality=50)
  assert defended(linear_apply, jpeg50) is defended(
      linear_apply, InputTransform("jpeg", quality=50))
  params = linear_params()
  x = _smooth_images(n=3)
  want = linear_apply(params, median_filter(x, 3))
  np.testing.assert_allclose(np.asarray(f(params, x)), np.asarray(want),
                             rtol=1e-6)
  np.testing.assert_allclose(np.asarray(g(params, x)), np.asarray(want),
                             rtol=1e-6)
  with pytest.raises(ValueError, match="adaptive"):
    defended(linear_apply, transform, adaptive=1)


def test_only_the_adaptive_attack_moves_through_jpeg():
  """JPEG's own gradient is zero (rounding): PGD from zero never moves;
  through BPDA it does."""
  params = linear_params()
  x = _smooth_images(n=2)
  labels = np.asarray(jnp.argmax(linear_apply(params, x), -1))
  cfg = PGDConfig(steps=3, random_start=False)
  jpeg75 = InputTransform("jpeg", quality=75)
  plain = pgd_attack(defended(linear_apply, jpeg75), params, x, labels,
                     None, jax.random.key(0), 0.1, cfg=cfg)
  adaptive = pgd_attack(defended(linear_apply, jpeg75, adaptive=True),
                        params, x, labels, None, jax.random.key(0), 0.1,
                        cfg=cfg)
  assert np.abs(np.asarray(plain["delta"])).max() == 0
  assert np.abs(np.asarray(adaptive["delta"])).max() > 0.05
