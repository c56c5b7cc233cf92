"""PGD (projected gradient descent, Madry et al. 2018), L-inf and L2, masked.

The attack maximises the cross-entropy of the true class (or, targeted,
minimises that of a target) over a perturbation `delta` in the ball
||delta||_p <= epsilon, restricted to a mask:

  x_adv = clip(x + mask * delta, 0, 1),
  delta <- Proj_{||.||_p <= eps}(mask * (delta + a * s(g))),

with s(g) = sign(g) for L-inf and g / ||mask * g||_2 for L2 (per image), a
random start inside the ball, and the step a = step_size * epsilon / steps
(Madry's 2.5 eps / steps by default). Each image has its own `delta`; with
`universal=True` one `delta` is shared by every image (an RP2-style
sticker) and the step uses the gradient of the mean loss. The iterate with
the lowest loss (per image; for a universal `delta`, of the mean) is
returned, not the last one.

`epsilon` is an argument, not part of the static config, so one compiled
program serves a whole budget curve:

  budgets = jnp.asarray([0.03, 0.1, 0.3])
  out = jax.vmap(lambda e: pgd_attack(f, params, x, y, mask, key, e,
                                      cfg=PGDConfig()))(budgets)

`apply_fn(params, images) -> logits` as for `rp2_attack`; define it once.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from blurnet_jax.models import ApplyFn
from blurnet_jax.attacks.checks import check_images, check_mask
from blurnet_jax.attacks.transforms import (TransformConfig,
                                            random_transform)
from blurnet_jax.classes import IMAGE_SHAPE, NUM_CLASSES

NORMS: tuple[str, ...] = ("linf", "l2")
_TINY = 1e-12


@dataclasses.dataclass(frozen=True)
class PGDConfig:
  """PGD settings (the budget `epsilon` is an argument of `pgd_attack`).

  Attributes:
    norm: 'linf' or 'l2'.
    steps: gradient steps.
    step_size: each step moves `step_size * epsilon / steps` (Madry: 2.5).
    random_start: start at a uniform point of the L-inf ball, or at a
      random direction of the L2 ball with a uniform radius; else at 0.
    targeted: minimise the CE of `labels` (targets) instead of maximising
      that of `labels` (true classes).
    universal: one perturbation for all images instead of one per image.
    num_transforms: EOT samples per image per step.
    transforms: the random physical transforms of those samples
      (`TransformConfig.none()`: the images as they are).
  """

  norm: str = "linf"
  steps: int = 40
  step_size: float = 2.5
  random_start: bool = True
  targeted: bool = False
  universal: bool = False
  num_transforms: int = 1
  transforms: TransformConfig = TransformConfig.none()

  def __post_init__(self):
    if self.norm not in NORMS:
      raise ValueError(f"PGDConfig.norm={self.norm!r}; use one of {NORMS}.")
    for name in ("steps", "num_transforms"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(
          value, numbers.Integral) or value < 1:
        raise ValueError(f"PGDConfig.{name}={value!r} must be an int >= 1.")
    if not self.step_size > 0:
      raise ValueError(f"PGDConfig.step_size={self.step_size!r} must be > 0.")
    if not isinstance(self.transforms, TransformConfig):
      raise ValueError("PGDConfig.transforms must be a TransformConfig.")


# ----------------------------------------------------- shared with Square --


def prepare(images, labels, mask, *, per_image_mask: bool = False):
  """float32 images (N, 32, 32, 3), int32 labels (N,), float32 mask.

  `labels` is one class for every image or an (N,) vector; `mask` None
  means the whole image; with `per_image_mask` the mask may also be one per
  image, (N, 32, 32, 1|3).
  """
  images = jnp.asarray(images, jnp.float32)
  check_images(images)
  n = images.shape[0]
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer) or labels.ndim > 1 or (
      labels.ndim == 1 and labels.shape[0] != n):
    raise ValueError(
        f"labels must be one int class or an int vector of {n} classes, got "
        f"{labels.dtype} {labels.shape}.")
  try:
    lo, hi = int(labels.min()), int(labels.max())
  except jax.errors.ConcretizationTypeError:
    lo, hi = 0, 0  # traced (under vmap): the range is checked by the caller
  if lo < 0 or hi >= NUM_CLASSES:
    raise ValueError(f"labels hold classes outside 0..{NUM_CLASSES - 1}.")
  labels = jnp.broadcast_to(labels.astype(jnp.int32), (n,))
  if mask is None:
    mask = jnp.ones(IMAGE_SHAPE[:2] + (1,), jnp.float32)
  mask = jnp.asarray(mask, jnp.float32)
  check_mask(mask, n if per_image_mask else None)
  return images, labels, mask


def check_epsilon(epsilon) -> jax.Array:
  """float32 scalar budget; a negative or non-finite concrete one is an
  error."""
  epsilon = jnp.asarray(epsilon, jnp.float32)
  if epsilon.shape != ():
    raise ValueError(f"epsilon must be a scalar, got shape {epsilon.shape}; "
                     "jax.vmap over budgets for a curve.")
  try:
    value = float(epsilon)
  except jax.errors.ConcretizationTypeError:
    return epsilon
  if not (value >= 0 and value < float("inf")):
    raise ValueError(f"epsilon={value:g} must be finite and >= 0; give the "
                     "budget (L-inf per pixel, L2 per image).")
  return epsilon


def norms(delta: jax.Array, norm: str) -> jax.Array:
  """Per-image ||delta||_p over all but the first axis (a scalar for one
  (32, 32, 3) perturbation)."""
  axes = tuple(range(delta.ndim - 3, delta.ndim))
  if norm == "linf":
    return jnp.max(jnp.abs(delta), axis=axes)
  return jnp.sqrt(jnp.sum(delta * delta, axis=axes))


def project(delta: jax.Array, epsilon: jax.Array, norm: str) -> jax.Array:
  """The closest point of the ball ||.||_p <= epsilon (per image)."""
  if norm == "linf":
    return jnp.clip(delta, -epsilon, epsilon)
  n = norms(delta, "l2")[..., None, None, None]
  return delta * jnp.minimum(1.0, epsilon / jnp.maximum(n, _TINY))


def perturb(images, mask, delta):
  """`clip(images + mask * delta, 0, 1)`; `delta` (N, ...) or one image."""
  return jnp.clip(images + mask * delta, 0.0, 1.0)


def margins(logits: jax.Array, labels: jax.Array,
            targeted: bool) -> jax.Array:
  """(N,) margin losses, < 0 exactly where the attack succeeds.

  Untargeted: z_y - max_{j != y} z_j; targeted: max_{j != t} z_j - z_t.
  """
  own = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
  others = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool),
                     -jnp.inf, logits)
  best_other = jnp.max(others, axis=-1)
  return best_other - own if targeted else own - best_other


# ------------------------------------------------------------------ PGD --


def _per_image_loss(delta, apply_fn, params, images, labels, mask, key, cfg):
  """(N,) losses to minimise: the CE of the target, or minus that of the
  true class, averaged over the EOT samples."""
  x = perturb(images, mask, delta)
  if cfg.transforms.is_identity:
    batch = x
  else:
    keys = jax.random.split(key, cfg.num_transforms)
    batch = jnp.concatenate([random_transform(k, x, cfg.transforms)
                             for k in keys])
  logits = apply_fn(params, batch)
  reps = batch.shape[0] // x.shape[0]
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits, jnp.tile(labels, reps)).reshape(reps, -1).mean(0)
  return ce if cfg.targeted else -ce


def by_norm(l2, linf_fn, l2_fn):
  """`l2_fn()` if the norm is L2, else `linf_fn()`.

  `l2` is a Python bool (the norm of a static config: one branch is
  traced) or a traced boolean scalar (a norm given per call, e.g. vmapped
  over a curve that mixes norms: both branches are computed and the
  result is selected, so one program serves both norms and each gives
  the same numbers as its own program).
  """
  if isinstance(l2, bool):
    return l2_fn() if l2 else linf_fn()
  return jax.tree.map(lambda a, b: jnp.where(l2, b, a), linf_fn(), l2_fn())


def _start(key, shape, mask, epsilon, cfg, l2):
  if not cfg.random_start:
    return jnp.zeros(shape, jnp.float32)

  def linf():
    return mask * jax.random.uniform(key, shape, jnp.float32, -1.0,
                                     1.0) * epsilon

  def l2_ball():
    k_dir, k_rad = jax.random.split(key)
    direction = mask * jax.random.normal(k_dir, shape, jnp.float32)
    lead = shape[:-3]
    radius = jax.random.uniform(k_rad, lead + (1, 1, 1)) * epsilon
    n = norms(direction, "l2")[..., None, None, None]
    return direction * radius / jnp.maximum(n, _TINY)

  return by_norm(l2, linf, l2_ball)


def _direction(grad, mask, l2):
  def l2_step():
    g = mask * grad
    return g / jnp.maximum(norms(g, "l2")[..., None, None, None], _TINY)
  return by_norm(l2, lambda: jnp.sign(grad), l2_step)


@functools.partial(jax.jit, static_argnames=("apply_fn", "cfg"))
def _pgd(apply_fn, params, images, labels, mask, key, epsilon, cfg, l2,
         steps):
  # l2: None (the norm of cfg) or a traced flag; steps: None (cfg.steps) or
  # a traced count <= cfg.steps, after which the iterate stops moving.
  init_key, loop_key = jax.random.split(key)
  shape = IMAGE_SHAPE if cfg.universal else images.shape
  l2 = cfg.norm == "l2" if l2 is None else l2
  limited = steps is not None
  steps = cfg.steps if steps is None else steps
  step = cfg.step_size * epsilon / steps

  def constrain(delta):
    delta = by_norm(l2, lambda: project(mask * delta, epsilon, "linf"),
                    lambda: project(mask * delta, epsilon, "l2"))
    if not cfg.universal:  # keep x + delta inside [0, 1]: |delta| only shrinks
      delta = perturb(images, mask, delta) - images
    return delta

  def loss(delta, k):
    per_image = _per_image_loss(delta, apply_fn, params, images, labels,
                                mask, k, cfg)
    total = jnp.sum(per_image)
    return total, (jnp.mean(per_image, keepdims=True) if cfg.universal
                   else per_image)

  grad_fn = jax.value_and_grad(loss, has_aux=True)

  def keep_best(best, best_loss, delta, value):
    better = value < best_loss
    mask_shape = better.reshape(better.shape + (1,) * 3)
    chosen = jnp.where(mask_shape, delta[None] if cfg.universal else delta,
                       best[None] if cfg.universal else best)
    return (chosen[0] if cfg.universal else chosen,
            jnp.where(better, value, best_loss))

  def body(carry, i):
    delta, best, best_loss = carry
    (_, value), grad = grad_fn(delta, jax.random.fold_in(loop_key, i))
    moved = constrain(delta - step * _direction(grad, mask, l2))
    if limited:
      # A run of `steps` steps: step i == steps is its final evaluation
      # (same key); later ones neither move nor count.
      best, best_loss = keep_best(best, best_loss, delta,
                                  jnp.where(i <= steps, value, jnp.inf))
      moved = jnp.where(i < steps, moved, delta)
    else:
      best, best_loss = keep_best(best, best_loss, delta, value)
    return (moved, best, best_loss), jnp.mean(value)

  delta = constrain(_start(init_key, shape, mask, epsilon, cfg, l2))
  lead = (1,) if cfg.universal else shape[:1]
  carry = (delta, delta, jnp.full(lead, jnp.inf))
  (delta, best, best_loss), losses = jax.lax.scan(body, carry,
                                                  jnp.arange(cfg.steps))
  _, final = loss(delta, jax.random.fold_in(loop_key, cfg.steps))
  if limited:
    final = jnp.where(steps == cfg.steps, final, jnp.inf)
  best, _ = keep_best(best, best_loss, delta, final)
  return {"delta": best, "adversarial": perturb(images, mask, best),
          "losses": losses}


def pgd_attack(apply_fn: ApplyFn, params: Any, images: jax.typing.ArrayLike,
               labels: Any, mask: Optional[jax.typing.ArrayLike],
               key: jax.typing.ArrayLike, epsilon: Any, *,
               cfg: PGDConfig = PGDConfig(), l2: Any = None,
               steps: Any = None) -> dict[str, jax.Array]:
  """Runs PGD with budget `epsilon`; jittable, vmappable over `epsilon`,
  `labels`, `key`, `l2`, `steps` and stacked `params`.

  Args:
    apply_fn: `apply_fn(params, images) -> logits (M, 18)`.
    params: the model parameters.
    images: (N, 32, 32, 3) in [0, 1].
    labels: the true class of every image (untargeted) or the target
      (targeted): one int or an (N,) int vector.
    mask: (32, 32, 1) or (32, 32, 3), 1 where the perturbation may go;
      None for the whole image; or, unless `cfg.universal`, one mask per
      image, (N, 32, 32, 1|3) (e.g. a rectangle placed on each image).
    key: PRNG key (random start; EOT draws of step i from
      `fold_in(split(key)[1], i)`).
    epsilon: the budget, a scalar >= 0 (L-inf: per pixel and channel, in
      image units; L2: over the whole perturbation of one image).
    cfg: the settings.
    l2: None (the norm is `cfg.norm`) or a boolean, traced or not, that
      sets it per call (True: L2): vmapped over a curve that mixes L-inf
      and L2 budgets, one program serves both, each member giving what its
      own `cfg.norm` would.
    steps: None (`cfg.steps`) or an int, traced or not, in 1..cfg.steps:
      the run is the one of a config with that many steps (its step size
      and its iterates; 'losses' repeats the last value after it), so one
      program of `cfg.steps` serves a curve over step counts.

  Returns:
    dict with 'delta' ((N, 32, 32, 3), or (32, 32, 3) when universal): the
    perturbation of the lowest loss, zero outside the mask, norm <=
    epsilon; 'adversarial' (N, 32, 32, 3): `clip(x + mask * delta, 0, 1)`;
    'losses' (cfg.steps,): the mean loss at the start of each step.
  """
  if not isinstance(cfg, PGDConfig):
    raise ValueError(f"cfg must be a PGDConfig, got {type(cfg).__name__}.")
  if cfg.universal and mask is not None and jnp.ndim(mask) == 4:
    raise ValueError("a universal perturbation takes one mask (32, 32, 1|3); "
                     "use universal=False for one mask per image.")
  images, labels, mask = prepare(images, labels, mask,
                                 per_image_mask=not cfg.universal)
  if l2 is not None:
    l2 = jnp.asarray(l2, bool)
  if steps is not None:
    steps = check_steps(steps, cfg.steps)
  return _pgd(apply_fn, params, images, labels, mask, key,
              check_epsilon(epsilon), cfg, l2, steps)


def check_steps(steps, most: int) -> jax.Array:
  """int32 scalar step count; a concrete one outside 1..most is an error."""
  steps = jnp.asarray(steps)
  if steps.shape != () or not jnp.issubdtype(steps.dtype, jnp.integer):
    raise ValueError(f"steps must be an int scalar, got {steps.dtype} "
                     f"{steps.shape}; jax.vmap over step counts for a curve.")
  try:
    value = int(steps)
  except jax.errors.ConcretizationTypeError:
    return steps.astype(jnp.int32)
  if not 1 <= value <= most:
    raise ValueError(f"steps={value} must lie in 1..{most} (cfg.steps); "
                     "raise PGDConfig.steps for longer runs.")
  return steps.astype(jnp.int32)
