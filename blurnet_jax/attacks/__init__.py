"""Adversarial attacks: RP2 (Robust Physical Perturbations) and its
transforms, PGD and the Square Attack.

  from blurnet_jax.attacks import RP2Config, rp2_attack, TransformConfig
  from blurnet_jax.attacks import PGDConfig, pgd_attack, square_attack
"""

from blurnet_jax.attacks.pgd import PGDConfig, pgd_attack
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
from blurnet_jax.attacks.square import SquareConfig, square_attack
from blurnet_jax.attacks.transforms import (TransformConfig, at_distance,
                                            random_transform, view)

__all__ = [
    "DEFAULT_PRINTABLE_COLORS",
    "PGDConfig",
    "RP2Config",
    "SquareConfig",
    "TransformConfig",
    "apply_perturbation",
    "at_distance",
    "attack_success_rate",
    "init_noise",
    "l2_dissimilarity",
    "load_printable_colors",
    "nps",
    "pgd_attack",
    "predictions_under_transforms",
    "random_transform",
    "rp2_attack",
    "rp2_loss",
    "square_attack",
    "success_under_transforms",
    "targeted_success",
    "view",
]
