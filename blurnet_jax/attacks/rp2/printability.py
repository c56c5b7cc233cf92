"""The printability of an RP2 sticker: the palette an office printer
reproduces and the non-printability score (NPS, Sharif et al. 2016) that
pulls the perturbation's colours toward it."""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

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
