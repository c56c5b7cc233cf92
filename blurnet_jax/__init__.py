"""blurnet-jax: BlurNet defenses and the RP2 physical attack in JAX/Flax."""

# Before anything starts JAX's CPU client: let XLA:CPU reuse freed host
# memory instead of page-faulting fresh buffers on every call (see
# host_memory; BLURNET_JAX_MALLOC=system opts out).
from blurnet_jax import host_memory

host_memory.reuse_freed_memory()

from blurnet_jax.classes import CLASS_NAMES, NUM_CLASSES, STOP

__version__ = "0.1.0"
__all__ = ["CLASS_NAMES", "NUM_CLASSES", "STOP"]
