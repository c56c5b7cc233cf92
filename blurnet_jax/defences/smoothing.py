"""Derandomized column smoothing, a certified defence against patches
(Levine & Feizi, NeurIPS 2020, "(De)Randomized Smoothing for Certifiable
Defense against Patch Attacks").

A base classifier sees the image through a band of `band` adjacent columns
(wrapping around the right edge), every other pixel ablated. The smoothed
classifier runs it on all W = 32 band positions and predicts the class with
the most votes. A patch `m` columns wide lies in the band of exactly
Delta = m + band - 1 positions, so it can change at most Delta votes,
whatever its pixels: `certified` turns that into a per-image certificate.

  x6 = random_ablation(key, images, band=4)       # train the base on these
  counts = column_votes(apply_fn, params, images, band=4, num_classes=18)
  classes = smoothed_predict(counts)
  safe = certified(counts, patch_width(mask), band=4)
  soft = soft_vote_apply_fn(apply_fn, band=4)     # adaptive attacks' vote

The base classifier takes (M, 32, 32, 6) images (`ablate_columns`' encoding)
and returns (M, num_classes) logits: `models.LisaCNN(input_channels=6)`
(conv1 then has a (8, 8, 6, 64) kernel; the rest of the network is the
RGB model's).
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from blurnet_jax.models import ApplyFn


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
  bad = isinstance(value, bool) or not isinstance(value, numbers.Integral)
  if bad or value < low or (high is not None and value > high):
    upper = f"..{high}" if high is not None else " or more"
    raise ValueError(f"{name}={value!r} must be an int in {low}{upper}.")
  return int(value)


def _images(images) -> jax.Array:
  images = jnp.asarray(images, jnp.float32)
  if images.ndim != 4:
    raise ValueError(f"images must have shape (N, H, W, C), got "
                     f"{images.shape}; add the batch axis.")
  return images


def ablate_columns(images: jax.typing.ArrayLike, start: Any,
                   band: int) -> jax.Array:
  """Keeps columns `start .. start + band - 1` (modulo the width), ablates
  the rest, and encodes the result on 2C channels.

  A kept pixel x becomes (x, 1 - x); an ablated one is 0 on every channel,
  the paper's encoding, so that the base classifier can tell an ablated
  pixel from a black one (which reads (0, 1)). Jittable; `start` may be
  traced.

  Args:
    images: (N, H, W, C) in [0, 1].
    start: the first kept column, an int or an (N,) int vector (one per
      image), taken modulo W.
    band: kept columns, 1..W.

  Returns:
    (N, H, W, 2C) float32: channels [x, 1 - x] on kept columns, 0 elsewhere.
  """
  images = _images(images)
  n, _, w, _ = images.shape
  band = _check_int("band", band, 1, w)
  start = jnp.asarray(start)
  if not jnp.issubdtype(start.dtype, jnp.integer) or start.shape not in (
      (), (n,)):
    raise ValueError(f"start must be an int or an int vector of {n} columns, "
                     f"got {start.dtype} {start.shape}.")
  start = jnp.broadcast_to(start, (n,))
  keep = (jnp.arange(w)[None] - start[:, None]) % w < band  # (N, W)
  keep = keep[:, None, :, None].astype(jnp.float32)
  return jnp.concatenate([images * keep, (1.0 - images) * keep], axis=-1)


def random_ablation(key: jax.typing.ArrayLike, images: jax.typing.ArrayLike,
                    band: int) -> jax.Array:
  """`ablate_columns` at one uniform random start per image (training
  augmentation for the base classifier).

  Args:
    key: PRNG key.
    images: (N, H, W, C) in [0, 1].
    band: kept columns, 1..W.

  Returns:
    (N, H, W, 2C) float32.
  """
  images = _images(images)
  n, _, w, _ = images.shape
  starts = jax.random.randint(key, (n,), 0, w)
  return ablate_columns(images, starts, band)


@functools.partial(jax.jit, static_argnames=("apply_fn", "band",
                                             "num_classes"))
def _votes(apply_fn, params, images, band, num_classes):
  n, w = images.shape[0], images.shape[2]

  def body(counts, start):
    logits = apply_fn(params, ablate_columns(images, start, band))
    if logits.shape != (n, num_classes):
      raise ValueError(
          f"the base classifier returned logits {logits.shape}, expected "
          f"({n}, {num_classes}); pass its num_classes.")
    votes = jax.nn.one_hot(jnp.argmax(logits, -1), num_classes,
                           dtype=jnp.int32)
    return counts + votes, None

  counts, _ = jax.lax.scan(body, jnp.zeros((n, num_classes), jnp.int32),
                           jnp.arange(w))
  return counts


def column_votes(apply_fn: ApplyFn, params: Any,
                 images: jax.typing.ArrayLike, band: int,
                 num_classes: int) -> jax.Array:
  """The base classifier's votes over all W band positions.

  Position s shows the base classifier `ablate_columns(images, s, band)`
  and votes for its argmax class (the paper also lets a position abstain
  when its top score is under a threshold; here every position votes).
  The positions run in a `lax.scan`, one batch of N at a time; jittable,
  one compiled program per (apply_fn, band, num_classes) and input shape.

  Args:
    apply_fn: the base classifier, `apply_fn(params, (M, H, W, 2C)) ->
      (M, num_classes)` logits.
    params: its parameters.
    images: (N, H, W, C) in [0, 1].
    band: kept columns, 1..W.
    num_classes: the base classifier's outputs.

  Returns:
    (N, num_classes) int32 counts, each row summing to W.
  """
  images = _images(images)
  band = _check_int("band", band, 1, images.shape[2])
  num_classes = _check_int("num_classes", num_classes, 1)
  return _votes(apply_fn, params, images, band, num_classes)


def _check_counts(counts) -> jax.Array:
  counts = jnp.asarray(counts)
  if counts.ndim != 2 or not jnp.issubdtype(counts.dtype, jnp.integer):
    raise ValueError(f"counts must be (N, num_classes) ints, got "
                     f"{counts.dtype} {counts.shape}; use column_votes.")
  return counts


def smoothed_predict(counts: jax.typing.ArrayLike) -> jax.Array:
  """The smoothed class: most votes, ties to the smaller class index.

  Args:
    counts: (N, num_classes) int votes (`column_votes`).

  Returns:
    (N,) int32 classes.
  """
  return jnp.argmax(_check_counts(counts), axis=-1).astype(jnp.int32)


def certified(counts: jax.typing.ArrayLike, patch_width: int,
              band: int) -> jax.Array:
  """Whether no patch `patch_width` columns wide can change the smoothed
  class.

  The rule (Levine & Feizi 2020, column smoothing): a patch on columns
  a .. a + m - 1 shares a column with the band of start s exactly when
  s lies in a - band + 1 .. a + m - 1, so at most Delta = m + band - 1
  positions see it, and only their votes can change, each moving one vote
  from a class to another. The predicted class c then loses at most Delta
  votes and any other class c' gains at most Delta, so c still wins if
  n_c - Delta > n_c' + Delta, or if they tie and c < c' (the tie rule of
  `smoothed_predict`). Over all c' != c this is

    n_c >= n_c' + 2 Delta + [c' < c]   for every c' != c,

  which binds at the runner-up c2 (most votes among the others, ties to
  the smaller index): certified iff n_c >= n_c2 + 2 Delta, plus 1 when
  c2 < c. The rule is sufficient; it is also necessary when Delta adjacent
  positions (cyclically) all vote for c, as the patch may then move all
  of them to c2.

  Args:
    counts: (N, num_classes) int votes (`column_votes`), num_classes >= 2.
    patch_width: m, the columns a patch spans (`patch_width(mask)`), >= 1.
    band: the band width the votes were taken with, >= 1.

  Returns:
    (N,) bool.
  """
  counts = _check_counts(counts)
  if counts.shape[1] < 2:
    raise ValueError(f"counts hold {counts.shape[1]} class; certified needs "
                     "num_classes >= 2.")
  delta = (_check_int("patch_width", patch_width, 1)
           + _check_int("band", band, 1) - 1)
  top = jnp.argmax(counts, axis=-1)
  n_top = jnp.take_along_axis(counts, top[:, None], axis=-1)[:, 0]
  others = jnp.where(jax.nn.one_hot(top, counts.shape[1], dtype=bool), -1,
                     counts)
  second = jnp.argmax(others, axis=-1)
  n_second = jnp.take_along_axis(others, second[:, None], axis=-1)[:, 0]
  return n_top >= n_second + 2 * delta + (second < top)


def patch_width(mask: jax.typing.ArrayLike) -> int:
  """The width of the narrowest band of columns covering a sticker mask.

  The columns from the first to the last column that the mask touches,
  both included (not wrapping around the edge: a mask touching both the
  leftmost and the rightmost column spans the whole width).

  Args:
    mask: (H, W, C), nonzero where the sticker is.

  Returns:
    int >= 1.
  """
  mask = np.asarray(mask)
  if mask.ndim != 3:
    raise ValueError(f"mask must have shape (H, W, C), got {mask.shape}; "
                     "load it with blurnet_jax.data.masks.get_mask.")
  columns = np.flatnonzero(np.any(mask != 0, axis=(0, 2)))
  if not columns.size:
    raise ValueError("mask touches no column; pass a mask with a set pixel.")
  return int(columns[-1] - columns[0] + 1)


@functools.lru_cache(maxsize=None)
def _smoothed_apply_fn(apply_fn, band, num_classes):

  def apply(params, images):
    counts = column_votes(apply_fn, params, images, band, num_classes)
    return counts.astype(jnp.float32)

  return apply


def smoothed_apply_fn(apply_fn: ApplyFn, band: int,
                      num_classes: int) -> ApplyFn:
  """The smoothed classifier as an ApplyFn: its 'logits' are the vote
  counts (float32), for attacks aimed at the vote.

  Their argmax is `smoothed_predict`'s class: both take the first of tied
  maxima, i.e. the smaller class index (an attack's own tie handling may
  differ). The counts are piecewise constant in the image, so their
  gradient is zero: use score-based attacks (Square) or BPDA-style
  surrogates, not plain gradients. The same object for the same
  arguments, so jitted attacks compile once.

  Args:
    apply_fn: the base classifier on (M, H, W, 2C) ablated images.
    band: kept columns.
    num_classes: the base classifier's outputs.

  Returns:
    `apply(params, images (N, H, W, C)) -> (N, num_classes)` float32
    counts.
  """
  band = _check_int("band", band, 1)
  num_classes = _check_int("num_classes", num_classes, 1)
  return _smoothed_apply_fn(apply_fn, band, num_classes)


@functools.lru_cache(maxsize=None)
def _soft_vote_apply_fn(apply_fn, band):

  def apply(params, images):
    images = _images(images)
    w = images.shape[2]
    log_probs = jax.lax.map(  # (W, N, K), one band position at a time
        lambda s: jax.nn.log_softmax(
            apply_fn(params, ablate_columns(images, s, band))), jnp.arange(w))
    return jax.nn.logsumexp(log_probs, axis=0) - jnp.log(w)

  return apply


def soft_vote_apply_fn(apply_fn: ApplyFn, band: int) -> ApplyFn:
  """A differentiable stand-in for the vote, for adaptive gradient attacks:
  the log of the mean over the W band positions of the base classifier's
  softmax (the vote counts the argmax of each position instead).

  Where the base classifier is confident its softmax is near one-hot and
  the soft vote's argmax is the smoothed class. The positions run one after
  another (`lax.map`): the memory of one forward pass per position kept for
  the backward pass. The same object for the same arguments.

  Args:
    apply_fn: the base classifier on (M, H, W, 2C) ablated images.
    band: kept columns.

  Returns:
    `apply(params, images (N, H, W, C)) -> (N, num_classes)` float32 log
    mean probabilities.
  """
  return _soft_vote_apply_fn(apply_fn, _check_int("band", band, 1))
