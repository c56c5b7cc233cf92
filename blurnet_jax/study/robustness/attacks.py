"""The robustness checklist's compiled programs on one model: the gradient
check, PGD and Square over many budgets at once, classification of image
sets as they are and under fresh physical transforms (EOT), and the
transfer matrix between models. Each returns host arrays or figures; what
to run is `measure`'s, how to judge it `claims.checks`'."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from blurnet_jax import distributed
from blurnet_jax import models
from blurnet_jax.attacks import pgd
from blurnet_jax.attacks import rp2
from blurnet_jax.attacks import square
from blurnet_jax.attacks import transforms
from blurnet_jax.classes import STOP


@functools.partial(jax.jit, static_argnames=("apply_fn",))
def _gradients(apply_fn, params, images):
  def loss(x):
    logits = apply_fn(params, x)
    labels = jnp.full(x.shape[:1], STOP)
    return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits,
                                                                   labels))
  return jax.grad(loss)(images)


def gradient_check(apply_fn, params, images) -> dict[str, float]:
  """Share of victims whose input gradient (of the CE of stop) is finite
  everywhere, and share whose gradient is also non-zero; its median norm."""
  g = np.asarray(_gradients(apply_fn, params, jnp.asarray(images)))
  g = g.reshape(len(g), -1)
  finite = np.all(np.isfinite(g), axis=1)
  norm = np.where(finite, np.linalg.norm(np.where(np.isfinite(g), g, 0),
                                         axis=1), 0.0)
  return {"finite": float(finite.mean()),
          "nonzero": float(np.mean(finite & (norm > 0))),
          "median_norm": float(np.median(norm))}


@functools.partial(jax.jit, static_argnames=("attack", "apply_fn", "cfg"))
def _curve(attack, apply_fn, params, images, members, cfg):
  """`attack` for every member (budget, mask, L2 flag, step count, raw
  key): one program, vmapped over them, whatever mix of norms, budgets and
  (PGD) step counts up to `cfg.steps` they hold."""
  def one(epsilon, mask, l2, steps, key):
    key = jax.random.wrap_key_data(key)
    if attack == "pgd":
      out = pgd.pgd_attack(apply_fn, params, images, STOP, mask, key,
                           epsilon, cfg=cfg, l2=l2, steps=steps)
    else:
      out = square.square_attack(apply_fn, params, images, STOP, mask, key,
                                 epsilon, cfg=cfg, l2=l2)
    return out["adversarial"]
  return jax.vmap(one)(*members)


def budget_curve(attack, apply_fn, params, images, masks, key, budgets,
                 cfg, *, l2=None, steps=None) -> np.ndarray:
  """`attack` ('pgd' or 'square', `cfg` its config) at every budget, one
  compiled program for the whole curve (`_curve`).

  Member i has budget `budgets[i]`, mask `masks[i]`, key `key[i]` (or the
  one `key` for all), norm L2 where `l2[i]` (None: `cfg.norm` for all) and,
  for PGD, `steps[i]` <= cfg.steps steps (None: cfg.steps for all); each
  gives what its own single run would (to float rounding). The member axis
  is split over every device of the job (`distributed.global_mesh`),
  padded to a multiple of their count by repeating the last member.

  Returns:
    Host array (len(budgets), N, 32, 32, 3), on every process.
  """
  budgets = np.asarray(budgets, np.float32)
  n = len(budgets)
  keys = jnp.asarray(key)
  if keys.ndim == 0:
    keys = jnp.stack([keys] * n)
  l2 = np.full(n, cfg.norm == "l2") if l2 is None else np.asarray(l2, bool)
  default_steps = getattr(cfg, "steps", 1)
  steps = np.full(n, default_steps, np.int32) if steps is None else (
      np.asarray(steps, np.int32))
  members = (budgets, np.asarray(masks, np.float32), l2, steps,
             np.asarray(jax.random.key_data(keys)))
  mesh = distributed.global_mesh("budget")
  if mesh is None:
    return np.asarray(_curve(attack, apply_fn, params, images,
                             jax.tree.map(jnp.asarray, members), cfg))
  members = distributed.shard_leading(distributed.pad_leading(
      members, distributed.padded_size(n)), mesh)
  params, images = jax.device_get((params, images))
  return distributed.to_host(_curve(attack, apply_fn, params,
                                    np.asarray(images), members, cfg))[:n]


def run_members(attack, apply_fn, params, images, rows, cfg) -> np.ndarray:
  """`budget_curve` over rows of (name, budget, mask, l2, steps or None
  for cfg's, key)."""
  _, budgets, masks, l2, steps, keys = zip(*rows)
  steps = [getattr(cfg, "steps", 1) if s is None else s for s in steps]
  return budget_curve(attack, apply_fn, params, images, jnp.stack(masks),
                      jnp.stack(keys), budgets, cfg, l2=l2, steps=steps)


@functools.partial(jax.jit, static_argnames=("apply_fn", "samples"))
def not_stop_under_eot(apply_fn, params, sets, key, samples):
  """(K, N, 32, 32, 3) image sets -> per image, not stop as they are (0/1)
  and the share of `samples` fresh physical transforms under which it is
  not stop; each (K, N)."""
  physical = transforms.TransformConfig.physical()

  def one(x, k):
    plain = jnp.argmax(apply_fn(params, x), -1) != STOP
    moved = rp2.predictions_under_transforms(
        k, apply_fn, params, x, transforms=physical,
        num_samples=samples) != STOP
    return plain.astype(jnp.float32), jnp.mean(moved, axis=0)

  keys = jax.random.split(key, sets.shape[0])
  return jax.lax.map(lambda a: one(*a), (sets, keys))


def not_stop(apply_fn, params, images) -> np.ndarray:
  """Per image of `images` (N, 32, 32, 3): 1.0 where not classified as
  stop."""
  return (models.predict(apply_fn, params, images) != STOP).astype(
      np.float64)


def misclassified(apply_fn, params, images) -> float:
  """Share of `images` (N, 32, 32, 3) not classified as stop."""
  return float(np.mean(not_stop(apply_fn, params, images)))


def transfer_matrix(named_models, adversarial: dict[str, np.ndarray]
                    ) -> list[list[float]]:
  """M[i][j]: not-stop rate of the images made on model i, shown to j."""
  return [[misclassified(f, p, adversarial[src]) for _, f, p in named_models]
          for src, _, _ in named_models]
