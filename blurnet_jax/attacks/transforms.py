"""Differentiable random physical transforms of image batches (for RP2's EOT).

`random_transform(key, images, cfg)` draws, independently for every image of
an (N, 32, 32, 3) batch in [0, 1], a viewpoint and a lighting condition:

* geometry, one homography per image, applied by inverse warping with
  bilinear sampling (four jnp gathers), so the
  output is a differentiable (piecewise linear) function of the image:
  scale, in-plane rotation, viewing angle (the sign plane turned about its
  vertical and horizontal axes, seen by a pinhole camera) and translation;
* photometry: per-channel colour gain, contrast about mid-grey, brightness;
* camera: an optional Gaussian blur of random width and Gaussian sensor
  noise;
* finally a clip to [0, 1].

Every component whose range is zero is skipped at trace time, so
`TransformConfig.none()` returns the images unchanged (bit for bit) and a
config that enables one component costs only that component.

Typical use (inside a jitted loss):

  cfg = TransformConfig.physical()
  x_t = random_transform(jax.random.fold_in(key, step), x_adv, cfg)
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from blurnet_jax.attacks.checks import check_images
from blurnet_jax.classes import IMAGE_SHAPE

PADDINGS: tuple[str, ...] = ("zeros", "edge")

# Focal length of the pinhole camera of the viewing-angle homography, in
# pixels: a 32-pixel sign seen at that distance fills a ~53 degree field.
FOCAL_PX: float = float(IMAGE_SHAPE[1])


@dataclasses.dataclass(frozen=True)
class TransformConfig:
  """Ranges of the random physical transforms (all drawn uniformly).

  Attributes:
    rotation_deg: in-plane rotation in [-r, r] degrees.
    scale: (lo, hi) zoom factor (> 1 enlarges the sign).
    translate_px: shift in [-t, t] pixels along each axis.
    perspective_deg: viewing angle: the sign plane turned about its vertical
      and its horizontal axis, each by an angle in [-p, p] degrees (< 90).
    brightness: additive offset in [-b, b].
    contrast: contrast factor in [1 - c, 1 + c], about mid-grey 0.5.
    colour: per-channel gain in [1 - g, 1 + g] (white balance, tint).
    blur_sigma: Gaussian blur of standard deviation in [0, s] pixels.
    noise_std: standard deviation of additive Gaussian pixel noise.
    padding: what the warp samples outside the image: 'zeros' (black) or
      'edge' (the nearest border pixel).
  """

  rotation_deg: float = 0.0
  scale: tuple[float, float] = (1.0, 1.0)
  translate_px: float = 0.0
  perspective_deg: float = 0.0
  brightness: float = 0.0
  contrast: float = 0.0
  colour: float = 0.0
  blur_sigma: float = 0.0
  noise_std: float = 0.0
  padding: str = "zeros"

  def __post_init__(self):
    for field in ("rotation_deg", "translate_px", "perspective_deg",
                  "brightness", "contrast", "colour", "blur_sigma",
                  "noise_std"):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or (
          not math.isfinite(value) or value < 0):
        raise ValueError(
            f"TransformConfig.{field}={value!r} is not a finite number >= 0; "
            "give the half-width of its range.")
    scale = tuple(self.scale)
    if (len(scale) != 2 or not all(math.isfinite(s) for s in scale)
        or not 0 < scale[0] <= scale[1]):
      raise ValueError(
          f"TransformConfig.scale={self.scale!r} is not (lo, hi) with "
          "0 < lo <= hi; use e.g. (0.9, 1.1).")
    object.__setattr__(self, "scale", (float(scale[0]), float(scale[1])))
    if self.perspective_deg >= 90:
      raise ValueError(
          f"TransformConfig.perspective_deg={self.perspective_deg} must be "
          "< 90; a sign turned 90 degrees is edge-on.")
    if self.contrast >= 1 or self.colour >= 1:
      raise ValueError(
          f"TransformConfig contrast={self.contrast}, colour={self.colour} "
          "must be < 1 so that every factor stays positive.")
    if self.padding not in PADDINGS:
      raise ValueError(
          f"TransformConfig.padding={self.padding!r} is not supported; use "
          f"one of {PADDINGS}.")

  @classmethod
  def none(cls) -> TransformConfig:
    """The identity: `random_transform` returns its images unchanged."""
    return cls()

  @classmethod
  def physical(cls) -> TransformConfig:
    """A default for printed signs seen from a car (our choice of ranges).

    Rotation +-10 degrees, scale 0.85..1.15, shift +-2 px, viewing angle
    +-25 degrees, brightness +-0.1, contrast and colour gain +-15%, blur up
    to sigma 0.8 px, noise std 0.02, edge padding (a crop continues past its
    border).
    """
    return cls(rotation_deg=10.0, scale=(0.85, 1.15), translate_px=2.0,
               perspective_deg=25.0, brightness=0.1, contrast=0.15,
               colour=0.15, blur_sigma=0.8, noise_std=0.02, padding="edge")

  @property
  def is_identity(self) -> bool:
    return self == TransformConfig(padding=self.padding)

  @property
  def has_geometry(self) -> bool:
    return (self.rotation_deg > 0 or self.scale != (1.0, 1.0)
            or self.translate_px > 0 or self.perspective_deg > 0)


def _uniform(key: jax.Array, n: int, half: float) -> jax.Array:
  return jax.random.uniform(key, (n,), minval=-half, maxval=half)


def _homographies(key: jax.Array, n: int, cfg: TransformConfig) -> jax.Array:
  """(N, 3, 3) random forward homographies drawn from the ranges of `cfg`."""
  k_rot, k_scale, k_tx, k_ty, k_yaw, k_pitch = jax.random.split(key, 6)
  lo, hi = cfg.scale
  return _homography(
      rotation_deg=_uniform(k_rot, n, cfg.rotation_deg),
      scale=jax.random.uniform(k_scale, (n,), minval=lo, maxval=hi),
      yaw_deg=_uniform(k_yaw, n, cfg.perspective_deg),
      pitch_deg=_uniform(k_pitch, n, cfg.perspective_deg),
      tx=_uniform(k_tx, n, cfg.translate_px),
      ty=_uniform(k_ty, n, cfg.translate_px))


def _homography(*, rotation_deg, scale, yaw_deg, pitch_deg, tx,
                ty) -> jax.Array:
  """(N, 3, 3) forward homographies in pixel-centred coordinates (x, y, 1).

  Every argument is an (N,) array. Forward = translate . view . rotate .
  scale: the sign is scaled and turned in its plane, the plane is turned by
  yaw a and pitch b (rotation R = Ry(a) Rx(b)) and viewed by a pinhole
  camera of focal length f at distance f, whose homography is
  [[r11, r12, 0], [r21, r22, 0], [r31 / f, r32 / f, 1]], then shifted in the
  image.
  """
  zeros, ones = jnp.zeros_like(scale), jnp.ones_like(scale)
  theta = jnp.deg2rad(rotation_deg)
  cos, sin = jnp.cos(theta) * scale, jnp.sin(theta) * scale
  rot_scale = jnp.stack([jnp.stack([cos, -sin, zeros], -1),
                         jnp.stack([sin, cos, zeros], -1),
                         jnp.stack([zeros, zeros, ones], -1)], -2)
  yaw, pitch = jnp.deg2rad(yaw_deg), jnp.deg2rad(pitch_deg)
  ca, sa, cb, sb = jnp.cos(yaw), jnp.sin(yaw), jnp.cos(pitch), jnp.sin(pitch)
  # Ry(a) Rx(b): first two columns (the plane's axes) and their depths.
  view = jnp.stack([jnp.stack([ca, sa * sb, zeros], -1),
                    jnp.stack([zeros, cb, zeros], -1),
                    jnp.stack([-sa / FOCAL_PX, ca * sb / FOCAL_PX, ones], -1)],
                   -2)
  shift = jnp.stack([jnp.stack([ones, zeros, tx], -1),
                     jnp.stack([zeros, ones, ty], -1),
                     jnp.stack([zeros, zeros, ones], -1)], -2)
  return shift @ view @ rot_scale


def _inverse_3x3(a: jax.Array) -> jax.Array:
  """Inverse of (..., 3, 3) matrices by the adjugate (no LU to compile)."""
  r0, r1, r2 = a[..., 0, :], a[..., 1, :], a[..., 2, :]
  adj_t = jnp.stack([jnp.cross(r1, r2), jnp.cross(r2, r0),
                     jnp.cross(r0, r1)], -1)
  det = jnp.sum(r0 * jnp.cross(r1, r2), -1)
  return adj_t / det[..., None, None]


def _bilinear(images: jax.Array, src_y: jax.Array, src_x: jax.Array,
              padding: str) -> jax.Array:
  """Samples (N, H, W, C) images at (N, H', W') fractional coordinates.

  Four gathers of the neighbouring pixels weighted by the bilinear
  weights: the weights depend only on the coordinates, so the result is
  linear in the image and its gradient reaches every sampled pixel.
  'zeros' gives a neighbour outside the image weight 0; 'edge' clamps the
  coordinates first, so outside samples repeat the border pixel.
  """
  n, h, w, c = images.shape
  if padding == "edge":
    src_y = jnp.clip(src_y, 0.0, h - 1.0)
    src_x = jnp.clip(src_x, 0.0, w - 1.0)
  y0, x0 = jnp.floor(src_y), jnp.floor(src_x)
  wy, wx = src_y - y0, src_x - x0
  indices, weights = [], []
  for dy, weight_y in ((0, 1.0 - wy), (1, wy)):
    for dx, weight_x in ((0, 1.0 - wx), (1, wx)):
      yi, xi = y0 + dy, x0 + dx
      weight = weight_y * weight_x
      if padding == "zeros":
        inside = (yi >= 0) & (yi <= h - 1) & (xi >= 0) & (xi <= w - 1)
        weight = jnp.where(inside, weight, 0.0)
      indices.append((jnp.clip(yi, 0, h - 1) * w
                      + jnp.clip(xi, 0, w - 1)).astype(jnp.int32))
      weights.append(weight)
  # One gather of the four neighbours: its gradient is one scatter-add,
  # not four (measured: docs/speed.md).
  index = jnp.stack(indices, 1).reshape(n, -1, 1)  # (N, 4 * H'W', 1)
  values = jnp.take_along_axis(images.reshape(n, h * w, c), index, axis=1)
  values = values.reshape((n, 4) + src_y.shape[1:] + (c,))
  return (jnp.stack(weights, 1)[..., None] * values).sum(1)


def _warp(images: jax.Array, forward: jax.Array, padding: str) -> jax.Array:
  """Inverse-warps (N, H, W, C) images by (N, 3, 3) forward homographies.

  Output pixel p samples the input at forward^-1 p; the homography only
  decides *where* to sample, and the bilinear weights make the result
  differentiable with respect to the image values.
  """
  _, h, w, _ = images.shape
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  ys, xs = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
  grid = jnp.asarray(np.stack([xs, ys, np.ones_like(xs)], 0).reshape(3, -1),
                     jnp.float32)
  src = _inverse_3x3(forward) @ grid  # (N, 3, H*W)
  # A point behind the camera (depth <= 0) cannot happen for |angles| < 90
  # on this grid; the floor only keeps the division finite.
  depth = jnp.maximum(src[:, 2], 1e-6)
  src_x = (src[:, 0] / depth + cx).reshape(-1, h, w)
  src_y = (src[:, 1] / depth + cy).reshape(-1, h, w)
  return _bilinear(images, src_y, src_x, padding)


def _gaussian_blur(key: jax.Array, images: jax.Array,
                   max_sigma: float) -> jax.Array:
  """Separable Gaussian blur, sigma ~ U[0, max_sigma] per image, edge pad.

  Each 1-D pass is a matmul with a banded (H, H) matrix per image,
  B[i, j] = sum of the taps t whose edge-clamped source clip(i + t - r)
  is j, so the padding is folded into the matrix and no slice is unrolled.
  """
  n, h, w, _ = images.shape
  if h != w:
    raise ValueError(f"_gaussian_blur needs square images, got {h}x{w}.")
  radius = max(1, int(math.ceil(3 * max_sigma)))
  sigma = jax.random.uniform(key, (n,), minval=0.0, maxval=max_sigma)
  r = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  # sigma -> 0 gives a unit impulse: the floor keeps exp() from 0/0.
  sigma = jnp.maximum(sigma, 1e-3)[:, None]
  taps = jnp.exp(-(r[None, :] ** 2) / (2 * sigma**2))
  taps = taps / taps.sum(-1, keepdims=True)  # (N, 2r+1)
  rows = np.arange(h)[None, :, None]
  offsets = np.arange(-radius, radius + 1)[:, None, None]
  source = np.clip(rows + offsets, 0, h - 1)  # (2r+1, H, 1)
  select = (source == np.arange(h)[None, None, :]).astype(np.float32)
  band = jnp.einsum("nt,tij->nij", taps, jnp.asarray(select))  # (N, H, H)
  x = jnp.einsum("nij,njwc->niwc", band, images)
  return jnp.einsum("nij,nhjc->nhic", band, x)


def random_transform(key: jax.typing.ArrayLike, images: jax.typing.ArrayLike,
                     cfg: TransformConfig) -> jax.Array:
  """Applies an independent random physical transform to every image.

  Jittable with `cfg` static (it is hashable) and differentiable with
  respect to `images` (bilinear sampling, affine photometry, linear blur and
  additive noise; the final clip passes gradients inside (0, 1)).

  Args:
    key: a PRNG key; the same key gives the same transforms.
    images: (N, 32, 32, 3) float images in [0, 1].
    cfg: the ranges (see `TransformConfig`).

  Returns:
    float32 (N, 32, 32, 3) in [0, 1]; exactly `images` (as float32) when
    `cfg.is_identity`.
  """
  if not isinstance(cfg, TransformConfig):
    raise ValueError(
        f"cfg must be a TransformConfig, got {type(cfg).__name__}; build one "
        "with TransformConfig(...) or TransformConfig.physical().")
  images = jnp.asarray(images, jnp.float32)
  check_images(images)
  if cfg.is_identity:
    return images
  n = images.shape[0]
  k_geo, k_bright, k_contrast, k_colour, k_blur, k_noise = jax.random.split(
      key, 6)
  x = images
  if cfg.has_geometry:
    x = _warp(x, _homographies(k_geo, n, cfg), cfg.padding)
  if cfg.colour > 0:
    gain = jax.random.uniform(k_colour, (n, 1, 1, 3), minval=1 - cfg.colour,
                              maxval=1 + cfg.colour)
    x = x * gain
  if cfg.contrast > 0:
    factor = 1.0 + _uniform(k_contrast, n, cfg.contrast)[:, None, None, None]
    x = (x - 0.5) * factor + 0.5
  if cfg.brightness > 0:
    x = x + _uniform(k_bright, n, cfg.brightness)[:, None, None, None]
  if cfg.blur_sigma > 0:
    x = _gaussian_blur(k_blur, x, cfg.blur_sigma)
  if cfg.noise_std > 0:
    x = x + cfg.noise_std * jax.random.normal(k_noise, x.shape)
  return jnp.clip(x, 0.0, 1.0)


def view(images: jax.typing.ArrayLike, *, yaw_deg: float = 0.0,
         pitch_deg: float = 0.0, rotation_deg: float = 0.0,
         scale: float = 1.0, padding: str = "edge") -> jax.Array:
  """Every image seen from one fixed viewpoint (no randomness).

  The deterministic counterpart of `random_transform`'s geometry, for test
  benches: the sign plane turned by `yaw_deg` about its vertical axis and
  `pitch_deg` about its horizontal axis (pinhole camera of focal length
  `FOCAL_PX`), turned `rotation_deg` in its plane and zoomed by `scale`.
  All zeros and scale 1 return the images (up to float rounding).

  Args:
    images: (N, 32, 32, 3) in [0, 1].
    yaw_deg, pitch_deg: viewing angles, |angle| < 90.
    rotation_deg: in-plane rotation.
    scale: zoom (> 0).
    padding: 'zeros' or 'edge' (what lies outside the image).

  Returns:
    float32 (N, 32, 32, 3) in [0, 1].
  """
  images = jnp.asarray(images, jnp.float32)
  check_images(images)
  if not (abs(yaw_deg) < 90 and abs(pitch_deg) < 90 and scale > 0):
    raise ValueError(
        f"view(yaw_deg={yaw_deg}, pitch_deg={pitch_deg}, scale={scale}): "
        "angles must be inside (-90, 90) degrees and scale > 0.")
  if padding not in PADDINGS:
    raise ValueError(f"padding={padding!r}; use one of {PADDINGS}.")
  n = images.shape[0]
  full = lambda v: jnp.full((n,), v, jnp.float32)
  forward = _homography(rotation_deg=full(rotation_deg), scale=full(scale),
                        yaw_deg=full(yaw_deg), pitch_deg=full(pitch_deg),
                        tx=full(0.0), ty=full(0.0))
  return jnp.clip(_warp(images, forward, padding), 0.0, 1.0)


def at_distance(images: jax.typing.ArrayLike, pixels: int) -> jax.Array:
  """The signs as a camera sees them from afar: `pixels` across, then
  resized back to the classifier's 32 (as a detector's crop is).

  Down-sampling averages over each source footprint (antialiased linear
  resize), up-sampling is bilinear; both are linear in the image, so the
  result is differentiable. `pixels=32` returns the images unchanged.

  Args:
    images: (N, 32, 32, 3) in [0, 1].
    pixels: the sign's width on the sensor, 1..32.

  Returns:
    float32 (N, 32, 32, 3).
  """
  images = jnp.asarray(images, jnp.float32)
  check_images(images)
  n, h, w, c = images.shape
  if isinstance(pixels, bool) or not isinstance(pixels, int) or not (
      1 <= pixels <= h):
    raise ValueError(f"pixels={pixels!r} must be an int in 1..{h}: the "
                     "sign's width in pixels at that distance.")
  if pixels == h:
    return images
  small = jax.image.resize(images, (n, pixels, pixels, c), "linear",
                           antialias=True)
  return jnp.clip(jax.image.resize(small, (n, h, w, c), "linear"), 0.0, 1.0)
