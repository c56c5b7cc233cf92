"""Image sheets drawn with PIL: the contact sheet of a data set, labelled
grids of 32 px crops, and the pictures of an RP2 attack."""

from __future__ import annotations

from etils import epath
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from blurnet_jax.classes import CLASS_NAMES
from blurnet_jax.plots import canvas

_SCALE = 3  # 32 px crops are shown at 96 px
_PAD = 4
_VICTIMS_SHOWN = 8  # victims per row of victims.png
_TILES_PER_ROW = 9  # targets per row of perturbation.png


def contact_sheet(images: np.ndarray, labels: np.ndarray,
                  path: epath.PathLike, *, per_class: int = 12,
                  class_names=CLASS_NAMES) -> epath.Path:
  """Writes a PNG with one labelled row of `per_class` samples per class.

  Args:
    images: (N, 32, 32, 3) uint8, or float in [0, 1].
    labels: int (N,); the first `per_class` images of each class are shown.
    path: where the PNG goes.
  """
  images, labels = canvas.to_uint8(images), np.asarray(labels)
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
  canvas.save_on_writer(sheet.save, path)
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
    for j, img in enumerate(canvas.to_uint8(imgs)):
      tile = Image.fromarray(img).resize((32 * _SCALE, 32 * _SCALE),
                                         Image.NEAREST)
      sheet.paste(tile, (left + j * cell, y + _PAD // 2))
      if captions:
        draw.text((left + j * cell + 1, y + cell + 2), captions[r][j][:18],
                  fill=(0, 0, 0), font=small)
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  canvas.save_on_writer(sheet.save, path)
  return path


def _perturbation_tile(noise: np.ndarray, mask: np.ndarray,
                       noise_clip: float) -> np.ndarray:
  """What the attack adds, `mask * clip(noise)`, shown as grey + delta.

  Changes beyond +-1 saturate any image in [0, 1], so the tile maps
  [-1, 1] onto [0, 1]: mid-grey where nothing is added.
  """
  added = mask * np.clip(noise, -noise_clip, noise_clip)
  return 0.5 + 0.5 * np.clip(added, -1.0, 1.0)


def _names(pred: np.ndarray) -> list[str]:
  return [CLASS_NAMES[int(p)] for p in pred]


def attack_pictures(workdir: epath.Path, images: np.ndarray, mask: np.ndarray,
                   targets: list[int], out: dict[str, np.ndarray],
                   clean_pred: np.ndarray, adv_pred: np.ndarray,
                   noise_clip: float) -> None:
  """`perturbation.png` (a tile per target with the perturbation and victim
  0 wearing it) and `victims.png` (a few victims clean and attacked, each
  captioned with its predicted class: `clean_pred` (N,), `adv_pred`
  (T, N))."""
  tiles = np.stack([_perturbation_tile(n, mask, noise_clip)
                    for n in out["noise"]])
  first = out["adversarial"][:, 0]
  rows, titles, captions = [], [], []
  for s in range(0, len(targets), _TILES_PER_ROW):
    names = [CLASS_NAMES[t] for t in targets[s:s + _TILES_PER_ROW]]
    rows += [tiles[s:s + _TILES_PER_ROW], first[s:s + _TILES_PER_ROW]]
    titles += ["perturbation", "on victim 0"]
    captions += [names, _names(adv_pred[s:s + _TILES_PER_ROW, 0])]
  image_grid(rows, titles, captions, workdir / "perturbation.png")

  shown = images[:_VICTIMS_SHOWN]
  rows = [shown]
  titles = ["clean"]
  captions = [_names(clean_pred[:_VICTIMS_SHOWN])]
  for t, adv, pred in zip(targets, out["adversarial"], adv_pred):
    rows.append(adv[:_VICTIMS_SHOWN])
    titles.append(CLASS_NAMES[t])
    captions.append(_names(pred[:_VICTIMS_SHOWN]))
  image_grid(rows, titles, captions, workdir / "victims.png")
