"""Adversarial attacks as pure JAX functions: RP2 (Robust Physical
Perturbations) with its physical transforms, the white-box target grid, PGD
and the Square Attack.

  from blurnet_jax.attacks import RP2Config, rp2_attack, TransformConfig
  from blurnet_jax.attacks import PGDConfig, pgd_attack, square_attack
  from blurnet_jax.attacks import attack_targets, evaluate_targets

Every attack takes `apply_fn(params, images) -> logits` and explicit keys;
nothing here trains, reads files or draws.
"""

from blurnet_jax.attacks.grid import (ALL_TARGETS, attack_targets,
                                      evaluate_targets, parse_targets,
                                      average_and_worst)
from blurnet_jax.attacks.pgd import PGDConfig, pgd_attack
from blurnet_jax.attacks.rp2 import (
    DEFAULT_PRINTABLE_COLORS,
    RP2Config,
    apply_perturbation,
    attack_success_rate,
    init_noise,
    l2_dissimilarity,
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
    "ALL_TARGETS",
    "DEFAULT_PRINTABLE_COLORS",
    "PGDConfig",
    "RP2Config",
    "SquareConfig",
    "TransformConfig",
    "apply_perturbation",
    "at_distance",
    "attack_success_rate",
    "attack_targets",
    "evaluate_targets",
    "init_noise",
    "l2_dissimilarity",
    "nps",
    "parse_targets",
    "pgd_attack",
    "predictions_under_transforms",
    "random_transform",
    "rp2_attack",
    "rp2_loss",
    "square_attack",
    "success_under_transforms",
    "average_and_worst",
    "targeted_success",
    "view",
]
