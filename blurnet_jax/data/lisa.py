"""LISA Traffic Sign Dataset -> 32x32 crops in the project's 18-class order.

For users who have the real LISA Traffic Sign Dataset (UCSD). The code never
downloads it: the user extracts it and passes its folder as `manual_dir`.

The folder holds the frames and `allAnnotations.csv`, a `;`-separated file
with the header `HEADER` (its 7th field is literally
"Occluded,On another road" and holds values such as "0,0"). The CSV may sit in
`manual_dir` or one folder below it; frame paths in the CSV are relative to the
CSV's folder.

Each kept box is cropped with a relative margin, clipped at the frame border,
and resized to 32x32 RGB. Tags map to labels by name through
`blurnet_jax.classes.CLASS_NAMES` (labels 1..17); other tags are dropped, or
mapped to label 0 ("other") with `other_tags=True`. Train/test are split by
physical sign: all boxes of one track (or, without a track, of one frame) go
to the same side, chosen by a CRC32 hash of the group key.

Typical use:

  builder = prepare_lisa("/data/lisa", "/data/tfds")
  sources = builder.as_data_source()   # {"train": ..., "test": ...}
  example = sources["train"][0]        # {"image": uint8 (32, 32, 3), "label"}
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import zlib
from typing import Any, Iterable, Iterator

from absl import logging
from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from blurnet_jax.classes import CLASS_NAMES
from blurnet_jax.classes import IMAGE_SHAPE
from blurnet_jax.data import common

CSV_NAME = "allAnnotations.csv"
HEADER: tuple[str, ...] = (
    "Filename",
    "Annotation tag",
    "Upper left corner X",
    "Upper left corner Y",
    "Lower right corner X",
    "Lower right corner Y",
    "Occluded,On another road",
    "Origin file",
    "Origin frame number",
    "Origin track",
    "Origin track frame number",
)
HOMEPAGE = "http://cvrr.ucsd.edu/LISA/lisa-traffic-sign-dataset.html"
DEFAULT_MARGIN = 0.1
DEFAULT_TEST_FRACTION = 0.2
# Lanczos: antialiased when shrinking large boxes, smooth (not blocky) when
# enlarging the many LISA boxes smaller than 32 px. Blocky nearest/box
# upsampling would add high-frequency edges, which BlurNet is sensitive to.
RESAMPLE = Image.Resampling.LANCZOS

_DOWNLOAD_HINT = (
    f"download the LISA Traffic Sign Dataset from {HOMEPAGE}, extract it and"
    " pass its folder as manual_dir"
)
_TAG_TO_LABEL: dict[str, int] = {
    name: label for label, name in enumerate(CLASS_NAMES) if label > 0
}
_MAX_EXAMPLES_LOGGED = 5

Box = tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class LisaRecord:
  """One kept box of `allAnnotations.csv`.

  Attributes:
    frame: path of the frame image (the CSV's folder joined with `filename`).
    filename: the frame path as written in the CSV.
    tag: the LISA annotation tag, e.g. "stop".
    label: class index in `CLASS_NAMES` (0 only with `other_tags=True`).
    box: (x1, y1, x2, y2) pixel corners, both inclusive, x2 >= x1, y2 >= y1.
    group: the split key: "track:<origin file>|<origin track>", or
      "frame:<filename>" when the row has no origin track.
    row: line number of the row in the CSV (the header is line 1); unique.
  """

  frame: epath.Path
  filename: str
  tag: str
  label: int
  box: Box
  group: str
  row: int


def _not_found(where: str) -> FileNotFoundError:
  return FileNotFoundError(
      f"LISA not found in {where}: expected {CSV_NAME} there (or one folder"
      f" below); {_DOWNLOAD_HINT}"
  )


def find_annotations_csv(manual_dir: epath.PathLike | None) -> epath.Path:
  """Returns the path of `allAnnotations.csv` in `manual_dir` or one below.

  Args:
    manual_dir: the folder the user extracted LISA into.

  Raises:
    FileNotFoundError: `manual_dir` is None, missing, or holds no CSV.
    ValueError: several subfolders hold a CSV (ambiguous).
  """
  if manual_dir is None or not os.fspath(manual_dir):
    raise FileNotFoundError(
        f"LISA not found: no manual_dir given; {_DOWNLOAD_HINT}"
        " (download_config=tfds.download.DownloadConfig(manual_dir=PATH))"
    )
  root = epath.Path(manual_dir).expanduser()
  direct = root / CSV_NAME
  if direct.is_file():
    return direct
  if not root.is_dir():
    raise _not_found(f"'{root}' (no such folder)")
  found = sorted(
      (sub / CSV_NAME for sub in root.iterdir()
       if sub.is_dir() and (sub / CSV_NAME).is_file()),
      key=os.fspath,
  )
  if not found:
    raise _not_found(f"'{root}'")
  if len(found) > 1:
    raise ValueError(
        f"Several {CSV_NAME} one folder below '{root}':"
        f" {[os.fspath(p) for p in found]}; pass the folder of the one to use"
        " as manual_dir"
    )
  return found[0]


def label_for_tag(tag: str, other_tags: bool = False) -> int | None:
  """Class index of a LISA tag, or None if the tag is not kept.

  Args:
    tag: LISA annotation tag, e.g. "stop" (surrounding spaces ignored).
    other_tags: map tags outside the 17 named classes to 0 ("other") instead
      of dropping them.
  """
  label = _TAG_TO_LABEL.get(tag.strip())
  if label is None and other_tags:
    return 0
  return label


def group_key(filename: str, origin_file: str, origin_track: str) -> str:
  """The key that keeps all boxes of one physical sign on one split side.

  Args:
    filename: frame path from the CSV.
    origin_file: the CSV's "Origin file" field.
    origin_track: the CSV's "Origin track" field; empty if the row has none.
  """
  if origin_track.strip():
    return f"track:{origin_file.strip()}|{origin_track.strip()}"
  return f"frame:{filename.strip()}"


def is_test_group(group: str, test_fraction: float) -> bool:
  """Whether a group goes to the test split (deterministic CRC32 hash).

  Args:
    group: a key from `group_key`.
    test_fraction: expected fraction of groups in test, in [0, 1].
  """
  return zlib.crc32(group.encode("utf-8")) / 2.0**32 < test_fraction


def _parse_coordinate(text: str) -> int:
  value = float(text)
  if not math.isfinite(value):
    raise ValueError(text)
  return int(math.floor(value + 0.5))


def _parse_box(fields: list[str]) -> Box | None:
  """(x1, y1, x2, y2) from the 4 CSV corner fields, or None if malformed."""
  try:
    x1, y1, x2, y2 = (_parse_coordinate(f) for f in fields)
  except ValueError:
    return None
  if x2 < x1 or y2 < y1:
    return None
  return x1, y1, x2, y2


def _read_header_and_rows(csv_path: epath.Path) -> list[str]:
  """Lines of the CSV after checking the header; raises ValueError if bad."""
  try:
    text = csv_path.read_text(encoding="utf-8-sig")
  except UnicodeDecodeError as e:
    raise ValueError(
        f"{csv_path}: not UTF-8/ASCII text ({e.reason}); pass the"
        f" {CSV_NAME} of the LISA Traffic Sign Dataset unchanged"
    ) from None
  lines = text.splitlines()
  got = tuple(f.strip() for f in lines[0].split(";")) if lines else ()
  if got != HEADER:
    raise ValueError(
        f"{csv_path}: header is {';'.join(got)!r}, expected"
        f" {';'.join(HEADER)!r}; pass the {CSV_NAME} of the LISA Traffic"
        " Sign Dataset unchanged"
    )
  return lines


def read_annotations(
    manual_dir: epath.PathLike | None, other_tags: bool = False
) -> list[LisaRecord]:
  """Parses `allAnnotations.csv` into the kept boxes, in CSV order.

  Rows whose tag is not kept are dropped (logged at info level); rows with the
  wrong number of fields or a malformed box (non-numeric, or lower right
  corner above/left of the upper left one) are skipped with one warning that
  counts them. Frame files are not opened here.

  Args:
    manual_dir: the folder the user extracted LISA into (CSV there or one
      folder below).
    other_tags: map tags outside the 17 named classes to label 0 ("other")
      instead of dropping them.

  Returns:
    One `LisaRecord` per kept box.

  Raises:
    FileNotFoundError: no CSV found (see `find_annotations_csv`).
    ValueError: the CSV header is not the LISA header.
  """
  csv_path = find_annotations_csv(manual_dir)
  lines = _read_header_and_rows(csv_path)
  root = csv_path.parent
  records = []
  dropped_tags = collections.Counter()
  malformed = []
  for row, line in enumerate(lines[1:], start=2):
    if not line.strip():
      continue
    fields = line.split(";")
    if len(fields) != len(HEADER):
      malformed.append(row)
      continue
    filename, tag = fields[0].strip(), fields[1].strip()
    label = label_for_tag(tag, other_tags)
    if label is None:
      dropped_tags[tag] += 1
      continue
    box = _parse_box(fields[2:6])
    if box is None or not filename:
      malformed.append(row)
      continue
    records.append(LisaRecord(
        frame=root / filename,
        filename=filename,
        tag=tag,
        label=label,
        box=box,
        group=group_key(filename, fields[7], fields[9]),
        row=row,
    ))
  logging.info(
      "LISA %s: kept %d boxes; dropped %d with tags outside the 18 classes %s",
      csv_path, len(records), sum(dropped_tags.values()), dict(dropped_tags))
  if malformed:
    logging.warning(
        "LISA %s: skipped %d malformed rows (wrong field count or bad box),"
        " e.g. lines %s", csv_path, len(malformed),
        malformed[:_MAX_EXAMPLES_LOGGED])
  return records


def split_records(
    records: Iterable[LisaRecord], test_fraction: float = DEFAULT_TEST_FRACTION
) -> dict[str, list[LisaRecord]]:
  """Splits records by group into {"train": [...], "test": [...]}.

  Args:
    records: from `read_annotations`.
    test_fraction: expected fraction of groups (tracks/frames) in test.

  Returns:
    Both lists keep the input order; no group is on both sides.
  """
  splits = {"train": [], "test": []}
  for record in records:
    side = "test" if is_test_group(record.group, test_fraction) else "train"
    splits[side].append(record)
  return splits


def crop_box(
    frame: np.ndarray, box: Box, margin: float = DEFAULT_MARGIN
) -> np.ndarray:
  """Crops a box with a relative margin and resizes it to 32x32.

  The window is the box grown by `margin` times its width (height) on the
  left and right (top and bottom), rounded to whole pixels, then clipped at
  the frame border (no padding). It is resized with `RESAMPLE` (Lanczos).

  Args:
    frame: uint8 RGB frame, shape (H, W, 3).
    box: (x1, y1, x2, y2) pixel corners, both inclusive.
    margin: relative margin on each side, >= 0.

  Returns:
    uint8 array of shape (32, 32, 3).

  Raises:
    ValueError: bad frame, margin or box, or a box outside the frame.
  """
  frame = np.asarray(frame)
  if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
    raise ValueError(
        f"frame must be uint8 (H, W, 3), got {frame.dtype} {frame.shape};"
        " convert it with PIL .convert('RGB') first"
    )
  if not (math.isfinite(margin) and margin >= 0):
    raise ValueError(f"margin must be a finite number >= 0, got {margin}")
  x1, y1, x2, y2 = (int(v) for v in box)
  if x2 < x1 or y2 < y1:
    raise ValueError(
        f"box {tuple(box)} has its lower right corner above or left of the"
        " upper left one; pass (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1"
    )
  height, width = frame.shape[:2]
  box_w, box_h = x2 - x1 + 1, y2 - y1 + 1
  left = max(0, math.floor(x1 - margin * box_w + 0.5))
  right = min(width, math.floor(x2 + 1 + margin * box_w + 0.5))
  top = max(0, math.floor(y1 - margin * box_h + 0.5))
  bottom = min(height, math.floor(y2 + 1 + margin * box_h + 0.5))
  if right <= left or bottom <= top:
    raise ValueError(
        f"box {tuple(box)} lies outside the {width}x{height} frame; fix the"
        " box coordinates"
    )
  crop = Image.fromarray(frame[top:bottom, left:right])
  out_h, out_w = IMAGE_SHAPE[:2]
  return np.asarray(crop.resize((out_w, out_h), RESAMPLE), np.uint8)


def _load_frame(path: epath.Path) -> np.ndarray:
  with path.open("rb") as f:
    with Image.open(f) as image:
      return np.asarray(image.convert("RGB"), np.uint8)


def generate_examples(
    records: Iterable[LisaRecord], margin: float = DEFAULT_MARGIN
) -> Iterator[tuple[str, dict[str, Any]]]:
  """Yields (key, {"image": uint8 (32, 32, 3), "label": int}) per record.

  Each frame is read once. Boxes in missing or unreadable frames, and boxes
  outside their frame, are skipped; one warning with the counts is logged
  when the generator is exhausted.

  Args:
    records: from `read_annotations` (or one side of `split_records`).
    margin: relative crop margin, see `crop_box`.
  """
  by_frame: dict[str, list[LisaRecord]] = {}
  for record in records:
    by_frame.setdefault(os.fspath(record.frame), []).append(record)
  missing, unreadable, outside = [], [], []
  for frame_path, frame_records in by_frame.items():
    path = epath.Path(frame_path)
    if not path.is_file():
      missing.append((frame_path, len(frame_records)))
      continue
    try:
      frame = _load_frame(path)
    except (OSError, ValueError, Image.DecompressionBombError):
      unreadable.append((frame_path, len(frame_records)))
      continue
    for record in frame_records:
      try:
        image = crop_box(frame, record.box, margin)
      except ValueError:
        outside.append(record.row)
        continue
      key = f"{record.filename}#{record.row}"
      yield key, {"image": image, "label": record.label}
  if missing:
    logging.warning(
        "LISA: skipped %d boxes in %d missing frame files, e.g. %s",
        sum(n for _, n in missing), len(missing),
        [p for p, _ in missing[:_MAX_EXAMPLES_LOGGED]])
  if unreadable:
    logging.warning(
        "LISA: skipped %d boxes in %d unreadable frame files, e.g. %s",
        sum(n for _, n in unreadable), len(unreadable),
        [p for p, _ in unreadable[:_MAX_EXAMPLES_LOGGED]])
  if outside:
    logging.warning(
        "LISA: skipped %d boxes outside their frame, e.g. CSV lines %s",
        len(outside), outside[:_MAX_EXAMPLES_LOGGED])


def _number_name(value: float) -> str:
  return np.format_float_positional(float(value), trim="-").replace(".", "p")


def config_name(margin: float, test_fraction: float, other_tags: bool) -> str:
  """Config (folder) name encoding the parameters, e.g. "margin0p1_test0p2"."""
  name = f"margin{_number_name(margin)}_test{_number_name(test_fraction)}"
  return name + ("_other" if other_tags else "")


@dataclasses.dataclass(eq=False)
class LisaConfig(tfds.core.BuilderConfig):
  """Parameters of the LISA crops; the name is derived from them.

  Attributes:
    margin: relative crop margin on each side of the box, >= 0.
    test_fraction: expected fraction of tracks/frames in test, in (0, 1).
    other_tags: map tags outside the 17 named classes to label 0.
  """

  name: str = ""
  margin: float = DEFAULT_MARGIN
  test_fraction: float = DEFAULT_TEST_FRACTION
  other_tags: bool = False

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
    expected = config_name(self.margin, self.test_fraction, self.other_tags)
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
        _read_header_and_rows(find_annotations_csv(config.manual_dir))
      else:
        # tfds's default manual folder: <download_dir>/manual.
        default = epath.Path(
            download_dir or self.data_dir_root / "downloads") / "manual"
        try:
          csv_path = find_annotations_csv(default)
        except FileNotFoundError:
          raise FileNotFoundError(
              "LISA not found: no manual_dir given and no"
              f" {CSV_NAME} in the default '{default}'; {_DOWNLOAD_HINT}"
              " (download_config=tfds.download.DownloadConfig(manual_dir=PATH))"
          ) from None
        _read_header_and_rows(csv_path)
    super().download_and_prepare(
        download_dir=download_dir, download_config=download_config, **kwargs)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    """Returns {"train": generator, "test": generator}."""
    try:
      manual_dir = dl_manager.manual_dir
    except AssertionError:  # tfds: manual dir missing or empty.
      missing = dl_manager._manual_dir  # pylint: disable=protected-access
      raise _not_found(f"'{missing}'") from None
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
  unknown = sorted(set(config_kwargs) - set(_CONFIG_FIELDS))
  if unknown:
    raise ValueError(
        f"prepare_lisa: unknown parameters {unknown}; use only"
        f" {list(_CONFIG_FIELDS)}")
  config = LisaConfig(**config_kwargs)
  if manual_dir is None:
    find_annotations_csv(None)  # Raises the "no manual_dir given" error.
  default_names = {c.name for c in Lisa.BUILDER_CONFIGS}
  builder = Lisa(
      data_dir=os.fspath(data_dir),
      config=config.name if config.name in default_names else config,
      file_format="array_record",
  )
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          manual_dir=os.fspath(manual_dir)))
  return builder
