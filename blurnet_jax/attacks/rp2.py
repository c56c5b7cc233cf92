"""RP2 (Robust Physical Perturbations, Eykholt et al., CVPR 2018) in JAX.

The attack solves

  argmin_delta  lambda * ||M . delta||_p
                + E_{x ~ victims, T ~ transforms} CE(f(T(x_adv)), y*)
                + w_nps * NPS(printed colours of delta on M),
  x_adv = clip(x + M . clip(delta, -20, 20), 0, 1),

with Adam on the perturbation `delta` (one (32, 32, 3) array shared by all
victim images), `delta` clipped to [-20, 20] after every update, as in the
authors' TensorFlow graph. Every function here is pure and jittable; the
attack loop is one `lax.scan`, so `jax.vmap` runs one attack per target
class (the white-box grid) or per model of a stacked params tree.

`apply_fn(params, images) -> logits` is any classifier, e.g.

  model = LisaCNN()
  apply_fn = lambda params, x: model.apply({"params": params}, x)
  out = rp2_attack(apply_fn, params, victims, mask, 12, key, cfg=RP2Config())
  targeted_success(predict(out["adversarial"]), 12)

Define `apply_fn` once and reuse it: it is a static argument of the jitted
attack, so a new lambda per call compiles again.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import functools
import math
import numbers
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from blurnet_jax.attacks.checks import (ApplyFn, check_colors, check_images,
                                        check_mask, check_noise, check_target,
                                        num_outputs)
from blurnet_jax.attacks.transforms import (TransformConfig,
                                            random_transform)
from blurnet_jax.classes import IMAGE_SHAPE, RP2_TARGET, SOURCES

#: Our own palette of printable colours (RGB in [0, 1]): the greys and the
#: muted hues an office inkjet reproduces on plain paper. Fully saturated
#: screen primaries are left out on purpose: ink cannot reach them.
DEFAULT_PRINTABLE_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.08, 0.08, 0.09), (0.25, 0.25, 0.26), (0.45, 0.45, 0.45),
    (0.65, 0.65, 0.64), (0.85, 0.85, 0.83), (0.96, 0.96, 0.94),
    (0.72, 0.13, 0.15), (0.85, 0.35, 0.30), (0.45, 0.10, 0.12),
    (0.90, 0.55, 0.15), (0.95, 0.80, 0.20), (0.70, 0.60, 0.10),
    (0.20, 0.50, 0.22), (0.45, 0.70, 0.35), (0.12, 0.30, 0.15),
    (0.10, 0.45, 0.55), (0.40, 0.70, 0.80), (0.15, 0.25, 0.55),
    (0.35, 0.45, 0.75), (0.10, 0.12, 0.30), (0.45, 0.25, 0.55),
    (0.75, 0.45, 0.70), (0.50, 0.32, 0.20), (0.80, 0.65, 0.50),
)


@dataclasses.dataclass(frozen=True)
class RP2Config:
  """RP2 hyperparameters; the defaults are the authors' poster run.

  Attributes:
    learning_rate: Adam step size (authors: 0.1).
    b1, b2, eps: Adam moments and epsilon (0.9, 0.999, 1e-8).
    lambda_norm: weight of ||mask * noise||_p (0.02).
    norm_p: p of that norm (2; any p >= 1 or inf).
    init_range: noise initialised uniform in [lo, hi) ((0, 1)).
    noise_clip: the noise is clipped to this range after every update and
      before it is added ((-20, 20)).
    image_clip: range of the perturbed image ((0, 1)).
    steps: Adam steps (300 for the poster, 1000 for the camouflage).
    target: default target class (12, speedLimit45) when `rp2_attack` gets
      target=None.
    targeted: minimise CE toward `target`; when False, `target` is the true
      class and the attack maximises its CE.
    nps_weight: weight of the non-printability score (0: off).
    printable_colors: (K, 3) RGB triplets for the NPS as a tuple of tuples;
      None uses `DEFAULT_PRINTABLE_COLORS`.
    inverse_mask: set the masked pixels to `setpoint` before adding the
      noise (the sticker replaces the sign there instead of tinting it).
    setpoint: grey level of masked pixels with `inverse_mask`.
    num_transforms: random transforms per image per step (EOT samples).
    transforms: ranges of those transforms; `TransformConfig.none()` (the
      authors' run) uses the images as they are.
  """

  learning_rate: float = 0.1
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  lambda_norm: float = 0.02
  norm_p: float = 2.0
  init_range: tuple[float, float] = (0.0, 1.0)
  noise_clip: tuple[float, float] = (-20.0, 20.0)
  image_clip: tuple[float, float] = (0.0, 1.0)
  steps: int = 300
  target: int = RP2_TARGET
  targeted: bool = True
  nps_weight: float = 0.0
  printable_colors: Optional[tuple[tuple[float, float, float], ...]] = None
  inverse_mask: bool = False
  setpoint: float = 0.5
  num_transforms: int = 1
  transforms: TransformConfig = TransformConfig.none()

  def __post_init__(self):
    for field in ("init_range", "noise_clip", "image_clip"):
      lo, hi = getattr(self, field)
      if not lo < hi:
        raise ValueError(
            f"RP2Config.{field}={getattr(self, field)!r} needs lo < hi.")
      object.__setattr__(self, field, (float(lo), float(hi)))
    if not (isinstance(self.steps, numbers.Integral) and self.steps >= 1):
      raise ValueError(f"RP2Config.steps={self.steps!r} must be an int >= 1.")
    if not (isinstance(self.num_transforms, numbers.Integral)
            and self.num_transforms >= 1):
      raise ValueError(
          f"RP2Config.num_transforms={self.num_transforms!r} must be an int "
          ">= 1.")
    if not self.norm_p >= 1:
      raise ValueError(
          f"RP2Config.norm_p={self.norm_p!r} must be >= 1 (or math.inf).")
    check_target(self.target, "RP2Config.target",
                 num_classes=max(s.num_classes for s in SOURCES.values()))
    if not isinstance(self.transforms, TransformConfig):
      raise ValueError(
          "RP2Config.transforms must be a TransformConfig, got "
          f"{type(self.transforms).__name__}.")
    if self.printable_colors is not None:
      colors = tuple(tuple(float(v) for v in c) for c in self.printable_colors)
      check_colors(np.asarray(colors, np.float32),
                    "RP2Config.printable_colors")
      object.__setattr__(self, "printable_colors", colors)

  @property
  def colors(self) -> jax.Array:
    """The printable colours of the NPS term, float32 (K, 3)."""
    colors = self.printable_colors or DEFAULT_PRINTABLE_COLORS
    return jnp.asarray(colors, jnp.float32)


# ---------------------------------------------------------------- checks --


def _inputs(images, mask, noise=None):
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


# ----------------------------------------------------------- components --


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
  images, mask, noise = _inputs(images, mask, noise)
  if cfg.inverse_mask:
    images = images * (1.0 - mask) + cfg.setpoint * mask
  noise = jnp.clip(noise, *cfg.noise_clip)
  return jnp.clip(images + mask * noise, *cfg.image_clip)


def nps(noise_image: jax.typing.ArrayLike,
        printable_colors: jax.typing.ArrayLike = DEFAULT_PRINTABLE_COLORS, *,
        mask: Optional[jax.typing.ArrayLike] = None) -> jax.Array:
  """Non-printability score: sum over pixels of prod_c ||pixel - c||_2.

  A pixel equal to one printable colour scores 0. (The product of K
  distances below 1 is tiny; weigh the term accordingly.)

  Args:
    noise_image: (H, W, 3) colours in [0, 1].
    printable_colors: (K, 3) RGB triplets.
    mask: optional (H, W, 1) or (H, W, 3); only pixels where it is non-zero
      count (the printed sticker).

  Returns:
    float32 scalar.
  """
  image = jnp.asarray(noise_image, jnp.float32)
  colors = jnp.asarray(printable_colors, jnp.float32)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(
        f"noise_image must have shape (H, W, 3), got {image.shape}; pass one "
        "image, not a batch.")
  if colors.ndim != 2 or colors.shape[-1] != 3:
    raise ValueError(
        f"printable_colors must have shape (K, 3), got {colors.shape}.")
  diff = image[:, :, None, :] - colors  # (H, W, K, 3)
  sq = jnp.sum(diff * diff, axis=-1)
  # sqrt has an infinite derivative at 0; a pixel exactly on a printable
  # colour gets 0 distance and a zero (not NaN) gradient.
  safe = jnp.where(sq > 0, sq, 1.0)
  dist = jnp.where(sq > 0, jnp.sqrt(safe), 0.0)
  score = jnp.prod(dist, axis=-1)  # (H, W)
  if mask is not None:
    m = jnp.asarray(mask, jnp.float32)
    if m.ndim != 3 or m.shape[:2] != image.shape[:2]:
      raise ValueError(
          f"mask must have shape {image.shape[:2] + (1,)} or "
          f"{image.shape}, got {m.shape}.")
    score = score * (jnp.max(m, axis=-1) != 0)
  return jnp.sum(score)


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


def _losses(noise, apply_fn, params, images, mask, target, key, cfg):
  """(total, logits of the untransformed perturbed images or None)."""
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
  images, mask, noise = _inputs(images, mask, noise)
  return _losses(noise, apply_fn, params, images, mask, jnp.asarray(target),
                 key, cfg)[0]


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
  grad_fn = jax.value_and_grad(_losses, has_aux=True)

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
  images, mask = _inputs(images, mask)
  if not isinstance(cfg, RP2Config):
    raise ValueError(
        f"cfg must be an RP2Config, got {type(cfg).__name__}; pass "
        "cfg=RP2Config(...).")
  if not (isinstance(report_every, int) and report_every >= 1):
    raise ValueError(f"report_every={report_every!r} must be an int >= 1.")
  return _attack(apply_fn, params, images, mask, jnp.asarray(target), key,
                 cfg, on_step, report_every)


# --------------------------------------------------------------- metrics --


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
