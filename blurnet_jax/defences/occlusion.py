"""The rectangular occlusion attack (ROA) of Wu, Tong and Vorobeychik (ICLR
2020, "Defending against physically realizable attacks on image
classification"), as pure JAX functions.

A rectangle is placed where it hurts the classifier most, then its content
is optimised, any colour, by PGD inside it (untargeted: both steps maximise
the cross-entropy of the true class):

  cfg = RoaConfig()                         # 7x7, grid step 2, exhaustive
  positions = roa_positions(apply_fn, params, images, labels, cfg)
  out = roa_attack(apply_fn, params, images, labels, key, cfg)
  out["adversarial"], out["positions"], out["masks"]

Positions are the top-left (row, col) of the rectangle on a grid: rows 0,
stride, 2 stride, ... up to 32 - height (columns likewise), row-major.
The search is 'exhaustive' (the loss with the rectangle filled with grey,
0.5, at every grid position; each image keeps its worst) or 'gradient' (the
paper's cheaper heuristic, its sensitivity measured here as the sum of
|dCE/dx| of the clean image inside the rectangle: only the top
`candidates` positions by it are evaluated, as exhaustive does). Positions are evaluated one after another over the
whole batch (`lax.map`): the memory of one forward pass of the batch.

PGD starts from the grey rectangle the search scored (or, with
`random_start`, from random colours inside it) and keeps its best iterate,
so the attack's loss is at least the searched one. DOA, adversarial
training against ROA, is `defences.adversarial` with kind='roa'.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from blurnet_jax.attacks import pgd
from blurnet_jax.classes import IMAGE_SHAPE
from blurnet_jax.models import ApplyFn

ROA_SEARCHES: tuple[str, ...] = ("exhaustive", "gradient")
#: The colour of the rectangle the position search scores.
GREY = 0.5


@dataclasses.dataclass(frozen=True)
class RoaConfig:
  """ROA settings (hashable: a static argument of the jitted programs).

  Attributes:
    height: rectangle rows (the paper used 7x7 on LISA-CNN's 32x32 images).
    width: rectangle columns.
    stride: step of the position grid, in pixels, along rows and columns.
    search: 'exhaustive' or 'gradient' (see the module docstring).
    candidates: positions the 'gradient' search evaluates (the top ones by
      gradient); at most `num_positions`.
    pgd_steps: PGD steps inside the rectangle.
    step_size: each PGD step moves `step_size / pgd_steps` per pixel (the
      `PGDConfig.step_size` of a budget of 1, any colour).
    random_start: start PGD at random colours inside the rectangle instead
      of at the grey the search scored (the one use of the attack's key).
  """

  height: int = 7
  width: int = 7
  stride: int = 2
  search: str = "exhaustive"
  candidates: int = 10
  pgd_steps: int = 30
  step_size: float = 2.5
  random_start: bool = False

  def __post_init__(self):
    for name in ("height", "width", "stride", "candidates", "pgd_steps"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(
          value, numbers.Integral) or value < 1:
        raise ValueError(f"RoaConfig.{name}={value!r} must be an int >= 1.")
    for name, most in (("height", IMAGE_SHAPE[0]), ("width", IMAGE_SHAPE[1])):
      if getattr(self, name) > most:
        raise ValueError(f"RoaConfig.{name}={getattr(self, name)} exceeds the "
                         f"image ({most} px); use <= {most}.")
    if self.search not in ROA_SEARCHES:
      raise ValueError(f"RoaConfig.search={self.search!r}; use one of "
                       f"{ROA_SEARCHES}.")
    if self.search == "gradient" and self.candidates > self.num_positions:
      raise ValueError(
          f"RoaConfig.candidates={self.candidates} exceeds the "
          f"{self.num_positions} grid positions; use <= {self.num_positions} "
          "or search='exhaustive'.")
    if not self.step_size > 0:
      raise ValueError(f"RoaConfig.step_size={self.step_size!r} must be > 0.")
    if not isinstance(self.random_start, bool):
      raise ValueError(f"RoaConfig.random_start={self.random_start!r} must be "
                       "True or False.")

  @property
  def grid_shape(self) -> tuple[int, int]:
    """(rows, columns) of the position grid."""
    return ((IMAGE_SHAPE[0] - self.height) // self.stride + 1,
            (IMAGE_SHAPE[1] - self.width) // self.stride + 1)

  @property
  def num_positions(self) -> int:
    rows, cols = self.grid_shape
    return rows * cols

  def grid(self) -> np.ndarray:
    """int32 (num_positions, 2) top-left (row, col) of every position,
    row-major."""
    rows, cols = self.grid_shape
    r, c = np.meshgrid(np.arange(rows) * self.stride,
                       np.arange(cols) * self.stride, indexing="ij")
    return np.stack([r.ravel(), c.ravel()], axis=1).astype(np.int32)


def _check_cfg(cfg: Any) -> None:
  if not isinstance(cfg, RoaConfig):
    raise ValueError(f"cfg must be a RoaConfig, got {type(cfg).__name__}.")


def rectangle_masks(positions: jax.typing.ArrayLike,
                    cfg: RoaConfig) -> jax.Array:
  """float32 (N, 32, 32, 1) masks, 1 on the `cfg.height` x `cfg.width`
  rectangle whose top-left pixel is each image's (row, col) of `positions`
  (int (N, 2)); a rectangle that runs off the image is cut at its edge."""
  _check_cfg(cfg)
  positions = jnp.asarray(positions)
  if positions.ndim != 2 or positions.shape[1] != 2 or not jnp.issubdtype(
      positions.dtype, jnp.integer):
    raise ValueError(f"positions must be int (N, 2) (row, col), got "
                     f"{positions.dtype} {positions.shape}; one row per image.")
  rows = jnp.arange(IMAGE_SHAPE[0])[None, :, None]
  cols = jnp.arange(IMAGE_SHAPE[1])[None, None, :]
  r = positions[:, 0, None, None]
  c = positions[:, 1, None, None]
  inside = ((rows >= r) & (rows < r + cfg.height) & (cols >= c) &
            (cols < c + cfg.width))
  return inside.astype(jnp.float32)[..., None]


def _fill(images, masks):
  """The images with each mask's pixels grey."""
  return images * (1.0 - masks) + GREY * masks


def _cross_entropy(apply_fn, params, images, labels):
  """(N,) cross-entropy of the true classes."""
  return optax.softmax_cross_entropy_with_integer_labels(
      apply_fn(params, images), labels)


def _ranked(apply_fn, params, images, labels, cfg, grid):
  """int (N, candidates, 2): each image's positions of the largest sum of
  |dCE/dx| (over channels and the rectangle), largest first."""
  grads = jax.grad(lambda x: jnp.sum(
      _cross_entropy(apply_fn, params, x, labels)))(images)
  saliency = jnp.sum(jnp.abs(grads), axis=-1)
  # The sum over the rectangle at every grid position, in the grid's
  # row-major order.
  sums = jax.lax.reduce_window(saliency, 0.0, jax.lax.add,
                               (1, cfg.height, cfg.width),
                               (1, cfg.stride, cfg.stride), "VALID")
  _, top = jax.lax.top_k(sums.reshape(sums.shape[0], -1), cfg.candidates)
  return grid[top]


@functools.partial(jax.jit, static_argnames=("apply_fn", "cfg"))
def _positions(apply_fn, params, images, labels, cfg):
  grid = jnp.asarray(cfg.grid())
  if cfg.search == "exhaustive":
    candidates = jnp.broadcast_to(grid[None], (images.shape[0],) + grid.shape)
  else:
    candidates = _ranked(apply_fn, params, images, labels, cfg, grid)

  def loss_at(positions):  # (N, 2): one candidate per image
    filled = _fill(images, rectangle_masks(positions, cfg))
    return _cross_entropy(apply_fn, params, filled, labels)

  losses = jax.lax.map(loss_at, jnp.swapaxes(candidates, 0, 1))  # (K, N)
  best = jnp.argmax(losses, axis=0)
  return jnp.take_along_axis(candidates, best[:, None, None], axis=1)[:, 0]


def roa_positions(apply_fn: ApplyFn, params: Any,
                  images: jax.typing.ArrayLike, labels: Any,
                  cfg: RoaConfig = RoaConfig()) -> jax.Array:
  """int32 (N, 2) top-left (row, col) of each image's worst rectangle.

  Jittable, with `apply_fn` and `cfg` static. Ties go to the first
  position in the search's order (the grid's for 'exhaustive', the
  gradient ranking's for 'gradient').

  Args:
    apply_fn: `apply_fn(params, images) -> logits`.
    params: the model parameters.
    images: (N, 32, 32, 3) in [0, 1].
    labels: the true classes: one int or an (N,) int vector.
    cfg: the settings.
  """
  _check_cfg(cfg)
  images, labels, _ = pgd.prepare(images, labels, None)
  return _positions(apply_fn, params, images, labels, cfg)


@functools.partial(jax.jit, static_argnames=("apply_fn", "cfg"))
def _roa(apply_fn, params, images, labels, key, cfg):
  positions = _positions(apply_fn, params, images, labels, cfg)
  masks = rectangle_masks(positions, cfg)
  out = pgd.pgd_attack(
      apply_fn, params, _fill(images, masks), labels, masks, key, 1.0,
      cfg=pgd.PGDConfig(steps=cfg.pgd_steps, step_size=cfg.step_size,
                        random_start=cfg.random_start))
  return {"adversarial": out["adversarial"], "positions": positions,
          "masks": masks}


def roa_attack(apply_fn: ApplyFn, params: Any, images: jax.typing.ArrayLike,
               labels: Any, key: jax.typing.ArrayLike,
               cfg: RoaConfig = RoaConfig()) -> dict[str, jax.Array]:
  """The rectangular occlusion attack: position search, then PGD of budget
  1 in L-inf (any colour) inside each image's rectangle (`pgd_attack` with
  one mask per image). Jittable, with `apply_fn` and `cfg` static.

  Args:
    apply_fn: `apply_fn(params, images) -> logits`.
    params: the model parameters.
    images: (N, 32, 32, 3) in [0, 1].
    labels: the true classes (the attack is untargeted): one int or an (N,)
      int vector.
    key: PRNG key (PGD's random start, with `cfg.random_start`).
    cfg: the settings.

  Returns:
    dict with 'adversarial' (N, 32, 32, 3): the images, changed only inside
    their rectangles; 'positions' int32 (N, 2): each rectangle's top-left
    (row, col); 'masks' float32 (N, 32, 32, 1): the rectangles.
  """
  _check_cfg(cfg)
  images, labels, _ = pgd.prepare(images, labels, None)
  return _roa(apply_fn, params, images, labels, key, cfg)
