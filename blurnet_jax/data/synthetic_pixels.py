"""The per-pixel programs of a synthetic render chunk.

Given a chunk's scene parameters (`synthetic_scene.scene_parameters`), a
chain of small jitted XLA programs (compiled once, for the one chunk shape)
paints the images. Their fused loops make a handful of passes over the batch
instead of numpy's ~150. Per-image choices (glare or not, JPEG or not ...)
are computed for every image and selected with `jnp.where`; the bilinear
template warp is a gather from the template bank; the blur is an FFT filter;
JPEG is DCT matmuls.

The programs are separate so that each one's inputs are materialised: inside
one program XLA:CPU fuses per-image work (threefry, sin, exp) into per-pixel
loops, per-pixel planes into every channel's loop and branchy ops (gather,
pad, reverse, roll) into arithmetic loops, recomputing them per element and
losing vectorisation (the single program was 3x slower than this chain;
optimisation barriers do not stop it on CPU).

  planes:     per-pixel single-channel maps (B, 32, 32): warp coordinates,
              background texture, horizon, post, paint ramp, glare, shadow,
              occluder
  sign:       the template gather: (B, 4, 32, 32) premultiplied RGBA
  background: (B, 3, 32, 32) scenes; `flip` rotates them (occluders)
  compose:    paint, composite, shadow, occluder, exposure, tone
  contrast:   contrast and haze (after a per-image mean)
  camera:     FFT blur, noise, JPEG, uint8 (B, 32, 32, 3)
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from blurnet_jax.data import templates
from blurnet_jax.data.synthetic_scene import SIZE

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


# The 8x8 block DCT of a 32-pixel line as one (32, 32) block-diagonal matrix.
_BLOCK_DCT = np.kron(np.eye(SIZE // 8, dtype=np.float32), _dct_matrix())


def _upsample_matrix(g: int, n: int = SIZE) -> np.ndarray:
  """(n, g) bilinear interpolation from a g-point grid to n pixel centres."""
  pos = (np.arange(n) + 0.5) / n * (g - 1)
  return np.stack([np.interp(pos, np.arange(g), np.eye(g)[j])
                   for j in range(g)], axis=1).astype(np.float32)


_UP = {g: _upsample_matrix(g) for g in (3, 9, 17)}
_YY, _XX = np.meshgrid(np.arange(SIZE, dtype=np.float32) + 0.5,
                       np.arange(SIZE, dtype=np.float32) + 0.5, indexing="ij")


def _p(v):
  """(B,) per-image scalars -> (B, 1, 1), for (B, 32, 32) planes."""
  return v[:, None, None]


def _ch(v):
  """(B,) or (B, 3) per-image scalars -> (B, 1|3, 1, 1) for (B, C, 32, 32)."""
  return v.reshape(v.shape[0], -1, 1, 1)


_BLUR_PAD = 2  # lines <= 4 px; a reflected border hides the FFT's wrap-around


@functools.lru_cache(maxsize=None)
def tap_bank() -> np.ndarray:
  """(T * P * P, 16): each texel's 2x2 bilinear neighbourhood, RGBA each.

  One gather of a row gives all four bilinear taps of a sample.
  """
  bank, _ = templates.template_bank()
  nb = np.pad(bank, ((0, 0), (0, 1), (0, 1), (0, 0)))
  taps = np.concatenate([nb[:, :-1, :-1], nb[:, :-1, 1:],
                         nb[:, 1:, :-1], nb[:, 1:, 1:]], -1)
  return np.ascontiguousarray(taps.reshape(-1, 16))


@jax.jit
def sign(taps, m):
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
def planes(s):
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
def background(s, m):
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
def flip(x):
  """(B, C, H, W) images rotated by 180 degrees."""
  return x[:, :, ::-1, ::-1]


@jax.jit
def compose(s, m, rgba, bg, occluder):
  """(B, 3, 32, 32) exposure of the sign over the background.

  Args:
    s: the chunk's scene parameters.
    m: its `planes`.
    rgba: (B, 4, 32, 32) premultiplied sign (`sign`).
    bg: (B, 3, 32, 32) background (`background`).
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
def contrast(s, img):
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
def camera(s, img):
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
