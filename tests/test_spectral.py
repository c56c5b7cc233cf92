"""Tests of blurnet_jax.spectral: spectra, high-frequency shares, figures.

Expected values are computed independently: by hand for constant, cosine and
checkerboard maps, with numpy's FFT for random maps and the RP2 features.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from blurnet_jax import models
from blurnet_jax import plots
from blurnet_jax import spectral
from blurnet_jax.data import rp2_assets
from blurnet_jax.data.masks import load_mask
from blurnet_jax.data.victims import load_victims

# A blur must cut the share of white-noise power above half Nyquist by at
# least this factor. Measured (seed 0) on (4, 32, 32, 3) and (2, 16, 16, 64):
# the weakest kernel is gaussian 3x3 (2.7 on 16x16, 3.2 on 32x32), box 3x3
# gives 3.1-4.1, sizes 5 and 7 give 3.8-40; an identity kernel gives 1.0.
MIN_ATTENUATION = 2.0


def _np_share(x: np.ndarray, radius: float, remove_mean: bool) -> np.ndarray:
  """numpy reference of high_frequency_share for (..., H, W, C) maps."""
  x = np.asarray(x, np.float64)
  h, w = x.shape[-3], x.shape[-2]
  if remove_mean:
    x = x - x.mean(axis=(-3, -2), keepdims=True)
  power = np.abs(np.fft.fft2(x, axes=(-3, -2))) ** 2
  fy = np.fft.fftfreq(h) / 0.5  # unshifted: the radius does not care
  fx = np.fft.fftfreq(w) / 0.5
  high = np.hypot(fy[:, None], fx[None, :]) > radius
  total = power.sum(axis=(-3, -2))
  above = (power * high[:, :, None]).sum(axis=(-3, -2))
  return np.divide(above, total, out=np.zeros_like(total), where=total > 1e-9)


def _np_log_spectrum(x: np.ndarray) -> np.ndarray:
  mag = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(x, axes=(-3, -2)),
                                        axes=(-3, -2))))
  peak = mag.max(axis=(-3, -2), keepdims=True)
  return np.divide(mag, peak, out=np.zeros_like(mag), where=peak > 0)


# One jitted function each, so that every (shape, radius, remove_mean) is
# compiled once for the whole file.
_log_spectrum = jax.jit(spectral.log_spectrum)
_share = jax.jit(spectral.high_frequency_share,
                 static_argnames=("radius", "remove_mean"))


def _share_fn(radius: float, remove_mean: bool = True):
  return functools.partial(_share, radius=radius, remove_mean=remove_mean)


# --- log_spectrum ---------------------------------------------------------


def test_log_spectrum_constant_image_has_only_the_dc_bin():
  x = np.full((2, 32, 32, 3), 0.7, np.float32)
  x[1, :, :, 2] = 0.0  # an all-zero map
  spec = np.asarray(_log_spectrum(x))
  assert spec.shape == x.shape
  assert not np.isnan(spec).any()
  # DC of a constant c is H * W * c; log1p of it, over itself, is 1.
  np.testing.assert_allclose(spec[:, 16, 16, :2], 1.0, rtol=1e-6)
  np.testing.assert_allclose(spec[0, 16, 16, 2], 1.0, rtol=1e-6)
  others = spec.copy()
  others[:, 16, 16, :] = 0.0
  assert np.abs(others).max() <= 1e-6
  np.testing.assert_array_equal(spec[1, :, :, 2], 0.0)


def test_log_spectrum_matches_numpy_on_random_maps():
  x = np.random.default_rng(1).standard_normal((3, 2, 12, 10, 4))
  x = x.astype(np.float32)
  got = np.asarray(_log_spectrum(x))
  np.testing.assert_allclose(got, _np_log_spectrum(x.astype(np.float64)),
                             atol=2e-6)
  assert got.min() >= 0.0 and got.max() <= 1.0 + 1e-6


@pytest.mark.parametrize("axis", ["x", "y"])
def test_single_frequency_peaks_and_share(axis):
  h, w, k = 16, 32, 3
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  if axis == "x":
    wave = np.cos(2 * np.pi * k * cols / w)
    peaks = {(h // 2, w // 2 - k), (h // 2, w // 2 + k)}
    r_peak = k / (w / 2)
  else:
    wave = np.cos(2 * np.pi * k * rows / h)
    peaks = {(h // 2 - k, w // 2), (h // 2 + k, w // 2)}
    r_peak = k / (h / 2)
  x = wave.astype(np.float32)[None, :, :, None]  # (1, H, W, 1), mean 0
  spec = np.asarray(_log_spectrum(x))[0, :, :, 0]
  top2 = np.argsort(spec.ravel())[-2:]
  assert {tuple(int(i) for i in np.unravel_index(t, spec.shape))
          for t in top2} == peaks
  for p in peaks:
    assert spec[p] == pytest.approx(1.0, abs=1e-6)
  rest = spec.copy()
  for p in peaks:
    rest[p] = 0.0
  assert rest.max() < 1e-4  # log1p of rounding noise, over log1p(H * W / 2)

  for remove_mean in (True, False):
    below = float(_share_fn(r_peak - 0.01, remove_mean)(x)[0, 0])
    above = float(_share_fn(r_peak + 0.01, remove_mean)(x)[0, 0])
    assert below == pytest.approx(1.0, abs=1e-5)
    assert above == pytest.approx(0.0, abs=1e-5)

  # An offset a under amplitude b: the DC bin holds (a H W)^2 of the power,
  # each peak (b H W / 2)^2, so the share above the peaks' radius minus a bit
  # is (b^2 / 2) / (a^2 + b^2 / 2) with the mean kept, 1 without it.
  a, b = 0.5, 0.3
  shifted = (a + b * x).astype(np.float32)
  keep = float(_share_fn(r_peak - 0.01, remove_mean=False)(shifted)[0, 0])
  assert keep == pytest.approx((b**2 / 2) / (a**2 + b**2 / 2), rel=1e-4)
  drop = float(_share_fn(r_peak - 0.01, remove_mean=True)(shifted)[0, 0])
  assert drop == pytest.approx(1.0, abs=1e-5)


def test_checkerboard_has_all_its_power_at_the_corner():
  i, j = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
  board = ((-1.0) ** (i + j)).astype(np.float32)[None, :, :, None]
  spec = np.asarray(_log_spectrum(board))[0, :, :, 0]
  assert spec[0, 0] == pytest.approx(1.0)
  rest = spec.copy()
  rest[0, 0] = 0.0
  assert rest.max() <= 1e-6
  for radius in (1.0, 1.4):
    share = float(_share_fn(radius)(board)[0, 0])
    assert share == pytest.approx(1.0, abs=1e-6)


# --- radial_frequency -----------------------------------------------------


def test_radial_frequency_landmarks():
  r = np.asarray(spectral.radial_frequency(16, 32))
  assert r.shape == (16, 32)
  assert r[8, 16] == 0.0  # centre, DC
  assert r[0, 16] == pytest.approx(1.0)  # top edge midpoint: f_y at Nyquist
  assert r[8, 0] == pytest.approx(1.0)  # left edge midpoint: f_x at Nyquist
  assert r[0, 0] == pytest.approx(math.sqrt(2.0))  # corner
  assert r[8, 16 + 4] == pytest.approx(4 / 16)  # 4 bins of 2 / 32 each
  assert r[8 - 2, 16] == pytest.approx(2 / 8)  # 2 bins of 2 / 16 each
  # Odd size: shifted fftfreq(5) is [-.4, -.2, 0, .2, .4], Nyquist .5.
  r5 = np.asarray(spectral.radial_frequency(5, 5))
  assert r5[2, 2] == 0.0
  assert r5[0, 2] == pytest.approx(0.8)
  assert r5[0, 0] == pytest.approx(0.8 * math.sqrt(2.0))


# --- high_frequency_share -------------------------------------------------


@pytest.mark.parametrize("remove_mean", [True, False])
@pytest.mark.parametrize("radius", [0.05, 0.5, 1.0])
def test_constant_image_has_no_high_frequency_share(remove_mean, radius):
  x = np.full((2, 32, 32, 3), 0.37, np.float32)
  x[1, ..., 1] = 0.0
  share = np.asarray(_share_fn(radius, remove_mean)(x))
  assert share.shape == (2, 3)
  assert not np.isnan(share).any()
  np.testing.assert_allclose(share, 0.0, atol=1e-7)


def test_share_matches_numpy_on_random_maps_with_batch_axes():
  rng = np.random.default_rng(2)
  # Smooth-ish maps with an offset, so the mean and the radius both matter.
  x = rng.standard_normal((3, 2, 12, 16, 5)).cumsum(axis=-2) + 4.0
  x = x.astype(np.float32)
  for radius, remove_mean in ((0.3, True), (0.7, False)):
    got = np.asarray(_share_fn(radius, remove_mean)(x))
    assert got.shape == (3, 2, 5)
    want = _np_share(x, radius, remove_mean)
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert 0.0 <= got.min() and got.max() <= 1.0


def test_white_noise_share_is_the_area_outside_the_radius():
  # White noise spreads its power evenly: the expected share above r < 1 is
  # the area of the square [-1, 1]^2 outside the disc, 1 - pi r^2 / 4.
  x = np.random.default_rng(3).standard_normal((8, 32, 32, 4))
  share = np.asarray(_share_fn(0.5)(x.astype(np.float32)))
  assert share.mean() == pytest.approx(1 - math.pi * 0.25 / 4, abs=0.01)


# --- the model's blur kernels ---------------------------------------------


def _attenuation(x: np.ndarray, kernel, padding: str) -> float:
  """Share above half Nyquist of x, over that of x blurred by kernel."""
  share = _share_fn(0.5)
  # Eager: a jit per kernel size and padding would cost more to compile than
  # these small blurs cost to run.
  blurred = models.depthwise_blur(x, kernel, padding=padding)
  return float(share(x).mean()) / float(share(blurred).mean())


_NOISE = {shape: np.random.default_rng(0).standard_normal(shape).astype(
    np.float32) for shape in [(4, 32, 32, 3), (2, 16, 16, 64)]}


@pytest.mark.parametrize("padding", models.FILTER_PADDINGS)
@pytest.mark.parametrize("size", models.FILTER_SIZES)
@pytest.mark.parametrize("kind", models.FIXED_KERNELS)
def test_every_fixed_blur_attenuates_high_frequencies(kind, size, padding):
  for shape, x in _NOISE.items():
    kernel = models.blur_kernel(kind, size, shape[-1])
    factor = _attenuation(x, kernel, padding)
    assert factor > MIN_ATTENUATION, (kind, size, padding, shape, factor)


@pytest.mark.parametrize("padding", models.FILTER_PADDINGS)
def test_attenuation_check_catches_a_no_op_blur(padding):
  for shape, x in _NOISE.items():
    identity = np.zeros((3, 3, 1, shape[-1]), np.float32)
    identity[1, 1] = 1.0
    factor = _attenuation(x, identity, padding)
    assert factor == pytest.approx(1.0, abs=1e-5)
    assert not factor > MIN_ATTENUATION


# --- the RP2 model ----------------------------------------------------------


@pytest.fixture(scope="module")
def rp2_batches(rp2_dir):
  """(params, natural (40, 32, 32, 3), perturbed: the camouflage stickers)."""
  natural = load_victims(rp2_dir / "victim-set")
  mask = load_mask(rp2_dir / "masks" / "mask_l1loss_uniform_rectangles.png")
  assert mask.shape in ((32, 32, 1), (32, 32, 3))
  npz = rp2_dir / "rp2_lisa_cnn.npz"
  noise = np.asarray(rp2_assets.load_rp2_noise(npz, "noise_rectangles_camouflage"))
  perturbed = np.clip(natural + mask * np.clip(noise, -20, 20), 0, 1)
  perturbed = perturbed.astype(np.float32)
  assert np.abs(perturbed - natural).max() > 0.1  # the sticker is there
  return rp2_assets.params_from_rp2(npz), natural, perturbed


@pytest.fixture(scope="module")
def rp2_shares(rp2_batches):
  params, natural, perturbed = rp2_batches
  plain = spectral.layer_spectra(models.LisaCNN(), params, natural, perturbed)
  model, box_params = models.insert_filter(
      params, filter_where="l1", filter_kernel="box", filter_size=5)
  boxed = spectral.layer_spectra(model, box_params, natural, perturbed)
  print("\nunfiltered:", plain, "\nl1 box 5x5:", boxed)
  return plain, boxed


def test_layer_spectra_structure_and_numpy_reference(rp2_batches, rp2_shares):
  params, natural, perturbed = rp2_batches
  plain, _ = rp2_shares
  assert set(plain) == set(spectral.REPRESENTATIONS)
  for rep, row in plain.items():
    assert set(row) == {"natural", "perturbed", "ratio"}
    assert all(isinstance(v, float) for v in row.values()), rep
    assert 0.0 < row["natural"] < 1.0 and 0.0 < row["perturbed"] < 1.0
    assert row["ratio"] == pytest.approx(row["perturbed"] / row["natural"])
  # Without a filter, conv2 sees the unfiltered l1 maps.
  assert plain["l1_filtered"] == plain["l1"]
  # Independent reference: numpy shares of the features, maps without texture
  # power (dead ReLU channels) left out of the mean.
  _, feats = models.LisaCNN().apply({"params": params}, natural,
                                    return_features=True)
  for rep, maps in (("input", natural), ("l1", feats["l1"]),
                    ("l2", feats["l2"])):
    maps = np.asarray(maps, np.float64)
    live = maps.std(axis=(-3, -2)) > 1e-6
    want = _np_share(maps, 0.5, True)[live].mean()
    assert plain[rep]["natural"] == pytest.approx(want, rel=1e-4), rep


def test_sticker_raises_the_layer1_high_frequency_share(rp2_shares):
  # The slides' claim: the sticker raises the high-frequency share of the
  # input and of layer 1 (little, as it covers 30 of 1024 pixels; the
  # values are the rp2 rows of the study's spectral.json).
  plain, _ = rp2_shares
  assert plain["l1"]["ratio"] > 1.008
  assert plain["input"]["ratio"] > 1.05


def test_box_filter_on_l1_removes_the_high_frequencies(rp2_shares):
  # A 5x5 box passes little above half the Nyquist radius: it cuts the
  # share of both batches by far more than 4x.
  plain, boxed = rp2_shares
  assert boxed["l1"] == plain["l1"]  # the filter acts after 'l1'
  assert boxed["l1_filtered"]["perturbed"] < 0.25 * boxed["l1"]["perturbed"]
  assert boxed["l1_filtered"]["natural"] < 0.25 * boxed["l1"]["natural"]


def test_mean_log_spectra_shapes_and_values(rp2_batches):
  params, natural, perturbed = rp2_batches
  model, box_params = models.insert_filter(
      params, filter_where="l1", filter_kernel="box", filter_size=5)
  spectra = spectral.mean_log_spectra(model, box_params, natural, perturbed,
                                      num_maps=4)
  shapes = {"input": (32, 32, 3), "l1": (16, 16, 4),
            "l1_filtered": (16, 16, 4), "l2": (6, 6, 4)}
  assert set(spectra) == set(shapes)
  for rep, entry in spectra.items():
    assert set(entry) == set(spectral.SPECTRUM_ROWS)
    for row, array in entry.items():
      assert array.shape == shapes[rep], (rep, row)
      assert not np.isnan(array).any()
    np.testing.assert_allclose(entry["difference"],
                               entry["perturbed"] - entry["natural"])
  want = _np_log_spectrum(natural.astype(np.float64)).mean(axis=0)
  np.testing.assert_allclose(spectra["input"]["natural"], want, atol=2e-6)
  # The sticker shows in the input spectrum; the blur darkens l1's edges.
  assert np.abs(spectra["input"]["difference"]).max() > 0.01
  r = np.asarray(spectral.radial_frequency(16, 16))
  for row in ("natural", "perturbed"):
    edge_before = spectra["l1"][row][r > 0.5].mean()
    edge_after = spectra["l1_filtered"][row][r > 0.5].mean()
    assert edge_after < edge_before


# --- figures ----------------------------------------------------------------


def test_plot_spectra_writes_a_png(tmp_path):
  maps = 8
  rng = np.random.default_rng(4)
  nat = rng.random((16, 16, maps)).astype(np.float32)
  per = rng.random((16, 16, maps)).astype(np.float32)
  spectra = {"natural": nat, "perturbed": per, "difference": per - nat}
  path = plots.plot_spectra(spectra, tmp_path / "sub" / "fig.png",
                               title="test figure")
  assert path.exists()
  with Image.open(path) as image:
    assert image.format == "PNG"
    width, height = image.size
  assert width > height > 300  # three rows, several readable columns


# --- bad input ----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(32,), (32, 32)])
def test_wrong_ndim_raises(shape):
  x = np.zeros(shape, np.float32)
  with pytest.raises(ValueError, match=r"\(\.\.\., H, W, C\)"):
    spectral.log_spectrum(x)
  with pytest.raises(ValueError, match=r"\(\.\.\., H, W, C\)"):
    spectral.high_frequency_share(x)


def test_complex_input_raises():
  with pytest.raises(ValueError, match="real"):
    spectral.log_spectrum(np.zeros((4, 4, 1), np.complex64))


@pytest.mark.parametrize("radius", [0.0, -0.1, math.sqrt(2.0), 1.5, True,
                                    "0.5", jnp.float32(0.5)])
def test_radius_out_of_range_raises(radius):
  with pytest.raises(ValueError, match="radius"):
    spectral.high_frequency_share(np.zeros((4, 4, 1), np.float32),
                                  radius=radius)


def test_other_bad_arguments_raise():
  with pytest.raises(ValueError, match="radius"):
    spectral.layer_spectra(models.LisaCNN(), {}, np.zeros((1, 32, 32, 3)),
                           np.zeros((1, 32, 32, 3)), radius=2.0)
  with pytest.raises(ValueError, match="batch"):
    spectral.layer_spectra(models.LisaCNN(), {}, np.zeros((32, 32, 3)),
                           np.zeros((1, 32, 32, 3)))
  with pytest.raises(ValueError, match="num_maps"):
    spectral.mean_log_spectra(models.LisaCNN(), {}, np.zeros((1, 32, 32, 3)),
                              np.zeros((1, 32, 32, 3)), num_maps=0)
  with pytest.raises(ValueError, match=r"h an int >= 1"):
    spectral.radial_frequency(0, 4)
  with pytest.raises(ValueError, match="difference"):
    plots.plot_spectra({"natural": np.zeros((4, 4, 1)),
                           "perturbed": np.zeros((4, 4, 1))}, "unused.png",
                          title="t")
