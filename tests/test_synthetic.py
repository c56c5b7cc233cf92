"""Tests of the synthetic sign generator and the synthetic_signs builder."""

import jax
import numpy as np
import pytest

from blurnet_jax.classes import NUM_CLASSES, STOP
from blurnet_jax.data import datasets
from blurnet_jax.data import synthetic

SPEED_LIMIT_30 = 10


def _split(per_class, seed=0, split="train", workers=None):
  chunks = list(synthetic.generate_split(per_class, seed=seed, split=split,
                                         workers=workers))
  return (np.concatenate([images for images, _ in chunks]),
          np.concatenate([labels for _, labels in chunks]))


def _redness(images: np.ndarray) -> float:
  """Mean of R - (G + B) / 2 over the central 16x16 pixels, images in [0, 1]."""
  centre = images[:, 8:24, 8:24].astype(np.float32)
  return float((centre[..., 0] - (centre[..., 1] + centre[..., 2]) / 2).mean())


# ---------------------------------------------------------------- splits


def test_same_seed_same_bytes_other_seed_other_bytes():
  a, _ = _split(2, seed=0)
  b, _ = _split(2, seed=0)
  c, _ = _split(2, seed=1)
  np.testing.assert_array_equal(a, b)
  assert (a != c).mean() > 0.5
  test, _ = _split(2, seed=0, split="test")
  assert (a != test).mean() > 0.5  # splits are rendered from other keys


def test_bytes_do_not_depend_on_workers():
  per_class = synthetic.CHUNK // NUM_CLASSES + 2  # two chunks, one short
  one, labels_one = _split(per_class, workers=1)
  two, labels_two = _split(per_class, workers=2)
  assert one.shape[0] == per_class * NUM_CLASSES > synthetic.CHUNK
  np.testing.assert_array_equal(one, two)
  np.testing.assert_array_equal(labels_one, labels_two)


def test_chunk_c_is_rendered_from_its_folded_key():
  per_class = synthetic.CHUNK // NUM_CLASSES + 2
  images, labels = _split(per_class, seed=3, split="test")
  key = jax.random.fold_in(jax.random.key(3), synthetic.SPLITS["test"])
  np.testing.assert_array_equal(images, synthetic.render(labels, key))
  # A prefix of the labels renders the same prefix of images.
  np.testing.assert_array_equal(images[:20],
                                synthetic.render(labels[:20], key))


def test_labels_balanced_dtypes_and_shapes():
  chunks = list(synthetic.generate_split(3, seed=0, split="train"))
  assert len(chunks) == 1
  images, labels = chunks[0]
  assert images.shape == (3 * NUM_CLASSES, 32, 32, 3)
  assert images.dtype == np.uint8
  assert labels.dtype == np.int64
  np.testing.assert_array_equal(labels,
                                np.arange(3 * NUM_CLASSES) % NUM_CLASSES)


def test_images_use_the_value_range():
  images, _ = _split(4)
  flat = images.reshape(images.shape[0], -1).astype(np.float32)
  std = flat.std(axis=1)
  assert (std > 8).mean() > 0.9, np.percentile(std, [0, 10, 50])
  assert 50 < flat.mean() < 180
  assert (flat.min(axis=1) < 60).mean() > 0.5  # dark pixels somewhere ...
  assert (flat.max(axis=1) > 180).mean() > 0.5  # ... and bright ones
  assert flat.min() == 0 and flat.max() == 255


def test_stop_signs_are_red_speed_limit_plates_are_not():
  # A stop sign is red (red above the mean of green and blue), a speed-limit
  # plate is white and black (no red excess). Swapped or lost colours fail.
  victims = synthetic.synthetic_victims(40, seed=0)
  plates = synthetic.render(np.full(64, SPEED_LIMIT_30),
                            jax.random.key(0)) / 255.0
  stops = synthetic.render(np.full(64, STOP), jax.random.key(0)) / 255.0
  assert _redness(victims) > 0.1
  assert _redness(stops) > 0.1
  assert abs(_redness(plates)) < 0.05


# ---------------------------------------------------------------- render


def test_render_accepts_keys_key_data_and_generators():
  labels = np.arange(NUM_CLASSES)
  key = jax.random.key(7)
  from_key = synthetic.render(labels, key)
  np.testing.assert_array_equal(
      from_key, synthetic.render(labels, jax.random.key_data(key)))
  a = synthetic.render(labels, np.random.default_rng(7))
  b = synthetic.render(labels, np.random.default_rng(7))
  np.testing.assert_array_equal(a, b)
  assert from_key.shape == (NUM_CLASSES, 32, 32, 3)
  assert from_key.dtype == np.uint8


# ---------------------------------------------------------------- victims


def test_victims_float_in_unit_range_and_prefix_stable():
  victims = synthetic.synthetic_victims(40, seed=0)
  assert victims.shape == (40, 32, 32, 3)
  assert victims.dtype == np.float32
  assert 0.0 <= victims.min() and victims.max() <= 1.0
  np.testing.assert_array_equal(synthetic.synthetic_victims(10, seed=0),
                                victims[:10])
  assert (synthetic.synthetic_victims(10, seed=1) != victims[:10]).mean() > 0.5


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("labels, match", [
    (np.array([0, NUM_CLASSES]), r"labels must lie in 0\.\.17"),
    (np.array([-1, 3]), r"labels must lie in 0\.\.17"),
    (np.array([], np.int64), "non-empty 1-d"),
    (np.zeros((2, 2), np.int64), "non-empty 1-d"),
    (np.array([0.5, 1.0]), "must be integers"),
])
def test_render_rejects_bad_labels(labels, match):
  with pytest.raises(ValueError, match=match):
    synthetic.render(labels, jax.random.key(0))


def test_render_rejects_bad_keys_and_workers():
  with pytest.raises(ValueError, match="PRNG key or np.random.Generator"):
    synthetic.render(np.arange(3), 0)
  with pytest.raises(ValueError, match="workers must be"):
    synthetic.render(np.arange(3), jax.random.key(0), workers=0)


def test_generate_split_rejects_bad_arguments():
  with pytest.raises(ValueError, match="unknown split 'validation'"):
    next(synthetic.generate_split(1, seed=0, split="validation"))
  with pytest.raises(ValueError, match="num_per_class must be an integer >= 1"):
    next(synthetic.generate_split(0, seed=0, split="train"))
  with pytest.raises(ValueError, match="workers must be"):
    next(synthetic.generate_split(1, seed=0, split="train", workers=-1))
  with pytest.raises(ValueError, match="at least one victim"):
    synthetic.synthetic_victims(0)


# ---------------------------------------------------------------- builder


def test_prepare_synthetic_round_trips(tmp_path):
  builder = datasets.prepare_synthetic(tmp_path, train_per_class=3,
                                       test_per_class=2, seed=0)
  for split, per_class in (("train", 3), ("test", 2)):
    images, labels = datasets.load_split(builder, split)
    assert images.shape == (per_class * NUM_CLASSES, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(labels, minlength=NUM_CLASSES),
                                  np.full(NUM_CLASSES, per_class))
    expected, expected_labels = _split(per_class, seed=0, split=split)
    # tfds shuffles the stored order by key: compare as multisets.
    stored = sorted(i.tobytes() + bytes([l]) for i, l in zip(images, labels))
    fresh = sorted(i.tobytes() + bytes([l])
                   for i, l in zip(expected, expected_labels))
    assert stored == fresh
