"""Tests of blurnet_jax.losses against hand-written numpy loops, via jax.jit."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from blurnet_jax import losses
from blurnet_jax import models


def _np_cross_entropy(logits, labels):
  total = 0.0
  for row, label in zip(logits.astype(np.float64), labels):
    m = max(row)
    log_z = m + math.log(sum(math.exp(v - m) for v in row))
    total += log_z - row[label]
  return total / len(labels)


def _np_linf(kernel, alpha):
  k_h, k_w, _, channels = kernel.shape
  total = 0.0
  for j in range(channels):
    largest = 0.0
    for a in range(k_h):
      for b in range(k_w):
        largest = max(largest, abs(float(kernel[a, b, 0, j])))
    total += largest
  return alpha / channels * total


def _np_tv_map(x):
  h, w = x.shape
  tv = 0.0
  for i in range(h - 1):
    for j in range(w):
      tv += abs(float(x[i + 1, j]) - float(x[i, j]))
  for i in range(h):
    for j in range(w - 1):
      tv += abs(float(x[i, j + 1]) - float(x[i, j]))
  return tv


def _np_tv(features, alpha):
  n, _, _, k = features.shape
  total = sum(_np_tv_map(features[i, :, :, c])
              for i in range(n) for c in range(k))
  return alpha / (n * k) * total


# ------------------------------------------------------------ cross_entropy


@pytest.mark.parametrize("n", [1, 7])
def test_cross_entropy_matches_numpy(n):
  rng = np.random.default_rng(n)
  logits = (rng.normal(size=(n, 18)) * 5).astype(np.float32)
  labels = rng.integers(0, 18, size=n)
  got = jax.jit(losses.cross_entropy)(logits, labels)
  assert got.shape == ()
  np.testing.assert_allclose(got, _np_cross_entropy(logits, labels),
                             rtol=1e-5)


def test_cross_entropy_by_hand():
  # Two equal logits: log 2 whatever the label; large logits stay finite.
  logits = np.array([[0.0, 0.0], [1000.0, 0.0]], np.float32)
  got = jax.jit(losses.cross_entropy)(logits, np.array([1, 0]))
  np.testing.assert_allclose(got, math.log(2) / 2, rtol=1e-6)


@pytest.mark.parametrize("logits, labels, match", [
    (np.zeros(18), np.array(0), "logits"),
    (np.zeros((3, 18)), np.zeros(4, np.int32), "labels"),
    (np.zeros((3, 18)), np.zeros(3, np.float32), "integer"),
    (np.zeros((0, 18)), np.zeros(0, np.int32), "non-empty"),
])
def test_cross_entropy_errors(logits, labels, match):
  with pytest.raises(ValueError, match=match):
    losses.cross_entropy(logits, labels)


# ------------------------------------------------------------- linf_penalty


@pytest.mark.parametrize("k, channels", [(3, 1), (5, 64), (7, 3)])
def test_linf_matches_numpy(k, channels):
  kernel = np.random.default_rng(k).normal(size=(k, k, 1, channels))
  kernel = kernel.astype(np.float32)
  got = jax.jit(functools.partial(losses.linf_penalty, alpha=0.1))(kernel)
  assert got.shape == ()
  np.testing.assert_allclose(got, _np_linf(kernel, 0.1), rtol=1e-6)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_linf_of_box_is_alpha_over_k2(k):
  kernel = models.blur_kernel("box", k, 64)
  got = jax.jit(functools.partial(losses.linf_penalty, alpha=0.5))(kernel)
  np.testing.assert_allclose(got, 0.5 / k**2, rtol=1e-6)


def test_linf_uses_magnitude():
  kernel = np.zeros((3, 3, 1, 2), np.float32)
  kernel[0, 0, 0, 0] = -4.0  # |-4| = 4 beats the 1 beside it.
  kernel[1, 1, 0, 0] = 1.0
  kernel[2, 1, 0, 1] = 2.0
  np.testing.assert_allclose(losses.linf_penalty(kernel, alpha=1.0), 3.0)


def test_linf_alpha_traced():
  kernel = models.blur_kernel("box", 3, 4)
  got = jax.jit(losses.linf_penalty)(kernel, alpha=jnp.float32(9.0))
  np.testing.assert_allclose(got, 1.0, rtol=1e-6)


@pytest.mark.parametrize("shape", [(3, 3, 64), (3, 3, 2, 64), (3, 3, 1, 0)])
def test_linf_errors(shape):
  with pytest.raises(ValueError, match="linf_penalty"):
    losses.linf_penalty(np.zeros(shape, np.float32), alpha=1.0)


def test_linf_negative_alpha():
  with pytest.raises(ValueError, match="alpha"):
    losses.linf_penalty(np.zeros((3, 3, 1, 2), np.float32), alpha=-1.0)


# --------------------------------------------------------------- tv_penalty


def test_tv_by_hand():
  # TV([[0, 1], [2, 3]]) = |2-0| + |3-1| + |1-0| + |3-2| = 6 per map.
  one = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
  features = np.stack([one, 2 * one], axis=-1)[None]  # (1, 2, 2, 2): 6, 12.
  got = jax.jit(functools.partial(losses.tv_penalty, alpha=1.0))(features)
  np.testing.assert_allclose(got, (6 + 12) / 2, rtol=1e-6)
  np.testing.assert_allclose(_np_tv_map(one), 6.0)


@pytest.mark.parametrize("shape", [(1, 5, 5, 1), (3, 16, 16, 4),
                                   (2, 6, 9, 3), (1, 1, 4, 2)])
def test_tv_matches_numpy(shape):
  features = np.random.default_rng(sum(shape)).normal(size=shape)
  features = features.astype(np.float32)
  got = jax.jit(functools.partial(losses.tv_penalty, alpha=1e-4))(features)
  assert got.shape == ()
  np.testing.assert_allclose(got, _np_tv(features, 1e-4), rtol=1e-5)


def test_tv_constant_maps_are_zero():
  features = np.full((2, 8, 8, 3), 0.7, np.float32)
  assert float(losses.tv_penalty(features, alpha=1.0)) == 0.0


def test_tv_is_a_per_map_mean():
  # Repeating the batch does not change the normalised penalty.
  features = np.random.default_rng(0).normal(size=(2, 5, 5, 3))
  features = features.astype(np.float32)
  np.testing.assert_allclose(
      losses.tv_penalty(np.concatenate([features, features]), alpha=1.0),
      losses.tv_penalty(features, alpha=1.0), rtol=1e-6)


@pytest.mark.parametrize("shape", [(16, 16, 64), (0, 4, 4, 2), (1, 4, 4, 0)])
def test_tv_errors(shape):
  with pytest.raises(ValueError, match="tv_penalty"):
    losses.tv_penalty(np.zeros(shape, np.float32), alpha=1.0)


def test_gradients_are_finite():
  features = np.random.default_rng(1).normal(size=(2, 4, 4, 3))
  grad = jax.jit(jax.grad(functools.partial(losses.tv_penalty, alpha=1.0)))(
      features.astype(np.float32))
  assert grad.shape == features.shape
  assert np.all(np.isfinite(grad))
