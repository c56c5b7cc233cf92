"""A procedural, LISA-like traffic-sign crop generator (the built-in data set).

Every image is a 32x32 RGB crop as a sign detector would give it: one of the
18 classes' sign templates (`templates.py`) warped by a random homography
(scale and position jitter, in-plane rotation, viewing angle), painted with
worn paint and glare, composited over a procedural background (sky, foliage,
road, building, dark scenes), then the camera: shadows, partial occlusion,
illumination and colour casts, gamma, haze, a greyscale share, defocus and
motion blur, sensor noise, JPEG block artefacts, and the crop resized from
the sign's size in the frame (LISA's signs are mostly small, so crops are
often upscaled and soft). The framing is LISA's: a tight annotation box, the
sign's outline touching the crop's borders. `corruption` in [0, 1] scales
every camera corruption (0: clean renders of the same scenes).

Rendering is vectorised over a chunk of `CHUNK` images with JAX: every random
number comes from one jax PRNG key per chunk, the per-image scene parameters
are cheap numpy arithmetic on (B,) arrays, and the per-pixel work is a few
jitted XLA programs (compiled once, for the one chunk shape) whose fused
loops make a handful of passes over the batch instead of numpy's ~150.
Per-image choices (glare or not, JPEG or not ...) are computed for every
image and selected with `jnp.where`; the bilinear template warp is a gather
from the template bank; the blur is an FFT filter; JPEG is DCT matmuls.

Determinism: image i of `render(labels, key)` lies in chunk c = i // CHUNK and
is a function of `jax.random.fold_in(key, c)`, its label and its position in
the chunk only. `generate_split` renders split `s` of seed `seed` from the
key `fold_in(key(seed), SPLITS[s])`, chunks running concurrently in threads
(jitted calls release the GIL; no processes are forked once JAX runs), so
the bytes never depend on the number of workers.
"""

from collections.abc import Iterator
import concurrent.futures
import functools
import os
import time

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from blurnet_jax.classes import NUM_CLASSES, STOP
from blurnet_jax.data import templates

SIZE = 32
SPLITS = {"train": 0, "test": 1, "victims": 2}
CHUNK = 512  # images per independently keyed chunk (one compiled shape)

_JPEG_Q_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], np.float32).reshape(8, 8)
_JPEG_Q_CHROMA = np.full((8, 8), 99, np.float32)
_JPEG_Q_CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66],
                          [24, 26, 56, 99], [47, 66, 99, 99]]

# Background kinds: sky, foliage/grass, road/concrete, building/wall, dark
# scene, anything else (random colours). Colour ranges (lo, hi) ...
_BG_LO = np.array([(0.40, 0.55, 0.80), (0.06, 0.16, 0.05), (0.30, 0.30, 0.31),
                   (0.55, 0.45, 0.36), (0.02, 0.02, 0.03), (0.10, 0.10, 0.10)],
                  np.float32)
_BG_HI = np.array([(0.85, 0.87, 0.92), (0.34, 0.48, 0.20), (0.55, 0.55, 0.56),
                   (0.78, 0.70, 0.60), (0.15, 0.14, 0.14), (0.90, 0.90, 0.90)],
                  np.float32)
# ... and texture t = sum_j coef[j] * (y, 1, coarse, mid, fine, stripes)[j].
_BG_TEXTURE = np.array([
    (0.6, 0.0, 0.35, 0.15, 0.0, 0.0),  # sky: vertical gradient and clouds
    (0.0, 0.5, 0.0, 0.35, 0.6, 0.0),  # foliage: fine leafy texture
    (0.0, 0.5, 0.2, 0.0, 0.2, 0.0),  # road: grain
    (0.0, 0.5, 0.2, 0.0, 0.05, -0.5),  # building: stripes (bricks, siding)
    (0.0, 0.5, 0.4, 0.2, 0.08, 0.0),  # dark scene
    (0.0, 0.5, 0.4, 0.2, 0.08, 0.0),  # anything else
], np.float32)


def _dct_matrix(n=8):
  k = np.arange(n)[:, None]
  x = np.arange(n)[None, :]
  d = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2 / n)
  d[0] /= np.sqrt(2)
  return d.astype(np.float32)


# The 8x8 block DCT of a 32-pixel line as one (32, 32) block-diagonal matrix.
_BLOCK_DCT = np.kron(np.eye(SIZE // 8, dtype=np.float32), _dct_matrix())


def _upsample_matrix(g: int, n: int = SIZE) -> np.ndarray:
  """(n, g) bilinear interpolation from a g-point grid to n pixel centres."""
  pos = (np.arange(n) + 0.5) / n * (g - 1)
  return np.stack([np.interp(pos, np.arange(g), np.eye(g)[j])
                   for j in range(g)], axis=1).astype(np.float32)


_UP = {g: _upsample_matrix(g) for g in (3, 9, 17)}

#: Sizes (px) of the sign in the camera frame that a crop is resampled from.
SOURCE_MIN, SOURCE_MAX = 16, 64
#: The camera's saturation range (1 = the paint's colours) and the share of
#: greyscale cameras.
CAMERA_SATURATION = (1.0, 1.0)
GREY_SHARE = 0.03


@functools.lru_cache(maxsize=None)
def _resample_bank() -> np.ndarray:
  """float32 (SIZE - SOURCE_MIN + 1, 32, 32): A_r = U_r D_r per size r.

  D_r (r, 32) averages the crop's pixels over r equal cells (what a sensor
  of r pixels across the sign records), U_r (32, r) upsamples them back
  bilinearly (the crop resized to 32x32). A_32 is the identity.
  """
  out = []
  for r in range(SOURCE_MIN, SIZE + 1):
    edges = np.arange(r + 1) * SIZE / r
    left, right = np.arange(SIZE), np.arange(SIZE) + 1
    overlap = np.clip(np.minimum(right[None], edges[1:, None])
                      - np.maximum(left[None], edges[:-1, None]), 0, None)
    down = overlap / overlap.sum(1, keepdims=True)
    pos = np.clip((np.arange(SIZE) + 0.5) * r / SIZE - 0.5, 0, r - 1)
    up = np.stack([np.interp(pos, np.arange(r), np.eye(r)[j])
                   for j in range(r)], axis=1)
    out.append(up @ down)
  return np.stack(out).astype(np.float32)
_YY, _XX = np.meshgrid(np.arange(SIZE, dtype=np.float32) + 0.5,
                       np.arange(SIZE, dtype=np.float32) + 0.5, indexing="ij")


class _Draws:
  """Hands out rows of pre-drawn per-image random numbers, in program order.

  `u(lo, hi)` and `z(sd)` return the next unused row of the (K, B) uniform
  and standard normal arrays as a float32 (B,) array.
  """

  def __init__(self, uniform: np.ndarray, normal: np.ndarray):
    self._u, self._z = uniform, normal
    self._iu = self._iz = 0

  def u(self, lo=0.0, hi=1.0) -> np.ndarray:
    if self._iu == self._u.shape[0]:
      raise AssertionError("out of uniform rows: raise _N_UNIFORM")
    v = self._u[self._iu]
    self._iu += 1
    return np.float32(lo) + np.float32(hi - lo) * v

  def z(self, sd=1.0) -> np.ndarray:
    if self._iz == self._z.shape[0]:
      raise AssertionError("out of normal rows: raise _N_NORMAL")
    v = self._z[self._iz]
    self._iz += 1
    return np.float32(sd) * v


def _p(v):
  """(B,) per-image scalars -> (B, 1, 1), for (B, 32, 32) planes."""
  return v[:, None, None]


def _ch(v):
  """(B,) or (B, 3) per-image scalars -> (B, 1|3, 1, 1) for (B, C, 32, 32)."""
  return v.reshape(v.shape[0], -1, 1, 1)


# How a chunk renders. Every random number comes from one jitted draw
# (`_random`); the per-image scene parameters are a few hundred numpy
# operations on (B,) arrays (`_scene`: about 2 ms a chunk, nothing to
# compile); the per-pixel work is a chain of small jitted programs. They are
# separate programs so that each one's inputs are materialised: inside one
# program XLA:CPU fuses per-image work (threefry, sin, exp) into per-pixel
# loops, per-pixel planes into every channel's loop and branchy ops (gather,
# pad, reverse, roll) into arithmetic loops, recomputing them per element and
# losing vectorisation (the single program was 3x slower than this chain;
# optimisation barriers do not stop it on CPU).
#
#   _random:     uniform and normal (K, B) rows, noise grids, noise bits
#   _scene:      every per-image parameter, (B,) or (B, k) float32 arrays
#   _planes:     per-pixel single-channel maps (B, 32, 32): warp coordinates,
#                background texture, horizon, post, paint ramp, glare,
#                shadow, occluder
#   _sign:       the template gather: (B, 4, 32, 32) premultiplied RGBA
#   _background: (B, 3, 32, 32) scenes; `_flip` rotates them (occluders)
#   _compose:    paint, composite, shadow, occluder, exposure, tone
#   _contrast:   contrast and haze (after a per-image mean)
#   _camera:     FFT blur, noise, JPEG, uint8 (B, 32, 32, 3)

# Rows of per-image draws: (uniform, normal) for the render's `_Draws`.
_N_UNIFORM, _N_NORMAL = 72, 12


@functools.partial(jax.jit, static_argnums=1)
def _random(key, b):
  """Every random number of a chunk of b images.

  Each draw is flat, then reshaped: threefry over a many-dimensional shape
  takes XLA seconds to compile, over a flat one a fraction of a second.
  """
  ku, kz, kg, kc, kn = jax.random.split(key, 5)
  grids = jax.random.normal(kg, (b * (3 * 3 + 9 * 9 + 17 * 17),))
  grids = jnp.split(grids, [b * 9, b * (9 + 81)])
  return {
      "uniform": jax.random.uniform(ku, (_N_UNIFORM * b,)).reshape(-1, b),
      "normal": jax.random.normal(kz, (_N_NORMAL * b,)).reshape(-1, b),
      "grid3": grids[0].reshape(b, 3, 3),
      "grid9": grids[1].reshape(b, 9, 9),
      "grid17": grids[2].reshape(b, 17, 17),
      "colour": jax.random.uniform(kc, (2 * b * 3,), minval=0.05,
                                   maxval=0.9).reshape(2, b, 3),
      # Sensor noise, 16 bits a sample (two samples a threefry word).
      "noise_bits": jax.random.bits(kn, (b * 3 * SIZE * SIZE // 2,),
                                    jnp.uint32).reshape(b, 3, SIZE, SIZE // 2),
  }


def _scene(labels, rnd, offsets, counts, *, victim, strength=1.0):
  """Every parameter of a chunk's scenes: a dict of (B, ...) arrays.

  Args:
    labels: int32 (B,) classes.
    rnd: the chunk's `_random` draws.
    offsets, counts: int32 (18,) first template and number of variants of
      each class in the bank.
    victim: the victim-set look (well framed, no shadow, no occluder).
    strength: the camera corruptions' strength in [0, 1]
      (`check_corruption`). Every amplitude of the corruptions (blur, low
      resolution, noise, JPEG, haze, shadow, occluder) is scaled by it and
      their draws stay the same, so the scenes of one key at two strengths
      differ in the corruptions only; 0 gives clean renders.
  """
  f32 = np.float32
  d = _Draws(np.asarray(rnd["uniform"]), np.asarray(rnd["normal"]))
  s = {}
  # The template: one of the class's variants; a share of class 0 is
  # background alone (template 0).
  choice = (d.u() * counts[labels]).astype(np.int32)
  tidx = offsets[labels] + np.minimum(choice, counts[labels] - 1)
  background_only = (labels == 0) & (d.u() < 0.3)
  s["tidx"] = tidx if victim else np.where(background_only, 0, tidx)
  s["warp"] = _geometry(d, victim)
  # Paint: desaturation, colour, fading, a shading ramp, specular glare.
  s["desat"] = d.u(0.0, 0.1)
  s["paint_cast"] = np.exp(np.stack([d.z(0.06) for _ in range(3)], -1))
  s["fade"] = d.u(0.0, 0.06)
  ang, slope = d.u(0.0, 2 * np.pi), d.u(-0.3, 0.3)
  s["ramp_x"], s["ramp_y"] = slope * np.cos(ang) / 16, slope * np.sin(ang) / 16
  glare = d.u() < 0.2
  s["glare_x"], s["glare_y"] = d.u(4.0, 28.0), d.u(4.0, 28.0)
  r = d.u(2.5, 9.0)
  s["glare_k"] = -1 / (2 * r * r)
  s["glare_amp"] = np.where(glare, d.u(0.05, 0.35), 0.0)
  # Background: a kind of scene, its colours and texture (the noise grids'
  # weights: coarse, mid, fine).
  kind = np.minimum((d.u() * 6).astype(np.int32), 5)
  jit = np.stack([d.u(-0.08, 0.08) for _ in range(3)], -1)  # (B, 3)
  rand = np.asarray(rnd["colour"])
  # Random scenes in a camera's muted colours: halfway to their grey.
  rand = 0.5 * (rand + rand.mean(-1, keepdims=True))
  is_rand = (kind == 5)[:, None]
  s["bg_c0"] = np.where(is_rand, rand[0], _BG_LO[kind] + jit)
  s["bg_c1"] = np.where(is_rand, rand[1], _BG_HI[kind] + jit)
  coef = _BG_TEXTURE[kind]  # (B, 6)
  s["tex_y"], s["tex_1"], s["tex_stripes"] = coef[:, 0], coef[:, 1], coef[:, 5]
  s["tex_grid"] = coef[:, 2:5]
  s["stripe_f"] = 2 * np.pi / d.u(3.0, 9.0)
  s["stripe_phase"] = d.u(0.0, 6.3)
  s["stripe_vertical"] = d.u() < 0.5
  # A second scene below a horizon, a sign post below the sign.
  s["horizon"] = d.u() < 0.35
  s["horizon_y"] = d.u(6.0, 26.0)
  s["post"] = d.u() < 0.4
  s["post_x"], s["post_half"] = d.u(14.0, 18.0), d.u(0.7, 1.6)
  s["post_grey"] = d.u(0.25, 0.65)
  # Shadow (25%) and occluder (12%); victims have neither.
  shade = (d.u() < 0.25) & (not victim)
  ang = d.u(0.0, 2 * np.pi)
  s["shadow_cos"], s["shadow_sin"] = np.cos(ang), np.sin(ang)
  s["shadow_off"], s["shadow_soft"] = d.u(-10.0, 10.0), d.u(0.5, 3.0)
  s["shadow_depth"] = np.where(shade, d.u(0.25, 0.6), 0.0) * strength
  s["occl"] = (d.u() < 0.12 * strength) & (not victim)
  side = np.minimum((d.u() * 4).astype(np.int32), 3)
  t, edge = d.u(4.0, 28.0), d.u(-2.0, 4.0)
  s["occl_x"] = np.select([side == 0, side == 1], [edge, SIZE - edge], t)
  s["occl_y"] = np.select([side == 2, side == 3], [edge, SIZE - edge], t)
  s["occl_rx"], s["occl_ry"] = d.u(3.0, 10.0), d.u(3.0, 10.0)
  # Illumination: exposure and colour cast, tone curve, contrast, haze.
  dark = d.u() < 0.25
  gain = np.where(dark, d.u(0.15, 0.45), d.u(0.55, 1.25))
  s["gain"] = gain[:, None] * np.exp(np.stack([d.z(0.07) for _ in range(3)],
                                              -1))
  s["tone"] = d.u(-0.35, 0.35)
  s["contrast"] = d.u(0.85, 1.2)
  s["haze"] = np.where(d.u() < 0.3, d.u(0.0, 0.2), 0.0) * strength
  s["haze_colour"] = d.u(0.5, 0.9)[:, None] + np.stack(
      [d.u(-0.05, 0.05) for _ in range(3)], -1)
  # Blur: defocus (75%) and motion (20%).
  s["blur_sigma"] = np.where(d.u() < 0.25, 0.0, d.u(0.2, 1.1)) * strength
  s["blur_length"] = np.where(d.u() < 0.2, d.u(1.0, 4.0), 0.0) * strength
  theta = d.u(0.0, np.pi)
  s["blur_cos"], s["blur_sin"] = np.cos(theta), np.sin(theta)
  # Sensor noise: read and shot.
  s["noise_sigma"] = d.u(0.003, 0.035) * strength
  s["noise_shot"] = d.u(0.0, 0.03) * strength
  # JPEG (50%) at a random quality.
  s["jpeg"] = d.u() < 0.5 * strength
  quality = d.u(25.0, 90.0)
  s["jpeg_scale"] = np.where(quality < 50, 50 / quality, 2 - quality / 50)
  # The sign's size in the camera frame: LISA's annotated signs span 6x6 to
  # 167x168 px of 640x480 to 1024x522 frames, most of them smaller than the
  # 32x32 crop, which is then an upscaled, soft picture of a few pixels.
  # The crop is resampled from `src` px (log-uniform, so small signs are as
  # common as large ones; >= 32 px is no resampling), moved toward 32 by
  # the strength.
  src = np.minimum(np.exp(d.u(np.log(SOURCE_MIN), np.log(SOURCE_MAX))), SIZE)
  src = SIZE - (SIZE - src) * strength
  s["resample"] = _resample_bank()[np.rint(src).astype(np.int32) - SOURCE_MIN]
  # Some of LISA's cameras are greyscale, and all of them saw muted colours:
  # a 2009 dashcam's colour response (saturation) and a greyscale share.
  s["saturation"] = d.u(*CAMERA_SATURATION)
  s["grey"] = d.u() < GREY_SHARE
  s = {k: v.astype(f32) if v.dtype.kind == "f" else v for k, v in s.items()}
  s = jax.device_put(s)  # once, not at each of the programs that read it
  for k in ("grid3", "grid9", "grid17", "noise_bits"):
    s[k] = rnd[k]
  return s


def _geometry(d, victim):
  """(B, 3, 3) W mapping crop pixels to template coordinates, per image.

  The sign is the template plane rotated by R = Rz(roll) Ry(yaw) Rx(pitch)
  at distance `dist` in front of a camera K (scale sx, sy, centre cx, cy):
  H = K [r0 r1 t]. A pixel (x, y) maps to the template point (q0 / q2,
  q1 / q2) with q = W (x, y, 1), W = H^-1 (in float64; cast to float32).
  """
  # LISA's annotation boxes are tight: the sign's outline touches the
  # crop's borders (the RP2 victims' octagons do), whatever the view.
  if victim:  # a well framed sign, as in a victim set
    half = d.u(14.0, 16.5)
    yaw = np.deg2rad(d.u(-25.0, 25.0))
  else:
    half = d.u(14.5, 17.0)
    yaw = np.deg2rad(d.u(-35.0, 35.0))
  pitch = np.deg2rad(d.u(-18.0, 18.0))
  roll = np.deg2rad(np.clip(d.z(5.0), -15, 15))
  # A tight box hugs the sign seen at an angle; resizing the box to a
  # square stretches the foreshortened sign back (nearly all of it).
  comp = np.cos(yaw) ** d.u(0.7, 1.0)
  sx = half * np.exp(d.z(0.04)) / comp
  sy = half * np.exp(d.z(0.04)) / np.cos(pitch) ** 0.8
  cx = SIZE / 2 + np.clip(d.z(0.6), -1.5, 1.5)
  cy = SIZE / 2 + np.clip(d.z(0.6), -1.5, 1.5)
  dist = d.u(3.0, 8.0).astype(np.float64)
  roll, yaw, pitch = (v.astype(np.float64) for v in (roll, yaw, pitch))
  cr, sr = np.cos(roll), np.sin(roll)
  cw, sw = np.cos(yaw), np.sin(yaw)
  cp, sp = np.cos(pitch), np.sin(pitch)
  zero, one = np.zeros_like(roll), np.ones_like(roll)
  rz = np.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1)
  ry = np.stack([cw, zero, sw, zero, one, zero, -sw, zero, cw], -1)
  rx = np.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1)
  r = rz.reshape(-1, 3, 3) @ ry.reshape(-1, 3, 3) @ rx.reshape(-1, 3, 3)
  k = np.zeros((roll.shape[0], 3, 3))
  k[:, 0, 0], k[:, 1, 1] = sx * dist, sy * dist
  k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = cx, cy, 1
  t = np.stack([zero, zero, dist], -1)
  h = k @ np.stack([r[:, :, 0], r[:, :, 1], t], axis=-1)
  return np.linalg.inv(h).astype(np.float32)


_BLUR_PAD = 2  # lines <= 4 px; a reflected border hides the FFT's wrap-around


@functools.lru_cache(maxsize=None)
def _tap_bank() -> np.ndarray:
  """(T * P * P, 16): each texel's 2x2 bilinear neighbourhood, RGBA each.

  One gather of a row gives all four bilinear taps of a sample.
  """
  bank, _ = templates.template_bank()
  nb = np.pad(bank, ((0, 0), (0, 1), (0, 1), (0, 0)))
  taps = np.concatenate([nb[:, :-1, :-1], nb[:, :-1, 1:],
                         nb[:, 1:, :-1], nb[:, 1:, 1:]], -1)
  return np.ascontiguousarray(taps.reshape(-1, 16))


@jax.jit
def _sign(taps, m):
  """(B, 4, 32, 32) premultiplied RGBA: bilinear samples of the templates.

  Templates are stored at about the size a sign has in a crop, so one
  bilinear tap per pixel does not alias. The gather writes the 16 taps of a
  sample as planes (B, 16, 32, 32) directly: gathering rows and transposing
  them to planes costs XLA:CPU ten times more.
  """
  dims = lax.GatherDimensionNumbers(offset_dims=(1,), collapsed_slice_dims=(0,),
                                    start_index_map=(0,))
  v = lax.gather(taps, m["index"][..., None], dims, slice_sizes=(1, 16),
                 mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS)
  fx, fy = m["fx"][:, None], m["fy"][:, None]
  v00, v01, v10, v11 = v[:, 0:4], v[:, 4:8], v[:, 8:12], v[:, 12:16]
  top = v00 + (v01 - v00) * fx
  return top + (v10 + (v11 - v10) * fx - top) * fy


@jax.jit
def _planes(s):
  """Per-pixel maps (B, 32, 32) of a chunk's scene `s`."""
  xx, yy = jnp.asarray(_XX), jnp.asarray(_YY)
  out = {}
  # The template warp: sample positions in the padded template.
  w = s["warp"]
  q = [_p(w[:, k, 0]) * xx + _p(w[:, k, 1]) * yy + _p(w[:, k, 2])
       for k in range(3)]
  q2 = jnp.where(jnp.abs(q[2]) < 1e-6, 1e-6, q[2])
  tp = _bank_size()
  inner = templates.TEMPLATE
  # template coordinate [-1, 1] -> padded pixel index (centres at i + 0.5)
  px = jnp.clip((q[0] / q2 + 1) * (inner / 2) + 0.5, 0, tp - 1.001)
  py = jnp.clip((q[1] / q2 + 1) * (inner / 2) + 0.5, 0, tp - 1.001)
  x0, y0 = px.astype(jnp.int32), py.astype(jnp.int32)
  out["fx"], out["fy"] = px - x0, py - y0
  out["index"] = (_p(s["tidx"]) * tp + y0) * tp + x0
  # Paint.
  out["ramp"] = 1 + _p(s["ramp_x"]) * (xx - 16) + _p(s["ramp_y"]) * (yy - 16)
  out["glare"] = _p(s["glare_amp"]) * jnp.exp(
      ((xx - _p(s["glare_x"])) ** 2 + (yy - _p(s["glare_y"])) ** 2)
      * _p(s["glare_k"]))
  # Background texture.
  t = _p(s["tex_y"]) * yy / SIZE + _p(s["tex_1"])
  for j, g in enumerate((3, 9, 17)):
    # Gaussian noise on a g x g grid, bilinearly upsampled, weighted.
    up = jnp.asarray(_UP[g])
    grid = s[f"grid{g}"] * _p(s["tex_grid"][:, j])
    t = t + jnp.einsum("ij,bjk,lk->bil", up, grid, up)
  u = jnp.where(_p(s["stripe_vertical"]), xx, yy)
  stripes = jnp.sin(u * _p(s["stripe_f"]) + _p(s["stripe_phase"])) > 0.7
  out["texture"] = jnp.clip(t + _p(s["tex_stripes"]) * stripes, 0, 1)
  out["horizon"] = jnp.where(
      _p(s["horizon"]), jax.nn.sigmoid((yy - _p(s["horizon_y"])) / 1.5), 0.0)
  out["post"] = jnp.where(_p(s["post"]), jnp.clip(
      _p(s["post_half"]) + 0.5 - jnp.abs(xx - _p(s["post_x"])), 0, 1), 0.0)
  # Shadow and occluder.
  d = ((xx - 16) * _p(s["shadow_cos"]) + (yy - 16) * _p(s["shadow_sin"])
       - _p(s["shadow_off"]))
  out["shadow"] = _p(s["shadow_depth"]) * jnp.clip(
      d / _p(s["shadow_soft"]) + 0.5, 0, 1)
  e = (((xx - _p(s["occl_x"])) / _p(s["occl_rx"])) ** 2
       + ((yy - _p(s["occl_y"])) / _p(s["occl_ry"])) ** 2)
  out["cover"] = jnp.where(_p(s["occl"]), jnp.clip((1 - e) * 3, 0, 1), 0.0)
  return out


def _bank_size() -> int:
  return templates.template_bank()[0].shape[1]


@jax.jit
def _background(s, m):
  """(B, 3, 32, 32) scenes: textured colours, another image's scene below a
  horizon, a sign post."""
  c0, c1 = s["bg_c0"][:, :, None, None], s["bg_c1"][:, :, None, None]
  bg = c0 + (c1 - c0) * m["texture"][:, None]
  w = m["horizon"][:, None]
  bg = bg * (1 - w) + jnp.roll(bg, 1, axis=0) * w
  on = m["post"][:, None]
  bg = bg * (1 - on) + _ch(s["post_grey"]) * on
  return jnp.clip(bg, 0, 1)


@jax.jit
def _flip(x):
  """(B, C, H, W) images rotated by 180 degrees."""
  return x[:, :, ::-1, ::-1]


@jax.jit
def _compose(s, m, rgba, bg, occluder):
  """(B, 3, 32, 32) exposure of the sign over the background.

  Args:
    s: the chunk's scene parameters.
    m: its `_planes`.
    rgba: (B, 4, 32, 32) premultiplied sign (`_sign`).
    bg: (B, 3, 32, 32) background (`_background`).
    occluder: (B, 3, 32, 32) what an occluder looks like: another patch of
      the scene (the background rotated by 180 degrees).
  """
  rgb, a = rgba[:, :3], rgba[:, 3:]
  # Worn paint, shading and glare.
  desat = _ch(s["desat"])
  rgb = rgb * (1 - desat) + rgb.mean(1, keepdims=True) * desat
  rgb = rgb * _ch(s["paint_cast"])
  rgb = rgb + _ch(s["fade"]) * (a - rgb)
  rgb = rgb * m["ramp"][:, None] + m["glare"][:, None] * a
  img = rgb + (1 - a) * bg
  # A cast shadow and an occluder.
  img = img * (1 - m["shadow"][:, None])
  cover = m["cover"][:, None]
  img = img * (1 - cover) + occluder * cover
  # Exposure and colour cast, then a quadratic tone curve in place of a gamma
  # power: k > 0 lifts the mid-tones like gamma < 1, k < 0 darkens them.
  img = jnp.clip(img * _ch(s["gain"]), 0, 1)
  return img + _ch(s["tone"]) * img * (1 - img)


@jax.jit
def _contrast(s, img):
  """(B, 3, 32, 32): contrast and haze of the exposure."""
  mean = img.mean(axis=(1, 2, 3), keepdims=True)
  img = mean + (img - mean) * _ch(s["contrast"])
  haze = _ch(s["haze"])
  img = img * (1 - haze) + _ch(s["haze_colour"]) * haze
  # The camera's colour response: muted saturation, or a greyscale sensor.
  luma = (0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3])
  img = luma + (img - luma) * _ch(s["saturation"])
  return jnp.where(_ch(s["grey"]), luma, img)


@jax.jit
def _camera(s, img):
  """uint8 (B, 32, 32, 3): blur, noise and JPEG of (B, 3, 32, 32) images."""
  # Defocus and motion blur: one FFT filter per image.
  pad, n = _BLUR_PAD, SIZE + 2 * _BLUR_PAD
  x = jnp.pad(img, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect")
  fy = np.fft.fftfreq(n).astype(np.float32)[:, None]
  fx = np.fft.rfftfreq(n).astype(np.float32)[None, :]
  sigma, length = _p(s["blur_sigma"]), _p(s["blur_length"])
  h = jnp.exp(-2 * np.pi ** 2 * sigma ** 2 * (fx ** 2 + fy ** 2))
  h = h * jnp.sinc(length * (fx * _p(s["blur_cos"]) + fy * _p(s["blur_sin"])))
  out = jnp.fft.irfft2(jnp.fft.rfft2(x) * h[:, None], s=(n, n))
  blurred = (s["blur_sigma"] > 0) | (s["blur_length"] > 0)
  img = jnp.where(_ch(blurred), out[:, :, pad:-pad, pad:-pad], img)
  # Read and shot noise: uniform of unit variance (at a few grey levels no
  # different from Gaussian after quantisation), linear in the signal.
  bits = lax.bitcast_convert_type(s["noise_bits"], jnp.uint16)  # a free view
  bits = bits.reshape(img.shape)
  noise = (bits.astype(jnp.float32) * (1 / 65536) + (0.5 / 65536 - 0.5)) * (
      np.float32(12 ** 0.5))
  img = img + noise * (_ch(s["noise_sigma"]) + _ch(s["noise_shot"]) * img)
  img = jnp.where(_ch(s["grey"]), img.mean(1, keepdims=True), img)
  img = _jpeg(img, s["jpeg"], s["jpeg_scale"])
  # The crop resized from the sign's size in the frame (A_r X A_r^T).
  a = s["resample"]
  img = jnp.einsum("bij,bcjk,blk->bcil", a, img, a)
  img = jnp.rint(jnp.clip(img, 0, 1) * 255).astype(jnp.uint8)
  return img.transpose(0, 2, 3, 1)


def _jpeg(img, sel, scale):
  """8x8 DCT quantisation in YCbCr of (B, 3, 32, 32) where `sel`."""
  x = jnp.clip(img, 0, 1) * 255
  r, g, b = x[:, 0], x[:, 1], x[:, 2]
  ycc = jnp.stack([
      0.299 * r + 0.587 * g + 0.114 * b - 128,
      -0.168736 * r - 0.331264 * g + 0.5 * b,
      0.5 * r - 0.418688 * g - 0.081312 * b,
  ], 1)  # (B, 3, 32, 32), centred
  q = np.stack([_JPEG_Q_LUMA, _JPEG_Q_CHROMA, _JPEG_Q_CHROMA])  # (3, 8, 8)
  q = np.tile(q, (1, SIZE // 8, SIZE // 8))  # (3, 32, 32), per 8x8 block
  # Coefficients C = D X D^T with D the block DCT, as products with the last
  # axis only (XLA:CPU's fastest form), C kept transposed.
  qt = jnp.maximum(q.transpose(0, 2, 1)[None] * _ch(scale), 1)
  dct = jnp.asarray(_BLOCK_DCT)
  coef_t = jnp.swapaxes(ycc @ dct.T, -1, -2) @ dct.T  # C^T
  coef_t = jnp.round(coef_t / qt) * qt
  rec = jnp.swapaxes(coef_t @ dct, -1, -2) @ dct  # D^T C D
  y, cb, cr = rec[:, 0] + 128, rec[:, 1], rec[:, 2]
  out = jnp.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr,
                   y + 1.772 * cb], 1) / 255
  return jnp.where(_ch(sel), out, img)


def _render_chunk(labels, key, taps, offsets, counts, *, victim,
                  strength=1.0):
  """uint8 (B, 32, 32, 3) images of int32 labels (B,) from one key."""
  s = _scene(labels, _random(key, labels.shape[0]), offsets, counts,
             victim=victim, strength=strength)
  m = _planes(s)
  bg = _background(s, m)
  img = _compose(s, m, _sign(taps, m), bg, _flip(bg))
  return _camera(s, _contrast(s, img))


@functools.lru_cache(maxsize=None)
def _bank_arrays():
  """The tap bank (a device array), per-class template offset and count."""
  _, per_class = templates.template_bank()
  counts = np.array([len(p) for p in per_class], np.int32)
  offsets = np.array([p[0] for p in per_class], np.int32)
  return jnp.asarray(_tap_bank()), offsets, counts


def _check_labels(labels) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.size == 0:
    raise ValueError(f"labels must be a non-empty 1-d array, got shape "
                     f"{labels.shape}")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
  if labels.min() < 0 or labels.max() >= NUM_CLASSES:
    raise ValueError(f"labels must lie in 0..{NUM_CLASSES - 1}, got "
                     f"{labels.min()}..{labels.max()}")
  return labels.astype(np.int32)


def _as_key(key_or_rng) -> jax.Array:
  """A typed jax PRNG key from a key, raw uint32 key data or a Generator."""
  if isinstance(key_or_rng, np.random.Generator):
    return jax.random.key(int(key_or_rng.integers(0, 2 ** 32)))
  dtype = getattr(key_or_rng, "dtype", None)
  if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
    if getattr(key_or_rng, "shape", None) != ():
      raise ValueError(f"expected a single PRNG key, got shape "
                       f"{key_or_rng.shape}")
    return key_or_rng
  if dtype == np.uint32 and np.shape(key_or_rng) == (2,):
    return jax.random.wrap_key_data(jnp.asarray(key_or_rng))
  raise ValueError(f"expected a jax PRNG key or np.random.Generator, got "
                   f"{type(key_or_rng).__name__}")


def _check_workers(workers) -> int:
  if workers is None:
    return default_workers()
  if not isinstance(workers, (int, np.integer)) or workers < 1:
    raise ValueError(f"workers must be an integer >= 1 or None, got "
                     f"{workers!r}")
  return int(workers)


def _render_one(labels: np.ndarray, key, c: int, victim: bool,
                strength: float = 1.0) -> np.ndarray:
  """Chunk c of a render: labels (n <= CHUNK,) padded to CHUNK, then cut."""
  n = labels.shape[0]
  padded = np.zeros(CHUNK, np.int32)
  padded[:n] = labels
  images = _render_chunk(padded, jax.random.fold_in(key, c), *_bank_arrays(),
                         victim=victim, strength=strength)
  return np.asarray(images)[:n]


_compiled = set()  # `victim` values whose programs are compiled


def _chunks(labels: np.ndarray, key, victim: bool, workers: int,
            strength: float = 1.0):
  """Yields the rendered chunks of `labels`, in order, from `workers` threads.

  Jitted calls release the GIL, so threads render chunks concurrently; at most
  2 * workers chunks are in flight. The first chunk ever rendered (of each
  `victim`) is rendered alone, so that one thread compiles while the others
  wait instead of compiling the same programs again.
  """
  jobs = [(labels[c * CHUNK:(c + 1) * CHUNK], key, c, victim, strength)
          for c in range((labels.shape[0] + CHUNK - 1) // CHUNK)]
  if victim not in _compiled:
    _bank_arrays()
    yield _render_one(*jobs.pop(0))
    _compiled.add(victim)
  if workers == 1 or len(jobs) <= 1:
    yield from (_render_one(*job) for job in jobs)
    return
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    pending = []
    for job in jobs:
      pending.append(pool.submit(_render_one, *job))
      if len(pending) >= 2 * workers:
        yield pending.pop(0).result()
    for future in pending:
      yield future.result()


# ---- public API ----------------------------------------------------------------


def render(labels: np.ndarray, key_or_rng, *, victim: bool = False,
           workers: int | None = None, corruption: float = 1.0) -> np.ndarray:
  """Renders one synthetic crop per label.

  Image i is a function of `jax.random.fold_in(key, i // CHUNK)`, its label
  and its position i % CHUNK only: a prefix of `labels` renders the same
  prefix of images, and the bytes do not depend on `workers`. Every call
  renders whole chunks of CHUNK images (one compiled shape), so a small batch
  costs as much as CHUNK images. The first call compiles (seconds).

  Args:
    labels: int (B,) class indices in the project's order, B >= 1.
    key_or_rng: the only source of randomness: a jax PRNG key
      (`jax.random.key(seed)`, or raw uint32 (2,) key data); an
      `np.random.Generator` is also accepted and draws a key seed from it.
    victim: a victim-set look (well framed, unoccluded signs).
    workers: threads rendering chunks concurrently (None: one per core).
    corruption: strength of the camera corruptions in [0, 1] (blur, low
      resolution, noise, JPEG, haze, shadow, occluder): 0 renders clean
      signs, 1 the default look; the scenes are otherwise the same.

  Returns:
    uint8 (B, 32, 32, 3) images.
  """
  labels = _check_labels(labels)
  key = _as_key(key_or_rng)
  return np.concatenate(list(_chunks(labels, key, victim,
                                     _check_workers(workers),
                                     check_corruption(corruption))))


def check_corruption(value) -> float:
  """`value` as a float in [0, 1], or a one-line ValueError."""
  if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
      or not 0.0 <= float(value) <= 1.0):
    raise ValueError(f"corruption must be a number in [0, 1] (0 = clean "
                     f"renders, 1 = the default camera), got {value!r}")
  return float(value)


def _split_key(seed: int, split: str) -> jax.Array:
  return jax.random.fold_in(jax.random.key(seed), SPLITS[split])


#: Approximate counts of LISA's annotation tags for the 17 named classes,
#: in class order 1..17, as recalled from the data set's paper (Mogelmose et
#: al., 2012; this machine has no LISA to count them): stop dominates, then
#: pedestrianCrossing and signalAhead. `lisa.read_annotations` on a LISA
#: folder gives the exact counts. Only their ratios are used
#: (`class_weights`).
LISA_TAG_COUNTS: tuple[int, ...] = (
    294, 331, 210, 266, 1085, 133, 105, 925, 349, 140, 538, 141, 132, 1821,
    168, 92, 236)
BALANCES: tuple[str, ...] = ("uniform", "lisa")


def class_weights(balance: str) -> np.ndarray:
  """float64 (18,) shares of the classes in a training split, summing to 1.

  'uniform': 1/18 each. 'lisa': class 0 keeps its 1/18, the 17 named classes
  share the rest in the ratios of `LISA_TAG_COUNTS` (stop dominates).
  """
  if balance not in BALANCES:
    raise ValueError(f"balance must be one of {', '.join(BALANCES)}, got "
                     f"{balance!r}")
  if balance == "uniform":
    return np.full(NUM_CLASSES, 1 / NUM_CLASSES)
  counts = np.asarray(LISA_TAG_COUNTS, np.float64)
  return np.concatenate([[1 / NUM_CLASSES],
                         counts / counts.sum() * (1 - 1 / NUM_CLASSES)])


def split_labels(num_per_class: int, balance: str = "uniform") -> np.ndarray:
  """int64 (num_per_class * 18,) labels of a split, classes interleaved.

  'uniform': example i has label i % 18. Otherwise class c gets
  round(total * share_c) examples (at least one; the largest absorbs the
  rounding), and the k-th example of class c sits at position
  (k + 0.5) / n_c of the split, so that every chunk holds every class in
  about its share.
  """
  total = int(num_per_class) * NUM_CLASSES
  if balance == "uniform":
    class_weights(balance)  # checks the name
    return np.arange(total, dtype=np.int64) % NUM_CLASSES
  n = np.maximum(np.rint(total * class_weights(balance)).astype(np.int64), 1)
  n[np.argmax(n)] += total - n.sum()
  labels = np.concatenate([np.full(k, c) for c, k in enumerate(n)])
  place = np.concatenate([(np.arange(k) + 0.5) / k for k in n])
  return labels[np.argsort(place, kind="stable")].astype(np.int64)


def generate_split(num_per_class: int, *, seed: int, split: str,
                   workers: int | None = None, corruption: float = 1.0,
                   balance: str = "uniform",
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields (images uint8 (n,32,32,3), labels int64 (n,)) chunks of a split.

  The split holds num_per_class * 18 examples; with `balance='uniform'`
  example i has label i % 18 (exact class balance), with 'lisa' the classes
  have LISA-like shares (`split_labels`). Chunk c holds examples
  [c * CHUNK, (c + 1) * CHUNK) and is rendered from the key
  fold_in(fold_in(key(seed), SPLITS[split]), c), so the bytes are the same
  for any `workers` (threads rendering chunks concurrently; None: one per
  core) and on every run. `corruption` in [0, 1] scales the camera
  corruptions (`render`).
  """
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; use one of {sorted(SPLITS)}")
  if (not isinstance(num_per_class, (int, np.integer))
      or isinstance(num_per_class, bool) or num_per_class < 1):
    raise ValueError(f"num_per_class must be an integer >= 1, got "
                     f"{num_per_class!r}")
  workers = _check_workers(workers)
  corruption = check_corruption(corruption)
  labels = split_labels(num_per_class, balance)
  chunks = _chunks(labels.astype(np.int32), _split_key(seed, split), False,
                   workers, corruption)
  for c, images in enumerate(chunks):
    yield images, labels[c * CHUNK:(c + 1) * CHUNK]


def default_workers() -> int:
  """Rendering threads by default: one per available core, at most 8."""
  return max(1, min(len(os.sched_getaffinity(0)), 8))


def synthetic_victims(n: int = 40, *, seed: int = 0) -> np.ndarray:
  """A victim set of `n` synthetic stop signs under varied conditions.

  Well framed, unoccluded stop signs (`render(..., victim=True)`) from the
  key fold_in(key(seed), SPLITS['victims']); victims(n) is a prefix of
  victims(m) for n < m.

  Returns:
    float32 (n, 32, 32, 3) in [0, 1], the layout of `load_victims`.
  """
  if not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"need at least one victim, got n={n!r}")
  images = render(np.full(n, STOP), _split_key(seed, "victims"), victim=True)
  return images.astype(np.float32) / 255.0


def compile_seconds(seed: int = 0) -> float:
  """Seconds the renderer spends compiling: the first chunk rendered in this
  process minus a second, compiled one (for `benchmark.render_speed`)."""
  labels = np.arange(CHUNK, dtype=np.int32) % NUM_CLASSES
  times = []
  for c in range(2):  # the first call compiles, the second does not
    start = time.perf_counter()
    _render_one(labels, jax.random.key(seed), c, False)
    times.append(time.perf_counter() - start)
  _compiled.add(False)
  return times[0] - times[1]
