"""Victim sets: a folder of sign images, loaded as one float32 batch.

The RP2 victim set (`victim-set/` of the RP2 reference assets) is 40 RGB
32x32 PNG files named `1.png` .. `41.png` (no 14). Files are ordered by the
number in their name (1, 2, ..., 10, not 1, 10, 11, ...), so the order of
the batch is the order of the authors' runs.
"""

import os
import re
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from blurnet_jax.classes import IMAGE_SHAPE

PathLike = Union[str, os.PathLike]

#: File name suffixes read as images (compared case-insensitively).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")

_NUMBER = re.compile(r"\d+")


def _sort_key(name: str) -> tuple[int, int, str]:
  """Orders by the first number in the file stem; names without one go last."""
  match = _NUMBER.search(Path(name).stem)
  if match is None:
    return (1, 0, name)
  return (0, int(match.group()), name)


def _read_rgb(file: Path, *, resize: bool) -> np.ndarray:
  """One image file -> uint8 (32, 32, 3) RGB.

  Args:
    file: the image file.
    resize: resize an image of another size to 32x32 (LANCZOS) instead of
      raising.

  Returns:
    uint8 array of shape (32, 32, 3).

  Raises:
    ValueError: the file is not a readable image, or it is not 32x32 and
      `resize` is False.
  """
  height, width, _ = IMAGE_SHAPE
  try:
    with Image.open(file) as image:
      image.load()
      rgb = image.convert("RGB")
  except (OSError, ValueError) as e:  # UnidentifiedImageError is an OSError.
    raise ValueError(
        f"cannot read image {file}: {e}; remove or replace it") from None
  if rgb.size != (width, height):
    if not resize:
      raise ValueError(
          f"image {file} is {rgb.size[0]}x{rgb.size[1]}, expected "
          f"{width}x{height}; pass resize=True to resize it")
    rgb = rgb.resize((width, height), Image.Resampling.LANCZOS)
  return np.asarray(rgb, dtype=np.uint8)


def load_victims_with_names(
    path: PathLike, *, resize: bool = False) -> tuple[np.ndarray, list[str]]:
  """Loads every image of a folder, ordered by the number in the file name.

  Images are files whose name ends in .png, .jpg, .jpeg or .bmp (any case);
  other files and sub-folders are ignored. RGBA, grey and palette images
  are converted to RGB (alpha dropped).

  Args:
    path: the folder, e.g. `.../rp2/victim-set`.
    resize: resize images that are not 32x32 to 32x32 (PIL LANCZOS); when
      False such an image is an error.

  Returns:
    `(images, names)`: images float32 (N, 32, 32, 3) NHWC in [0, 1]
    (uint8 / 255); names the N file names (no folder), in the same order.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: `path` is not a folder, holds no image, or holds a file that
      is not a readable image or (without `resize`) not 32x32.
  """
  folder = Path(path)
  if not folder.exists():
    raise FileNotFoundError(
        f"victim folder {folder} does not exist; pass the folder of victim "
        "images (e.g. .../rp2/victim-set)")
  if not folder.is_dir():
    raise ValueError(
        f"victim path {folder} is not a folder; pass the folder that holds "
        "the victim images, not a file")
  names = sorted(
      (entry.name for entry in folder.iterdir()
       if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES),
      key=_sort_key)
  if not names:
    raise ValueError(
        f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)}); "
        "pass a folder of victim images")
  images = np.stack([_read_rgb(folder / name, resize=resize)
                     for name in names])
  return images.astype(np.float32) / np.float32(255.0), names


def load_victims(path: PathLike, *, resize: bool = False) -> np.ndarray:
  """Loads a victim folder as a float32 (N, 32, 32, 3) batch in [0, 1].

  See `load_victims_with_names`, which this calls, for order, formats and
  errors.

  Args:
    path: the folder of victim images.
    resize: resize images that are not 32x32 instead of raising.

  Returns:
    float32 array of shape (N, 32, 32, 3), NHWC, values in [0, 1].
  """
  images, _ = load_victims_with_names(path, resize=resize)
  return images
