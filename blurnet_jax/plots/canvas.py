"""What every figure shares: matplotlib on the Agg backend (no display),
files written by process 0 alone, images shown as uint8."""

from __future__ import annotations

from etils import epath
import numpy as np

from blurnet_jax import distributed


def pyplot():
  """`matplotlib.pyplot`, with the Agg backend selected first."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def save_on_writer(save, path, **kwargs) -> None:
  """`save(str(path), **kwargs)` on process 0 only: in a multi-process run
  every process draws, one writes (`distributed.is_writer`)."""
  if distributed.is_writer():
    save(str(path), **kwargs)


def write_figure(plt, fig, path: epath.PathLike) -> epath.Path:
  """Lays out `fig`, writes it to `path` (110 dpi; process 0 only, through
  `save_on_writer`), closes it and returns the path."""
  fig.tight_layout()
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  save_on_writer(fig.savefig, path, dpi=110)
  plt.close(fig)
  return path


def to_uint8(images: np.ndarray) -> np.ndarray:
  """`images` as uint8: floats in [0, 1] scaled to 0..255, uint8 as is."""
  images = np.asarray(images)
  if images.dtype != np.uint8:
    images = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
  return images
