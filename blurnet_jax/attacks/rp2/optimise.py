"""The RP2 optimisation loop: Adam on one perturbation shared by every
victim, `cfg.steps` steps as one `lax.scan` inside one `jax.jit`."""

from __future__ import annotations

from collections.abc import Callable
import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from blurnet_jax.models import ApplyFn
from blurnet_jax.attacks.checks import check_target, num_outputs
from blurnet_jax.attacks.rp2.config import RP2Config
from blurnet_jax.attacks.rp2.objective import (apply_perturbation,
                                               checked_inputs,
                                               loss_and_logits)
from blurnet_jax.classes import IMAGE_SHAPE


def init_noise(key: jax.typing.ArrayLike, shape: tuple[int, ...] = IMAGE_SHAPE,
               cfg: RP2Config = RP2Config()) -> jax.Array:
  """The starting perturbation, uniform in `cfg.init_range` ([0, 1)).

  Args:
    key: a PRNG key.
    shape: the noise shape, (32, 32, 3).
    cfg: the attack config.

  Returns:
    float32 array of `shape`.
  """
  lo, hi = cfg.init_range
  return jax.random.uniform(key, shape, jnp.float32, minval=lo, maxval=hi)


def _success(logits: jax.Array, target: jax.Array, targeted: bool):
  pred = jnp.argmax(logits, axis=-1)
  hit = pred == target if targeted else pred != target
  return jnp.mean(hit.astype(jnp.float32))


@functools.partial(jax.jit, static_argnames=("apply_fn", "cfg", "on_step",
                                             "report_every"))
def _attack(apply_fn, params, images, mask, target, key, cfg, on_step,
            report_every):
  init_key, loop_key = jax.random.split(key)
  noise = init_noise(init_key, IMAGE_SHAPE, cfg)
  opt = optax.adam(cfg.learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
  grad_fn = jax.value_and_grad(loss_and_logits, has_aux=True)

  def step(carry, i):
    noise, opt_state = carry
    (loss, logits), grad = grad_fn(noise, apply_fn, params, images, mask,
                                   target, jax.random.fold_in(loop_key, i),
                                   cfg)
    if logits is None:  # Success is measured on the untransformed images.
      logits = apply_fn(params, apply_perturbation(images, mask, noise, cfg))
    success = _success(logits, target, cfg.targeted)
    updates, opt_state = opt.update(grad, opt_state, noise)
    noise = jnp.clip(optax.apply_updates(noise, updates), *cfg.noise_clip)
    if on_step is not None:
      # A host call every `report_every` steps (and after the last): `i` is
      # the scan counter, never batched, so this stays a real branch under
      # vmap and the other steps cost nothing.
      report = ((i + 1) % report_every == 0) | (i + 1 == cfg.steps)
      jax.lax.cond(report, lambda: jax.debug.callback(on_step, i + 1),
                   lambda: None)
    return (noise, opt_state), (loss, success)

  (noise, _), (losses, success) = jax.lax.scan(
      step, (noise, opt.init(noise)), jnp.arange(cfg.steps))
  return {
      "noise": noise,
      "adversarial": apply_perturbation(images, mask, noise, cfg),
      "losses": losses,
      "success": success,
  }


def rp2_attack(apply_fn: ApplyFn, params: Any, images: jax.typing.ArrayLike,
               mask: jax.typing.ArrayLike, target: Any,
               key: jax.typing.ArrayLike, *,
               cfg: RP2Config = RP2Config(),
               on_step: Optional[Callable[[Any], None]] = None,
               report_every: int = 10) -> dict[str, jax.Array]:
  """Runs RP2: `cfg.steps` Adam steps on one perturbation shared by `images`.

  The loop is a `lax.scan` of one step inside one `jax.jit` (`apply_fn`
  and `cfg` static), so the call is jittable and vmappable: over `target`
  (`jax.vmap(lambda t: rp2_attack(f, p, x, m, t, key, cfg=cfg))(targets)`)
  and over a stacked params tree. The noise starts uniform in
  `cfg.init_range` from `split(key)[0]`; step i draws its transforms from
  `fold_in(split(key)[1], i)`.

  Args:
    apply_fn: `apply_fn(params, images) -> logits (M, 18)`.
    params: the model parameters.
    images: (N, 32, 32, 3) victims in [0, 1], all used in every step.
    mask: (32, 32, 1) or (32, 32, 3).
    target: class index (int in 0..17 or integer scalar array); None uses
      `cfg.target`. The true class when `cfg.targeted` is False.
    key: PRNG key (required: the start and every step's transforms come
      from it, and a silent default would make every call draw alike).
    cfg: the attack config.
    on_step: optional host function called with the number of steps done
      every `report_every` steps and after the last (`jax.debug.callback`;
      for progress lines, it does not change the result). Static: pass the
      same function object to reuse the compiled program. Under `vmap` it
      may be called once per batch member with the same count.
    report_every: steps between `on_step` calls.

  Returns:
    dict with 'noise' (32, 32, 3), the final perturbation (clipped to
    `cfg.noise_clip`); 'adversarial' (N, 32, 32, 3), the images with it;
    'losses' (steps,), the objective at the start of each step; 'success'
    (steps,), the fraction of untransformed perturbed images classified as
    `target` (or, untargeted, not as `target`) at the start of each step.
  """
  target = cfg.target if target is None else target
  if key is None:
    raise ValueError("rp2_attack needs a PRNG key; pass e.g. "
                     "jax.random.key(0) (one per independent attack).")
  check_target(target, num_classes=num_outputs(apply_fn, params))
  images, mask = checked_inputs(images, mask)
  if not isinstance(cfg, RP2Config):
    raise ValueError(
        f"cfg must be an RP2Config, got {type(cfg).__name__}; pass "
        "cfg=RP2Config(...).")
  if not (isinstance(report_every, int) and report_every >= 1):
    raise ValueError(f"report_every={report_every!r} must be an int >= 1.")
  return _attack(apply_fn, params, images, mask, jnp.asarray(target), key,
                 cfg, on_step, report_every)
