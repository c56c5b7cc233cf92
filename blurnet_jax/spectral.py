"""Spectral analysis of images and feature maps (the BlurNet slides' figures).

BlurNet's argument: an RP2 sticker adds high-frequency content to the
first-layer feature maps, so a low-pass filter on those maps removes much of
the attack while the sign itself, mostly low-frequency, survives. This module
measures that:

* `log_spectrum`: the log-shifted, per-map normalised FFT magnitude that the
  slides show (low frequencies at the centre, high at the edge);
* `radial_frequency` and `high_frequency_share`: one number per map, the share
  of its spectral power above a radius (in units of Nyquist);
* `layer_spectra`: that share, averaged, for the input, the layer-1 maps
  before and after the filter and layer 2, natural against perturbed;
* `mean_log_spectra`: the arrays of the figures (drawn by `plots.plot_spectra`).

Frequencies follow `jnp.fft.fftfreq` in cycles per pixel; after `fftshift`
the DC bin of an (H, W) map sits at (H // 2, W // 2), and a radius of 1 is the
Nyquist frequency (0.5 cycles per pixel) along one axis.

Typical use:

  params = rp2_assets.load_rp2_assets().params
  model, params = models.insert_filter(params, filter_where="l1",
                                       filter_kernel="box", filter_size=5)
  shares = layer_spectra(model, params, natural, perturbed)
  shares["l1"]["ratio"]  # > 1: the sticker adds high frequencies to layer 1
  figures = mean_log_spectra(model, params, natural, perturbed)
  plots.plot_spectra(figures["l1"], workdir / "l1.png", title="layer 1")
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from blurnet_jax import models

#: The representations that `layer_spectra` and `mean_log_spectra` describe:
#: the RGB image, conv1 after ReLU before any l1 filter, what conv2 sees
#: (after the filter), conv2 after ReLU.
REPRESENTATIONS: tuple[str, ...] = ("input", "l1", "l1_filtered", "l2")
#: The rows of a figure, the keys of each `mean_log_spectra` entry.
SPECTRUM_ROWS: tuple[str, ...] = ("natural", "perturbed", "difference")

# The largest radius of a bin: the corner of the shifted spectrum, where both
# axes are at Nyquist.
_MAX_RADIUS = math.sqrt(2.0)
# Float FFTs leave rounding noise of about eps * log2(H * W) times the norm of
# the map in every bin. A map whose texture (AC) power is below this fraction
# of its total power (Parseval: H * W * sum(x**2)) has no texture that float
# arithmetic can resolve, e.g. a constant map after its mean is removed; its
# share is reported as 0 instead of the share of the rounding noise.
_FLOOR_EPS_FACTOR = 100.0


def _as_maps(x: jax.typing.ArrayLike, name: str) -> jax.Array:
  """A real float array of shape (..., H, W, C), or ValueError."""
  x = jnp.asarray(x)
  if jnp.issubdtype(x.dtype, jnp.complexfloating):
    raise ValueError(
        f"{name} needs real maps, got dtype {x.dtype}; pass the real image or "
        "feature maps, not their FFT.")
  if x.ndim < 3:
    raise ValueError(
        f"{name} needs x of shape (..., H, W, C), got {x.shape}; add the "
        "missing channel axis (x[..., None] for a single map).")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  return x


def _check_radius(radius: Any) -> float:
  if (isinstance(radius, bool) or not isinstance(radius, numbers.Real)
      or not 0.0 < float(radius) < _MAX_RADIUS):
    raise ValueError(
        f"radius={radius!r} is not a Python float in (0, sqrt(2)) = "
        f"(0, {_MAX_RADIUS:.4f}); pass one, in units of Nyquist (static under "
        "jit).")
  return float(radius)


def _shifted_fft(x: jax.Array) -> jax.Array:
  """FFT over H, W of (..., H, W, C), DC moved to (H // 2, W // 2)."""
  spectrum = jnp.fft.fft2(x, axes=(-3, -2))
  return jnp.fft.fftshift(spectrum, axes=(-3, -2))


def log_spectrum(x: jax.typing.ArrayLike) -> jax.Array:
  """The log-shifted FFT magnitude of every map, normalised to [0, 1].

  `log1p(|fftshift(fft2(map))|) / max` over the two spatial axes of each map:
  low frequencies at the centre (DC at (H // 2, W // 2)), high at the edge.
  log1p keeps zero magnitude at zero and compresses the DC term, which for an
  image in [0, 1] is H * W times its mean and would otherwise hide the rest.
  Each map is divided by its own maximum, so maps of different scale compare
  by shape; an all-zero map stays zero (no NaN).

  Args:
    x: real (..., H, W, C), e.g. images (N, 32, 32, 3) or feature maps
      (N, 16, 16, 64).

  Returns:
    float (..., H, W, C) in [0, 1], the dtype of `x` (float32 for ints).
  """
  x = _as_maps(x, "log_spectrum")
  magnitude = jnp.log1p(jnp.abs(_shifted_fft(x)))
  peak = jnp.max(magnitude, axis=(-3, -2), keepdims=True)
  # Dividing by 1 where the peak is 0 keeps an all-zero map at 0.
  return magnitude / jnp.where(peak > 0, peak, 1.0)


def radial_frequency(h: int, w: int) -> jax.Array:
  """The radius of every fftshifted frequency bin of an (h, w) map.

  `sqrt(fy**2 + fx**2)` with `fy = fftshift(fftfreq(h)) / 0.5` (and `fx` from
  `w`), i.e. each axis in units of its Nyquist frequency: 0 at the centre
  (h // 2, w // 2), 1 at the midpoints of the edges (for even sizes), sqrt(2)
  at the corner (0, 0).

  Args:
    h: number of rows, >= 1.
    w: number of columns, >= 1.

  Returns:
    float32 (h, w).
  """
  for name, size in (("h", h), ("w", w)):
    if (isinstance(size, bool) or not isinstance(size, numbers.Integral)
        or size < 1):
      raise ValueError(
          f"radial_frequency needs {name} an int >= 1, got {size!r}; pass the "
          "spatial size of the maps (x.shape[-3], x.shape[-2]).")
  return _radial_frequency(int(h), int(w))


# Jitted so that an eager call compiles one small fused kernel instead of
# dispatching (and compiling) each op; inside another jit it is inlined.
@functools.partial(jax.jit, static_argnums=(0, 1))
def _radial_frequency(h: int, w: int) -> jax.Array:
  fy = jnp.fft.fftshift(jnp.fft.fftfreq(h)) / 0.5
  fx = jnp.fft.fftshift(jnp.fft.fftfreq(w)) / 0.5
  return jnp.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).astype(jnp.float32)


def _band_powers(x: jax.Array, radius: float,
                 remove_mean: bool) -> tuple[jax.Array, jax.Array]:
  """(power above `radius`, total power) per map, each (..., C).

  The total is 0 for a map whose power is below the float noise floor (see
  `_FLOOR_EPS_FACTOR`), so `high / total` is only taken where it means
  something.
  """
  h, w = x.shape[-3], x.shape[-2]
  # Parseval: sum |F|^2 = H * W * sum x^2, the power of the map as given.
  reference = h * w * jnp.sum(jnp.square(x), axis=(-3, -2))
  if remove_mean:
    # Subtracting the mean before the FFT keeps the bright DC term from
    # adding its rounding noise to the texture bins; the DC bin itself is
    # then zeroed below, as the residual mean is only rounding.
    x = x - jnp.mean(x, axis=(-3, -2), keepdims=True)
  power = jnp.square(jnp.abs(_shifted_fft(x)))
  if remove_mean:
    power = power.at[..., h // 2, w // 2, :].set(0.0)
  high_bins = radial_frequency(h, w) > radius  # (H, W)
  high = jnp.sum(jnp.where(high_bins[:, :, None], power, 0.0), axis=(-3, -2))
  total = jnp.sum(power, axis=(-3, -2))
  floor = (_FLOOR_EPS_FACTOR * jnp.finfo(x.dtype).eps) ** 2 * reference
  return high, jnp.where(total > floor, total, 0.0)


def high_frequency_share(x: jax.typing.ArrayLike, *, radius: float = 0.5,
                         remove_mean: bool = True) -> jax.Array:
  """The share of each map's spectral power above a radius.

  `sum(|F|^2 over bins with radial_frequency > radius) / sum(|F|^2)`, F the
  2-D FFT of the map. With `remove_mean` the mean of each map (its DC term)
  is removed first, so the share describes the texture, not the brightness.
  A map with no power (all zero, or constant with `remove_mean`; more
  precisely, below float rounding, about 1e-10 of its power with the mean)
  gives 0, not NaN.

  Args:
    x: real (..., H, W, C).
    radius: threshold in units of Nyquist per axis (see `radial_frequency`),
      a Python float in (0, sqrt(2)); static under `jax.jit`.
    remove_mean: drop the DC term of every map first.

  Returns:
    float (..., C) in [0, 1].
  """
  x = _as_maps(x, "high_frequency_share")
  radius = _check_radius(radius)
  high, total = _band_powers(x, radius, remove_mean)
  return jnp.where(total > 0, high / jnp.where(total > 0, total, 1.0), 0.0)


def pooled_high_frequency_share(x: jax.typing.ArrayLike, *,
                                radius: float = 0.5) -> jax.Array:
  """Per image, the share of the power of all its maps above `radius`
  (each map's mean removed): `sum_c high_c / sum_c total_c`, so maps
  without power weigh nothing. float (N,) for maps (N, H, W, C); 0 where
  no map has power."""
  x = _as_maps(x, "pooled_high_frequency_share")
  high, total = _band_powers(x, _check_radius(radius), True)
  high, total = jnp.sum(high, -1), jnp.sum(total, -1)
  return jnp.where(total > 0, high / jnp.where(total > 0, total, 1.0), 0.0)


@functools.partial(jax.jit, static_argnums=0)
def _representations(model: models.LisaCNN, params: Any,
                     images: jax.Array) -> dict[str, jax.Array]:
  """{'input': (N, 32, 32, 3), 'l1', 'l1_filtered': (N, 16, 16, 64), 'l2'}."""
  _, features = model.apply({"params": params}, images, return_features=True)
  return {"input": images, **{k: features[k] for k in REPRESENTATIONS[1:]}}


def _check_batches(natural: jax.typing.ArrayLike,
                   perturbed: jax.typing.ArrayLike) -> tuple[jax.Array, ...]:
  natural = jnp.asarray(natural, jnp.float32)
  perturbed = jnp.asarray(perturbed, jnp.float32)
  for name, images in (("natural", natural), ("perturbed", perturbed)):
    if images.ndim != 4 or images.shape[0] < 1:
      raise ValueError(
          f"{name} images must be a batch (N, H, W, 3) with N >= 1, got "
          f"{images.shape}; add the batch axis (images[None]).")
  return natural, perturbed


@functools.partial(jax.jit, static_argnames=("radius",))
def _mean_share(x: jax.Array, *, radius: float) -> jax.Array:
  """Mean share over the maps (images x channels) that carry power."""
  high, total = _band_powers(x, radius, remove_mean=True)
  live = total > 0
  shares = jnp.where(live, high / jnp.where(live, total, 1.0), 0.0)
  return jnp.sum(shares) / jnp.maximum(jnp.sum(live), 1)


def layer_spectra(model: models.LisaCNN, params: Any,
                  natural: jax.typing.ArrayLike,
                  perturbed: jax.typing.ArrayLike, *,
                  radius: float = 0.5) -> dict[str, dict[str, float]]:
  """The slides' number: high-frequency share per layer, natural vs perturbed.

  For each representation of `REPRESENTATIONS` ('input' the RGB images, 'l1'
  conv1 after ReLU before any filter, 'l1_filtered' what conv2 sees, 'l2'),
  the mean of `high_frequency_share(radius=radius, remove_mean=True)` over
  images and channels. Maps without texture power (dead ReLU channels, flat
  maps) have no spectrum to describe and are left out of the mean, so a
  perturbation that wakes a dead channel changes the number only by that
  channel's own spectrum.

  Args:
    model: a `LisaCNN` (e.g. from `models.insert_filter`).
    params: its params.
    natural: float (N, 32, 32, 3) images in [0, 1].
    perturbed: float (M, 32, 32, 3), e.g. the same signs with a sticker.
    radius: threshold in units of Nyquist (see `high_frequency_share`).

  Returns:
    {representation: {'natural': float, 'perturbed': float,
    'ratio': perturbed / natural (inf when natural is 0 and perturbed not,
    nan when both are 0)}}.
  """
  radius = _check_radius(radius)
  natural, perturbed = _check_batches(natural, perturbed)
  reps = {"natural": _representations(model, params, natural),
          "perturbed": _representations(model, params, perturbed)}
  out = {}
  for rep in REPRESENTATIONS:
    nat = float(_mean_share(reps["natural"][rep], radius=radius))
    per = float(_mean_share(reps["perturbed"][rep], radius=radius))
    if nat > 0:
      ratio = per / nat
    else:
      ratio = math.inf if per > 0 else math.nan
    out[rep] = {"natural": nat, "perturbed": per, "ratio": ratio}
  return out


@jax.jit
def _mean_log_spectrum(x: jax.Array) -> jax.Array:
  """(N, H, W, C) -> (H, W, C), the mean of `log_spectrum` over images."""
  return jnp.mean(log_spectrum(x), axis=0)


def mean_log_spectra(model: models.LisaCNN, params: Any,
                     natural: jax.typing.ArrayLike,
                     perturbed: jax.typing.ArrayLike, *,
                     num_maps: int = 8) -> dict[str, dict[str, np.ndarray]]:
  """The arrays of the slides' spectrum figures, one entry per representation.

  For each representation of `REPRESENTATIONS`, the mean over images of
  `log_spectrum` for the natural and the perturbed batch and their
  difference (perturbed - natural): all 3 RGB channels for 'input', the
  first `num_maps` maps for 'l1', 'l1_filtered' and 'l2'.

  Args:
    model: a `LisaCNN`.
    params: its params.
    natural: float (N, 32, 32, 3) images in [0, 1].
    perturbed: float (M, 32, 32, 3).
    num_maps: feature maps kept per layer, 1 to 64.

  Returns:
    {representation: {'natural', 'perturbed', 'difference'}}, float32 numpy
    arrays (H, W, C): (32, 32, 3) for 'input', (16, 16, num_maps) for 'l1'
    and 'l1_filtered', (6, 6, num_maps) for 'l2'; natural and perturbed in
    [0, 1], the difference in [-1, 1].
  """
  if (isinstance(num_maps, bool) or not isinstance(num_maps, numbers.Integral)
      or not 1 <= num_maps <= models.L1_CHANNELS):
    raise ValueError(
        f"num_maps={num_maps!r} is out of range; pass an int in "
        f"[1, {models.L1_CHANNELS}].")
  natural, perturbed = _check_batches(natural, perturbed)
  reps = {"natural": _representations(model, params, natural),
          "perturbed": _representations(model, params, perturbed)}
  out = {}
  for rep in REPRESENTATIONS:
    keep = 3 if rep == "input" else int(num_maps)
    means = {name: np.asarray(_mean_log_spectrum(reps[name][rep][..., :keep]),
                              np.float32)
             for name in ("natural", "perturbed")}
    means["difference"] = means["perturbed"] - means["natural"]
    out[rep] = means
  return out


def per_image_shares(model: models.LisaCNN, params: Any,
                     images: jax.typing.ArrayLike, *,
                     radius: float = 0.5) -> dict[str, np.ndarray]:
  """Per image, the mean high-frequency share of each representation's
  maps that carry power (as `layer_spectra`, one number per image instead
  of one per batch): {representation: float (N,)}."""
  radius = _check_radius(radius)
  images, _ = _check_batches(images, images)
  reps = _representations(model, params, images)
  out = {}
  for rep in REPRESENTATIONS:
    high, total = _band_powers(reps[rep], radius, remove_mean=True)
    live = total > 0
    shares = jnp.where(live, high / jnp.where(live, total, 1.0), 0.0)
    out[rep] = np.asarray(jnp.sum(shares, -1) /
                          jnp.maximum(jnp.sum(live, -1), 1))
  return out
