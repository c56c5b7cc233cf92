"""The `gtsrb` tfds builder: the German Traffic Sign Recognition Benchmark
(Stallkamp et al. 2012; research use) read from a folder the user names.

  builder = prepare_gtsrb("/data/gtsrb", data_dir)  # train, validation, test

The folder holds either
- `gtsrb32_train.npz` (`x` uint8 (N, 32, 32, 3), `y` 0..42, `track` within
  its class, `roi`) and `gtsrb32_test.npz` (`x`, `y`, `roi`), or
- the official download: `Final_Training/Images/000NN/*.ppm` with their
  `GT-000NN.csv`, and `Final_Test/Images/*.ppm` with `GT-final_test.csv`
  (in `Final_Test/`, `Final_Test/Images/` or the folder itself), possibly
  one folder down (`GTSRB/`). Images of any size are resized to 32x32
  (bilinear, the whole image) and their `Roi.*` boxes scaled with them.

Splits: `test` is the official test set; `validation` holds whole
(class, track) groups carved from the official training set
(`splits.grouped_split`), `train` the rest.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import zipfile

from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from blurnet_jax.classes import GTSRB, IMAGE_SHAPE
from blurnet_jax.data import common
from blurnet_jax.data import splits

NPZ_FILES = ("gtsrb32_train.npz", "gtsrb32_test.npz")
TEST_CSV = "GT-final_test.csv"
_LAYOUTS = (f"{NPZ_FILES[0]} and {NPZ_FILES[1]}, or the official "
            "Final_Training/Images and Final_Test folders")


@dataclasses.dataclass(frozen=True)
class Photos:
  """One split as arrays: images uint8 (N, 32, 32, 3), labels (N,), groups
  (N,) (the physical sign; -1 where unknown), roi float32 (N, 4)."""

  images: np.ndarray
  labels: np.ndarray
  groups: np.ndarray
  roi: np.ndarray


def _load_npz(path: epath.Path, need: tuple[str, ...]) -> dict:
  try:
    with np.load(os.fspath(path), allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path} is not a readable npz ({e}); copy it again"
                     ) from None
  missing = [k for k in need if k not in arrays]
  if missing:
    raise ValueError(f"{path} has no array(s) {missing} (it has "
                     f"{sorted(arrays)}); it needs {list(need)}")
  return arrays


def _check(where: str, p: Photos) -> Photos:
  common.check_photos(where, p.images, p.labels, GTSRB.num_classes)
  if p.roi.shape != (len(p.images), 4):
    raise ValueError(f"{where}: roi has shape {p.roi.shape}, expected "
                     f"({len(p.images)}, 4): x1, y1, x2, y2 per image")
  return p


def _from_npz(folder: epath.Path) -> tuple[Photos, Photos]:
  train = _load_npz(folder / NPZ_FILES[0], ("x", "y", "track", "roi"))
  test = _load_npz(folder / NPZ_FILES[1], ("x", "y", "roi"))
  if train["track"].shape != train["y"].shape:
    raise ValueError(f"{folder / NPZ_FILES[0]}: track has shape "
                     f"{train['track'].shape}, expected {train['y'].shape}")
  y = train["y"].astype(np.int64)
  groups = y * 100_000 + train["track"].astype(np.int64)
  return (_check(str(folder / NPZ_FILES[0]), Photos(
      train["x"], y, groups, train["roi"].astype(np.float32))),
          _check(str(folder / NPZ_FILES[1]), Photos(
              test["x"], test["y"].astype(np.int64),
              np.full(len(test["y"]), -1, np.int64),
              test["roi"].astype(np.float32))))


def _read_csv(path: epath.Path) -> list[dict[str, str]]:
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f, delimiter=";"))
  need = ("Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2",
          "Roi.Y2", "ClassId")
  if not rows or any(k not in rows[0] for k in need):
    raise ValueError(f"{path} is not a GTSRB ground-truth csv: it needs the "
                     f"';'-separated columns {list(need)}")
  return rows


def _image(folder: epath.Path, row: dict[str, str]
           ) -> tuple[np.ndarray, np.ndarray]:
  """The 32x32 image of one csv row and its scaled sign box."""
  path = folder / row["Filename"]
  try:
    with Image.open(path) as im:
      w, h = im.size
      im = im.convert("RGB").resize(IMAGE_SHAPE[1::-1],
                                    Image.Resampling.BILINEAR)
      pixels = np.asarray(im, np.uint8)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path} is not a readable image ({e}); extract the "
                     "GTSRB archive again") from None
  sx, sy = IMAGE_SHAPE[1] / w, IMAGE_SHAPE[0] / h
  # The csv's Roi.X2/Y2 are the last pixel inside the sign: +1 makes the
  # right and bottom edges exclusive.
  roi = np.asarray([float(row["Roi.X1"]) * sx, float(row["Roi.Y1"]) * sy,
                    (float(row["Roi.X2"]) + 1) * sx,
                    (float(row["Roi.Y2"]) + 1) * sy], np.float32)
  return pixels, roi


def _photos(folder: epath.Path, rows, groups) -> Photos:
  pairs = [_image(folder, r) for r in rows]
  return Photos(np.stack([p for p, _ in pairs]) if pairs else
                np.zeros((0, *IMAGE_SHAPE), np.uint8),
                np.asarray([int(r["ClassId"]) for r in rows], np.int64),
                np.asarray(groups, np.int64),
                np.stack([b for _, b in pairs]) if pairs else
                np.zeros((0, 4), np.float32))


def find_official(folder: epath.Path) -> epath.Path | None:
  """The folder holding `Final_Training` and `Final_Test` (`folder` or one
  below it), or None."""
  for root in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())):
    if (root / "Final_Training" / "Images").is_dir() and (
        root / "Final_Test").is_dir():
      return root
  return None


def _from_official(root: epath.Path) -> tuple[Photos, Photos]:
  train_rows, train_groups = [], []
  images = root / "Final_Training" / "Images"
  folders = sorted(p for p in images.iterdir() if p.is_dir())
  train_parts = []
  for class_dir in folders:
    gt = class_dir / f"GT-{class_dir.name}.csv"
    if not gt.is_file():
      raise FileNotFoundError(f"{gt} is missing; extract the official "
                              "GTSRB_Final_Training_Images archive again")
    rows = _read_csv(gt)
    groups = [int(r["ClassId"]) * 100_000 + int(r["Filename"].split("_")[0])
              for r in rows]
    train_parts.append(_photos(class_dir, rows, groups))
    train_rows += rows
    train_groups += groups
  if not train_parts:
    raise FileNotFoundError(f"{images} holds no class folders (00000 ..); "
                            "extract the official training archive there")
  train = Photos(*(np.concatenate([getattr(p, f.name) for p in train_parts])
                   for f in dataclasses.fields(Photos)))
  test_dir = root / "Final_Test"
  candidates = [test_dir / TEST_CSV, test_dir / "Images" / TEST_CSV,
                root / TEST_CSV, root.parent / TEST_CSV]
  gt = next((p for p in candidates if p.is_file()), None)
  if gt is None:
    raise FileNotFoundError(
        f"no {TEST_CSV} (the test labels, with ClassId) in {test_dir} or "
        f"{root}; extract GTSRB_Final_Test_GT.zip into {test_dir}")
  rows = _read_csv(gt)
  test = _photos(test_dir / "Images", rows, [-1] * len(rows))
  return (_check(str(images), train), _check(str(test_dir), test))


def _layout(manual_dir: epath.PathLike) -> tuple[str, epath.Path]:
  """('npz', folder) or ('official', the folder holding Final_Training);
  one-line errors for a missing folder or one that holds neither."""
  folder = epath.Path(manual_dir)
  if not folder.is_dir():
    raise FileNotFoundError(
        f"GTSRB folder {os.fspath(manual_dir)!r} does not exist; pass "
        f"--config.data.manual_dir=PATH, the folder holding {_LAYOUTS}")
  if all((folder / n).is_file() for n in NPZ_FILES):
    return "npz", folder
  root = find_official(folder)
  if root is None:
    raise FileNotFoundError(f"{os.fspath(folder)!r} holds neither {_LAYOUTS};"
                            " pass the folder that does")
  return "official", root


def source_files(manual_dir: epath.PathLike) -> list[epath.Path]:
  """The files the builder reads: the two npz, or every file of the
  official Final_Training and Final_Test folders (and the test labels'
  csv where it lies beside them); one-line errors as `read_gtsrb`."""
  kind, root = _layout(manual_dir)
  if kind == "npz":
    return [root / n for n in NPZ_FILES]
  files = [epath.Path(d) / f for sub in ("Final_Training", "Final_Test")
           for d, _, names in os.walk(os.fspath(root / sub)) for f in names]
  # The test labels may lie beside Final_Test (`_from_official`'s places).
  folder = epath.Path(manual_dir).resolve()
  beside = [p for p in (root / TEST_CSV, root.parent / TEST_CSV)
            if p.is_file() and folder in (p.resolve(), *p.resolve().parents)]
  return files + beside


def read_gtsrb(manual_dir: epath.PathLike) -> tuple[Photos, Photos]:
  """(train, test) of the folder, in either layout; one-line errors."""
  kind, root = _layout(manual_dir)
  return _from_npz(root) if kind == "npz" else _from_official(root)


@dataclasses.dataclass
class GtsrbConfig(tfds.core.BuilderConfig):
  """validation_fraction: the share of each class's training images
  carved out as validation, by whole (class, track) groups; source: the
  short fingerprint of the files (`sources.Source.short`)."""

  validation_fraction: float = 0.1
  split_seed: int = 0
  source: str = ""

  @staticmethod
  def make(validation_fraction: float = 0.1, split_seed: int = 0,
           source: str = "") -> "GtsrbConfig":
    if not 0 < validation_fraction < 1:
      raise ValueError("validation_fraction must be in (0, 1), got "
                       f"{validation_fraction!r}")
    return GtsrbConfig(
        name=f"validation{validation_fraction:g}_seed{split_seed}"
        + (f"_src{source}" if source else ""),
        validation_fraction=float(validation_fraction),
        split_seed=int(split_seed), source=source)


class Gtsrb(tfds.core.GeneratorBasedBuilder):
  """GTSRB at 32x32: train, validation (by track), the official test."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [GtsrbConfig.make()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Put {_LAYOUTS} in a folder and pass it as "
      "--config.data.manual_dir=PATH.")
  code_path = epath.Path(__file__)  # see datasets.SyntheticSigns

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=("GTSRB, 32x32 RGB, 43 classes (ClassId order); "
                     "validation carved from training by (class, track); "
                     "the official test set."),
        features=common.photo_features(),
        supervised_keys=("image", "label"),
        citation=("Stallkamp, Schlipsing, Salmen, Igel. Man vs. computer: "
                  "Benchmarking machine learning algorithms for traffic "
                  "sign recognition. Neural Networks 32, 2012."))

  def __init__(self, *, photos: tuple[Photos, Photos] | None = None,
               **kwargs):
    """`photos`: (train, test) already read by `read_gtsrb` (else read
    from the manual folder)."""
    self._photos = photos
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    train, test = self._photos or read_gtsrb(dl_manager._manual_dir)  # pylint: disable=protected-access
    cfg = self.builder_config
    held = splits.grouped_split(train.labels, train.groups,
                                fraction=cfg.validation_fraction,
                                seed=cfg.split_seed,
                                class_names=GTSRB.class_names)
    return {"train": self._generate_examples(train, np.flatnonzero(~held)),
            "validation": self._generate_examples(train, np.flatnonzero(held)),
            "test": self._generate_examples(test, np.arange(len(test.labels)))}

  def _generate_examples(self, p: Photos, rows):
    for i in rows:
      yield int(i), {"image": p.images[i], "label": int(p.labels[i]),
                     "group": int(p.groups[i]), "roi": p.roi[i]}


def prepare_gtsrb(manual_dir: epath.PathLike, data_dir: epath.PathLike, *,
                  validation_fraction: float = 0.1, split_seed: int = 0,
                  fingerprint: str = "") -> Gtsrb:
  """Prepares (or reuses) the GTSRB of `manual_dir` under `data_dir`, keyed
  to the fingerprint of its files (see `lisa_crops.prepare_lisa_crops`)."""
  return common.prepare_keyed(
      "gtsrb", manual_dir, source_files(manual_dir), fingerprint,
      lambda short, photos: Gtsrb(
          data_dir=os.fspath(data_dir), file_format="array_record",
          config=GtsrbConfig.make(validation_fraction, split_seed, short),
          photos=photos),
      lambda: read_gtsrb(manual_dir))
