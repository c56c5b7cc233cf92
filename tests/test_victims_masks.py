"""Tests for victim-set and mask loading and the built-in masks."""

from pathlib import Path

import numpy as np
from PIL import Image
import pytest

from blurnet_jax.data import masks
from blurnet_jax.data import rp2_assets
from blurnet_jax.data import victims

RP2 = rp2_assets.PACKAGED_DIR
OCTAGON_PNG = RP2 / "masks" / "octagon.png"
RECTANGLES_PNG = RP2 / "masks" / "mask_l1loss_uniform_rectangles.png"


@pytest.fixture
def rp2() -> Path:
  return RP2


def _save(path: Path, shape, value=200, mode="RGB") -> Path:
  Image.fromarray(np.full(shape, value, np.uint8), mode=mode).save(path)
  return path


# ---------------------------------------------------------------- victims


def test_rp2_victim_set(rp2):
  images, names = victims.load_victims_with_names(rp2 / "victim-set")
  assert images.shape == (40, 32, 32, 3)
  assert images.dtype == np.float32
  assert 0.0 <= images.min() and images.max() <= 1.0
  assert names == [f"{i}.png" for i in range(1, 42) if i != 14]
  first = np.asarray(Image.open(rp2 / "victim-set" / "1.png").convert("RGB"),
                     np.float32) / 255.0
  np.testing.assert_array_equal(images[0], first)
  np.testing.assert_array_equal(victims.load_victims(rp2 / "victim-set"),
                                images)


def test_victims_natural_order_and_conversions(tmp_path):
  _save(tmp_path / "10.PNG", (32, 32, 3), 10)
  _save(tmp_path / "2.jpg", (32, 32), 20, mode="L")
  _save(tmp_path / "1.bmp", (32, 32, 3), 30)
  _save(tmp_path / "extra.png", (32, 32, 4), 40, mode="RGBA")
  palette = Image.new("P", (32, 32), 0)
  palette.putpalette([50, 60, 70] * 256)
  palette.save(tmp_path / "3.png")
  (tmp_path / "notes.txt").write_text("not an image")
  (tmp_path / "sub.png").mkdir()
  images, names = victims.load_victims_with_names(tmp_path)
  assert names == ["1.bmp", "2.jpg", "3.png", "10.PNG", "extra.png"]
  assert images.shape == (5, 32, 32, 3) and images.dtype == np.float32
  np.testing.assert_allclose(images[1], 20 / 255, atol=2 / 255)  # JPEG.
  np.testing.assert_array_equal(images[2, 0, 0] * 255, [50, 60, 70])
  np.testing.assert_array_equal(images[4] * 255, np.full((32, 32, 3), 40))


def test_victims_wrong_size(tmp_path):
  _save(tmp_path / "1.png", (32, 32, 3))
  _save(tmp_path / "2.png", (64, 64, 3), 100)
  with pytest.raises(ValueError, match=r"2\.png is 64x64.*resize=True"):
    victims.load_victims(tmp_path)
  images = victims.load_victims(tmp_path, resize=True)
  assert images.shape == (2, 32, 32, 3)
  np.testing.assert_allclose(images[1], 100 / 255, atol=1e-6)


def test_victims_bad_paths(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    victims.load_victims(tmp_path / "missing")
  with pytest.raises(ValueError, match="no images in"):
    victims.load_victims(tmp_path)
  (tmp_path / "a.txt").write_text("x")
  with pytest.raises(ValueError, match="not a folder"):
    victims.load_victims(tmp_path / "a.txt")
  (tmp_path / "1.png").write_text("this is text, not a PNG")
  with pytest.raises(ValueError,
                     match=r"cannot read image .*1\.png.*remove or replace"):
    victims.load_victims(tmp_path)


# ------------------------------------------------------------ mask files


def test_rp2_masks(rp2):
  octagon = masks.load_mask(OCTAGON_PNG)
  rectangles = masks.load_mask(RECTANGLES_PNG)
  for mask in (octagon, rectangles):
    assert mask.shape == (32, 32, 3) and mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}
  one = masks.load_mask(OCTAGON_PNG, channels=1)
  assert one.shape == (32, 32, 1)
  assert one.sum() == 844  # 0.8242 of 1024.
  # Stray values 1 and 2 in the file count as 0: 30 pixels, not 51.
  assert masks.load_mask(RECTANGLES_PNG, channels=1).sum() == 30
  np.testing.assert_allclose(rectangles.mean(), 0.0293, atol=1e-4)


def test_mask_channels(tmp_path):
  pixels = np.zeros((32, 32), np.uint8)
  pixels[4:8, 4:8] = 255
  pixels[10, 10] = 127  # Not above the threshold.
  Image.fromarray(pixels, mode="L").save(tmp_path / "grey.png")
  grey = masks.load_mask(tmp_path / "grey.png")
  assert grey.shape == (32, 32, 1) and grey.sum() == 16
  three = masks.load_mask(tmp_path / "grey.png", channels=3)
  assert three.shape == (32, 32, 3) and three.sum() == 48
  rgb = np.zeros((32, 32, 3), np.uint8)
  rgb[0, 0, 1] = 255
  Image.fromarray(rgb).save(tmp_path / "rgb.png")
  assert masks.load_mask(tmp_path / "rgb.png", channels=1).sum() == 1
  with pytest.raises(ValueError, match="channels must be"):
    masks.load_mask(tmp_path / "grey.png", channels=2)


def test_mask_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"missing\.png does not exist"):
    masks.load_mask(tmp_path / "missing.png")
  (tmp_path / "text.png").write_text("not an image")
  with pytest.raises(ValueError, match=r"cannot read mask image .*text\.png"):
    masks.load_mask(tmp_path / "text.png")
  _save(tmp_path / "big.png", (64, 32, 3), 255)
  with pytest.raises(ValueError, match=r"big\.png is 32x64, expected 32x32"):
    masks.load_mask(tmp_path / "big.png")
  _save(tmp_path / "zero.png", (32, 32, 3), 0)
  with pytest.raises(ValueError, match=r"zero\.png has no set pixel"):
    masks.load_mask(tmp_path / "zero.png")
  _save(tmp_path / "faint.png", (32, 32), 2, mode="L")
  with pytest.raises(ValueError, match="has no set pixel"):
    masks.load_mask(tmp_path / "faint.png")


# ------------------------------------------------------------- built-ins


def _iou(a: np.ndarray, b: np.ndarray) -> float:
  a, b = a > 0, b > 0
  return (a & b).sum() / (a | b).sum()


def test_octagon_matches_rp2(rp2):
  builtin = masks.octagon_mask()
  assert builtin.shape == (32, 32, 1) and builtin.dtype == np.float32
  assert _iou(builtin, masks.load_mask(OCTAGON_PNG, channels=1)) >= 0.95


def test_octagon_geometry():
  octagon = masks.octagon_mask()[..., 0]
  assert octagon.sum() == 844
  np.testing.assert_array_equal(octagon, octagon[::-1])
  np.testing.assert_array_equal(octagon, octagon.T)
  assert octagon[16].all() and octagon[:, 16].all()
  assert octagon[0].sum() == 14 and not octagon[0, 0]
  big = masks.octagon_mask(64)
  assert big.shape == (64, 64, 1)
  assert abs(big.mean() - 0.8284) < 0.01  # 2 (sqrt 2 - 1) of the square.


def test_camouflage():
  mask = masks.camouflage_mask()
  assert mask.shape == (32, 32, 1) and mask.dtype == np.float32
  assert set(np.unique(mask)) == {0.0, 1.0}
  assert 0.02 <= mask.mean() <= 0.05
  assert not (mask > masks.octagon_mask()).any()
  rows = np.flatnonzero(mask[..., 0].any(axis=1))
  assert rows.min() < 16 <= rows.max()  # Two bands: upper and lower half.
  np.testing.assert_array_equal(mask, masks.camouflage_mask())


def test_camouflage_not_rp2(rp2):
  real = masks.load_mask(RECTANGLES_PNG, channels=1)
  assert _iou(masks.camouflage_mask(), real) < 0.5


def test_random_rectangles():
  octagon = masks.octagon_mask()
  a = masks.random_rectangles_mask(0)
  assert a.shape == (32, 32, 1) and a.dtype == np.float32
  np.testing.assert_array_equal(a, masks.random_rectangles_mask(0))
  assert not np.array_equal(a, masks.random_rectangles_mask(1))
  for seed in range(20):
    mask = masks.random_rectangles_mask(seed)
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert not (mask > octagon).any()
    assert 2 * 4 <= mask.sum() <= 6 * 16
  np.testing.assert_array_equal(
      masks.random_rectangles_mask(np.random.default_rng(5)),
      masks.random_rectangles_mask(5))
  one = masks.random_rectangles_mask(3, n=1, height=3, width=2, inside=None)
  assert one.sum() == 6


def test_random_rectangles_jax_key():
  jax = pytest.importorskip("jax")
  a = masks.random_rectangles_mask(jax.random.key(7))
  np.testing.assert_array_equal(a, masks.random_rectangles_mask(
      jax.random.PRNGKey(7)))
  assert not (a > masks.octagon_mask()).any()


def test_random_rectangles_errors():
  with pytest.raises(ValueError, match="key_or_seed must be"):
    masks.random_rectangles_mask("seed")
  with pytest.raises(ValueError, match="seed must be >= 0"):
    masks.random_rectangles_mask(-1)
  with pytest.raises(ValueError, match="n must satisfy"):
    masks.random_rectangles_mask(0, n=(3, 2))
  with pytest.raises(ValueError, match="finds no free place"):
    masks.random_rectangles_mask(0, n=1, height=40, width=2)
  with pytest.raises(ValueError, match="inside has shape"):
    masks.random_rectangles_mask(0, inside=np.ones((8, 8)))


def test_get_mask(rp2):
  assert set(masks.BUILTIN_MASKS) == {"octagon", "camouflage"}
  np.testing.assert_array_equal(masks.get_mask("octagon"),
                                masks.octagon_mask())
  assert masks.get_mask("camouflage", channels=3).shape == (32, 32, 3)
  from_file = masks.get_mask(str(OCTAGON_PNG))
  assert from_file.shape == (32, 32, 1)
  np.testing.assert_array_equal(from_file, masks.octagon_mask())
  assert masks.get_mask(OCTAGON_PNG, channels=None).shape == (32, 32, 3)


def test_get_mask_errors(tmp_path):
  with pytest.raises(ValueError,
                     match=r"unknown mask 'hexagon'.*camouflage, octagon.*PNG"):
    masks.get_mask("hexagon")
  with pytest.raises(FileNotFoundError, match=r"nope\.png does not exist"):
    masks.get_mask(tmp_path / "nope.png")
