"""The input pipeline: determinism, resumption, padding, augmentation."""

import jax
import numpy as np
import pytest

from blurnet_jax.data import pipeline


def _data(n=50):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  return images, np.arange(n) % 18


def test_train_batches_deterministic_and_float():
  images, labels = _data()
  a = pipeline.train_batches(images, labels, batch_size=8, seed=3)
  b = pipeline.train_batches(images, labels, batch_size=8, seed=3)
  for _ in range(9):  # crosses an epoch boundary (6 batches per epoch)
    (xa, ya), (xb, yb) = next(a), next(b)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
  assert xa.dtype == np.float32 and ya.dtype == np.int32
  assert xa.shape == (8, 32, 32, 3) and 0 <= xa.min() and xa.max() <= 1
  c = next(pipeline.train_batches(images, labels, batch_size=8, seed=4))
  assert not np.array_equal(c[1], next(pipeline.train_batches(
      images, labels, batch_size=8, seed=3))[1])


def test_epoch_is_a_permutation_and_images_match_labels():
  images, labels = _data(48)
  it = pipeline.train_batches(images, labels, batch_size=8, seed=0)
  seen = []
  for _ in range(6):
    x, y = next(it)
    idx = [int(np.flatnonzero((images == np.rint(xi * 255)).all((1, 2, 3)))[0])
           for xi in x]
    np.testing.assert_array_equal(labels[idx], y)
    seen += idx
  assert sorted(seen) == list(range(48))


def test_resume_gives_the_same_batches():
  images, labels = _data()
  full = pipeline.train_batches(images, labels, batch_size=8, seed=1)
  batches = [next(full) for _ in range(15)]
  resumed = pipeline.train_batches(images, labels, batch_size=8, seed=1,
                                   start_step=11)
  for want in batches[11:]:
    got = next(resumed)
    np.testing.assert_array_equal(got[0], want[0])


def test_eval_batches_cover_every_example_once_with_mask():
  images, labels = _data(21)
  seen, total = [], 0.0
  for x, y, mask in pipeline.eval_batches(images, labels, batch_size=8):
    assert x.shape == (8, 32, 32, 3)
    seen += y[mask > 0].tolist()
    total += mask.sum()
  assert total == 21 and seen == labels.tolist()


def test_augment_is_keyed_bounded_and_shifts():
  rng = np.random.default_rng(0)
  x = rng.random((16, 32, 32, 3), np.float32)
  a = pipeline.augment(jax.random.key(0), x)
  b = pipeline.augment(jax.random.key(0), x)
  c = pipeline.augment(jax.random.key(1), x)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
  # Without photometric jitter, every output is a crop of the edge-padded
  # input shifted by at most 2 pixels.
  s = np.asarray(pipeline.augment(jax.random.key(2), x, brightness=0.0,
                                  contrast=0.0))
  padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
  for i in range(16):
    assert any(np.allclose(s[i], padded[i, dy:dy + 32, dx:dx + 32], atol=1e-6)
               for dy in range(5) for dx in range(5))


@pytest.mark.parametrize("bad", [
    dict(images=np.zeros((4, 16, 16, 3), np.uint8)),
    dict(labels=np.zeros(3)),
    dict(batch_size=0),
    dict(batch_size=100),
])
def test_bad_input(bad):
  images, labels = _data(10)
  kw = dict(images=images, labels=labels, batch_size=4, seed=0) | bad
  with pytest.raises(ValueError, match="images|labels|batch_size"):
    next(pipeline.train_batches(**kw))
