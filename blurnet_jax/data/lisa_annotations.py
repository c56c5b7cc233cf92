"""Reading LISA's `allAnnotations.csv` into boxes, and splitting them by sign.

For users who have the real LISA Traffic Sign Dataset (UCSD). The code never
downloads it: the user extracts it and passes its folder as `manual_dir`.

The folder holds the frames and `allAnnotations.csv`, a `;`-separated file
with the header `HEADER` (its 7th field is literally
"Occluded,On another road" and holds values such as "0,0"). The CSV may sit in
`manual_dir` or one folder below it; frame paths in the CSV are relative to the
CSV's folder.

Tags map to labels by name through `blurnet_jax.classes.CLASS_NAMES` (labels
1..17); other tags are dropped, or mapped to label 0 ("other") with
`other_tags=True`. Train/test are split by physical sign: all boxes of one
track (or, without a track, of one frame) go to the same side, chosen by a
CRC32 hash of the group key. Frames are not opened here (`lisa_examples`
crops them).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import zlib
from typing import Iterable

from absl import logging
from etils import epath

from blurnet_jax.classes import CLASS_NAMES

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
DEFAULT_TEST_FRACTION = 0.2
#: What a user without LISA is told to do (the end of every "not found").
DOWNLOAD_HINT = (
    f"download the LISA Traffic Sign Dataset from {HOMEPAGE}, extract it and"
    " pass its folder as manual_dir"
)
#: How many CSV lines or frame paths a warning about skipped boxes names.
MAX_EXAMPLES_LOGGED = 5

_TAG_TO_LABEL: dict[str, int] = {
    name: label for label, name in enumerate(CLASS_NAMES) if label > 0
}

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


def not_found(where: str) -> FileNotFoundError:
  """The error for a folder `where` that holds no LISA CSV."""
  return FileNotFoundError(
      f"LISA not found in {where}: expected {CSV_NAME} there (or one folder"
      f" below); {DOWNLOAD_HINT}"
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
        f"LISA not found: no manual_dir given; {DOWNLOAD_HINT}"
        " (download_config=tfds.download.DownloadConfig(manual_dir=PATH))"
    )
  root = epath.Path(manual_dir).expanduser()
  direct = root / CSV_NAME
  if direct.is_file():
    return direct
  if not root.is_dir():
    raise not_found(f"'{root}' (no such folder)")
  found = sorted(
      (sub / CSV_NAME for sub in root.iterdir()
       if sub.is_dir() and (sub / CSV_NAME).is_file()),
      key=os.fspath,
  )
  if not found:
    raise not_found(f"'{root}'")
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


def read_csv_lines(csv_path: epath.Path) -> list[str]:
  """Lines of the CSV after checking the header; raises ValueError if bad.

  The builder calls it before preparing, so that a wrong file fails before
  tfds creates any folder.
  """
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
  root = csv_path.parent
  records, dropped_tags, malformed = [], collections.Counter(), []
  for row, line in enumerate(read_csv_lines(csv_path)[1:], start=2):
    if not line.strip():
      continue
    fields = line.split(";")
    if len(fields) != len(HEADER):
      malformed.append(row)
      continue
    label = label_for_tag(fields[1], other_tags)
    if label is None:
      dropped_tags[fields[1].strip()] += 1
      continue
    record = _record(fields, label, root, row)
    if record is None:
      malformed.append(row)
    else:
      records.append(record)
  _log_read(csv_path, len(records), dropped_tags, malformed)
  return records


def _record(fields: list[str], label: int, root: epath.Path,
            row: int) -> LisaRecord | None:
  """The record of a kept row, or None if its filename is empty or its box
  malformed.

  Args:
    fields: the row's `HEADER` fields.
    label: the class of its tag (`label_for_tag`).
    root: the CSV's folder.
    row: the row's line number in the CSV.
  """
  filename = fields[0].strip()
  box = _parse_box(fields[2:6])
  if box is None or not filename:
    return None
  return LisaRecord(
      frame=root / filename,
      filename=filename,
      tag=fields[1].strip(),
      label=label,
      box=box,
      group=group_key(filename, fields[7], fields[9]),
      row=row,
  )


def _log_read(csv_path: epath.Path, kept: int,
              dropped_tags: collections.Counter, malformed: list[int]) -> None:
  """Logs the boxes `read_annotations` kept, the tags it dropped and the
  malformed rows it skipped."""
  logging.info(
      "LISA %s: kept %d boxes; dropped %d with tags outside the 18 classes %s",
      csv_path, kept, sum(dropped_tags.values()), dict(dropped_tags))
  if malformed:
    logging.warning(
        "LISA %s: skipped %d malformed rows (wrong field count or bad box),"
        " e.g. lines %s", csv_path, len(malformed),
        malformed[:MAX_EXAMPLES_LOGGED])


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
