"""Input transformations as defences: the median filter and JPEG, their
BPDA forms, and a model seen through one.

A transformation defence classifies `transform(x)` instead of `x`. The
classic ones are a median filter (Xu et al. 2018, "feature squeezing") and
JPEG re-encoding (Dziugaite et al. 2016; Guo et al. 2018). Both are
jittable here, so an attack can run through them:

  t = InputTransform("jpeg", quality=75)
  f = defended(apply_fn, t)                 # non-adaptive: JPEG's own
                                            # gradient (zero almost
                                            # everywhere after rounding)
  g = defended(apply_fn, t, adaptive=True)  # BPDA: identity gradient
  pgd_attack(g, params, x, y, mask, key, eps)

`defended` caches its functions, so the same (apply_fn, transform, adaptive)
gives the same function object, and jitted attacks that take `apply_fn`
as a static argument compile once. Transforms must therefore be hashable
callables whose equality means "same function": an `InputTransform`, or
`functools.partial(median_filter, size=3)` kept in one variable (a new
lambda per call defeats the cache).
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Callable, Hashable

import jax
import jax.numpy as jnp
import numpy as np

from blurnet_jax.models import ApplyFn

TRANSFORM_KINDS: tuple[str, ...] = ("median", "jpeg")

Transform = Callable[[jax.Array], jax.Array]

#: The JPEG standard's example tables (ITU-T T.81, Annex K.1), quality 50.
_LUMA_TABLE = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
], np.int64)
_CHROMA_TABLE = np.array([
    [17, 18, 24, 47, 99, 99, 99, 99],
    [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
], np.int64)

#: JFIF's RGB -> YCbCr matrix (rows Y, Cb, Cr); Cb and Cr rows sum to 0.
_RGB_TO_YCC = np.array([
    [0.299, 0.587, 0.114],
    [-0.168736, -0.331264, 0.5],
    [0.5, -0.418688, -0.081312],
])
#: Its exact inverse (entries 1.402, -0.344136, -0.714136, 1.772 to within
#: JFIF's rounding), so colour conversion alone loses nothing.
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC)


def _dct_matrix(n: int = 8) -> np.ndarray:
  """Orthonormal DCT-II, `D[k, i] = c_k cos(pi (2i + 1) k / 2n)`: the 2-D
  `D X D^T` is JPEG's forward DCT, scaling included."""
  k = np.arange(n)[:, None]
  i = np.arange(n)[None, :]
  d = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
  d[0] /= np.sqrt(2.0)
  return d


_DCT = _dct_matrix()


def _check_batch(images: jax.Array, name: str = "images") -> None:
  if images.ndim != 4:
    raise ValueError(f"{name} must have shape (N, H, W, C), got "
                     f"{images.shape}; add the batch axis.")


def _check_size(size) -> int:
  if isinstance(size, bool) or not isinstance(
      size, numbers.Integral) or size < 1 or size % 2 == 0:
    raise ValueError(f"size={size!r} must be an odd int >= 1, e.g. 3.")
  return int(size)


def _check_quality(quality) -> int:
  if isinstance(quality, bool) or not isinstance(
      quality, numbers.Integral) or not 1 <= quality <= 100:
    raise ValueError(f"quality={quality!r} must be an int in 1..100, e.g. 75.")
  return int(quality)


def median_filter(images: jax.typing.ArrayLike, size: int = 3) -> jax.Array:
  """Per-channel median over a size x size window; jittable.

  The image is padded by `size // 2` pixels in 'reflect' mode (numpy's:
  mirrored about the edge pixel, which is not repeated: `d c b | a b c d |
  c b a`), so every output pixel is the median of `size**2` image pixels
  and the shape is kept. Gradients flow to the median pixel of each window.

  Args:
    images: (N, H, W, C) float, `size // 2` < H and W.
    size: odd window width (1 is the identity).

  Returns:
    (N, H, W, C) float32.
  """
  size = _check_size(size)
  images = jnp.asarray(images, jnp.float32)
  _check_batch(images)
  r = size // 2
  if r >= min(images.shape[1:3]):
    raise ValueError(f"size={size} needs images wider than {r} pixels, got "
                     f"{images.shape[1:3]}; use a smaller size.")
  padded = jnp.pad(images, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
  h, w = images.shape[1:3]
  windows = jnp.stack([padded[:, i:i + h, j:j + w]
                       for i in range(size) for j in range(size)], axis=-1)
  return jnp.median(windows, axis=-1)


def quantisation_tables(quality: int) -> np.ndarray:
  """The JPEG quantisation steps at `quality`, (8, 8, 3) for (Y, Cb, Cr).

  IJG's scaling of the standard tables (libjpeg `jpeg_quality_scaling` and
  `jpeg_add_quant_table`, baseline): s = 5000 / quality below 50, else
  200 - 2 quality; step = floor((base * s + 50) / 100) clipped to 1..255.
  Quality 50 gives the standard tables, quality 100 all ones.
  """
  quality = _check_quality(quality)
  scale = 5000 // quality if quality < 50 else 200 - 2 * quality
  tables = [np.clip((t * scale + 50) // 100, 1, 255)
            for t in (_LUMA_TABLE, _CHROMA_TABLE, _CHROMA_TABLE)]
  return np.stack(tables, axis=-1).astype(np.float32)


def jpeg(images: jax.typing.ArrayLike, quality: int) -> jax.Array:
  """JPEG compression and decompression at `quality`, as one jittable
  function.

  In 0..255 units: RGB -> YCbCr (JFIF), level shift by -128, the 8x8
  block DCT (blocks aligned to the top-left corner), division by
  `quantisation_tables(quality)`, rounding to the nearest integer,
  multiplication back, inverse DCT, YCbCr -> RGB, clip to [0, 1]. All
  three channels keep full resolution (4:4:4, no chroma subsampling) and
  nothing is rounded to 8 bits, so a decoder's integer arithmetic aside it
  is what libjpeg does at `subsampling=0`. The gradient is zero almost
  everywhere (rounding); attack it through `bpda`.

  Args:
    images: (N, H, W, 3) in [0, 1], H and W multiples of 8.
    quality: a Python int in 1..100 (IJG's scale; 100 quantises every
      coefficient by 1), static under `jax.jit`.

  Returns:
    (N, H, W, 3) float32 in [0, 1].
  """
  q = jnp.asarray(quantisation_tables(quality))
  images = jnp.asarray(images, jnp.float32)
  _check_batch(images)
  n, h, w, c = images.shape
  if c != 3 or h % 8 or w % 8:
    raise ValueError(f"jpeg needs RGB images whose sides are multiples of 8, "
                     f"got {images.shape}; pad or resize to (N, 32, 32, 3).")
  to_ycc = jnp.asarray(_RGB_TO_YCC, jnp.float32)
  to_rgb = jnp.asarray(_YCC_TO_RGB, jnp.float32)
  dct = jnp.asarray(_DCT, jnp.float32)
  # Rows of Cb and Cr sum to 0, so shifting RGB by 128 shifts Y alone.
  ycc = (images * 255.0 - 128.0) @ to_ycc.T
  blocks = ycc.reshape(n, h // 8, 8, w // 8, 8, c)  # (n, y, i, x, j, c)
  coef = jnp.einsum("ui,vj,nyixjc->nyuxvc", dct, dct, blocks)
  steps = q[:, None]  # (u, 1, v, c) against (..., u, x, v, c)
  coef = jnp.round(coef / steps) * steps
  blocks = jnp.einsum("ui,vj,nyuxvc->nyixjc", dct, dct, coef)
  rgb = blocks.reshape(n, h, w, c) @ to_rgb.T
  return jnp.clip((rgb + 128.0) / 255.0, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class InputTransform:
  """A named input transformation, hashable, usable as a static argument.

  Attributes:
    kind: 'median' (`median_filter(x, size)`) or 'jpeg' (`jpeg(x,
      quality)`). The other kind's field is ignored.
    size: the median window, odd.
    quality: the JPEG quality, 1..100.
  """

  kind: str
  size: int = 3
  quality: int = 75

  def __post_init__(self):
    if self.kind not in TRANSFORM_KINDS:
      raise ValueError(f"InputTransform.kind={self.kind!r}; use one of "
                       f"{TRANSFORM_KINDS}.")
    _check_size(self.size)
    _check_quality(self.quality)

  def __call__(self, images: jax.typing.ArrayLike) -> jax.Array:
    if self.kind == "median":
      return median_filter(images, self.size)
    return jpeg(images, self.quality)


def _check_transform(transform) -> None:
  if not callable(transform) or not isinstance(transform, Hashable):
    raise ValueError(
        f"transform must be a hashable callable, got "
        f"{type(transform).__name__}; use InputTransform('median') or "
        "functools.partial(median_filter, size=3).")


def bpda(fn: Transform) -> Transform:
  """`fn` forward, the identity backward (BPDA, Athalye et al. 2018).

  The backward pass differentiable approximation of a transform close to
  the identity (a median filter, JPEG): gradients pass through it as if it
  were `x -> x`, so a gradient attack sees the model's gradient at
  `fn(x)`. `fn` must keep its input's shape and dtype.

  Args:
    fn: a hashable callable of one array.

  Returns:
    `bpda_fn(x)`, equal to `fn(x)`, with `vjp(g) = g`; the same object for
    the same `fn`.
  """
  _check_transform(fn)
  return _bpda(fn)


@functools.lru_cache(maxsize=None)
def _bpda(fn: Transform) -> Transform:

  def forward(x):
    out = fn(x)
    if out.shape != x.shape or out.dtype != x.dtype:
      raise ValueError(
          f"bpda needs a transform that keeps shape and dtype, got "
          f"{x.dtype} {x.shape} -> {out.dtype} {out.shape}; wrap only "
          "image-to-image transforms.")
    return out

  @jax.custom_vjp
  def approx(x):
    return forward(x)

  def approx_fwd(x):
    return forward(x), None

  def approx_bwd(_, g):
    return (g,)

  approx.defvjp(approx_fwd, approx_bwd)
  return approx


@functools.lru_cache(maxsize=None)
def _defended(apply_fn: ApplyFn, transform: Transform,
              adaptive: bool) -> ApplyFn:
  seen = _bpda(transform) if adaptive else transform

  def apply(params, images):
    return apply_fn(params, seen(jnp.asarray(images, jnp.float32)))

  return apply


def defended(apply_fn: ApplyFn, transform: Transform, *,
             adaptive: bool = False) -> ApplyFn:
  """The classifier seen through an input transformation:
  `apply_fn(params, transform(images))`.

  Args:
    apply_fn: `apply_fn(params, images) -> logits`.
    transform: a hashable image-to-image callable (`InputTransform`, or a
      `functools.partial` of `median_filter` or `jpeg` kept in a variable).
    adaptive: pass the transform through `bpda`, so gradient attacks see
      an identity gradient through it (the adaptive attacker); else its
      own gradient (the non-adaptive one).

  Returns:
    An ApplyFn; the same object for the same (apply_fn, transform,
    adaptive).
  """
  _check_transform(transform)
  if not isinstance(adaptive, bool):
    raise ValueError(f"adaptive={adaptive!r} must be a bool.")
  return _defended(apply_fn, transform, adaptive)
