"""Batches for training and evaluation, as numpy arrays.

Batches are (images float32 (B, 32, 32, 3) in [0, 1], labels int32 (B,)),
built in numpy (light augmentation, `augment`, runs on device in the step),
ready for `jax.device_put` with any sharding whose device count divides B.
Epoch e is shuffled by a generator seeded with (seed, e), so the same seed
gives the same batches, and a run resumed at step s gets exactly the batches
an uninterrupted run would have seen from step s on.
"""

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from blurnet_jax.data.common import to_float


def _check(images: np.ndarray, labels: np.ndarray, batch_size: int):
  if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
    raise ValueError(f"images must be (N, 32, 32, 3), got {images.shape}")
  if labels.shape != images.shape[:1]:
    raise ValueError(f"labels {labels.shape} do not match images "
                     f"{images.shape[:1]}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def augment(rng: jax.Array, images: jax.Array, *, max_shift: int = 2,
            brightness: float = 0.1, contrast: float = 0.1) -> jax.Array:
  """Light on-device augmentation: translation (edge padding), brightness,
  contrast. Pure and jittable; `train_step` applies it with the step's key.

  Args:
    rng: a PRNG key.
    images: float32 (B, 32, 32, 3) in [0, 1].
  Returns:
    float32 (B, 32, 32, 3) in [0, 1].
  """
  b, h, w, c = images.shape
  k_shift, k_gain, k_bias = jax.random.split(rng, 3)
  p = max_shift
  padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), mode="edge")
  shifts = jax.random.randint(k_shift, (b, 2), 0, 2 * p + 1)
  crop = lambda img, s: jax.lax.dynamic_slice(img, (s[0], s[1], 0), (h, w, c))
  images = jax.vmap(crop)(padded, shifts)
  gain = 1 + jax.random.uniform(k_gain, (b, 1, 1, 1), minval=-contrast,
                                maxval=contrast)
  bias = jax.random.uniform(k_bias, (b, 1, 1, 1), minval=-brightness,
                            maxval=brightness)
  mean = images.mean(axis=(1, 2, 3), keepdims=True)
  return jnp.clip((images - mean) * gain + mean + bias, 0.0, 1.0)


def train_batches(images: np.ndarray, labels: np.ndarray, *, batch_size: int,
                  seed: int, start_step: int = 0,
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Endless shuffled batches; each epoch drops its last partial batch.

  Args:
    images: uint8 (N, 32, 32, 3) (or float32 in [0, 1]).
    labels: int (N,).
    batch_size: examples per batch (<= N).
    seed: fixes every epoch's order.
    start_step: the first batch yielded is the one an uninterrupted run
      would see at this step (resuming).
  """
  _check(images, labels, batch_size)
  n = images.shape[0]
  per_epoch = n // batch_size
  if per_epoch == 0:
    raise ValueError(f"batch_size {batch_size} exceeds the {n} examples")
  step = start_step
  while True:
    epoch, offset = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    idx = order[offset * batch_size:(offset + 1) * batch_size]
    x = to_float(images[idx]) if images.dtype == np.uint8 else images[idx]
    yield x, labels[idx].astype(np.int32)
    step += 1


def eval_batches(images: np.ndarray, labels: np.ndarray, *, batch_size: int,
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Every example once, in order, as fixed-size batches.

  The last batch is padded by repeating example 0, with a float32 mask (B,)
  that is 0 on the padding, so a jitted eval step compiles once.
  """
  _check(images, labels, batch_size)
  n = images.shape[0]
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size)
    mask = (idx < n).astype(np.float32)
    idx = np.where(idx < n, idx, 0)
    x = to_float(images[idx]) if images.dtype == np.uint8 else images[idx]
    yield x, labels[idx].astype(np.int32), mask
