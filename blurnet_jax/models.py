"""LISA-CNN, the RP2 victim model, with BlurNet's optional low-pass filter.

One Flax module, `LisaCNN`, covers every variant of the project:

* the undefended network of the RP2 authors (`filter_where='none'`), which
  `params_from_rp2` loads from their converted checkpoint;
* a fixed blur (box or Gaussian, constants, not parameters) on the input or on
  the layer-1 feature maps, which `insert_filter` adds to trained parameters
  without retraining (Table 1 of the BlurNet slides);
* a learned depthwise filter (parameters under `blur`, initialised as the box
  filter) on the input or on the layer-1 maps, trained with
  `blurnet_jax.losses.linf_penalty` (Table 2).

Architecture (cleverhans `cnn_model`, as RP2 used it), NHWC, input in [0, 1]:
conv 64 8x8 stride 2 SAME -> ReLU -> conv 128 6x6 stride 2 VALID -> ReLU ->
conv 128 5x5 stride 1 VALID -> ReLU -> flatten (H, W, C) -> dense 18.
With a 32x32 input, TensorFlow's and XLA's SAME both pad conv1 by 3 pixels on
every side, so the RP2 weights give the same logits here as in TensorFlow.

Typical use:

  params = params_from_rp2(rp2_dir / "rp2_lisa_cnn.npz")
  model, params = insert_filter(params, filter_where="l1", filter_size=5)
  logits = model.apply({"params": params}, images)  # (N, 18)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import functools
import numbers
import os
from typing import Any
import zipfile

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from blurnet_jax.classes import IMAGE_SHAPE, NUM_CLASSES

Params = dict[str, dict[str, jax.Array]]

FILTER_WHERE: tuple[str, ...] = ("none", "input", "l1")
FILTER_KERNELS: tuple[str, ...] = ("box", "gaussian", "learned")
FIXED_KERNELS: tuple[str, ...] = ("box", "gaussian")
FILTER_SIZES: tuple[int, ...] = (3, 5, 7)
FILTER_PADDINGS: tuple[str, ...] = ("zeros", "reflect")
FILTER_POSITIONS: tuple[str, ...] = ("after_relu", "before_relu")
# The fields of `LisaCNN` that a config may set (see `model_from_config`).
MODEL_FIELDS: tuple[str, ...] = (
    "filter_where",
    "filter_kernel",
    "filter_size",
    "filter_padding",
    "filter_position",
    "conv_impl",
)

L1_CHANNELS: int = 64  # Feature maps of conv1, what an 'l1' filter sees.
L1_SHAPE: tuple[int, int, int] = (16, 16, L1_CHANNELS)
L2_SHAPE: tuple[int, int, int] = (6, 6, 128)

# Keras variable names of the RP2 checkpoint -> (layer, leaf) of `LisaCNN`.
# Keras stores conv kernels HWIO and dense kernels (in, out), flax's layouts,
# and both flatten the last conv output in (H, W, C) order, so no transpose.
RP2_PARAM_NAMES: dict[str, tuple[str, str]] = {
    "convolution2d_1_W": ("conv1", "kernel"),
    "convolution2d_1_b": ("conv1", "bias"),
    "convolution2d_2_W": ("conv2", "kernel"),
    "convolution2d_2_b": ("conv2", "bias"),
    "convolution2d_3_W": ("conv3", "kernel"),
    "convolution2d_3_b": ("conv3", "bias"),
    "dense_1_W": ("dense", "kernel"),
    "dense_1_b": ("dense", "bias"),
}
RP2_NOISE_NAMES: tuple[str, ...] = (
    "noise_rectangles_camouflage",
    "noise_octagon_poster",
)


def _check_choice(field: str, value: Any, choices: tuple[Any, ...]) -> None:
  if isinstance(value, bool) or value not in choices:
    raise ValueError(
        f"{field}={value!r} is not supported; use one of {choices}.")


def _check_size(field: str, size: Any) -> None:
  if (not isinstance(size, numbers.Integral) or isinstance(size, bool)
      or int(size) not in FILTER_SIZES):
    raise ValueError(
        f"{field}={size!r} is not supported; use an int in {FILTER_SIZES}.")


def gaussian_sigma(size: int) -> float:
  """OpenCV's default Gaussian sigma for an odd kernel `size`.

  `sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8`, the rule that
  `cv2.getGaussianKernel(size, sigma<=0)` documents: 0.8, 1.1, 1.4 for sizes
  3, 5, 7.

  Args:
    size: kernel width, one of `FILTER_SIZES`.

  Returns:
    The standard deviation in pixels.
  """
  _check_size("size", size)
  return 0.3 * ((int(size) - 1) * 0.5 - 1.0) + 0.8


def blur_kernel(kind: str, size: int, channels: int) -> jax.Array:
  """A fixed low-pass kernel for a depthwise convolution.

  * 'box': every tap is `1 / size**2`.
  * 'gaussian': the separable Gaussian `g g^T`, with `g[i]` proportional to
    `exp(-r_i**2 / (2 sigma**2))`, `r_i = i - (size - 1) / 2` and sigma from
    `gaussian_sigma(size)`, normalised so that the 2-D kernel sums to 1. (For
    sizes up to 7 with sigma <= 0, OpenCV returns fixed binomial taps instead,
    e.g. [1/4, 1/2, 1/4]; this kernel samples the Gaussian at the documented
    sigma, e.g. [0.2390, 0.5220, 0.2390] for size 3.)

  Both sum to 1 per channel, so a constant map stays constant away from the
  border.

  Args:
    kind: 'box' or 'gaussian'.
    size: kernel width k, one of `FILTER_SIZES`.
    channels: number of channels C filtered independently.

  Returns:
    float32 array (k, k, 1, C), HWIO with one input channel per group, the
    layout of `depthwise_blur` and of the learned `blur` parameters.
  """
  if kind == "learned":
    raise ValueError(
        "blur_kernel has no 'learned' kernel; a learned filter starts as "
        "blur_kernel('box', ...), so ask for 'box'.")
  _check_choice("kind", kind, FIXED_KERNELS)
  _check_size("size", size)
  if (not isinstance(channels, numbers.Integral) or isinstance(channels, bool)
      or channels < 1):
    raise ValueError(
        f"channels={channels!r} is not supported; use an int >= 1.")
  size = int(size)
  if kind == "box":
    taps = np.ones(size, np.float64)
  else:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    taps = np.exp(-(r**2) / (2.0 * gaussian_sigma(size) ** 2))
  taps /= taps.sum()
  kernel_2d = np.outer(taps, taps)
  kernel = np.broadcast_to(kernel_2d[:, :, None, None],
                           (size, size, 1, int(channels)))
  return jnp.asarray(kernel, jnp.float32)


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
  out transposed and falls back to a generic matmul (36-93 GFLOP/s on the
  LisaCNN shapes of the README's machine). Here it is `(g^T x)^T`, with
  the small `g^T` materialised, which XLA hands to its fast matmul library
  (70-140 GFLOP/s). The barriers only keep XLA from folding the transposes
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
    the gradients of its native convolutions at 7-60 GFLOP/s; this form
    runs a LisaCNN train step 2.7x faster on a 2-core CPU (1,618 against
    609 images/s; see the benchmark in the README).
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


def depthwise_blur(x: jax.typing.ArrayLike,
                   kernel: jax.typing.ArrayLike,
                   *,
                   padding: str = "zeros") -> jax.Array:
  """Filters every channel of `x` with its own k x k kernel, same output size.

  The border is padded explicitly by k // 2 pixels, then a VALID depthwise
  convolution (`feature_group_count=C`) runs, so the two padding modes differ
  only in the padded values:

  * 'zeros': zeros outside the map (a constant map darkens at the border);
  * 'reflect': mirror without repeating the edge pixel (numpy/`jnp.pad`
    'reflect', OpenCV's default BORDER_REFLECT_101), so a constant map stays
    constant everywhere when the kernel sums to 1.

  Args:
    x: (N, H, W, C) feature maps or images.
    kernel: (k, k, 1, C) depthwise kernel, k odd (see `blur_kernel`).
    padding: 'zeros' or 'reflect'.

  Returns:
    (N, H, W, C) filtered maps, the dtype of `x`.
  """
  _check_choice("padding", padding, FILTER_PADDINGS)
  x = jnp.asarray(x)
  kernel = jnp.asarray(kernel)
  if x.ndim != 4:
    raise ValueError(
        f"depthwise_blur needs x of shape (N, H, W, C), got {x.shape}; add "
        "the missing batch/channel axis.")
  channels = x.shape[-1]
  k = kernel.shape[0] if kernel.ndim == 4 else -1
  if (kernel.ndim != 4 or kernel.shape != (k, k, 1, channels) or k % 2 == 0):
    raise ValueError(
        f"depthwise_blur needs a kernel of shape (k, k, 1, {channels}) with k "
        f"odd for x with {channels} channels, got {kernel.shape}; build it "
        f"with blur_kernel(kind, k, {channels}).")
  pad = k // 2
  if padding == "reflect" and min(x.shape[1], x.shape[2]) <= pad:
    raise ValueError(
        f"reflect padding of {pad} px needs maps larger than {pad} px, got "
        f"{x.shape[1:3]}; use a smaller kernel or padding='zeros'.")
  mode = "constant" if padding == "zeros" else "reflect"
  x_padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=mode)
  # A sum of k*k shifted views times per-channel weights: elementwise work
  # that XLA fuses, several times faster (forward and gradients) on CPU
  # than a grouped convolution, and the same arithmetic.
  kernel = kernel.astype(x.dtype)
  h, w = x.shape[1], x.shape[2]
  out = jnp.zeros_like(x)
  for i in range(k):
    for j in range(k):
      out = out + x_padded[:, i:i + h, j:j + w, :] * kernel[i, j, 0]
  return out


class BlurFilter(nn.Module):
  """Depthwise low-pass filter: fixed constants, or a learned `kernel` param.

  Attributes:
    kernel_kind: 'box' | 'gaussian' (constants from `blur_kernel`, no params)
      | 'learned' (param `kernel` (k, k, 1, C), no bias, initialised as the
      box filter 1 / k**2).
    size: kernel width k.
    padding: 'zeros' | 'reflect' (see `depthwise_blur`).
  """

  kernel_kind: str = "box"
  size: int = 3
  padding: str = "zeros"

  @nn.compact
  def __call__(self, x: jax.typing.ArrayLike) -> jax.Array:
    """(N, H, W, C) -> (N, H, W, C)."""
    x = jnp.asarray(x)
    channels = x.shape[-1]
    k = int(self.size)
    if self.kernel_kind == "learned":
      kernel = self.param("kernel", nn.initializers.constant(1.0 / (k * k)),
                          (k, k, 1, channels), jnp.float32)
    else:
      kernel = blur_kernel(self.kernel_kind, k, channels)
    return depthwise_blur(x, kernel, padding=self.padding)


class LisaCNN(nn.Module):
  """The RP2 LISA-CNN with an optional BlurNet filter.

  Parameters: `conv1` (8, 8, 3, 64), `conv2` (6, 6, 64, 128), `conv3`
  (5, 5, 128, 128), `dense` (512, 18), each with `kernel` and `bias`; plus
  `blur` {'kernel': (k, k, 1, C)} for a learned filter (C = 3 on the input,
  64 on L1).

  Attributes:
    filter_where: 'none' (the RP2 network) | 'input' (blur the image) | 'l1'
      (blur the 64 feature maps of conv1).
    filter_kernel: 'box' | 'gaussian' (fixed, see `blur_kernel`) | 'learned'
      (depthwise conv, box-initialised). Ignored when filter_where='none'.
    filter_size: kernel width, 3 | 5 | 7. Ignored when filter_where='none'.
    filter_padding: 'zeros' | 'reflect' (see `depthwise_blur`); the filtered
      maps keep their spatial size. Ignored when filter_where='none'.
    filter_position: 'after_relu' (filter relu(conv1), the default) |
      'before_relu' (relu(filter(conv1))); only allowed with filter_where='l1'.
    conv_impl: 'auto' | 'xla' | 's2d', how the convolutions are computed
      (same results; see `conv2d`). 'auto' picks the fastest per backend.
  """

  filter_where: str = "none"
  filter_kernel: str = "box"
  filter_size: int = 3
  filter_padding: str = "zeros"
  filter_position: str = "after_relu"
  conv_impl: str = "auto"

  def __post_init__(self):
    _check_choice("filter_where", self.filter_where, FILTER_WHERE)
    _check_choice("filter_kernel", self.filter_kernel, FILTER_KERNELS)
    _check_size("filter_size", self.filter_size)
    _check_choice("filter_padding", self.filter_padding, FILTER_PADDINGS)
    _check_choice("filter_position", self.filter_position, FILTER_POSITIONS)
    _check_choice("conv_impl", self.conv_impl, CONV_IMPLS)
    if self.filter_position == "before_relu" and self.filter_where != "l1":
      raise ValueError(
          f"filter_position='before_relu' needs filter_where='l1', got "
          f"filter_where={self.filter_where!r}; use "
          "filter_position='after_relu'.")
    super().__post_init__()

  def _blur(self) -> BlurFilter:
    return BlurFilter(kernel_kind=self.filter_kernel, size=self.filter_size,
                      padding=self.filter_padding, name="blur")

  @nn.compact
  def __call__(self, x: jax.typing.ArrayLike, *, return_features: bool = False):
    """Logits of a batch of images.

    Args:
      x: float32 (N, 32, 32, 3) RGB images in [0, 1].
      return_features: also return the intermediate maps.

    Returns:
      logits (N, 18); with `return_features`, `(logits, features)` where
      features is a dict of
        'l1': conv1 after its ReLU, before any l1 filter (N, 16, 16, 64)
          (computed from the filtered image when filter_where='input');
        'l1_filtered': what conv2 sees (N, 16, 16, 64), equal to 'l1' unless
          filter_where='l1';
        'l2': conv2 after its ReLU (N, 6, 6, 128).
    """
    x = jnp.asarray(x, jnp.float32)
    if x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
      h, w, c = IMAGE_SHAPE
      raise ValueError(
          f"LisaCNN needs images of shape (N, {h}, {w}, {c}), got {x.shape}; "
          f"resize to {h}x{w} RGB and add a batch axis.")
    if self.filter_where == "input":
      x = self._blur()(x)
    z1 = Conv(L1_CHANNELS, 8, stride=2, padding="SAME", impl=self.conv_impl,
              name="conv1")(x)
    l1 = nn.relu(z1)
    if self.filter_where == "l1":
      if self.filter_position == "before_relu":
        l1_filtered = nn.relu(self._blur()(z1))
      else:
        l1_filtered = self._blur()(l1)
    else:
      l1_filtered = l1
    l2 = nn.relu(Conv(L2_SHAPE[-1], 6, stride=2, padding="VALID",
                      impl=self.conv_impl, name="conv2")(l1_filtered))
    l3 = nn.relu(Conv(128, 5, stride=1, padding="VALID", impl=self.conv_impl,
                      name="conv3")(l2))
    logits = nn.Dense(NUM_CLASSES, name="dense")(
        l3.reshape((l3.shape[0], -1)))
    if return_features:
      return logits, {"l1": l1, "l1_filtered": l1_filtered, "l2": l2}
    return logits


def model_from_config(cfg: Mapping[str, Any]) -> LisaCNN:
  """Builds a `LisaCNN` from a flat ConfigDict or dict of `MODEL_FIELDS`.

  Args:
    cfg: `ml_collections.ConfigDict` or mapping; keys a subset of
      `MODEL_FIELDS`, missing keys take the `LisaCNN` defaults.

  Returns:
    The module (validated; see `LisaCNN`).
  """
  if hasattr(cfg, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict.
    cfg = cfg.to_dict()
  if not isinstance(cfg, Mapping):
    raise ValueError(
        f"model config must be a ConfigDict or dict, got {type(cfg).__name__}; "
        f"pass a mapping with keys from {MODEL_FIELDS}.")
  unknown = sorted(str(k) for k in cfg if k not in MODEL_FIELDS)
  if unknown:
    raise ValueError(
        f"unknown model config key(s) {unknown}; LisaCNN accepts only "
        f"{MODEL_FIELDS}.")
  return LisaCNN(**dict(cfg))


@functools.lru_cache(maxsize=None)
def apply_fn_for(model: LisaCNN) -> Callable[[Any, jax.Array], jax.Array]:
  """`apply_fn(params, images) -> logits` of `model`, one object per model.

  Equal models (same fields) get the same function object, so the jitted
  programs that take it as a static argument (the RP2 attack) compile once
  per architecture, not once per call.
  """
  def apply_fn(params, images):
    return model.apply({"params": params}, images)

  return apply_fn


def _base_param_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
  """Shapes of the unfiltered LisaCNN params, from the module itself."""
  variables = jax.eval_shape(
      LisaCNN().init, jax.random.key(0),
      jax.ShapeDtypeStruct((1, *IMAGE_SHAPE), jnp.float32))
  return {layer: {leaf: tuple(v.shape) for leaf, v in leaves.items()}
          for layer, leaves in variables["params"].items()}


def _load_npz(npz_path: str | os.PathLike[str], keys: tuple[str, ...],
              what: str) -> dict[str, np.ndarray]:
  """Reads `keys` from an .npz without pickle; one-line errors."""
  path = os.fspath(npz_path)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"{what} not found: {path!r}; pass the path of rp2_lisa_cnn.npz "
        "(in the shared rp2/ folder).")
  try:
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
      raise ValueError("a single .npy array, not an .npz archive")
    with data:
      files = set(data.files)
      arrays = {key: np.asarray(data[key]) for key in keys if key in files}
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    # A .npy, a pickle, object arrays or a corrupt archive.
    reason = (str(e).split(". ")[0].splitlines() or [type(e).__name__])[0]
    raise ValueError(
        f"{path!r} is not a readable .npz of plain arrays ({reason}); pass "
        "rp2_lisa_cnn.npz.") from None
  for key in keys:
    if key not in arrays:
      raise ValueError(
          f"{path!r} has no array {key!r}; this file is not an RP2 LISA-CNN, "
          "pass rp2_lisa_cnn.npz.")
  return arrays


def params_from_rp2(npz_path: str | os.PathLike[str]) -> Params:
  """Loads the RP2 authors' trained LISA-CNN as `LisaCNN` params.

  Args:
    npz_path: path of `rp2_lisa_cnn.npz` (Keras names, see `RP2_PARAM_NAMES`).

  Returns:
    {'conv1': {'kernel', 'bias'}, 'conv2': ..., 'conv3': ..., 'dense': ...},
    float32, for `LisaCNN().apply({'params': params}, x)`.

  Raises:
    FileNotFoundError: no file at `npz_path`.
    ValueError: not an .npz, a key missing, or an array whose shape is not
      the one LisaCNN expects.
  """
  path = os.fspath(npz_path)
  arrays = _load_npz(path, tuple(RP2_PARAM_NAMES), "RP2 model file")
  expected = _base_param_shapes()
  params: Params = {layer: {} for layer in expected}
  for key, (layer, leaf) in RP2_PARAM_NAMES.items():
    array = arrays[key]
    shape = expected[layer][leaf]
    if array.shape != shape or not np.issubdtype(array.dtype, np.floating):
      raise ValueError(
          f"{path!r}: {key!r} is {array.dtype} {array.shape}, LisaCNN expects "
          f"float {shape} for {layer}/{leaf}; this file is not an RP2 "
          "LISA-CNN.")
    params[layer][leaf] = jnp.asarray(array, jnp.float32)
  return params


def load_rp2_noise(npz_path: str | os.PathLike[str], name: str) -> jax.Array:
  """One of the RP2 authors' final attack perturbations.

  Args:
    npz_path: path of `rp2_lisa_cnn.npz`.
    name: 'noise_rectangles_camouflage' or 'noise_octagon_poster'.

  Returns:
    float32 (32, 32, 3), as stored: before the [-20, 20] clip of their attack,
    so apply `clip(x + mask * clip(noise, -20, 20), 0, 1)`.
  """
  _check_choice("name", name, RP2_NOISE_NAMES)
  path = os.fspath(npz_path)
  noise = _load_npz(path, (name,), "RP2 assets file")[name]
  if noise.shape != IMAGE_SHAPE or not np.issubdtype(noise.dtype, np.floating):
    raise ValueError(
        f"{path!r}: {name!r} is {noise.dtype} {noise.shape}, expected float "
        f"{IMAGE_SHAPE}; this file is not the RP2 assets file.")
  return jnp.asarray(noise, jnp.float32)


def _check_base_params(params: Mapping[str, Any]) -> None:
  """Unfiltered LisaCNN params (conv1, conv2, conv3, dense) or ValueError."""
  if not isinstance(params, Mapping):
    raise ValueError(
        f"params must be a dict, got {type(params).__name__}; pass the inner "
        "params dict (variables['params']).")
  expected = _base_param_shapes()
  if "blur" in params:
    raise ValueError(
        "params already hold a learned 'blur' filter; pass the params of an "
        "unfiltered LisaCNN (drop params['blur']).")
  if set(params) != set(expected):
    raise ValueError(
        f"params have top-level keys {sorted(params)}, expected "
        f"{sorted(expected)}; pass the inner params dict "
        "(variables['params']).")
  for layer, leaves in expected.items():
    for leaf, shape in leaves.items():
      got = getattr(params[layer].get(leaf), "shape", None)
      if got is None or tuple(got) != shape:
        raise ValueError(
            f"params[{layer!r}][{leaf!r}] has shape {got}, LisaCNN expects "
            f"{shape}; pass params of a LisaCNN (e.g. params_from_rp2).")


def insert_filter(params: Mapping[str, Any],
                  **filter_fields: Any) -> tuple[LisaCNN, Params]:
  """Adds a BlurNet filter to trained, unfiltered params (no retraining).

  Fixed kernels ('box', 'gaussian') are module constants: the params come back
  unchanged and only the module differs. A 'learned' filter adds
  `params['blur'] = {'kernel': blur_kernel('box', k, C)}`, its initial value.

  Args:
    params: unfiltered `LisaCNN` params (e.g. from `params_from_rp2`).
    **filter_fields: `LisaCNN` fields (`MODEL_FIELDS`), e.g.
      `filter_where='l1', filter_kernel='box', filter_size=5`.

  Returns:
    (model, params) for `model.apply({'params': params}, x)`.
  """
  model = model_from_config(filter_fields)
  _check_base_params(params)
  new_params: Params = {layer: dict(leaves) for layer, leaves in params.items()}
  if model.filter_where != "none" and model.filter_kernel == "learned":
    channels = IMAGE_SHAPE[-1] if model.filter_where == "input" else L1_CHANNELS
    new_params["blur"] = {
        "kernel": blur_kernel("box", model.filter_size, channels)}
  return model, new_params
