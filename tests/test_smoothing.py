"""Derandomized column smoothing: the ablation encoding, the vote against
hand counts, and the certificate against a brute-force adversary."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from blurnet_jax import models
from blurnet_jax.data.masks import get_mask
from blurnet_jax.defences import smoothing
from blurnet_jax.defences import (ablate_columns, certified, column_votes,
                                  patch_width, random_ablation,
                                  smoothed_apply_fn, smoothed_predict)

W = 32


def _images(n=2, seed=0):
  return np.random.default_rng(seed).uniform(
      0.05, 0.95, (n, 32, 32, 3)).astype(np.float32)


def _kept(ablated):
  """(N, W) bool, from the encoding alone: x + (1 - x) = 1 where kept."""
  total = np.asarray(ablated[..., :3] + ablated[..., 3:])
  return np.all(np.isclose(total, 1.0), axis=(1, 3))


def test_ablation_keeps_a_wrapping_band_encoded_on_six_channels():
  x = _images(1)
  out = np.asarray(ablate_columns(x, 30, 4))
  assert out.shape == (1, 32, 32, 6) and out.dtype == np.float32
  kept = [30, 31, 0, 1]
  ablated = [c for c in range(W) if c not in kept]
  np.testing.assert_array_equal(out[0][:, kept, :3], x[0][:, kept])
  np.testing.assert_allclose(out[0][:, kept, 3:], 1 - x[0][:, kept])
  assert np.all(out[0][:, ablated] == 0)
  # A black pixel reads (0, 1), an ablated one (0, 0).
  black = ablate_columns(np.zeros((1, 32, 32, 3), np.float32), 0, 1)
  assert np.all(np.asarray(black)[0, :, 0] == [0, 0, 0, 1, 1, 1])
  # start modulo W, and one start per image.
  np.testing.assert_array_equal(np.asarray(ablate_columns(x, -2, 4)), out)
  two = np.asarray(ablate_columns(_images(2), jnp.array([30, 5]), 4))
  assert _kept(two)[0].nonzero()[0].tolist() == [0, 1, 30, 31]
  assert _kept(two)[1].nonzero()[0].tolist() == [5, 6, 7, 8]


def test_ablation_rejects_bad_arguments():
  x = _images(2)
  with pytest.raises(ValueError, match="band"):
    ablate_columns(x, 0, 33)
  with pytest.raises(ValueError, match="start"):
    ablate_columns(x, jnp.array([1, 2, 3]), 4)
  with pytest.raises(ValueError, match="start"):
    ablate_columns(x, 1.5, 4)


def test_random_ablation_draws_one_band_per_image_from_the_key():
  x = _images(16)
  out = random_ablation(jax.random.key(0), x, 3)
  np.testing.assert_array_equal(
      np.asarray(out), np.asarray(random_ablation(jax.random.key(0), x, 3)))
  kept = _kept(out)
  assert np.all(kept.sum(1) == 3)
  starts = set()
  for row in kept:
    (start,) = [c for c in range(W) if row[c] and not row[c - 1]]
    assert row[(start + 1) % W] and row[(start + 2) % W]
    starts.add(start)
  assert len(starts) > 4
  other = random_ablation(jax.random.key(1), x, 3)
  assert not np.array_equal(np.asarray(other), np.asarray(out))


def _fake_base(params, x6):
  """A base classifier of kept columns: class 0 when column 0 is kept
  (logit 10), class 1 when column 10 is (logit 5), class 2 by the kept
  pixels' brightness (logit 1 + 20 x mean x over kept pixels)."""
  kept = jnp.all(jnp.isclose(x6[..., :3] + x6[..., 3:], 1.0), axis=(1, 3))
  kept = kept.astype(jnp.float32)  # (M, W)
  brightness = (x6[..., :3].sum(axis=(1, 2, 3))
                / (3 * 32 * kept.sum(-1)))
  return jnp.stack([params["a"] * kept[:, 0], params["b"] * kept[:, 10],
                    1.0 + 20.0 * brightness], axis=-1)


_FAKE_PARAMS = {"a": jnp.float32(10.0), "b": jnp.float32(5.0)}


def test_column_votes_against_hand_counts():
  bright, dark = np.ones((32, 32, 3), np.float32), np.zeros(
      (32, 32, 3), np.float32)
  x = np.stack([bright, dark])
  # band 4: starts 29, 30, 31, 0 keep column 0; starts 7..10 keep column
  # 10; the other 24 see neither. Bright: class 2's logit 20 beats both.
  counts = column_votes(_fake_base, _FAKE_PARAMS, x, 4, 3)
  assert counts.dtype == jnp.int32
  assert np.asarray(counts).tolist() == [[0, 0, 32], [4, 4, 24]]
  # band 11: starts 22..31 and 0 keep column 0 (11; start 0 keeps both,
  # class 0 wins), starts 1..10 keep column 10 alone (10), 11 see neither.
  counts = column_votes(_fake_base, _FAKE_PARAMS, x[1:], 11, 3)
  assert np.asarray(counts).tolist() == [[11, 10, 11]]
  assert np.asarray(smoothed_predict(counts)).tolist() == [0]  # tie -> 0
  jitted = jax.jit(column_votes, static_argnums=(0, 3, 4))
  assert np.asarray(jitted(_fake_base, _FAKE_PARAMS, x, 4, 3)).tolist() == [
      [0, 0, 32], [4, 4, 24]]
  with pytest.raises(ValueError, match="num_classes"):
    column_votes(_fake_base, _FAKE_PARAMS, x, 4, 5)


def test_smoothed_predict_breaks_ties_to_the_smaller_class():
  counts = jnp.array([[3, 5, 5], [2, 2, 0], [0, 1, 9]], jnp.int32)
  assert np.asarray(smoothed_predict(counts)).tolist() == [1, 0, 2]
  with pytest.raises(ValueError, match="column_votes"):
    smoothed_predict(jnp.ones((2, 3), jnp.float32))


def test_smoothed_apply_fn_returns_the_votes():
  f = smoothed_apply_fn(_fake_base, 11, 3)
  assert f is smoothed_apply_fn(_fake_base, 11, 3)
  x = np.stack([np.zeros((32, 32, 3), np.float32), _images(1)[0]])
  scores = f(_FAKE_PARAMS, x)
  assert scores.dtype == jnp.float32
  counts = column_votes(_fake_base, _FAKE_PARAMS, x, 11, 3)
  np.testing.assert_array_equal(np.asarray(scores), np.asarray(counts))
  np.testing.assert_array_equal(np.asarray(jnp.argmax(scores, -1)),
                                np.asarray(smoothed_predict(counts)))


@pytest.mark.parametrize("first, width, band", [
    (12, 5, 4), (30, 4, 3), (0, 1, 1), (7, 10, 6), (31, 1, 32)])
def test_a_patch_is_seen_by_patch_width_plus_band_minus_one_positions(
    first, width, band):
  patch = [(first + i) % W for i in range(width)]
  ones = np.ones((1, 32, 32, 3), np.float32)
  seen = sum(bool(_kept(ablate_columns(ones, s, band))[0, patch].any())
             for s in range(W))
  assert seen == min(width + band - 1, W)


def _predict(counts):
  return int(np.argmax(counts))  # the first maximum: the smaller class


def _attackable(preds, delta, num_classes):
  """Whether reassigning the votes of some `delta` cyclically consecutive
  positions to any classes changes the smoothed class (exhaustive)."""
  columns = len(preds)
  base = _predict(np.bincount(preds, minlength=num_classes))
  touched = min(delta, columns)
  for start in range(columns if touched < columns else 1):
    window = [(start + i) % columns for i in range(touched)]
    for classes in itertools.product(range(num_classes), repeat=touched):
      changed = preds.copy()
      changed[window] = classes
      if _predict(np.bincount(changed, minlength=num_classes)) != base:
        return True
  return False


def _has_run(preds, cls, delta):
  """Some `delta` cyclically consecutive positions all vote `cls`."""
  columns = len(preds)
  return delta <= columns and any(
      all(preds[(s + i) % columns] == cls for i in range(delta))
      for s in range(columns))


@pytest.mark.parametrize("width, band", [(1, 2), (2, 2), (1, 1)])
def test_certificate_against_a_brute_force_adversary(width, band):
  """8 positions, 3 classes: a certified image is never attackable; when
  Delta adjacent positions vote for the winner, the certificate is exact."""
  columns, num_classes = 8, 3
  delta = width + band - 1
  rng = np.random.default_rng(width * 10 + band)
  preds = []
  for _ in range(400):
    p = rng.dirichlet(np.full(num_classes, 0.5))
    preds.append(rng.choice(num_classes, columns, p=p))
  counts = jnp.asarray(np.stack([np.bincount(p, minlength=num_classes)
                                 for p in preds]), jnp.int32)
  got = np.asarray(certified(counts, width, band))
  top = np.asarray(smoothed_predict(counts))
  tight = {True: 0, False: 0}
  for p, cert, cls in zip(preds, got, top):
    attackable = _attackable(p, delta, num_classes)
    if cert:
      assert not attackable, (p, delta)
    if _has_run(p, cls, delta):
      assert cert == (not attackable), (p, delta)
      tight[bool(cert)] += 1
  assert tight[True] > 10 and tight[False] > 10, tight


def test_certificate_tie_rule_by_hand():
  # Delta = 2: the margin needed is 4, or 5 when the runner-up has the
  # smaller index (it would win a tie).
  counts = jnp.array([[5, 1, 0], [1, 5, 0], [1, 6, 0], [4, 1, 1],
                      [0, 4, 4], [8, 0, 0]], jnp.int32)
  assert np.asarray(certified(counts, 1, 2)).tolist() == [
      True, False, True, False, False, True]
  with pytest.raises(ValueError, match="num_classes >= 2"):
    certified(jnp.array([[8]], jnp.int32), 1, 2)
  with pytest.raises(ValueError, match="patch_width"):
    certified(counts, 0, 2)


def _binned_base(params, x6):
  """Votes by the kept pixels' mean brightness: class 0 near 0.1, 1 near
  0.5, 2 near 0.9."""
  kept = jnp.isclose(x6[..., :3] + x6[..., 3:], 1.0)
  brightness = x6[..., :3].sum(axis=(1, 2, 3)) / kept.sum(axis=(1, 2, 3))
  return -(brightness[:, None] - params["centres"]) ** 2


def test_a_certified_image_keeps_its_class_under_any_patch():
  """End to end: patches of random colours on columns 14..16 change the
  votes of the bands that see them, at most Delta of them, and never the
  class of the certified image."""
  band, width = 4, 3
  delta = width + band - 1
  params = {"centres": jnp.array([0.1, 0.5, 0.9])}
  clean = np.full((1, 32, 32, 3), 0.45, np.float32)
  clean[0, :, 27:] = 0.95  # the bands over columns 27..31 vote class 2
  patched = np.repeat(clean, 32, axis=0)
  colours = np.random.default_rng(5).uniform(0, 1, 32).astype(np.float32)
  patched[:, :, 14:17] = colours[:, None, None, None]
  counts = np.asarray(column_votes(_binned_base, params, clean, band, 3))
  assert bool(certified(counts, width, band)[0])
  after = np.asarray(column_votes(_binned_base, params, patched, band, 3))
  moved = np.abs(after - counts).sum(-1) // 2  # votes that changed class
  assert moved.max() <= delta and moved.max() >= 3
  assert np.all(np.asarray(smoothed_predict(after))
                == int(smoothed_predict(counts)[0]))


def test_patch_width_of_the_camouflage_stickers():
  # The stickers' columns (masks._CAMOUFLAGE_RECTS, left and width):
  # 8..11, 15..16, 21..22, 11..12, 18..21: first 8, last 22, 15 columns.
  for channels in (1, 3):
    mask = get_mask("camouflage", channels=channels)
    columns = np.flatnonzero(mask.any(axis=(0, 2)))
    assert columns[0] == 8 and columns[-1] == 22
    assert patch_width(mask) == 15
  mask = np.zeros((32, 32, 1), np.float32)
  mask[4, 3] = mask[20, 7] = 1
  assert patch_width(mask) == 5
  with pytest.raises(ValueError, match="no column"):
    patch_width(np.zeros((32, 32, 1)))
  with pytest.raises(ValueError, match="get_mask"):
    patch_width(np.ones((32, 32)))


def test_a_six_channel_lisacnn_is_a_base_classifier_of_the_vote():
  model = models.LisaCNN(input_channels=6)
  params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 6)))["params"]
  assert params["conv1"]["kernel"].shape == (8, 8, 6, 64)
  images = jax.random.uniform(jax.random.key(1), (3, 32, 32, 3))
  counts = smoothing.column_votes(models.apply_fn_for(model), params, images,
                                  4, model.num_classes)
  # Every one of the 32 band positions votes once per image.
  np.testing.assert_array_equal(np.asarray(counts).sum(1), [32] * 3)
  with pytest.raises(ValueError, match=r"\(N, 32, 32, 6\)"):
    model.apply({"params": params}, images)  # RGB is not its input
