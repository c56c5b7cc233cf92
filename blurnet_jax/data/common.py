"""What every dataset of the project stores, and how it becomes model input."""

import json
import os
from typing import Any, Callable

import numpy as np
import tensorflow_datasets as tfds

from blurnet_jax.classes import IMAGE_SHAPE
from blurnet_jax.data import sources
from blurnet_jax.jsonio import write_json

#: The record of the files a prepared real data set was built from, in the
#: prepared copy's folder (`builder.data_path`).
SOURCE_FILE = "source.json"


def features() -> tfds.features.FeaturesDict:
  """The feature spec shared by every builder.

  Plain `Tensor` features (no `tfds.features.Image`) so that preparing and
  reading an `array_record` data set needs no TensorFlow.
  """
  return tfds.features.FeaturesDict({
      "image": tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8),
      "label": tfds.features.Tensor(shape=(), dtype=np.int64),
  })


def to_float(images: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] images -> float32 [0, 1], the input range of every model."""
  return np.asarray(images, np.float32) * np.float32(1.0 / 255.0)


def photo_features() -> tfds.features.FeaturesDict:
  """`features()` plus what the real photographs' builders keep of each
  image: `group`, the physical sign it shows (a video track), and `roi`,
  the sign's box (x1, y1, x2, y2; right and bottom edges exclusive) in the
  32x32 image's pixels."""
  return tfds.features.FeaturesDict({
      "image": tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8),
      "label": tfds.features.Tensor(shape=(), dtype=np.int64),
      "group": tfds.features.Tensor(shape=(), dtype=np.int64),
      "roi": tfds.features.Tensor(shape=(4,), dtype=np.float32),
  })


def check_photos(where: str, images, labels, num_classes: int, *,
                 first_label: int = 0) -> None:
  """One-line errors for arrays of photographs that the builders cannot
  use: images not uint8 (N, 32, 32, 3), labels not integers of
  `first_label`..`num_classes - 1` of the same length, or a class with no
  image."""
  images, labels = np.asarray(images), np.asarray(labels)
  if images.dtype != np.uint8 or images.ndim != 4 or (
      tuple(images.shape[1:]) != IMAGE_SHAPE):
    raise ValueError(
        f"{where}: images are {images.dtype} {images.shape}, expected uint8 "
        f"(N, {', '.join(map(str, IMAGE_SHAPE))}); rebuild the file with "
        "32x32 RGB uint8 crops")
  if labels.shape != (len(images),) or not np.issubdtype(labels.dtype,
                                                         np.integer):
    raise ValueError(
        f"{where}: labels are {labels.dtype} {labels.shape}, expected "
        f"integers ({len(images)},), one per image")
  if labels.size and (labels.min() < first_label
                      or labels.max() >= num_classes):
    raise ValueError(
        f"{where}: labels span {labels.min()}..{labels.max()}, expected "
        f"{first_label}..{num_classes - 1}; check the file's label order")
  counts = np.bincount(labels - first_label,
                       minlength=num_classes - first_label)
  empty = np.flatnonzero(counts == 0) + first_label
  if empty.size:
    raise ValueError(
        f"{where}: class(es) {empty.tolist()} have no image; every class "
        "needs examples to train and to be held out")


def recorded_source(builder: tfds.core.DatasetBuilder) -> dict | None:
  """The `sources.Source` (as a dict) a prepared real data set was built
  from, or None (a synthetic set, or a copy prepared before the record)."""
  path = builder.data_path / SOURCE_FILE
  if not path.exists():
    return None
  try:
    return json.loads(path.read_text())
  except ValueError:
    return None


def prepare_keyed(name: str, manual_dir, files, fingerprint: str,
                  builder_for: Callable[[str, Any], tfds.core.DatasetBuilder],
                  read: Callable[[], Any]) -> tfds.core.DatasetBuilder:
  """Prepares (or reuses) a real data set keyed to its files: the
  fingerprint of `files` (`sources.describe`), checked against a pinned
  `fingerprint` (a config's `data.fingerprint`, '' for none), names the
  prepared copy.

  Args:
    name: the source's name (`data.source`), for the errors.
    manual_dir, files: the user's folder and the files the builder reads
      from it (the builder module's `source_files`, already checked).
    fingerprint: the fingerprint the files must have, or ''.
    builder_for: `(short fingerprint, arrays) -> builder` whose config name
      holds the short fingerprint (arrays None: a builder that only finds
      the prepared copy).
    read: reads and checks the files' arrays, called only to prepare.

  Returns:
    The prepared builder; its folder records the `sources.Source` in
    SOURCE_FILE.

  Raises:
    ValueError: the files are not the pinned ones, or a copy under the
      same short fingerprint records other files (a 48-bit collision, or a
      hand-made folder): one line naming the fix.
  """
  source = sources.describe(manual_dir, files)
  sources.check_pin(source, fingerprint, name)
  builder = builder_for(source.short, None)
  record = builder.data_path / SOURCE_FILE
  if builder.data_path.exists():
    saved = recorded_source(builder)
    if saved is not None and saved.get("fingerprint") != source.fingerprint:
      raise ValueError(
          f"the prepared copy {os.fspath(builder.data_path)} records files "
          f"of fingerprint {saved.get('fingerprint')}, not "
          f"{source.fingerprint} of {source.folder}; delete that folder to "
          "prepare it again")
    if saved is None:  # prepared, then stopped before its record
      write_json(record, source.to_dict())
    return builder
  builder = builder_for(source.short, read())  # checked before any folder
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=source.folder))
  write_json(record, source.to_dict())
  return builder
