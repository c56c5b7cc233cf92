"""BlurNet training losses: cross-entropy and the two low-pass regularisers.

All functions are pure and jittable (shape checks run at trace time):

* `cross_entropy`: mean softmax cross-entropy with integer labels.
* `linf_penalty`: `alpha / K * sum_j max_{a,b} |W[a, b, 0, j]|` on a learned
  depthwise kernel (k, k, 1, K). For a fixed L1 norm of a channel's weights the
  max is smallest when all weights share one magnitude, so the penalty pushes
  each kernel towards a box-like low-pass filter.
* `tv_penalty`: `alpha / (N K) * sum_i sum_k TV(F[i, :, :, k])` on feature maps
  (N, H, W, K), anisotropic `TV(x) = sum |x[i+1, j] - x[i, j]| +
  |x[i, j+1] - x[i, j]|`, each difference over its valid range.

A BlurNet objective is `cross_entropy(...) + linf_penalty(...)` or
`cross_entropy(...) + tv_penalty(features['l1'], ...)`.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import optax


def _check_alpha(alpha: jax.typing.ArrayLike) -> None:
  # Only concrete Python numbers can be checked; a traced alpha passes.
  if isinstance(alpha, numbers.Real) and not alpha >= 0:
    raise ValueError(
        f"alpha={alpha!r} must be >= 0; pass a non-negative weight.")


def cross_entropy(logits: jax.typing.ArrayLike,
                  labels: jax.typing.ArrayLike) -> jax.Array:
  """Mean softmax cross-entropy.

  Args:
    logits: (N, C) unnormalised scores.
    labels: (N,) integer class indices in [0, C).

  Returns:
    float32 scalar, the mean over the N examples.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  if logits.ndim != 2:
    raise ValueError(
        f"cross_entropy needs logits of shape (N, C), got {logits.shape}; add "
        "a batch axis.")
  if labels.shape != logits.shape[:1]:
    raise ValueError(
        f"cross_entropy needs labels of shape ({logits.shape[0]},) for logits "
        f"{logits.shape}, got {labels.shape}; pass one integer label per row.")
  if logits.shape[0] == 0 or logits.shape[1] == 0:
    raise ValueError(
        f"cross_entropy needs at least one example and one class, got logits "
        f"{logits.shape}; pass a non-empty batch.")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(
        f"cross_entropy needs integer labels, got dtype {labels.dtype}; pass "
        "class indices, not one-hot or float labels.")
  # optax works from log_softmax, stable for large logits.
  losses = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels)
  return jnp.mean(losses)


def linf_penalty(kernel: jax.typing.ArrayLike, *,
                 alpha: jax.typing.ArrayLike) -> jax.Array:
  """L-infinity penalty of a depthwise kernel, averaged over channels.

  `alpha / K * sum_j max_{a,b} |W[a, b, 0, j]|`.

  Args:
    kernel: (k, k, 1, K) depthwise kernel (the learned `blur` params).
    alpha: penalty weight (>= 0).

  Returns:
    float32 scalar.
  """
  _check_alpha(alpha)
  kernel = jnp.asarray(kernel)
  if kernel.ndim != 4 or kernel.shape[2] != 1 or kernel.size == 0:
    raise ValueError(
        f"linf_penalty needs a depthwise kernel of shape (k, k, 1, K), got "
        f"{kernel.shape}; pass params['blur']['kernel'].")
  per_channel = jnp.max(jnp.abs(kernel.astype(jnp.float32)), axis=(0, 1, 2))
  return alpha * jnp.mean(per_channel)


def tv_penalty(features: jax.typing.ArrayLike, *,
               alpha: jax.typing.ArrayLike) -> jax.Array:
  """Anisotropic total variation of feature maps, averaged over maps.

  `alpha / (N K) * sum_i sum_k TV(F[i, :, :, k])`,
  `TV(x) = sum_{i<H-1, j} |x[i+1, j] - x[i, j]| + sum_{i, j<W-1} |x[i, j+1] -
  x[i, j]|`.

  Args:
    features: (N, H, W, K) feature maps (e.g. `features['l1']` of LisaCNN).
    alpha: penalty weight (>= 0).

  Returns:
    float32 scalar.
  """
  _check_alpha(alpha)
  features = jnp.asarray(features)
  if features.ndim != 4:
    raise ValueError(
        f"tv_penalty needs feature maps of shape (N, H, W, K), got "
        f"{features.shape}; add the missing batch/channel axis.")
  n, _, _, k = features.shape
  if n == 0 or k == 0:
    raise ValueError(
        f"tv_penalty needs at least one image and one map, got "
        f"{features.shape}; pass a non-empty batch.")
  f = features.astype(jnp.float32)
  vertical = jnp.sum(jnp.abs(f[:, 1:, :, :] - f[:, :-1, :, :]))
  horizontal = jnp.sum(jnp.abs(f[:, :, 1:, :] - f[:, :, :-1, :]))
  return alpha * (vertical + horizontal) / (n * k)
