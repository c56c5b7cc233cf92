"""Square Attack (Andriushchenko et al., ECCV 2020), L-inf and L2, masked.

A score-based random search that never asks for a gradient: every
iteration proposes a change of one random square window of each image's
perturbation, queries the model once, and keeps the change where the
margin loss went down. A defense that only hides its gradients (gradient
masking) stops PGD but not this attack, so "Square succeeds more often
than PGD" is a warning sign (the check of `blurnet_jax.study.robustness.checklist`).

* L-inf: start from vertical stripes of +-epsilon (a random sign per column
  and channel); a proposal sets the window to +-epsilon, one random sign per
  channel.
* L2: start from the same stripes scaled to norm epsilon; a proposal takes
  the perturbation mass of two random windows (plus any budget not yet
  used) and puts it into the first as a centred bump of nested squares,
  opposite signs on its two halves, one random sign per channel.
* The window side is sqrt(p * area) with p halved on the authors' schedule
  (p_init at the start, /512 at the end, the breakpoints scaled to the
  number of iterations); with a mask, windows are centred on a random mask
  pixel and `area` is the mask's.
* An image stops changing once it is misclassified (targeted: classified as
  its target), as in the paper.

The search is deterministic given the key: transforms are not drawn during
it (measure the result under random transforms afterwards, as
`blurnet_jax.study.robustness.checklist` does). `epsilon` is an argument, as for
`pgd_attack`, so `jax.vmap` over budgets compiles once.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any, Optional

import jax
import jax.numpy as jnp

from blurnet_jax.attacks.pgd import (NORMS, by_norm, check_epsilon, margins,
                                     norms, perturb, prepare, project)
from blurnet_jax.models import ApplyFn
from blurnet_jax.classes import IMAGE_SHAPE

#: The paper's schedule for 10,000 iterations: p is halved after each.
_BREAKPOINTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


@dataclasses.dataclass(frozen=True)
class SquareConfig:
  """Square Attack settings (the budget is an argument of `square_attack`).

  Attributes:
    norm: 'linf' or 'l2'.
    queries: iterations, one model query of every image each (plus one for
      the start).
    p_init: the first windows cover this fraction of the image (or mask).
    targeted: drive the images to `labels` instead of away from them.
  """

  norm: str = "linf"
  queries: int = 1000
  p_init: float = 0.05
  targeted: bool = False

  def __post_init__(self):
    if self.norm not in NORMS:
      raise ValueError(f"SquareConfig.norm={self.norm!r}; use one of "
                       f"{NORMS}.")
    if isinstance(self.queries, bool) or not isinstance(
        self.queries, numbers.Integral) or self.queries < 1:
      raise ValueError(
          f"SquareConfig.queries={self.queries!r} must be an int >= 1.")
    if not 0 < self.p_init <= 1:
      raise ValueError(f"SquareConfig.p_init={self.p_init!r} must be in "
                       "(0, 1].")


def p_schedule(i: jax.Array, queries: int, p_init: float) -> jax.Array:
  """The fraction of the area changed at iteration `i` of `queries`."""
  scaled = i * 10000 // queries
  halvings = jnp.sum(scaled > jnp.asarray(_BREAKPOINTS))
  return p_init / 2.0 ** halvings


def _window(key, mask2d, side):
  """A (H, W, 1) 0/1 square of `side` px centred on a random mask pixel."""
  h, w = mask2d.shape
  logits = jnp.where(mask2d.reshape(-1) > 0, 0.0, -jnp.inf)
  centre = jax.random.categorical(key, logits)
  r0 = jnp.clip(centre // w - side // 2, 0, h - side)
  c0 = jnp.clip(centre % w - side // 2, 0, w - side)
  rows = jnp.arange(h)[:, None]
  cols = jnp.arange(w)[None, :]
  inside = ((rows >= r0) & (rows < r0 + side) & (cols >= c0)
            & (cols < c0 + side))
  return inside.astype(jnp.float32)[..., None], r0, c0


def _bump(r0, c0, side, transpose, shape):
  """Nested squares of weight 1/(k+1)^2 around each half's centre, +1 on
  the first half of the window and -1 on the second (zero elsewhere)."""
  h, w = shape
  u = jnp.arange(h)[:, None] - r0  # local row
  v = jnp.arange(w)[None, :] - c0  # local column
  u, v = jnp.where(transpose, v, u), jnp.where(transpose, u, v)
  half = side // 2
  first = u < half
  lo = jnp.where(first, 0, half)
  size = jnp.where(first, half, side - half)
  ring = jnp.maximum(jnp.abs(u - lo - (size - 1) / 2.0),
                     jnp.abs(v - (side - 1) / 2.0))
  value = 1.0 / (jnp.floor(ring) + 1.0) ** 2
  inside = (u >= 0) & (u < side) & (v >= 0) & (v < side)
  return jnp.where(inside, jnp.where(first, value, -value), 0.0)[..., None]


def _init(key, mask, epsilon, l2):
  """Vertical stripes of +-epsilon (L2: scaled to norm epsilon), masked."""
  signs = jax.random.rademacher(key, (1, IMAGE_SHAPE[1], IMAGE_SHAPE[2]),
                                jnp.float32)
  delta = mask * jnp.broadcast_to(signs, IMAGE_SHAPE) * epsilon
  return by_norm(l2, lambda: delta, lambda: delta * epsilon / jnp.maximum(
      norms(delta, "l2"), 1e-12))


def _propose(key, delta, mask, epsilon, side, l2):
  """One image's candidate perturbation."""
  k_win, k_sign, k_win2, k_t = jax.random.split(key, 4)
  mask2d = jnp.max(mask, axis=-1)
  window, r0, c0 = _window(k_win, mask2d, side)
  window = window * mask
  signs = jax.random.rademacher(k_sign, (1, 1, IMAGE_SHAPE[2]), jnp.float32)

  def l2_candidate():
    second, _, _ = _window(k_win2, mask2d, side)
    union = jnp.maximum(window, second * mask)
    mass = jnp.sum((union * delta) ** 2, axis=(0, 1))  # per channel
    unused = jnp.maximum(epsilon**2 - jnp.sum(delta**2), 0.0)
    pattern = window * _bump(r0, c0, side, jax.random.bernoulli(k_t),
                             mask2d.shape) * signs
    scale = jnp.sqrt(mass + unused / IMAGE_SHAPE[2]) / jnp.maximum(
        jnp.sqrt(jnp.sum(pattern**2, axis=(0, 1))), 1e-12)
    candidate = delta * (1.0 - union) + pattern * scale
    return project(candidate, epsilon, "l2")

  return by_norm(l2, lambda: jnp.where(window > 0, signs * epsilon, delta),
                 l2_candidate)


@functools.partial(jax.jit, static_argnames=("apply_fn", "cfg"))
def _square(apply_fn, params, images, labels, mask, key, epsilon, cfg, l2):
  init_key, loop_key = jax.random.split(key)
  l2 = cfg.norm == "l2" if l2 is None else l2  # or a traced flag
  n = images.shape[0]
  area = jnp.sum(jnp.max(mask, axis=-1) > 0)

  def constrain(delta):  # inside [0, 1] per image; masked
    return perturb(images, mask, delta) - images

  def loss(delta):
    return margins(apply_fn(params, perturb(images, mask, delta)), labels,
                   cfg.targeted)

  delta = constrain(jax.vmap(lambda k: _init(k, mask, epsilon, l2))(
      jax.random.split(init_key, n)))
  margin = loss(delta)
  first = jnp.where(margin < 0, 1, -1)  # queries to success, -1: not yet

  def body(carry, i):
    delta, margin, first = carry
    p = p_schedule(i, cfg.queries, cfg.p_init)
    side = jnp.clip(jnp.round(jnp.sqrt(p * area)), 1,
                    IMAGE_SHAPE[0] - 1).astype(jnp.int32)
    keys = jax.random.split(jax.random.fold_in(loop_key, i), n)
    candidate = constrain(jax.vmap(
        lambda k, d: _propose(k, d, mask, epsilon, side, l2))(
            keys, delta))
    new = loss(candidate)
    accept = (new < margin) & (margin >= 0)
    delta = jnp.where(accept[:, None, None, None], candidate, delta)
    margin = jnp.where(accept, new, margin)
    first = jnp.where((first < 0) & (margin < 0), i + 2, first)
    return (delta, margin, first), jnp.mean(margin)

  (delta, margin, first), trace = jax.lax.scan(
      body, (delta, margin, first), jnp.arange(cfg.queries))
  return {"delta": delta, "adversarial": perturb(images, mask, delta),
          "margins": margin, "queries": first, "mean_margins": trace}


def square_attack(apply_fn: ApplyFn, params: Any,
                  images: jax.typing.ArrayLike, labels: Any,
                  mask: Optional[jax.typing.ArrayLike],
                  key: jax.typing.ArrayLike, epsilon: Any, *,
                  cfg: SquareConfig = SquareConfig(), l2: Any = None
                  ) -> dict[str, jax.Array]:
  """Runs the Square Attack with budget `epsilon` on every image.

  Jittable and vmappable over `epsilon`, `labels`, `key`, `l2` and stacked
  `params`; uses only the logits (no gradient).

  Args:
    apply_fn: `apply_fn(params, images) -> logits (M, 18)`.
    params: the model parameters.
    images: (N, 32, 32, 3) in [0, 1].
    labels: true classes (untargeted) or targets: one int or (N,).
    mask: (32, 32, 1) or (32, 32, 3); None for the whole image.
    key: PRNG key.
    epsilon: the budget, a scalar >= 0 (per pixel for L-inf; per image
      for L2).
    cfg: the settings.
    l2: None (the norm is `cfg.norm`) or a boolean, traced or not (True:
      L2), as for `pgd_attack`: one program serves both norms.

  Returns:
    dict with 'delta' (N, 32, 32, 3), zero outside the mask, norm <=
    epsilon; 'adversarial' (N, 32, 32, 3); 'margins' (N,), the final margin
    losses (< 0: success); 'queries' (N,) int, the queries the first
    success took (-1: none); 'mean_margins' (queries,), the mean margin
    after each iteration (never increases).
  """
  if not isinstance(cfg, SquareConfig):
    raise ValueError(f"cfg must be a SquareConfig, got {type(cfg).__name__}.")
  images, labels, mask = prepare(images, labels, mask)
  return _square(apply_fn, params, images, labels, mask, key,
                 check_epsilon(epsilon), cfg,
                 None if l2 is None else jnp.asarray(l2, bool))
