"""How well an RP2 perturbation works: success against the clean
predictions or a target, L2 dissimilarity, and success under fresh random
transforms (the physical test)."""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp

from blurnet_jax.models import ApplyFn
from blurnet_jax.attacks.checks import (check_images, check_target,
                                        num_outputs)
from blurnet_jax.attacks.transforms import TransformConfig, random_transform


def attack_success_rate(clean_pred: jax.typing.ArrayLike,
                        adv_pred: jax.typing.ArrayLike) -> jax.Array:
  """`1/N sum 1[F(x_n) != F(x_adv_n)]` from (N,) predicted classes."""
  clean_pred, adv_pred = jnp.asarray(clean_pred), jnp.asarray(adv_pred)
  if clean_pred.shape != adv_pred.shape or clean_pred.ndim != 1:
    raise ValueError(
        f"clean_pred {clean_pred.shape} and adv_pred {adv_pred.shape} must be "
        "equal (N,) vectors of predicted classes; argmax the logits first.")
  return jnp.mean((clean_pred != adv_pred).astype(jnp.float32))


def targeted_success(adv_pred: jax.typing.ArrayLike,
                     target: Any) -> jax.Array:
  """Fraction of the (N,) predictions equal to `target`."""
  adv_pred = jnp.asarray(adv_pred)
  if adv_pred.ndim != 1:
    raise ValueError(
        f"adv_pred must be an (N,) vector of classes, got {adv_pred.shape}; "
        "argmax the logits first.")
  check_target(target)
  return jnp.mean((adv_pred == target).astype(jnp.float32))


def l2_dissimilarity(x: jax.typing.ArrayLike,
                     x_adv: jax.typing.ArrayLike) -> jax.Array:
  """`1/N sum ||x_n - x_adv_n||_2 / ||x_adv_n||_2` over (N, H, W, C) batches."""
  x = jnp.asarray(x, jnp.float32)
  x_adv = jnp.asarray(x_adv, jnp.float32)
  if x.shape != x_adv.shape or x.ndim < 2:
    raise ValueError(
        f"x {x.shape} and x_adv {x_adv.shape} must be batches of the same "
        "shape (N, ...).")
  axes = tuple(range(1, x.ndim))
  num = jnp.sqrt(jnp.sum((x - x_adv) ** 2, axis=axes))
  den = jnp.sqrt(jnp.sum(x_adv**2, axis=axes))
  return jnp.mean(num / den)


def predictions_under_transforms(key: jax.typing.ArrayLike,
                                 apply_fn: ApplyFn, params: Any,
                                 images: jax.typing.ArrayLike, *,
                                 transforms: TransformConfig,
                                 num_samples: int = 10) -> jax.Array:
  """Classes of `num_samples` fresh random transforms of every image.

  Sample k transforms every image (sign and sticker together, as a camera
  sees them) with `fold_in(key, k)`.

  Returns:
    int32 (num_samples, N) predicted classes.
  """
  images = jnp.asarray(images, jnp.float32)
  check_images(images, "adversarial")
  if not (isinstance(num_samples, numbers.Integral) and num_samples >= 1):
    raise ValueError(f"num_samples={num_samples!r} must be an int >= 1.")

  def one(k):
    x = random_transform(jax.random.fold_in(key, k), images, transforms)
    return jnp.argmax(apply_fn(params, x), axis=-1)

  return jax.lax.map(one, jnp.arange(num_samples))


def success_under_transforms(key: jax.typing.ArrayLike, apply_fn: ApplyFn,
                             params: Any, adversarial: jax.typing.ArrayLike,
                             target: Any, *,
                             transforms: TransformConfig,
                             num_samples: int = 10,
                             targeted: bool = True) -> jax.Array:
  """Success of perturbed images under `num_samples` fresh random transforms.

  See `predictions_under_transforms` for the draws.

  Args:
    key: PRNG key.
    apply_fn: `apply_fn(params, images) -> logits`.
    params: the model parameters.
    adversarial: (N, 32, 32, 3) perturbed images.
    target: the target class (targeted) or the true class (untargeted).
    transforms: the transform ranges.
    num_samples: K.
    targeted: count predictions == target (True) or != target (False).

  Returns:
    float32 scalar: the fraction of the K * N transformed images that the
    attack fools.
  """
  check_target(target, num_classes=num_outputs(apply_fn, params))
  pred = predictions_under_transforms(key, apply_fn, params, adversarial,
                                      transforms=transforms,
                                      num_samples=num_samples)
  hit = pred == target if targeted else pred != target
  return jnp.mean(hit.astype(jnp.float32))
