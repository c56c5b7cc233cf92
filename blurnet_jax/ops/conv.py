"""2-D convolutions with TensorFlow padding, in two formulations.

`conv2d` is the one entry point: 'xla' (`lax.conv_general_dilated`, right on
GPU/TPU) or 's2d' (space-to-depth, Winograd F(2x2, 3x3) and im2col matmuls
whose backward pass XLA:CPU runs well), equal to float rounding. `Conv` is
the Flax layer that LisaCNN uses. The README's "Speed" section gives the
measured difference.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np


def _check_choice(field: str, value: Any, choices: tuple[Any, ...]) -> None:
  if isinstance(value, bool) or value not in choices:
    raise ValueError(
        f"{field}={value!r} is not supported; use one of {choices}.")


CONV_IMPLS: tuple[str, ...] = ("auto", "xla", "s2d")


def _same_pads(size: int, k: int, stride: int) -> tuple[int, int]:
  """TensorFlow/XLA 'SAME' padding (the extra pixel goes after)."""
  out = -(-size // stride)
  total = max((out - 1) * stride + k - size, 0)
  return total // 2, total - total // 2


def _space_to_depth(x: jax.Array) -> jax.Array:
  """(N, H, W, C) -> (N, H/2, W/2, 4C), channel order (dy, dx, c)."""
  n, h, w, c = x.shape
  x = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h // 2, w // 2, 4 * c)


def _kernel_space_to_depth(kernel: jax.Array) -> jax.Array:
  """(k, k, C, O), k even -> (k/2, k/2, 4C, O) matching `_space_to_depth`."""
  k, _, c, o = kernel.shape
  kernel = kernel.reshape(k // 2, 2, k // 2, 2, c, o).transpose(0, 2, 1, 3, 4, 5)
  return kernel.reshape(k // 2, k // 2, 4 * c, o)


@jax.custom_vjp
def _matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """`x @ w`, with a backward pass XLA:CPU runs well.

  Two forms: x (..., K) and w (K, O); or a batch of matmuls, x (B, M, K)
  and w (B, K, O). The weight gradient is a contraction over every row of
  `x`; written as autodiff writes it (`x^T g`), XLA:CPU lays both operands
  out transposed and falls back to a generic, slower matmul. Here it is
  `(g^T x)^T`, with the small `g^T` materialised, which XLA hands to its
  fast matmul library. The barriers only keep XLA from folding the transposes
  back into the contraction; the arithmetic is the same.
  """
  return x @ w


def _matmul_fwd(x, w):
  return _matmul(x, w), (x, w)


def _matmul_bwd(residuals, g):
  x, w = residuals
  if w.ndim == 2:
    k, o = w.shape
    x2, g2 = x.reshape(1, -1, k), g.reshape(1, -1, o)
    w3 = w[None]
  else:
    x2, g2, w3 = x, g, w
  batch = ((0,), (0,))
  dx = lax.dot_general(g2, w3, (((2,), (2,)), batch))  # (B, M, K)
  g_t = lax.optimization_barrier(jnp.swapaxes(g2, 1, 2))  # (B, O, M)
  dw_t = lax.dot_general(g_t, x2, (((2,), (1,)), batch))  # (B, O, K)
  dw = jnp.swapaxes(lax.optimization_barrier(dw_t), 1, 2)
  if w.ndim == 2:
    return dx.reshape(x.shape), dw[0]
  return dx, dw


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


# Winograd F(2x2, 3x3) (Lavin & Gray, 2016): B^T, G and A^T of the
# 1-D F(2, 3) algorithm, applied along both axes.
_WINOGRAD_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5],
                        [0.0, 0.0, 1.0]], np.float32)
_WINOGRAD_AT = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]],
                        np.float32)
_WINOGRAD_AA = np.kron(_WINOGRAD_AT, _WINOGRAD_AT)  # (4, 16): (a, b), (i, j)


def _winograd_input(x: jax.Array, axis: int) -> jax.Array:
  """B^T along `axis` (length 2T + 2) for every 4-wide tile at stride 2.

  Returns the four rows of B^T d stacked in front: (4, ..., T, ...). The
  tiles are read as even/odd pairs of a reshape rather than by strided
  slices, so the gradient is a few shifted adds that XLA fuses.
  """
  shape = x.shape
  pairs = x.reshape(shape[:axis] + (shape[axis] // 2, 2) + shape[axis + 1:])
  even = lax.index_in_dim(pairs, 0, axis + 1, keepdims=False)
  odd = lax.index_in_dim(pairs, 1, axis + 1, keepdims=False)
  n = even.shape[axis]
  e0, e1 = (lax.slice_in_dim(even, a, a + n - 1, axis=axis) for a in (0, 1))
  o0, o1 = (lax.slice_in_dim(odd, a, a + n - 1, axis=axis) for a in (0, 1))
  # d0, d1, d2, d3 = e0, o0, e1, o1: the four rows of every tile.
  return jnp.stack([e0 - e1, o0 + e1, e1 - o0, o0 - o1])


def _winograd_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """VALID 3x3 correlation at stride 1 by Winograd F(2x2, 3x3).

  Every 2x2 block of outputs comes from a 4x4 input tile: 16 products per
  channel pair instead of 36, so the matmul work is 16/36 of im2col's (for
  LisaCNN's conv2 after space-to-depth, 1.2 GFLOP instead of 2.7 per batch
  of 128 and per pass), for three small transforms. The
  transforms use only +-1 and +-1/2: the results match the direct
  convolution to float32 rounding.

  Args:
    x: (N, H, W, C) with H - 2 and W - 2 even.
    kernel: (3, 3, C, O).
  Returns:
    (N, H - 2, W - 2, O).
  """
  n, h, w, c = x.shape
  o = kernel.shape[-1]
  th, tw = (h - 2) // 2, (w - 2) // 2
  g = jnp.asarray(_WINOGRAD_G, kernel.dtype)
  u = jnp.einsum("ai,ijco,bj->abco", g, kernel, g).reshape(16, c, o)
  rows = _winograd_input(x, 1)  # (4, N, th, W, C)
  v = jnp.swapaxes(_winograd_input(rows, 3), 0, 1)  # (4, 4, N, th, tw, C)
  m = _matmul(v.reshape(16, n * th * tw, c), u).reshape(4, 4, n, th, tw, o)
  # A^T on the rows and the columns of every tile at once: one (4, 16)
  # matmul with kron(A^T, A^T), whose gradient is one matmul too.
  y = jnp.asarray(_WINOGRAD_AA, m.dtype) @ m.reshape(16, -1)
  y = y.reshape(2, 2, n, th, tw, o).transpose(2, 3, 0, 4, 1, 5)
  return y.reshape(n, 2 * th, 2 * tw, o)


def _im2col_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """VALID convolution as one matmul over the k*k shifted (strided) views."""
  k, _, c, o = kernel.shape
  out_h = (x.shape[1] - k) // stride + 1
  out_w = (x.shape[2] - k) // stride + 1
  views = [x[:, i:i + stride * (out_h - 1) + 1:stride,
             j:j + stride * (out_w - 1) + 1:stride, :]
           for i in range(k) for j in range(k)]
  patches = jnp.concatenate(views, axis=-1)  # (N, oh, ow, k*k*C), (i, j, c)
  return _matmul(patches, kernel.reshape(k * k * c, o))


def conv2d(x: jax.typing.ArrayLike, kernel: jax.typing.ArrayLike, *,
           stride: int, padding: str, impl: str = "auto") -> jax.Array:
  """A 2-D convolution (NHWC, HWIO) with TensorFlow padding semantics.

  Two formulations of the same arithmetic (results equal to float rounding):

  * 'xla': `lax.conv_general_dilated`, the right choice on GPU/TPU.
  * 's2d': a stride-2 convolution with an even kernel becomes a stride-1
    one on a space-to-depth input (same FLOPs); a 3x3 one with an even
    output size (LisaCNN's conv2 after space-to-depth) is then computed by
    Winograd F(2x2, 3x3) (16/36 of the multiplications, see
    `_winograd_conv3x3`), every other one as im2col by slicing plus one
    matmul, all matmuls with the backward pass of `_matmul`. XLA:CPU runs
    the gradients of its native convolutions slowly; this form is the
    faster one there (`launch.benchmark` measures both).
  * 'auto': 's2d' on CPU, 'xla' elsewhere.

  Args:
    x: (N, H, W, C).
    kernel: (k, k, C, O).
    stride: 1 or 2.
    padding: 'SAME' or 'VALID'.
    impl: 'auto' | 'xla' | 's2d'.
  Returns:
    (N, H', W', O).
  """
  _check_choice("impl", impl, CONV_IMPLS)
  _check_choice("padding", padding, ("SAME", "VALID"))
  x = jnp.asarray(x)
  kernel = jnp.asarray(kernel, x.dtype)
  k = kernel.shape[0]
  if impl == "auto":
    impl = "s2d" if jax.default_backend() == "cpu" else "xla"
  if padding == "SAME":
    pads = (_same_pads(x.shape[1], k, stride), _same_pads(x.shape[2], k, stride))
  else:
    pads = ((0, 0), (0, 0))
  if impl == "xla":
    return lax.conv_general_dilated(x, kernel, (stride, stride), pads,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
  x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  if (stride == 2 and k % 2 == 0 and x.shape[1] % 2 == 0
      and x.shape[2] % 2 == 0):
    x, kernel, stride = _space_to_depth(x), _kernel_space_to_depth(kernel), 1
  if (stride == 1 and kernel.shape[0] == 3 and x.shape[1] % 2 == 0
      and x.shape[2] % 2 == 0):
    return _winograd_conv3x3(x, kernel)
  return _im2col_conv(x, kernel, stride)


class Conv(nn.Module):
  """`nn.Conv`'s parameters (`kernel` HWIO lecun-normal, `bias` zeros) with
  the formulation chosen by `impl` (see `conv2d`)."""

  features: int
  kernel_size: int
  stride: int = 1
  padding: str = "VALID"
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (k, k, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,),
                      jnp.float32)
    y = conv2d(x, kernel, stride=self.stride, padding=self.padding,
               impl=self.impl)
    return y + bias
