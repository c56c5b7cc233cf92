"""The RP2 objective: the perturbed image and the loss one Adam step
descends (norm of the sticker + cross-entropy under random transforms +
optional non-printability)."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from blurnet_jax.models import ApplyFn
from blurnet_jax.attacks.checks import (check_images, check_mask,
                                        check_noise, check_target,
                                        num_outputs)
from blurnet_jax.attacks.rp2.config import RP2Config
from blurnet_jax.attacks.rp2.printability import nps
from blurnet_jax.attacks.transforms import random_transform
from blurnet_jax.classes import IMAGE_SHAPE


def checked_inputs(images, mask, noise=None):
  """float32 arrays of the attack inputs, shapes validated (noise optional)."""
  images = jnp.asarray(images, jnp.float32)
  mask = jnp.asarray(mask, jnp.float32)
  check_images(images)
  check_mask(mask, len(images))
  if noise is None:
    return images, mask
  noise = jnp.asarray(noise, jnp.float32)
  check_noise(noise)
  return images, mask, noise


def apply_perturbation(images: jax.typing.ArrayLike,
                       mask: jax.typing.ArrayLike,
                       noise: jax.typing.ArrayLike,
                       cfg: RP2Config = RP2Config()) -> jax.Array:
  """`clip(x + mask * clip(noise, -20, 20), 0, 1)`, the RP2 perturbed image.

  With `cfg.inverse_mask` the masked pixels are first replaced by
  `cfg.setpoint`: `x' = x * (1 - mask) + setpoint * mask`.

  Args:
    images: (N, 32, 32, 3) in [0, 1].
    mask: (32, 32, 1) or (32, 32, 3), 1 where the perturbation goes.
    noise: (32, 32, 3).
    cfg: supplies the clip ranges, `inverse_mask` and `setpoint`.

  Returns:
    float32 (N, 32, 32, 3).
  """
  images, mask, noise = checked_inputs(images, mask, noise)
  if cfg.inverse_mask:
    images = images * (1.0 - mask) + cfg.setpoint * mask
  noise = jnp.clip(noise, *cfg.noise_clip)
  return jnp.clip(images + mask * noise, *cfg.image_clip)


def _pnorm(x: jax.Array, p: float) -> jax.Array:
  """||x||_p over all entries, with a finite (zero) gradient at x = 0."""
  if math.isinf(p):
    return jnp.max(jnp.abs(x))
  s = jnp.sum(jnp.abs(x) ** p)
  safe = jnp.where(s > 0, s, 1.0)
  return jnp.where(s > 0, safe ** (1.0 / p), 0.0)


def _printed(noise: jax.Array, cfg: RP2Config) -> jax.Array:
  """The colours a printer must reproduce for `noise`, (32, 32, 3) in [0, 1].

  With `inverse_mask` the sticker replaces the sign, so its colour is
  `setpoint + noise`; otherwise the noise itself, clipped to the printable
  range. (Unclipped noise reaches +-20, where a product of K colour
  distances overflows float32.)
  """
  base = cfg.setpoint if cfg.inverse_mask else 0.0
  return jnp.broadcast_to(jnp.clip(base + noise, 0.0, 1.0), IMAGE_SHAPE)


def _cross_entropy(logits: jax.Array, label: jax.Array) -> jax.Array:
  labels = jnp.broadcast_to(label, logits.shape[:1])
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def loss_and_logits(noise, apply_fn, params, images, mask, target, key, cfg):
  """`rp2_loss` on checked inputs, as the loop differentiates it: (total,
  logits of the untransformed perturbed images or None)."""
  x_adv = apply_perturbation(images, mask, noise, cfg)
  if cfg.transforms.is_identity:
    batch = x_adv
  else:
    keys = jax.random.split(key, cfg.num_transforms)
    batch = jnp.concatenate(
        [random_transform(k, x_adv, cfg.transforms) for k in keys])
  logits = apply_fn(params, batch)
  ce = jnp.mean(_cross_entropy(logits, target))
  if not cfg.targeted:
    ce = -ce
  clipped = jnp.clip(noise, *cfg.noise_clip)
  # One sticker: with a mask per victim (each on its own sign box), the
  # norm and the printability are those of the union of the masks.
  sticker = mask if mask.ndim == 3 else jnp.max(mask, axis=0)
  total = cfg.lambda_norm * _pnorm(sticker * clipped, cfg.norm_p) + ce
  if cfg.nps_weight:
    total = total + cfg.nps_weight * nps(_printed(clipped, cfg), cfg.colors,
                                         mask=sticker)
  clean_logits = logits if cfg.transforms.is_identity else None
  return total, clean_logits


def rp2_loss(noise: jax.typing.ArrayLike, apply_fn: ApplyFn, params: Any,
             images: jax.typing.ArrayLike, mask: jax.typing.ArrayLike,
             target: Any, key: jax.typing.ArrayLike, *,
             cfg: RP2Config = RP2Config()) -> jax.Array:
  """The RP2 objective for one perturbation.

  `lambda * ||mask * clip(noise)||_p + mean CE(f(T(x_adv)), target)`, plus
  `nps_weight * nps(printed, mask=mask)` where `printed` is clip(noise, 0, 1)
  (clip(setpoint + noise, 0, 1) with `inverse_mask`). The mean runs over the
  N images times `cfg.num_transforms` fresh transforms drawn from `key` (the
  images as they are when `cfg.transforms` is the identity). Untargeted
  (`cfg.targeted=False`): `target` is the true class and its CE enters with
  a minus sign.

  Args:
    noise: (32, 32, 3) perturbation.
    apply_fn: `apply_fn(params, images) -> logits (M, 18)`.
    params: the model parameters.
    images: (N, 32, 32, 3) victims in [0, 1].
    mask: (32, 32, 1) or (32, 32, 3).
    target: class index, an int in 0..17 or an integer scalar array.
    key: PRNG key for the transforms.
    cfg: the attack config.

  Returns:
    float32 scalar.
  """
  check_target(target, num_classes=num_outputs(apply_fn, params))
  images, mask, noise = checked_inputs(images, mask, noise)
  return loss_and_logits(noise, apply_fn, params, images, mask,
                         jnp.asarray(target), key, cfg)[0]
