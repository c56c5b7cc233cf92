"""The per-image scene parameters of a synthetic render chunk.

Every random number of a chunk comes from one jitted draw (`chunk_draws`);
`scene_parameters` turns its rows into every per-image choice of the chunk's
scenes (template, viewing geometry, paint, background, shadow, occluder,
illumination and the camera's settings) with a few hundred numpy operations
on (B,) arrays, nothing to compile. The per-pixel programs
(`synthetic_pixels`) paint the images from them.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

SIZE = 32  # pixels across a crop

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

#: Sizes (px) of the sign in the camera frame that a crop is resampled from.
SOURCE_MIN, SOURCE_MAX = 16, 64
#: The camera's saturation range (1 = the paint's colours) and the share of
#: greyscale cameras.
CAMERA_SATURATION = (1.0, 1.0)
GREY_SHARE = 0.03


@functools.lru_cache(maxsize=None)
def resample_bank() -> np.ndarray:
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


# Rows of per-image draws: (uniform, normal) for the scene's `_Draws`.
_N_UNIFORM, _N_NORMAL = 72, 12


@functools.partial(jax.jit, static_argnums=1)
def chunk_draws(key, b):
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


def scene_parameters(labels, rnd, offsets, counts, *, victim, strength=1.0):
  """Every parameter of a chunk's scenes: a dict of (B, ...) arrays.

  The steps below take their rows of `rnd` in this order; every render's
  bytes depend on it, so a new draw goes after the last one.

  Args:
    labels: int32 (B,) classes.
    rnd: the chunk's `chunk_draws`.
    offsets, counts: int32 (18,) first template and number of variants of
      each class in the bank.
    victim: the victim-set look (well framed, no shadow, no occluder).
    strength: the camera corruptions' strength in [0, 1]
      (`synthetic.check_corruption`). Every amplitude of the corruptions
      (blur, low resolution, noise, JPEG, haze, shadow, occluder) is scaled
      by it and their draws stay the same, so the scenes of one key at two
      strengths differ in the corruptions only; 0 gives clean renders.
  """
  d = _Draws(np.asarray(rnd["uniform"]), np.asarray(rnd["normal"]))
  s = {"tidx": _template_index(d, labels, offsets, counts, victim)}
  s["warp"] = _geometry(d, victim)
  s.update(_paint(d))
  s.update(_background(d, np.asarray(rnd["colour"])))
  s.update(_horizon_and_post(d))
  s.update(_shadow_and_occluder(d, victim, strength))
  s.update(_illumination(d, strength))
  s.update(_blur_noise_and_jpeg(d, strength))
  s["resample"] = _source_resize(d, strength)
  s.update(_colour_response(d))
  s = {k: v.astype(np.float32) if v.dtype.kind == "f" else v
       for k, v in s.items()}
  s = jax.device_put(s)  # once, not at each of the programs that read it
  for k in ("grid3", "grid9", "grid17", "noise_bits"):
    s[k] = rnd[k]
  return s


def _template_index(d, labels, offsets, counts, victim):
  """(B,) bank index: one of the class's variants; a share of class 0 is
  background alone (template 0)."""
  choice = (d.u() * counts[labels]).astype(np.int32)
  tidx = offsets[labels] + np.minimum(choice, counts[labels] - 1)
  background_only = (labels == 0) & (d.u() < 0.3)
  return tidx if victim else np.where(background_only, 0, tidx)


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


def _paint(d):
  """Paint: desaturation, colour, fading, a shading ramp, specular glare."""
  s = {}
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
  return s


def _background(d, colour):
  """Background: a kind of scene, its colours and texture (the noise grids'
  weights: coarse, mid, fine). `colour`: (2, B, 3) random scene colours."""
  s = {}
  kind = np.minimum((d.u() * 6).astype(np.int32), 5)
  jit = np.stack([d.u(-0.08, 0.08) for _ in range(3)], -1)  # (B, 3)
  # Random scenes in a camera's muted colours: halfway to their grey.
  rand = 0.5 * (colour + colour.mean(-1, keepdims=True))
  is_rand = (kind == 5)[:, None]
  s["bg_c0"] = np.where(is_rand, rand[0], _BG_LO[kind] + jit)
  s["bg_c1"] = np.where(is_rand, rand[1], _BG_HI[kind] + jit)
  coef = _BG_TEXTURE[kind]  # (B, 6)
  s["tex_y"], s["tex_1"], s["tex_stripes"] = coef[:, 0], coef[:, 1], coef[:, 5]
  s["tex_grid"] = coef[:, 2:5]
  s["stripe_f"] = 2 * np.pi / d.u(3.0, 9.0)
  s["stripe_phase"] = d.u(0.0, 6.3)
  s["stripe_vertical"] = d.u() < 0.5
  return s


def _horizon_and_post(d):
  """A second scene below a horizon, a sign post below the sign."""
  s = {}
  s["horizon"] = d.u() < 0.35
  s["horizon_y"] = d.u(6.0, 26.0)
  s["post"] = d.u() < 0.4
  s["post_x"], s["post_half"] = d.u(14.0, 18.0), d.u(0.7, 1.6)
  s["post_grey"] = d.u(0.25, 0.65)
  return s


def _shadow_and_occluder(d, victim, strength):
  """Shadow (25%) and occluder (12%); victims have neither."""
  s = {}
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
  return s


def _illumination(d, strength):
  """Illumination: exposure and colour cast, tone curve, contrast, haze."""
  s = {}
  dark = d.u() < 0.25
  gain = np.where(dark, d.u(0.15, 0.45), d.u(0.55, 1.25))
  s["gain"] = gain[:, None] * np.exp(np.stack([d.z(0.07) for _ in range(3)],
                                              -1))
  s["tone"] = d.u(-0.35, 0.35)
  s["contrast"] = d.u(0.85, 1.2)
  s["haze"] = np.where(d.u() < 0.3, d.u(0.0, 0.2), 0.0) * strength
  s["haze_colour"] = d.u(0.5, 0.9)[:, None] + np.stack(
      [d.u(-0.05, 0.05) for _ in range(3)], -1)
  return s


def _blur_noise_and_jpeg(d, strength):
  """Blur: defocus (75%) and motion (20%); read and shot sensor noise; JPEG
  (50%) at a random quality."""
  s = {}
  s["blur_sigma"] = np.where(d.u() < 0.25, 0.0, d.u(0.2, 1.1)) * strength
  s["blur_length"] = np.where(d.u() < 0.2, d.u(1.0, 4.0), 0.0) * strength
  theta = d.u(0.0, np.pi)
  s["blur_cos"], s["blur_sin"] = np.cos(theta), np.sin(theta)
  s["noise_sigma"] = d.u(0.003, 0.035) * strength
  s["noise_shot"] = d.u(0.0, 0.03) * strength
  s["jpeg"] = d.u() < 0.5 * strength
  quality = d.u(25.0, 90.0)
  s["jpeg_scale"] = np.where(quality < 50, 50 / quality, 2 - quality / 50)
  return s


def _source_resize(d, strength):
  """(B, 32, 32) A_r of `resample_bank`, r the sign's size in the frame.

  LISA's annotated signs span 6x6 to 167x168 px of 640x480 to 1024x522
  frames, most of them smaller than the 32x32 crop, which is then an
  upscaled, soft picture of a few pixels. The crop is resampled from `src`
  px (log-uniform, so small signs are as common as large ones; >= 32 px is
  no resampling), moved toward 32 by the strength.
  """
  src = np.minimum(np.exp(d.u(np.log(SOURCE_MIN), np.log(SOURCE_MAX))), SIZE)
  src = SIZE - (SIZE - src) * strength
  return resample_bank()[np.rint(src).astype(np.int32) - SOURCE_MIN]


def _colour_response(d):
  """Some of LISA's cameras are greyscale, and all of them saw muted colours:
  a 2009 dashcam's colour response (saturation) and a greyscale share."""
  return {"saturation": d.u(*CAMERA_SATURATION), "grey": d.u() < GREY_SHARE}
