"""The `lisa_crops` tfds builder: LISA crops already cut to 32x32, read from
an npz the user names (never downloaded, never shipped: LISA is licensed
for academic and research use; cite Mogelmose, Trivedi and Moeslund 2012).

  builder = prepare_lisa_crops("/data/lisa", data_dir)   # train, test
  images, labels = datasets.load_split(builder, "test")

The npz (`lisa17_train_32x32.npz`, or the only .npz in the folder) holds
`x` uint8 (N, 32, 32, 3), `y` 0..16 in the order of
`blurnet_jax.classes.CLASS_NAMES[1:]` (stored as labels 1..17; label 0 is
unused) and `track`, the video track of each crop (one physical sign);
optionally `classes`, the 17 names, checked against that order. The test
split holds whole tracks (`splits.grouped_split`), at least `test_fraction`
of every class.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from blurnet_jax.classes import CLASS_NAMES
from blurnet_jax.data import common
from blurnet_jax.data import splits

FILE_NAME = "lisa17_train_32x32.npz"
#: The box of a crop: the whole 32x32 image (LISA crops are cut to the box).
FULL_BOX = (0.0, 0.0, 32.0, 32.0)


def find_npz(manual_dir: epath.PathLike) -> epath.Path:
  """The crops file in `manual_dir`: `FILE_NAME`, else its only .npz."""
  folder = epath.Path(manual_dir)
  if not folder.is_dir():
    raise FileNotFoundError(
        f"LISA crops folder {os.fspath(manual_dir)!r} does not exist; pass "
        f"--config.data.manual_dir=PATH, the folder holding {FILE_NAME}")
  if (folder / FILE_NAME).is_file():
    return folder / FILE_NAME
  found = sorted(folder.glob("*.npz"))
  if len(found) != 1:
    raise FileNotFoundError(
        f"no {FILE_NAME} in {os.fspath(folder)!r} and "
        f"{len(found)} other .npz files there; put the crops file (arrays x, "
        "y, track) in that folder")
  return found[0]


def source_files(manual_dir: epath.PathLike) -> list[epath.Path]:
  """The files the builder reads (the crops npz); one-line errors for a
  missing folder or file."""
  return [find_npz(manual_dir)]


def read_crops(manual_dir: epath.PathLike
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(images uint8 (N, 32, 32, 3), labels 1..17, groups int (N,)) of the
  crops file, checked; one-line errors name what is wrong."""
  path = find_npz(manual_dir)
  try:
    with np.load(os.fspath(path), allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path} is not a readable npz ({e}); copy the crops "
                     "file again") from None
  missing = [k for k in ("x", "y", "track") if k not in arrays]
  if missing:
    raise ValueError(f"{path} has no array(s) {missing} (it has "
                     f"{sorted(arrays)}); the crops file needs x, y and track")
  names = tuple(CLASS_NAMES[1:])
  if "classes" in arrays and tuple(map(str, arrays["classes"])) != names:
    raise ValueError(
        f"{path}: its classes {list(map(str, arrays['classes']))} are not "
        f"the project's order {list(names)}; relabel y in that order")
  x, y, track = arrays["x"], arrays["y"], arrays["track"]
  common.check_photos(str(path), x, y, len(names))
  if track.shape != y.shape:
    raise ValueError(f"{path}: track has shape {track.shape}, expected "
                     f"{y.shape}, one per crop")
  _, groups = np.unique(track, return_inverse=True)
  return x, y.astype(np.int64) + 1, groups.astype(np.int64)


@dataclasses.dataclass
class LisaCropsConfig(tfds.core.BuilderConfig):
  """test_fraction: the share of each class held out (whole tracks);
  split_seed: the order in which tracks are tried for the test split;
  source: the short fingerprint of the crops file (`sources.Source.short`),
  so that a copy prepared from other files never shares a folder."""

  test_fraction: float = 0.2
  split_seed: int = 0
  source: str = ""
  folds: int = 0
  fold: int = 0

  @staticmethod
  def make(test_fraction: float = 0.2, split_seed: int = 0, source: str = "",
           folds: int = 0, fold: int = 0) -> "LisaCropsConfig":
    """folds > 0: the test split is fold `fold` of a grouped, stratified
    k-fold by track (`splits.grouped_folds`, seed `split_seed`) instead of
    the `test_fraction` split."""
    if not 0 < test_fraction < 1:
      raise ValueError(f"test_fraction must be in (0, 1), got "
                       f"{test_fraction!r}")
    if folds and not (folds >= 2 and 0 <= fold < folds):
      raise ValueError(f"fold {fold!r} of folds={folds!r}: pass folds >= 2 "
                       "and a fold in 0..folds-1")
    split = (f"fold{fold}of{folds}" if folds else f"test{test_fraction:g}")
    return LisaCropsConfig(
        name=f"{split}_seed{split_seed}" + (f"_src{source}" if source else ""),
        test_fraction=float(test_fraction), split_seed=int(split_seed),
        source=source, folds=int(folds), fold=int(fold))


class LisaCrops(tfds.core.GeneratorBasedBuilder):
  """Real LISA crops (32x32), split train/test by video track."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [LisaCropsConfig.make()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Put {FILE_NAME} (arrays x, y, track) in a folder and pass it as "
      "--config.data.manual_dir=PATH.")
  code_path = epath.Path(__file__)  # see datasets.SyntheticSigns

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=("Real LISA crops, 32x32 RGB, labels 1..17 in the order "
                     "of blurnet_jax.classes; test split by video track."),
        features=common.photo_features(),
        supervised_keys=("image", "label"),
        citation=("Mogelmose, Trivedi, Moeslund. Vision-based traffic sign "
                  "detection and analysis for intelligent driver assistance "
                  "systems: perspectives and survey. IEEE T-ITS 13(4), "
                  "2012."))

  def __init__(self, *, crops=None, **kwargs):
    """`crops`: what `read_crops` returned (else read from the manual
    folder)."""
    self._crops = crops
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    x, y, groups = self._crops or read_crops(dl_manager._manual_dir)  # pylint: disable=protected-access
    cfg = self.builder_config
    if cfg.folds:
      test = splits.grouped_folds(y, groups, folds=cfg.folds,
                                  seed=cfg.split_seed) == cfg.fold
    else:
      test = splits.grouped_split(y, groups, fraction=cfg.test_fraction,
                                  seed=cfg.split_seed, class_names=CLASS_NAMES)
    return {"train": self._generate_examples(x, y, groups, np.flatnonzero(~test)),
            "test": self._generate_examples(x, y, groups, np.flatnonzero(test))}

  def _generate_examples(self, x, y, groups, rows):
    for i in rows:
      yield int(i), {"image": x[i], "label": int(y[i]),
                     "group": int(groups[i]),
                     "roi": np.asarray(FULL_BOX, np.float32)}


def prepare_lisa_crops(manual_dir: epath.PathLike, data_dir: epath.PathLike,
                       *, test_fraction: float = 0.2, split_seed: int = 0,
                       fingerprint: str = "", folds: int = 0,
                       fold: int = 0) -> LisaCrops:
  """Prepares (or reuses) the crops of `manual_dir` under `data_dir`.

  The folder is checked first and its crops file fingerprinted: the copy
  is kept per fingerprint, so a changed file is prepared again and never
  read stale. `fingerprint` (a config's `data.fingerprint`), when given,
  must be the file's. `folds`, `fold`: the test split is that fold of a
  grouped k-fold by track (`LisaCropsConfig.make`).
  """
  return common.prepare_keyed(
      "lisa_crops", manual_dir, source_files(manual_dir), fingerprint,
      lambda short, crops: LisaCrops(
          data_dir=os.fspath(data_dir), file_format="array_record",
          config=LisaCropsConfig.make(test_fraction, split_seed, short,
                                      folds, fold),
          crops=crops),
      lambda: read_crops(manual_dir))
