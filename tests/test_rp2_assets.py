"""The packaged RP2 assets: the facts measured on them, and a folder that
lacks a file gets one line naming it."""

import shutil

import numpy as np
import pytest

from blurnet_jax import models
from blurnet_jax.attacks import rp2
from blurnet_jax.classes import CLASS_NAMES, RP2_TARGET, STOP
from blurnet_jax.data import rp2_assets


@pytest.fixture(scope="module")
def assets():
  return rp2_assets.load_rp2_assets()


def test_the_packaged_assets_give_the_rp2_facts(assets):
  assert assets.root == rp2_assets.PACKAGED_DIR
  assert assets.victims.shape == (40, 32, 32, 3)
  assert assets.victim_names[:3] == ("1.png", "2.png", "3.png")
  assert "14.png" not in assets.victim_names  # names 1..41, no 14
  f = models.apply_fn_for(models.LisaCNN())
  assert np.all(models.predict(f, assets.params, assets.victims) == STOP)
  for mask, noise, moved in ((assets.camouflage_mask,
                              assets.camouflage_noise, 36),
                             (assets.octagon_mask, assets.poster_noise, 40)):
    adv = rp2.apply_perturbation(assets.victims, mask, noise, rp2.RP2Config())
    pred = models.predict(f, assets.params, adv)
    assert int(np.sum(pred != STOP)) == moved
  # The camouflage sticker covers ~2.9% of pixels, the poster ~82%.
  assert 0.02 < assets.camouflage_mask.mean() < 0.04
  assert 0.75 < assets.octagon_mask.mean() < 0.9
  assert assets.printable_colors.shape == (30, 3)
  # mapping[i] names output i + 1: the project's class order.
  assert assets.mapping == CLASS_NAMES[1:]
  assert assets.mapping[RP2_TARGET - 1] == "speedLimit45"


@pytest.mark.parametrize("missing", rp2_assets.RP2_FILES)
def test_a_folder_missing_a_file_is_one_line_naming_it(tmp_path, missing):
  folder = tmp_path / "rp2"
  shutil.copytree(rp2_assets.PACKAGED_DIR, folder)
  target = folder / missing
  if target.is_dir():
    shutil.rmtree(target)
  else:
    target.unlink()
  with pytest.raises(FileNotFoundError, match=f"has no {missing}") as err:
    rp2_assets.load_rp2_assets(folder)
  assert "\n" not in str(err.value)


def test_a_path_that_is_no_folder_is_one_line(tmp_path):
  with pytest.raises(FileNotFoundError, match="is not a folder"):
    rp2_assets.rp2_dir(tmp_path / "nowhere")
  assert rp2_assets.rp2_dir("") == rp2_assets.PACKAGED_DIR


def test_the_loaders_param_shapes_are_the_models():
  """The data layer knows the RP2 file's layout without importing models;
  the two must agree."""
  from blurnet_jax import models  # pylint: disable=g-import-not-at-top
  from blurnet_jax.data import rp2_assets  # pylint: disable=g-import-not-at-top
  assert rp2_assets.RP2_PARAM_SHAPES == models.param_shapes()
