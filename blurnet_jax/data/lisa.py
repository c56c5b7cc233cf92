"""The `lisa` tfds builder: LISA Traffic Sign Dataset boxes as 32x32 crops in
the project's 18-class order.

For users who have the real LISA Traffic Sign Dataset (UCSD). The code never
downloads it: the user extracts it and passes its folder as `manual_dir`. The
builder reads the boxes and splits them by physical sign
(`lisa_annotations`), crops them (`lisa_examples`) and writes both splits as
array_record; a config (`LisaConfig`) names its crop margin, test fraction
and the fate of other tags.

Typical use:

  builder = prepare_lisa("/data/lisa", "/data/tfds")
  sources = builder.as_data_source()   # {"train": ..., "test": ...}
  example = sources["train"][0]        # {"image": uint8 (32, 32, 3), "label"}
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from blurnet_jax.data import common
from blurnet_jax.data.lisa_annotations import CSV_NAME
from blurnet_jax.data.lisa_annotations import DEFAULT_TEST_FRACTION
from blurnet_jax.data.lisa_annotations import DOWNLOAD_HINT
from blurnet_jax.data.lisa_annotations import HOMEPAGE
from blurnet_jax.data.lisa_annotations import LisaRecord
from blurnet_jax.data.lisa_annotations import find_annotations_csv
from blurnet_jax.data.lisa_annotations import not_found
from blurnet_jax.data.lisa_annotations import read_annotations
from blurnet_jax.data.lisa_annotations import read_csv_lines
from blurnet_jax.data.lisa_annotations import split_records
from blurnet_jax.data.lisa_examples import DEFAULT_MARGIN
from blurnet_jax.data.lisa_examples import generate_examples

def _number_name(value: float) -> str:
  return np.format_float_positional(float(value), trim="-").replace(".", "p")


def config_name(margin: float, test_fraction: float, other_tags: bool,
                source: str = "") -> str:
  """Config (folder) name encoding the parameters, e.g. "margin0p1_test0p2",
  and the short fingerprint of the files (`_src...`) when given."""
  name = f"margin{_number_name(margin)}_test{_number_name(test_fraction)}"
  name += "_other" if other_tags else ""
  return name + (f"_src{source}" if source else "")


@dataclasses.dataclass(eq=False)
class LisaConfig(tfds.core.BuilderConfig):
  """Parameters of the LISA crops; the name is derived from them.

  Attributes:
    margin: relative crop margin on each side of the box, >= 0.
    test_fraction: expected fraction of tracks/frames in test, in (0, 1).
    other_tags: map tags outside the 17 named classes to label 0.
    source: the short fingerprint of the files (`sources.Source.short`),
      so that a copy prepared from other files never shares a folder.
  """

  name: str = ""
  margin: float = DEFAULT_MARGIN
  test_fraction: float = DEFAULT_TEST_FRACTION
  other_tags: bool = False
  source: str = ""

  def __post_init__(self):
    if not (isinstance(self.margin, (int, float))
            and math.isfinite(self.margin) and self.margin >= 0):
      raise ValueError(f"margin must be a number >= 0, got {self.margin!r}")
    if not (isinstance(self.test_fraction, (int, float))
            and 0 < self.test_fraction < 1):
      raise ValueError(
          f"test_fraction must be in (0, 1), got {self.test_fraction!r}")
    if not isinstance(self.other_tags, bool):
      raise ValueError(
          f"other_tags must be True or False, got {self.other_tags!r}")
    expected = config_name(self.margin, self.test_fraction, self.other_tags,
                           self.source)
    if self.name and self.name != expected:
      raise ValueError(
          f"LisaConfig name {self.name!r} does not match its parameters; leave"
          f" name empty (it becomes {expected!r})")
    self.name = expected
    if self.description is None:
      self.description = (
          f"Crops with margin {self.margin}, test fraction"
          f" {self.test_fraction}, other tags "
          f"{'-> label 0' if self.other_tags else 'dropped'}.")


class Lisa(tfds.core.GeneratorBasedBuilder):
  """LISA boxes as 32x32 uint8 crops; splits 'train' and 'test' by track.

  Prepare with `file_format='array_record'` and read with
  `as_data_source()`; `prepare_lisa` does both steps' setup.
  """

  VERSION = tfds.core.Version("1.0.0")
  # What tfds's `code_path` lookup returns for this module anyway; set here
  # because that lookup imports `importlib_resources`, which is not always
  # installed (it comes with etils[epath], not with tensorflow-datasets).
  code_path = epath.Path(__file__)
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [LisaConfig()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Download the LISA Traffic Sign Dataset from {HOMEPAGE} and extract"
      f" it. Pass the folder holding {CSV_NAME} (or its parent) as manual_dir:"
      " download_config=tfds.download.DownloadConfig(manual_dir=PATH)."
  )

  def _info(self) -> tfds.core.DatasetInfo:
    # Not `self.dataset_info_from_configs`: it lists a metadata folder beside
    # this module and fails when there is none.
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "LISA Traffic Sign Dataset boxes cropped and resized to 32x32 RGB,"
            " labels in the 18-class order of blurnet_jax.classes; train/test"
            " split by source track (or frame)."),
        features=common.features(),
        supervised_keys=("image", "label"),
        homepage=HOMEPAGE,
    )

  def download_and_prepare(
      self,
      *,
      download_dir: epath.PathLike | None = None,
      download_config: tfds.download.DownloadConfig | None = None,
      **kwargs,
  ) -> None:
    """Checks the CSV (presence, header) before tfds creates folders.

    Then prepares as `tfds.core.GeneratorBasedBuilder` does; an already
    prepared data set is reused without looking at the manual folder.
    """
    config = download_config or tfds.download.DownloadConfig()
    mode = tfds.download.GenerateMode(config.download_mode)
    if mode != tfds.download.GenerateMode.UPDATE_DATASET_INFO and (
        not self.data_path.exists() or mode.overwrite_dataset):
      if config.manual_dir is not None:
        read_csv_lines(find_annotations_csv(config.manual_dir))
      else:
        # tfds's default manual folder: <download_dir>/manual.
        default = epath.Path(
            download_dir or self.data_dir_root / "downloads") / "manual"
        try:
          csv_path = find_annotations_csv(default)
        except FileNotFoundError:
          raise FileNotFoundError(
              "LISA not found: no manual_dir given and no"
              f" {CSV_NAME} in the default '{default}'; {DOWNLOAD_HINT}"
              " (download_config=tfds.download.DownloadConfig(manual_dir=PATH))"
          ) from None
        read_csv_lines(csv_path)
    super().download_and_prepare(
        download_dir=download_dir, download_config=download_config, **kwargs)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    """Returns {"train": generator, "test": generator}."""
    try:
      manual_dir = dl_manager.manual_dir
    except AssertionError:  # tfds: manual dir missing or empty.
      missing = dl_manager._manual_dir  # pylint: disable=protected-access
      raise not_found(f"'{missing}'") from None
    config = self.builder_config
    records = read_annotations(manual_dir, other_tags=config.other_tags)
    splits = split_records(records, config.test_fraction)
    for side, side_records in splits.items():
      if not side_records:
        raise ValueError(
            f"LISA split {side!r} is empty ({len(records)} boxes in all);"
            " change test_fraction or check the CSV")
    return {
        side: self._generate_examples(side_records)
        for side, side_records in splits.items()
    }

  def _generate_examples(self, records: list[LisaRecord]):
    """Yields (key, example) for one split."""
    yield from generate_examples(records, self.builder_config.margin)


_CONFIG_FIELDS = ("margin", "test_fraction", "other_tags")


def source_files(manual_dir: epath.PathLike | None) -> list[epath.Path]:
  """The files the builder reads: the annotations CSV and every frame it
  names (present or not: a frame that appears later changes the
  fingerprint); one-line errors for a missing folder or CSV."""
  csv_path = find_annotations_csv(manual_dir)
  names = {line.split(";", 1)[0].strip()
           for line in read_csv_lines(csv_path)[1:] if line.strip()}
  return [csv_path, *(csv_path.parent / n for n in sorted(names) if n)]


def prepare_lisa(
    manual_dir: epath.PathLike | None,
    data_dir: epath.PathLike,
    **config_kwargs: Any,
) -> Lisa:
  """Builds the LISA crops as array_record under `data_dir` and returns it.

  Reuses an already prepared data set with the same parameters.

  Args:
    manual_dir: the folder the user extracted LISA into.
    data_dir: the tfds data folder; the set lands in
      `data_dir/lisa/<config name>/1.0.0`.
    **config_kwargs: `margin`, `test_fraction`, `other_tags` (see
      `LisaConfig`).

  Returns:
    The prepared `Lisa` builder; read it with `builder.as_data_source()`.

  Raises:
    FileNotFoundError: no LISA CSV in `manual_dir`.
    ValueError: unknown or bad parameters, or a malformed CSV header.
  """
  unknown = sorted(set(config_kwargs) - set(_CONFIG_FIELDS) - {"fingerprint"})
  if unknown:
    raise ValueError(
        f"prepare_lisa: unknown parameters {unknown}; use only"
        f" {list(_CONFIG_FIELDS)}")
  fingerprint = config_kwargs.pop("fingerprint", "")
  LisaConfig(**config_kwargs)  # one line for a bad parameter, first
  if manual_dir is None:
    find_annotations_csv(None)  # Raises the "no manual_dir given" error.
  return common.prepare_keyed(
      "lisa", manual_dir, source_files(manual_dir), fingerprint,
      lambda short, _: Lisa(data_dir=os.fspath(data_dir),
                            config=LisaConfig(**config_kwargs, source=short),
                            file_format="array_record"),
      lambda: None)
