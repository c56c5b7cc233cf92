"""Adversarial attacks: RP2 (Robust Physical Perturbations) and its transforms.

  from blurnet_jax.attacks import RP2Config, rp2_attack, TransformConfig
"""

from blurnet_jax.attacks.rp2 import (
    DEFAULT_PRINTABLE_COLORS,
    RP2Config,
    apply_perturbation,
    attack_success_rate,
    init_noise,
    l2_dissimilarity,
    load_printable_colors,
    nps,
    predictions_under_transforms,
    rp2_attack,
    rp2_loss,
    success_under_transforms,
    targeted_success,
)
from blurnet_jax.attacks.transforms import TransformConfig, random_transform

__all__ = [
    "DEFAULT_PRINTABLE_COLORS",
    "RP2Config",
    "TransformConfig",
    "apply_perturbation",
    "attack_success_rate",
    "init_noise",
    "l2_dissimilarity",
    "load_printable_colors",
    "nps",
    "predictions_under_transforms",
    "random_transform",
    "rp2_attack",
    "rp2_loss",
    "success_under_transforms",
    "targeted_success",
]
