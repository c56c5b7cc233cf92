"""Input checks shared by every attack: one-line errors that name the fix.

Every attack takes `apply_fn(params, images) -> logits` (the convention of
the whole package, see `blurnet_jax`), float32 images (N, 32, 32, 3) in
[0, 1], masks (32, 32, 1|3) and integer class targets.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from blurnet_jax.classes import IMAGE_SHAPE, NUM_CLASSES
from blurnet_jax.models import ApplyFn



def num_outputs(apply_fn: ApplyFn, params: Any) -> int:
  """How many classes `apply_fn` answers (traced shapes only, no compute)."""
  shape = jax.eval_shape(apply_fn, params,
                         jax.ShapeDtypeStruct((1, *IMAGE_SHAPE), jnp.float32))
  return int(shape.shape[-1])


def check_target(target: Any, name: str = "target", *,
                 num_classes: int = NUM_CLASSES) -> None:
  """A class index: a Python int in [0, num_classes) or an integer scalar
  array (traced ones cannot be range-checked)."""
  if isinstance(target, bool):
    raise ValueError(f"{name}={target!r} is a bool; pass a class index "
                     f"in 0..{num_classes - 1}.")
  if isinstance(target, numbers.Integral):
    if not 0 <= int(target) < num_classes:
      raise ValueError(
          f"{name}={target} is out of range; pass a class index in "
          f"0..{num_classes - 1}.")
    return
  shape = getattr(target, "shape", None)
  dtype = getattr(target, "dtype", None)
  if shape is None or dtype is None or not jnp.issubdtype(dtype, jnp.integer):
    raise ValueError(
        f"{name} must be an int class index, got {type(target).__name__} "
        f"{dtype}; pass an int in 0..{num_classes - 1}.")
  if tuple(shape) != ():
    raise ValueError(
        f"{name} must be a scalar class index, got shape {tuple(shape)}; "
        "use jax.vmap over targets for several.")
  try:
    value = int(target)
  except (jax.errors.ConcretizationTypeError,
          jax.errors.TracerIntegerConversionError):
    return  # Traced (e.g. under vmap): the range cannot be checked here.
  if not 0 <= value < num_classes:
    raise ValueError(
        f"{name}={value} is out of range; pass a class index in "
        f"0..{num_classes - 1}.")


def check_mask(mask: jax.Array, num_images: int | None = None) -> None:
  """One mask (32, 32, 1|3) for every image, or one per image (N, 32, 32,
  1|3) when `num_images` (N) is given: a sticker placed on each victim's
  own sign box."""
  per_image = num_images is not None and mask.ndim == 4
  ok = mask.ndim == 3 or (per_image and mask.shape[0] == num_images)
  if ok:
    try:
      ok = np.broadcast_shapes(mask.shape[-3:], IMAGE_SHAPE) == IMAGE_SHAPE
    except ValueError:
      ok = False
  if not ok:
    per = (f" or ({num_images}, 32, 32, 1|3), one per image"
           if num_images is not None else "")
    raise ValueError(
        f"mask must have shape (32, 32, 1) or (32, 32, 3){per}, got "
        f"{mask.shape}; load it with blurnet_jax.data.masks.get_mask.")


def check_noise(noise: jax.Array) -> None:
  if tuple(noise.shape) != IMAGE_SHAPE:
    raise ValueError(
        f"noise must have shape {IMAGE_SHAPE}, got {noise.shape}; build it "
        "with init_noise(key, (32, 32, 3), cfg).")


def check_colors(colors: np.ndarray, name: str) -> None:
  if colors.ndim != 2 or colors.shape[1] != 3 or not len(colors):
    raise ValueError(
        f"{name} must be a non-empty (K, 3) list of RGB triplets, got shape "
        f"{colors.shape}.")
  if not np.all(np.isfinite(colors)) or colors.min() < 0 or colors.max() > 1:
    raise ValueError(f"{name} holds values outside [0, 1]; give RGB in [0, 1].")


def check_images(images: jax.Array, name: str = "images") -> None:
  """Raises ValueError unless `images` is (N, 32, 32, 3)."""
  if images.ndim != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE:
    h, w, c = IMAGE_SHAPE
    raise ValueError(
        f"{name} must have shape (N, {h}, {w}, {c}), got {images.shape}; "
        "add the batch axis or resize to 32x32 RGB.")
