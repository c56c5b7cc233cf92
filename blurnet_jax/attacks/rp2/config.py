"""`RP2Config`: the hyperparameters of an RP2 attack, validated once when
the config is made (it is a static argument of the jitted attack)."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from blurnet_jax.attacks.checks import check_colors, check_target
from blurnet_jax.attacks.rp2.printability import DEFAULT_PRINTABLE_COLORS
from blurnet_jax.attacks.transforms import TransformConfig
from blurnet_jax.classes import RP2_TARGET, SOURCES


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
