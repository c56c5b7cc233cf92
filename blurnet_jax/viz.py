"""Pictures a person can read: contact sheets and labelled image grids."""

from etils import epath
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from blurnet_jax.classes import CLASS_NAMES

_SCALE = 3  # 32 px crops are shown at 96 px
_PAD = 4


def _to_uint8(images: np.ndarray) -> np.ndarray:
  images = np.asarray(images)
  if images.dtype != np.uint8:
    images = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
  return images


def contact_sheet(images: np.ndarray, labels: np.ndarray,
                  path: epath.PathLike, *, per_class: int = 12,
                  class_names=CLASS_NAMES) -> epath.Path:
  """Writes a PNG with one labelled row of `per_class` samples per class.

  Args:
    images: (N, 32, 32, 3) uint8, or float in [0, 1].
    labels: int (N,); the first `per_class` images of each class are shown.
    path: where the PNG goes.
  """
  images, labels = _to_uint8(images), np.asarray(labels)
  cell = 32 * _SCALE + _PAD
  font = ImageFont.load_default(size=15)
  left = 170
  sheet = Image.new("RGB", (left + per_class * cell, len(class_names) * cell),
                    (255, 255, 255))
  draw = ImageDraw.Draw(sheet)
  for c, name in enumerate(class_names):
    draw.text((6, c * cell + cell // 2 - 9), f"{c:2d} {name}", fill=(0, 0, 0),
              font=font)
    for j, i in enumerate(np.flatnonzero(labels == c)[:per_class]):
      tile = Image.fromarray(images[i]).resize((32 * _SCALE, 32 * _SCALE),
                                               Image.NEAREST)
      sheet.paste(tile, (left + j * cell, c * cell + _PAD // 2))
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  sheet.save(str(path))
  return path


def image_grid(rows: list[np.ndarray], row_titles: list[str],
               captions: list[list[str]] | None, path: epath.PathLike,
               ) -> epath.Path:
  """Writes rows of images (each (n, 32, 32, 3)) with titles and captions."""
  font = ImageFont.load_default(size=13)
  small = ImageFont.load_default(size=10)  # captions: class names fit a cell
  cell = 32 * _SCALE + _PAD
  n = max(len(r) for r in rows)
  left, cap = 165, (18 if captions else 0)
  sheet = Image.new("RGB", (left + n * cell, len(rows) * (cell + cap)),
                    (255, 255, 255))
  draw = ImageDraw.Draw(sheet)
  for r, (imgs, title) in enumerate(zip(rows, row_titles)):
    y = r * (cell + cap)
    draw.text((6, y + cell // 2 - 8), title, fill=(0, 0, 0), font=font)
    for j, img in enumerate(_to_uint8(imgs)):
      tile = Image.fromarray(img).resize((32 * _SCALE, 32 * _SCALE),
                                         Image.NEAREST)
      sheet.paste(tile, (left + j * cell, y + _PAD // 2))
      if captions:
        draw.text((left + j * cell + 1, y + cell + 2), captions[r][j][:18],
                  fill=(0, 0, 0), font=small)
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  sheet.save(str(path))
  return path
