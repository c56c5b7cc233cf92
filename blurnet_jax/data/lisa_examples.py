"""LISA frames -> 32x32 examples: each annotated box cropped and resized.

Each kept box (`lisa_annotations.LisaRecord`) is cropped with a relative
margin, clipped at the frame border, and resized to 32x32 RGB; each frame is
read once, and boxes in missing or unreadable frames are skipped.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterable, Iterator

from absl import logging
from etils import epath
import numpy as np
from PIL import Image

from blurnet_jax.classes import IMAGE_SHAPE
from blurnet_jax.data.lisa_annotations import Box
from blurnet_jax.data.lisa_annotations import LisaRecord
from blurnet_jax.data.lisa_annotations import MAX_EXAMPLES_LOGGED

DEFAULT_MARGIN = 0.1
# Lanczos: antialiased when shrinking large boxes, smooth (not blocky) when
# enlarging the many LISA boxes smaller than 32 px. Blocky nearest/box
# upsampling would add high-frequency edges, which BlurNet is sensitive to.
RESAMPLE = Image.Resampling.LANCZOS


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
        [p for p, _ in missing[:MAX_EXAMPLES_LOGGED]])
  if unreadable:
    logging.warning(
        "LISA: skipped %d boxes in %d unreadable frame files, e.g. %s",
        sum(n for _, n in unreadable), len(unreadable),
        [p for p, _ in unreadable[:MAX_EXAMPLES_LOGGED]])
  if outside:
    logging.warning(
        "LISA: skipped %d boxes outside their frame, e.g. CSV lines %s",
        len(outside), outside[:MAX_EXAMPLES_LOGGED])
