"""Adversarial training against physical attacks, as pure jittable functions.

Two threat models, each Madry-style (part of every batch replaced by its
adversarial examples against the current parameters):

* 'pgd_mask': the sticker threat model, PGD inside a sticker mask with an
  L-inf budget (1: any colour) and a random start;
* 'roa': DOA (Wu, Tong and Vorobeychik, ICLR 2020), training on the
  rectangular occlusion attack of `defences.occlusion`.

  cfg = AdversarialConfig(kind="pgd_mask")
  mask = blurnet_jax.data.masks.get_mask("octagon")   # (32, 32, 1)
  state, metrics = adversarial_train_step(state, batch, rng, cfg=cfg,
                                          mask=mask, penalty_kind="none")

The sticker mask is an array argument, not a name in the config: this layer
takes arrays and reads no files. `adversarial_train_step` is
`train.train_step` with the batch perturbed between the augmentation and
the optimiser step (`train.gradient_step`): the same loss, penalties and
metrics; with `fraction=0` it is `train_step`, bit for bit. Like
`train_step` it vmaps over a population of states (`sweep.py`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any, Optional

import jax
import jax.numpy as jnp

from blurnet_jax import train
from blurnet_jax.attacks import pgd
from blurnet_jax.data import pipeline
from blurnet_jax.defences import occlusion
from blurnet_jax.models import ApplyFn

ADVERSARIAL_KINDS: tuple[str, ...] = ("pgd_mask", "roa")


@dataclasses.dataclass(frozen=True)
class AdversarialConfig:
  """Adversarial training settings (hashable: static for jit).

  Attributes:
    kind: 'pgd_mask' (PGD inside the sticker mask given to the functions
      as `mask`) or 'roa' (the rectangular occlusion attack, `roa`).
    epsilon: 'pgd_mask': the L-inf budget per pixel (1: any colour inside
      the mask, the sticker threat model).
    steps: 'pgd_mask': PGD steps.
    step_size: 'pgd_mask': each step moves `step_size * epsilon / steps`.
    roa: 'roa': the attack's settings.
    fraction: the share of each batch replaced by adversarial examples
      (its first round(fraction * B), halves up); the rest stays clean.
  """

  kind: str = "pgd_mask"
  epsilon: float = 1.0
  steps: int = 7
  step_size: float = 2.5
  roa: occlusion.RoaConfig = occlusion.RoaConfig()
  fraction: float = 0.5

  def __post_init__(self):
    if self.kind not in ADVERSARIAL_KINDS:
      raise ValueError(f"AdversarialConfig.kind={self.kind!r}; use one of "
                       f"{ADVERSARIAL_KINDS}.")
    if not (isinstance(self.epsilon, numbers.Real) and
            0 <= self.epsilon < math.inf):
      raise ValueError(f"AdversarialConfig.epsilon={self.epsilon!r} must be "
                       "finite and >= 0 (1: any colour).")
    if isinstance(self.steps, bool) or not isinstance(
        self.steps, numbers.Integral) or self.steps < 1:
      raise ValueError(f"AdversarialConfig.steps={self.steps!r} must be an "
                       "int >= 1.")
    if not self.step_size > 0:
      raise ValueError(f"AdversarialConfig.step_size={self.step_size!r} must "
                       "be > 0.")
    if not isinstance(self.roa, occlusion.RoaConfig):
      raise ValueError("AdversarialConfig.roa must be a RoaConfig.")
    if not (isinstance(self.fraction, numbers.Real) and
            0 <= self.fraction <= 1):
      raise ValueError(f"AdversarialConfig.fraction={self.fraction!r} must "
                       "lie in [0, 1].")

  def count(self, batch_size: int) -> int:
    """How many examples of a batch of `batch_size` are perturbed."""
    return math.floor(self.fraction * batch_size + 0.5)


def adversarial_batch(apply_fn: ApplyFn, params: Any,
                      images: jax.typing.ArrayLike, labels: Any,
                      key: jax.typing.ArrayLike, cfg: AdversarialConfig,
                      mask: Optional[jax.typing.ArrayLike] = None
                      ) -> jax.Array:
  """The batch with its first `cfg.count(B)` images replaced by their
  untargeted adversarial examples against `params`.

  Jittable, with `apply_fn` and `cfg` static. The result is under
  `stop_gradient`: differentiated with respect to `params`, a loss on it
  sees the perturbed inputs as constants, the attack itself is not
  differentiated.

  Args:
    apply_fn: `apply_fn(params, images) -> logits`.
    params: the model parameters the attack runs against.
    images: (B, 32, 32, 3) in [0, 1].
    labels: the true classes: one int or a (B,) int vector.
    key: PRNG key of the attack.
    cfg: the settings.
    mask: 'pgd_mask': the sticker mask, (32, 32, 1|3) or one per image
      (B, 32, 32, 1|3) (e.g. `blurnet_jax.data.masks.get_mask(name)`);
      'roa': None (the attack places its own rectangles).

  Returns:
    float32 (B, 32, 32, 3): the perturbed images, then the clean rest.
  """
  if not isinstance(cfg, AdversarialConfig):
    raise ValueError(f"cfg must be an AdversarialConfig, got "
                     f"{type(cfg).__name__}.")
  if cfg.kind == "pgd_mask" and mask is None:
    raise ValueError("kind='pgd_mask' needs the sticker mask: pass "
                     "mask=blurnet_jax.data.masks.get_mask(name).")
  if cfg.kind == "roa" and mask is not None:
    raise ValueError("kind='roa' places its own rectangles; pass mask=None.")
  images, labels, mask = pgd.prepare(images, labels, mask,
                                     per_image_mask=True)
  count = cfg.count(images.shape[0])
  if count == 0:
    return images
  head, head_labels = images[:count], labels[:count]
  if cfg.kind == "roa":
    adversarial = occlusion.roa_attack(apply_fn, params, head, head_labels,
                                       key, cfg.roa)["adversarial"]
  else:
    adversarial = pgd.pgd_attack(
        apply_fn, params, head, head_labels,
        mask[:count] if mask.ndim == 4 else mask, key, cfg.epsilon,
        cfg=pgd.PGDConfig(steps=cfg.steps, step_size=cfg.step_size)
    )["adversarial"]
  return jnp.concatenate([jax.lax.stop_gradient(adversarial),
                          images[count:]])


@functools.lru_cache(maxsize=None)
def _classifier(module_apply) -> ApplyFn:
  """`apply_fn(params, images)` of a state's `apply_fn` (flax's
  `model.apply`); one object per model, so the jitted attacks that take it
  as a static argument trace once per model."""
  def apply_fn(params, images):
    return module_apply({"params": params}, images)

  return apply_fn


@functools.partial(jax.jit,
                   static_argnames=("cfg", "penalty_kind", "augment"),
                   donate_argnums=(0,))
def adversarial_train_step(state: train.TrainState,
                           batch: tuple[jax.Array, jax.Array],
                           rng: jax.Array, *, cfg: AdversarialConfig,
                           mask: Optional[jax.Array],
                           penalty_kind: str = "none", augment: bool = True
                           ) -> tuple[train.TrainState, dict[str, jax.Array]]:
  """`train.train_step` on a batch made adversarial against the state's
  current parameters (`adversarial_batch`, after the augmentation).

  `rng` drives the augmentation exactly as in `train_step`, and the attack
  through `fold_in(rng, 1)`; pass `fold_in(root, step)`. `mask` is the
  sticker mask of kind 'pgd_mask' (None for 'roa'). The metrics are
  `train_step`'s, on the mixed batch. Vmappable over stacked states and
  keys with the batch shared, as `sweep.population_step` runs `train_step`.
  """
  images, labels = batch
  if augment:
    images = pipeline.augment(rng, images)
  images = adversarial_batch(_classifier(state.apply_fn), state.params,
                             images, labels, jax.random.fold_in(rng, 1), cfg,
                             mask)
  return train.gradient_step(state, images, labels,
                             penalty_kind=penalty_kind)
