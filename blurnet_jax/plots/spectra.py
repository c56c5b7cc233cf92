"""The spectra figure: mean log-magnitude spectra of feature maps on
natural and perturbed images, and their difference (the arrays of
`spectral.mean_log_spectra`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from etils import epath
import numpy as np

from blurnet_jax.plots import canvas
from blurnet_jax.spectral import SPECTRUM_ROWS

_ROW_TITLES = {"natural": "natural", "perturbed": "perturbed",
               "difference": "perturbed -\nnatural"}


def plot_spectra(spectra: Mapping[str, np.ndarray], path: epath.PathLike, *,
                 title: str,
                 column_labels: Sequence[str] | None = None) -> epath.Path:
  """Writes one figure: rows natural / perturbed / difference, one column a map.

  The natural and perturbed rows share a [0, 1] colour scale (viridis); the
  difference row a symmetric red/blue scale around 0 (red: more in the
  perturbed spectrum). Axes are frequency in units of Nyquist, DC at the
  centre.

  Args:
    spectra: {'natural', 'perturbed', 'difference'}: arrays (H, W, C), one
      entry of `mean_log_spectra`.
    path: where the PNG goes (parent folders are created).
    title: the figure title.
    column_labels: C column titles; default 'R', 'G', 'B' for 3 maps, else
      'map 0', 'map 1', ...

  Returns:
    The path of the PNG.
  """
  plt = canvas.pyplot()
  arrays = _checked_arrays(spectra)
  h, w, c = arrays["natural"].shape
  column_labels = _column_labels(column_labels, c)
  extent = _nyquist_extent(h, w)
  diff_limit = max(float(np.max(np.abs(arrays["difference"]))), 1e-6)

  fig, axes = plt.subplots(3, c, figsize=(1.75 * c + 2.0, 6.4), dpi=110,
                           squeeze=False, constrained_layout=True)
  images = {}
  for r, row in enumerate(SPECTRUM_ROWS):
    if row == "difference":
      style = dict(cmap="RdBu_r", vmin=-diff_limit, vmax=diff_limit)
    else:
      style = dict(cmap="viridis", vmin=0.0, vmax=1.0)
    for j in range(c):
      images[row] = _draw_map(axes[r, j], arrays[row][:, :, j], extent, style)
      _label_map(axes[r, j], r, j, row, column_labels[j])
  fig.colorbar(images["natural"], ax=axes[:2, :].ravel().tolist(),
               shrink=0.9, label="log(1 + |FFT|) / max of the map")
  fig.colorbar(images["difference"], ax=axes[2, :].ravel().tolist(),
               shrink=0.9, label="difference")
  fig.suptitle(title, fontsize=11)
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  canvas.save_on_writer(fig.savefig, path)
  plt.close(fig)
  return path


def _checked_arrays(spectra: Mapping[str, np.ndarray]
                    ) -> dict[str, np.ndarray]:
  """The three rows of `spectra` as float32 arrays of one shape (H, W, C)."""
  missing = [row for row in SPECTRUM_ROWS if row not in spectra]
  if missing:
    raise ValueError(
        f"spectra lacks {missing}; pass one entry of mean_log_spectra, a dict "
        f"with keys {SPECTRUM_ROWS}.")
  arrays = {row: np.asarray(spectra[row], np.float32) for row in SPECTRUM_ROWS}
  shape = arrays["natural"].shape
  if len(shape) != 3 or any(a.shape != shape for a in arrays.values()):
    raise ValueError(
        f"spectra must hold three arrays of one shape (H, W, C), got "
        f"{ {k: a.shape for k, a in arrays.items()} }; pass one entry of "
        "mean_log_spectra.")
  return arrays


def _column_labels(column_labels: Sequence[str] | None,
                   c: int) -> Sequence[str]:
  """One title per map: `column_labels`, or 'R', 'G', 'B' / 'map i'."""
  if column_labels is None:
    column_labels = (["R", "G", "B"] if c == 3
                     else [f"map {i}" for i in range(c)])
  if len(column_labels) != c:
    raise ValueError(
        f"{len(column_labels)} column_labels for {c} maps; pass one label per "
        "map or None.")
  return column_labels


def _nyquist_extent(h: int, w: int) -> tuple[float, float, float, float]:
  """The `imshow` extent of an (h, w) shifted spectrum, in units of Nyquist.

  Pixel edges: bin centres are fftshift(fftfreq) / 0.5, spaced 2 / size
  apart; row 0 (the most negative f_y) drawn at the bottom.
  """
  fy = np.fft.fftshift(np.fft.fftfreq(h)) / 0.5
  fx = np.fft.fftshift(np.fft.fftfreq(w)) / 0.5
  return (fx[0] - 1.0 / w, fx[-1] + 1.0 / w, fy[0] - 1.0 / h,
          fy[-1] + 1.0 / h)


def _draw_map(ax, spectrum: np.ndarray, extent, style: dict):
  """Draws one (H, W) spectrum on `ax` with ticks at -1, 0, 1 Nyquist;
  returns the image (for a colour bar)."""
  image = ax.imshow(spectrum, extent=extent, origin="lower",
                    interpolation="nearest", **style)
  ax.set_xticks([-1, 0, 1])
  ax.set_yticks([-1, 0, 1])
  ax.tick_params(labelsize=7)
  return image


def _label_map(ax, r: int, j: int, row: str, column_label: str) -> None:
  """Column titles on the top row, axis labels on the outer panels only."""
  if r == 0:
    ax.set_title(column_label, fontsize=10)
  if r == 2:
    ax.set_xlabel("$f_x$ / Nyquist", fontsize=8)
  else:
    ax.set_xticklabels([])
  if j == 0:
    ax.set_ylabel(f"{_ROW_TITLES[row]}\n$f_y$ / Nyquist", fontsize=9)
  else:
    ax.set_yticklabels([])
