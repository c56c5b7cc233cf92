"""blurnet-jax: BlurNet defenses and the RP2 physical attack in JAX/Flax."""

from blurnet_jax.classes import CLASS_NAMES, NUM_CLASSES, STOP

__version__ = "0.1.0"
__all__ = ["CLASS_NAMES", "NUM_CLASSES", "STOP"]
