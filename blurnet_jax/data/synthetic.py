"""A procedural, LISA-like traffic-sign crop generator (the built-in data set).

Every image is a 32x32 RGB crop as a sign detector would give it: one of the
18 classes' sign templates (`templates.py`) warped by a random homography
(scale and position jitter, in-plane rotation, viewing angle), painted with
worn paint and glare, composited over a procedural background (sky, foliage,
road, building, dark scenes), then the camera: shadows, partial occlusion,
illumination and colour casts, gamma, haze, defocus and motion blur, sensor
noise and JPEG block artefacts.

Everything is vectorised over a batch with numpy and driven by one
`np.random.Generator`, so a batch is a pure function of (labels, seed).
`generate_split` cuts a split into fixed chunks, each seeded by
(seed, split, chunk index), so the bytes do not depend on how many worker
processes render them.
"""

from collections.abc import Iterator
import functools
import multiprocessing
import os

import numpy as np
import scipy.fft

from blurnet_jax.classes import NUM_CLASSES, STOP
from blurnet_jax.data import templates

SIZE = 32
SPLITS = {"train": 0, "test": 1, "victims": 2}
CHUNK = 512  # images per independently seeded chunk

_JPEG_Q_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], np.float32).reshape(8, 8)
_JPEG_Q_CHROMA = np.full((8, 8), 99, np.float32)
_JPEG_Q_CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66],
                          [24, 26, 56, 99], [47, 66, 99, 99]]


def _dct_matrix(n=8):
  k = np.arange(n)[:, None]
  x = np.arange(n)[None, :]
  d = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2 / n)
  d[0] /= np.sqrt(2)
  return d.astype(np.float32)


_DCT = _dct_matrix()


def _upsample_matrix(g: int, n: int = SIZE) -> np.ndarray:
  """(n, g) bilinear interpolation from a g-point grid to n pixel centres."""
  pos = (np.arange(n) + 0.5) / n * (g - 1)
  return np.stack([np.interp(pos, np.arange(g), np.eye(g)[j])
                   for j in range(g)], axis=1).astype(np.float32)


_UP = {g: _upsample_matrix(g) for g in (3, 5, 9, 17)}
_YY, _XX = np.meshgrid(np.arange(SIZE, dtype=np.float32) + 0.5,
                       np.arange(SIZE, dtype=np.float32) + 0.5, indexing="ij")


def _smooth_noise(rng, b, g):
  """(b, 32, 32) Gaussian noise on a g x g grid, bilinearly upsampled."""
  u = _UP[g]
  return u @ rng.standard_normal((b, g, g), np.float32) @ u.T


def _u(rng, lo, hi, shape):
  return rng.uniform(lo, hi, shape).astype(np.float32)


# ---- backgrounds ---------------------------------------------------------------


def _backgrounds(rng, b):
  """(b, 32, 32, 3) float32 scene textures a sign is seen against."""
  coarse, mid, fine = (_smooth_noise(rng, b, g) for g in (3, 9, 17))
  y = _YY[None] / SIZE
  kind = rng.integers(0, 6, b)
  c0 = np.empty((b, 3), np.float32)
  c1 = np.empty((b, 3), np.float32)
  t = np.empty((b, SIZE, SIZE), np.float32)
  jit = _u(rng, -0.08, 0.08, (b, 3))
  for k, (lo, hi) in enumerate((
      ((0.40, 0.55, 0.80), (0.85, 0.87, 0.92)),  # sky
      ((0.06, 0.16, 0.05), (0.34, 0.48, 0.20)),  # foliage, grass
      ((0.30, 0.30, 0.31), (0.55, 0.55, 0.56)),  # road, concrete
      ((0.55, 0.45, 0.36), (0.78, 0.70, 0.60)),  # building, wall
      ((0.02, 0.02, 0.03), (0.15, 0.14, 0.14)),  # dark scene
      ((0.10, 0.10, 0.10), (0.90, 0.90, 0.90)),  # anything else
  )):
    m = kind == k
    if not m.any():
      continue
    n = int(m.sum())
    if k == 5:  # random colours
      c0[m] = _u(rng, 0.05, 0.9, (n, 3))
      c1[m] = _u(rng, 0.05, 0.9, (n, 3))
    else:
      c0[m] = np.asarray(lo, np.float32) + jit[m]
      c1[m] = np.asarray(hi, np.float32) + jit[m]
    if k == 0:
      t[m] = 0.6 * y + 0.35 * coarse[m] + 0.15 * mid[m]
    elif k == 1:
      t[m] = 0.5 + 0.35 * mid[m] + 0.6 * fine[m]
    elif k == 2:
      t[m] = 0.5 + 0.2 * coarse[m] + 0.2 * fine[m]
    elif k == 3:
      period = _u(rng, 3.0, 9.0, (n, 1, 1))
      phase = _u(rng, 0, 6.3, (n, 1, 1))
      stripes = (np.sin(2 * np.pi * _YY[None] / period + phase) > 0.7)
      vertical = rng.random((n, 1, 1)) < 0.5
      stripes = np.where(vertical, stripes.transpose(0, 2, 1), stripes)
      t[m] = 0.5 + 0.2 * coarse[m] + 0.05 * fine[m] - 0.5 * stripes
    else:
      t[m] = 0.5 + 0.4 * coarse[m] + 0.2 * mid[m] + 0.08 * fine[m]
  t = np.clip(t, 0, 1)[..., None]
  bg = c0[:, None, None] + (c1 - c0)[:, None, None] * t
  # A second scene below a horizon (sky over trees, wall over road ...).
  horizon = rng.random(b) < 0.35
  if horizon.any():
    n = int(horizon.sum())
    other = np.roll(bg, 1, axis=0)[horizon]  # the scene of another image
    h = _u(rng, 6, 26, (n, 1, 1))
    w = 1 / (1 + np.exp(-(_YY[None] - h) / 1.5))
    bg[horizon] = bg[horizon] * (1 - w[..., None]) + other * w[..., None]
  # A sign post below the sign.
  post = rng.random(b) < 0.4
  if post.any():
    n = int(post.sum())
    x0 = _u(rng, 14, 18, (n, 1, 1))
    half = _u(rng, 0.7, 1.6, (n, 1, 1))
    on = np.clip(half + 0.5 - np.abs(_XX[None] - x0), 0, 1)[..., None]
    grey = _u(rng, 0.25, 0.65, (n, 1, 1, 1))
    bg[post] = bg[post] * (1 - on) + grey * on
  return np.clip(bg, 0, 1)


# ---- the sign ------------------------------------------------------------------


def _rotation(roll, yaw, pitch):
  """(b, 3, 3) R = Rz(roll) Ry(yaw) Rx(pitch)."""
  cr, sr = np.cos(roll), np.sin(roll)
  cy, sy = np.cos(yaw), np.sin(yaw)
  cp, sp = np.cos(pitch), np.sin(pitch)
  o, z = np.ones_like(roll), np.zeros_like(roll)
  rz = np.stack([cr, -sr, z, sr, cr, z, z, z, o], -1).reshape(-1, 3, 3)
  ry = np.stack([cy, z, sy, z, o, z, -sy, z, cy], -1).reshape(-1, 3, 3)
  rx = np.stack([o, z, z, z, cp, -sp, z, sp, cp], -1).reshape(-1, 3, 3)
  return rz @ ry @ rx


def _geometry(rng, b, victim):
  """(b, 3, 3) homographies from output pixels to template coordinates."""
  if victim:  # a well framed sign, as in a victim set
    half = _u(rng, 14.0, 16.5, b)
    yaw = np.deg2rad(_u(rng, -25, 25, b))
  else:
    small = rng.random(b) < 0.15
    half = np.where(small, _u(rng, 9.0, 12.5, b), _u(rng, 12.5, 17.0, b))
    yaw = np.deg2rad(_u(rng, -38, 38, b))
  pitch = np.deg2rad(_u(rng, -18, 18, b))
  roll = np.deg2rad(np.clip(rng.normal(0, 5, b), -15, 15)).astype(np.float32)
  # A detector box hugs the sign seen at an angle; resizing the box to a
  # square stretches the foreshortened sign back (partly).
  comp = np.cos(yaw) ** _u(rng, 0.3, 1.0, b)
  sx = half * np.exp(rng.normal(0, 0.05, b)) / comp
  sy = half * np.exp(rng.normal(0, 0.05, b)) / np.cos(pitch) ** 0.5
  cx = SIZE / 2 + np.clip(rng.normal(0, 1.2, b), -3, 3)
  cy = SIZE / 2 + np.clip(rng.normal(0, 1.2, b), -3, 3)
  dist = _u(rng, 3.0, 8.0, b)
  r = _rotation(roll, yaw, pitch)
  k = np.zeros((b, 3, 3), np.float64)
  k[:, 0, 0], k[:, 1, 1] = sx * dist, sy * dist
  k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = cx, cy, 1
  t = np.zeros((b, 3), np.float64)
  t[:, 2] = dist
  h = k @ np.stack([r[:, :, 0], r[:, :, 1], t], axis=-1)
  return np.linalg.inv(h)


def _warp_templates(hinv, tidx):
  """Samples templates through inverse homographies (bilinear).

  Returns (b, 32, 32, 4) premultiplied RGBA. Templates are stored at about
  the size a sign has in a crop, so one bilinear tap per pixel does not alias.
  """
  bank, _ = templates.template_bank()
  _, tp, _, _ = bank.shape  # padded template size
  grid = np.stack([_XX.ravel(), _YY.ravel(), np.ones(SIZE * SIZE)])
  q = (hinv @ grid).astype(np.float32)  # (b, 3, 32*32)
  w = np.where(np.abs(q[:, 2]) < 1e-6, 1e-6, q[:, 2])
  inner = templates.TEMPLATE
  # template coordinate [-1, 1] -> padded pixel index (centres at i + 0.5)
  px = ((q[:, 0] / w + 1) * inner / 2 + 0.5).astype(np.float32)
  py = ((q[:, 1] / w + 1) * inner / 2 + 0.5).astype(np.float32)
  px = np.clip(px, 0, tp - 1.001)
  py = np.clip(py, 0, tp - 1.001)
  x0 = px.astype(np.int32)
  y0 = py.astype(np.int32)
  fx = (px - x0).ravel()
  fy = (py - y0).ravel()
  # Channel-first gathers: each tap is one contiguous (4, b*1024) take.
  flat = _channel_first_bank()
  base = ((tidx[:, None] * tp + y0) * tp + x0).ravel()
  v00, v01 = flat.take(base, axis=1), flat.take(base + 1, axis=1)
  v10, v11 = flat.take(base + tp, axis=1), flat.take(base + tp + 1, axis=1)
  top = v00 + (v01 - v00) * fx
  out = top + (v10 + (v11 - v10) * fx - top) * fy  # (4, b*1024)
  return out.reshape(4, -1, SIZE, SIZE).transpose(1, 2, 3, 0)


@functools.lru_cache(maxsize=None)
def _channel_first_bank() -> np.ndarray:
  bank, _ = templates.template_bank()
  return np.ascontiguousarray(bank.reshape(-1, 4).T)


def _paint(rng, rgba):
  """Worn paint, shading and specular glare on the sign (premultiplied)."""
  b = rgba.shape[0]
  rgb, a = rgba[..., :3], rgba[..., 3:]
  grey = rgb.mean(-1, keepdims=True)
  desat = _u(rng, 0.0, 0.3, (b, 1, 1, 1))
  rgb = rgb * (1 - desat) + grey * desat
  rgb = rgb * np.exp(rng.normal(0, 0.06, (b, 1, 1, 3))).astype(np.float32)
  fade = _u(rng, 0.0, 0.12, (b, 1, 1, 1))
  rgb = rgb + fade * (a - rgb)
  ang = _u(rng, 0, 2 * np.pi, (b, 1, 1))
  slope = _u(rng, -0.3, 0.3, (b, 1, 1))
  ramp = 1 + slope * ((_XX - 16) * np.cos(ang) + (_YY - 16) * np.sin(ang)) / 16
  rgb = rgb * ramp[..., None]
  glare = rng.random(b) < 0.35
  if glare.any():
    n = int(glare.sum())
    gx, gy = _u(rng, 4, 28, (n, 1, 1)), _u(rng, 4, 28, (n, 1, 1))
    r = _u(rng, 2.5, 9.0, (n, 1, 1))
    amp = _u(rng, 0.1, 0.5, (n, 1, 1))
    blob = amp * np.exp(-((_XX - gx) ** 2 + (_YY - gy) ** 2) / (2 * r * r))
    rgb[glare] = rgb[glare] + blob[..., None] * a[glare]
  return rgb, a


# ---- the camera ----------------------------------------------------------------


def _shadow_and_occlusion(rng, img, bg_colour_src):
  b = img.shape[0]
  shade = rng.random(b) < 0.25
  if shade.any():
    n = int(shade.sum())
    ang = _u(rng, 0, 2 * np.pi, (n, 1, 1))
    off = _u(rng, -10, 10, (n, 1, 1))
    d = (_XX - 16) * np.cos(ang) + (_YY - 16) * np.sin(ang) - off
    m = np.clip(d / _u(rng, 0.5, 3.0, (n, 1, 1)) + 0.5, 0, 1)
    depth = _u(rng, 0.25, 0.6, (n, 1, 1))
    img[shade] = img[shade] * (1 - depth * m)[..., None]
  occl = rng.random(b) < 0.12
  if occl.any():
    n = int(occl.sum())
    side = rng.integers(0, 4, n)
    t = _u(rng, 4, 28, n)
    edge = _u(rng, -2, 4, n)
    ox = np.select([side == 0, side == 1], [edge, SIZE - edge], t)
    oy = np.select([side == 2, side == 3], [edge, SIZE - edge], t)
    rx, ry = _u(rng, 3, 10, (n, 1, 1)), _u(rng, 3, 10, (n, 1, 1))
    e = ((_XX - ox[:, None, None]) / rx) ** 2 + ((_YY - oy[:, None, None]) / ry) ** 2
    m = np.clip((1 - e) * 3, 0, 1)[..., None]
    colour = bg_colour_src[occl][:, ::-1, ::-1]  # another patch of scene
    img[occl] = img[occl] * (1 - m) + colour * m
  return img


def _illumination(rng, img):
  b = img.shape[0]
  dark = rng.random(b) < 0.25
  gain = np.where(dark, _u(rng, 0.15, 0.45, b), _u(rng, 0.55, 1.25, b))
  img = img * gain[:, None, None, None]
  img = img * np.exp(rng.normal(0, 0.07, (b, 1, 1, 3))).astype(np.float32)
  # A quadratic tone curve in place of a gamma power (4x cheaper): k > 0
  # lifts the mid-tones like gamma < 1, k < 0 darkens them like gamma > 1.
  img = np.clip(img, 0, 1)
  img = img + _u(rng, -0.35, 0.35, (b, 1, 1, 1)) * img * (1 - img)
  mean = img.mean(axis=(1, 2, 3), keepdims=True)
  img = mean + (img - mean) * _u(rng, 0.7, 1.15, (b, 1, 1, 1))
  haze = (rng.random((b, 1, 1, 1)) < 0.3) * _u(rng, 0, 0.2, (b, 1, 1, 1))
  haze_colour = _u(rng, 0.5, 0.9, (b, 1, 1, 1)) + _u(rng, -0.05, 0.05,
                                                      (b, 1, 1, 3))
  return img * (1 - haze) + haze_colour * haze


def _blur(rng, img):
  """Defocus (Gaussian) and motion (line) blur as one FFT filter per image."""
  b = img.shape[0]
  sigma = np.where(rng.random(b) < 0.25, 0.0, _u(rng, 0.2, 1.1, b))
  length = np.where(rng.random(b) < 0.2, _u(rng, 1.0, 4.0, b), 0.0)
  theta = _u(rng, 0, np.pi, b)
  sel = (sigma > 0) | (length > 0)
  if not sel.any():
    return img
  sigma, length, theta = (v[sel][:, None, None] for v in (sigma, length, theta))
  pad = 2  # lines <= 4 px; a reflected border hides the FFT's wrap-around
  x = np.pad(img[sel].transpose(0, 3, 1, 2), ((0, 0), (0, 0), (pad, pad),
                                              (pad, pad)), mode="reflect")
  n = SIZE + 2 * pad
  fy = np.fft.fftfreq(n).astype(np.float32)[:, None]
  fx = np.fft.rfftfreq(n).astype(np.float32)[None, :]
  h = np.exp(-2 * np.pi ** 2 * sigma ** 2 * (fx ** 2 + fy ** 2))
  h = h * np.sinc(length * (fx * np.cos(theta) + fy * np.sin(theta)))
  out = scipy.fft.irfft2(scipy.fft.rfft2(x) * h[:, None], s=(n, n))
  img = img.copy()
  img[sel] = out[:, :, pad:-pad, pad:-pad].transpose(0, 2, 3, 1)
  return img


def _noise(rng, img):
  b = img.shape[0]
  sigma = _u(rng, 0.003, 0.035, (b, 1, 1, 1))
  shot = _u(rng, 0.0, 0.03, (b, 1, 1, 1))
  # Uniform noise of unit variance: 3x cheaper to draw than Gaussian, and at
  # these amplitudes (a few grey levels) no different after quantisation.
  noise = (rng.random(img.shape, np.float32) - 0.5) * np.float32(12 ** 0.5)
  # Signal-dependent (shot-like) noise, linear in the signal for speed.
  return img + noise * (sigma + shot * img)


def _jpeg(rng, img):
  """8x8 DCT quantisation in YCbCr at a random quality, for a random half."""
  b = img.shape[0]
  sel = rng.random(b) < 0.5
  if not sel.any():
    return img
  x = np.clip(img[sel], 0, 1) * 255
  n = x.shape[0]
  ycc = np.stack([
      0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2],
      128 - 0.168736 * x[..., 0] - 0.331264 * x[..., 1] + 0.5 * x[..., 2],
      128 + 0.5 * x[..., 0] - 0.418688 * x[..., 1] - 0.081312 * x[..., 2],
  ], -1) - 128
  quality = _u(rng, 25, 90, n)
  scale = np.where(quality < 50, 50 / quality, 2 - quality / 50)
  q = np.stack([_JPEG_Q_LUMA, _JPEG_Q_CHROMA, _JPEG_Q_CHROMA], -1)
  q = np.maximum(q[None] * scale[:, None, None, None], 1)  # (n, 8, 8, 3)
  # (n, 4, 8, 4, 8, 3) -> blocks as trailing 8x8 matrices (n, 3, 4, 4, 8, 8)
  blocks = ycc.reshape(n, 4, 8, 4, 8, 3).transpose(0, 5, 1, 3, 2, 4)
  q = q.transpose(0, 3, 1, 2)[:, :, None, None]  # (n, 3, 1, 1, 8, 8)
  coef = np.round(_DCT @ blocks @ _DCT.T / q) * q
  rec = (_DCT.T @ coef @ _DCT).transpose(0, 2, 4, 3, 5, 1).reshape(
      n, SIZE, SIZE, 3) + 128
  r = rec[..., 0] + 1.402 * (rec[..., 2] - 128)
  g = (rec[..., 0] - 0.344136 * (rec[..., 1] - 128)
       - 0.714136 * (rec[..., 2] - 128))
  bl = rec[..., 0] + 1.772 * (rec[..., 1] - 128)
  out = img.copy()
  out[sel] = np.stack([r, g, bl], -1) / 255
  return out


# ---- public API ----------------------------------------------------------------


def render(labels: np.ndarray, rng: np.random.Generator, *,
           victim: bool = False) -> np.ndarray:
  """Renders one synthetic crop per label.

  Args:
    labels: int (B,) class indices in the project's order.
    rng: the only source of randomness.
    victim: a victim-set look (well framed, unoccluded signs).

  Returns:
    uint8 (B, 32, 32, 3) images.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.size == 0:
    raise ValueError(f"labels must be a non-empty 1-d array, got shape "
                     f"{labels.shape}")
  if labels.min() < 0 or labels.max() >= NUM_CLASSES:
    raise ValueError(f"labels must lie in 0..{NUM_CLASSES - 1}, got "
                     f"{labels.min()}..{labels.max()}")
  b = labels.shape[0]
  _, per_class = templates.template_bank()
  counts = np.array([len(p) for p in per_class])
  offsets = np.array([p[0] for p in per_class])
  tidx = offsets[labels] + (rng.random(b) * counts[labels]).astype(np.int64)
  if not victim:  # a share of class 0 is background alone (template 0)
    tidx = np.where((labels == 0) & (rng.random(b) < 0.3), 0, tidx)
  rgba = _warp_templates(_geometry(rng, b, victim), tidx)
  rgb, alpha = _paint(rng, rgba)
  bg = _backgrounds(rng, b)
  img = rgb + (1 - alpha) * bg
  img = _shadow_and_occlusion(rng, img, bg) if not victim else img
  img = _illumination(rng, img)
  img = _blur(rng, img)
  img = _noise(rng, img)
  img = _jpeg(rng, img)
  return np.clip(np.rint(np.clip(img, 0, 1) * 255), 0, 255).astype(np.uint8)


def _chunk(args):
  seed, split, index, labels, victim = args
  rng = np.random.default_rng([seed, SPLITS[split], index])
  return render(labels, rng, victim=victim)


def generate_split(num_per_class: int, *, seed: int, split: str,
                   workers: int | None = None,
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields (images uint8 (n,32,32,3), labels int64 (n,)) chunks of a split.

  Example i has label i % 18 (exact class balance); chunk c holds examples
  [c * CHUNK, (c + 1) * CHUNK) and is rendered from its own generator seeded
  by (seed, split, c), so the bytes are independent of `workers`.
  """
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; use one of {sorted(SPLITS)}")
  if num_per_class < 1:
    raise ValueError(f"num_per_class must be >= 1, got {num_per_class}")
  total = num_per_class * NUM_CLASSES
  labels = np.arange(total, dtype=np.int64) % NUM_CLASSES
  jobs = [(seed, split, c, labels[c * CHUNK:(c + 1) * CHUNK], False)
          for c in range((total + CHUNK - 1) // CHUNK)]
  for (_, _, c, lab, _), images in zip(jobs, _map(_chunk, jobs, workers)):
    yield images, lab


def _map(fn, jobs, workers):
  workers = default_workers() if workers is None else workers
  templates.template_bank()  # draw once, before forking
  if workers <= 1 or len(jobs) == 1:
    yield from map(fn, jobs)
    return
  ctx = multiprocessing.get_context("fork")
  with ctx.Pool(workers) as pool:
    yield from pool.imap(fn, jobs)


def default_workers() -> int:
  return max(1, min(len(os.sched_getaffinity(0)), 8))


def synthetic_victims(n: int = 40, *, seed: int = 0) -> np.ndarray:
  """A victim set of `n` synthetic stop signs under varied conditions.

  Returns float32 (n, 32, 32, 3) in [0, 1], the layout of `load_victims`.
  """
  if n < 1:
    raise ValueError(f"need at least one victim, got n={n}")
  images = _chunk((seed, "victims", 0, np.full(n, STOP), True))
  return images.astype(np.float32) / 255.0
