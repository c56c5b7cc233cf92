"""Every figure of the project: image sheets, spectra, sweeps, robustness.

Figures are drawn from host arrays and result dicts (the same dicts the
JSON results hold), never from models, so a report can be drawn again from
a finished run. matplotlib runs with the Agg backend (no display). In a
multi-process run only process 0 writes the files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from etils import epath
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from blurnet_jax import distributed
from blurnet_jax.attacks.pgd import NORMS
from blurnet_jax.classes import CLASS_NAMES
from blurnet_jax.spectral import SPECTRUM_ROWS

_SCALE = 3  # 32 px crops are shown at 96 px
_PAD = 4


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(save, path, **kwargs) -> None:
  """`save(str(path), **kwargs)` on process 0 only: in a multi-process run
  every process draws, one writes (`distributed.is_writer`)."""
  if distributed.is_writer():
    save(str(path), **kwargs)


def _write_figure(plt, fig, path: epath.PathLike) -> epath.Path:
  """Lays out `fig`, writes it to `path` (110 dpi; process 0 only, through
  `_save`), closes it and returns the path."""
  fig.tight_layout()
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  _save(fig.savefig, path, dpi=110)
  plt.close(fig)
  return path


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
  _save(sheet.save, path)
  return path


def confusion_figure(confusion: np.ndarray, path: epath.PathLike, *,
                     title: str, class_names=CLASS_NAMES) -> epath.Path:
  """Writes a row-normalised confusion matrix (rows: true, columns:
  predicted), each cell's share printed where it is at least 5%."""
  confusion = np.asarray(confusion, np.float64)
  shares = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
  plt = _plt()
  n = len(class_names)
  fig, ax = plt.subplots(figsize=(9, 8))
  ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
  for i in range(n):
    for j in range(n):
      if shares[i, j] >= 0.05:
        ax.text(j, i, f"{100 * shares[i, j]:.0f}", ha="center", va="center",
                fontsize=7, color="white" if shares[i, j] > 0.5 else "black")
  labels = [f"{c} {name}" for c, name in enumerate(class_names)]
  ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
  ax.set_yticks(range(n), labels, fontsize=7)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true class")
  ax.set_title(title, fontsize=9)
  return _write_figure(plt, fig, path)


def proxy_bars(rows: Sequence[Mapping], path: epath.PathLike, *,
               gap_points: float) -> epath.Path:
  """Average white-box success per row (`study.proxy.proxy_rows`): the RP2
  model first, its level as a line and the band `gap_points` below it."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2, 4))
  x = np.arange(len(rows))
  mean = np.array([100 * r["avg_success"] for r in rows])
  low = np.array([100 * r["avg_success_ci_low"] for r in rows])
  high = np.array([100 * r["avg_success_ci_high"] for r in rows])
  colors = ["tab:red"] + ["tab:blue"] * (len(rows) - 1)
  ax.bar(x, mean, color=colors, yerr=[mean - low, high - mean], capsize=4)
  ax.axhline(mean[0], color="tab:red", lw=1)
  ax.axhspan(mean[0] - gap_points, mean[0], color="tab:red", alpha=0.1)
  labels = []
  for r in rows:
    label = r["setting"]
    if r.get("test_accuracy") is not None:
      label += (f"\ntest {100 * r['test_accuracy']:.0f}%"
                f"\noracle {100 * r['oracle_accuracy']:.0f}%")
    labels.append(label)
  ax.set_xticks(x, labels, fontsize=8)
  ax.set_ylabel("average white-box success (%)")
  ax.set_ylim(0, 100)
  ax.set_title("White-box RP2 grid on the 40 real victims: the RP2 model and "
               "synthetic-trained baselines", fontsize=9)
  return _write_figure(plt, fig, path)


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
  _save(sheet.save, path)
  return path


# ---------------------------------------------------------- attacks --


_VICTIMS_SHOWN = 8  # victims per row of victims.png
_TILES_PER_ROW = 9  # targets per row of perturbation.png


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


# --------------------------------------------------------- spectra --


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
  plt = _plt()

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
  h, w, c = shape
  if column_labels is None:
    column_labels = (["R", "G", "B"] if c == 3
                     else [f"map {i}" for i in range(c)])
  if len(column_labels) != c:
    raise ValueError(
        f"{len(column_labels)} column_labels for {c} maps; pass one label per "
        "map or None.")
  # Pixel edges in units of Nyquist: bin centres are fftshift(fftfreq) / 0.5,
  # spaced 2 / size apart; row 0 (the most negative f_y) drawn at the bottom.
  fy = np.fft.fftshift(np.fft.fftfreq(h)) / 0.5
  fx = np.fft.fftshift(np.fft.fftfreq(w)) / 0.5
  extent = (fx[0] - 1.0 / w, fx[-1] + 1.0 / w, fy[0] - 1.0 / h,
            fy[-1] + 1.0 / h)
  diff_limit = max(float(np.max(np.abs(arrays["difference"]))), 1e-6)

  fig, axes = plt.subplots(3, c, figsize=(1.75 * c + 2.0, 6.4), dpi=110,
                           squeeze=False, constrained_layout=True)
  row_titles = {"natural": "natural", "perturbed": "perturbed",
                "difference": "perturbed -\nnatural"}
  images = {}
  for r, row in enumerate(SPECTRUM_ROWS):
    if row == "difference":
      style = dict(cmap="RdBu_r", vmin=-diff_limit, vmax=diff_limit)
    else:
      style = dict(cmap="viridis", vmin=0.0, vmax=1.0)
    for j in range(c):
      ax = axes[r, j]
      images[row] = ax.imshow(arrays[row][:, :, j], extent=extent,
                              origin="lower", interpolation="nearest", **style)
      ax.set_xticks([-1, 0, 1])
      ax.set_yticks([-1, 0, 1])
      ax.tick_params(labelsize=7)
      if r == 0:
        ax.set_title(column_labels[j], fontsize=10)
      if r == 2:
        ax.set_xlabel("$f_x$ / Nyquist", fontsize=8)
      else:
        ax.set_xticklabels([])
      if j == 0:
        ax.set_ylabel(f"{row_titles[row]}\n$f_y$ / Nyquist", fontsize=9)
      else:
        ax.set_yticklabels([])
  fig.colorbar(images["natural"], ax=axes[:2, :].ravel().tolist(),
               shrink=0.9, label="log(1 + |FFT|) / max of the map")
  fig.colorbar(images["difference"], ax=axes[2, :].ravel().tolist(),
               shrink=0.9, label="difference")
  fig.suptitle(title, fontsize=11)
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  _save(fig.savefig, path)
  plt.close(fig)
  return path


# ----------------------------------------------------------- sweeps --


def plot_sweep(rows: list[dict], path: epath.PathLike, *, title: str,
               key: str = "test_accuracy", ylabel: str = "test accuracy"
               ) -> epath.Path:
  """Every seed of `key` against alpha (grey points), and the mean over the
  seeds with its 95% interval (the rows with seed 'all', from
  `study.sweeps.by_alpha`; without them, the plain mean); alpha 0 drawn at
  the left."""
  plt = _plt()
  members = [r for r in rows if r.get("seed") != "all"]
  pooled = {r["alpha"]: r for r in rows if r.get("seed") == "all"}
  alphas = sorted({r["alpha"] for r in rows})
  positive = [a for a in alphas if a > 0]
  zero_x = min(positive) / 10 if positive else 1.0
  xs = {a: (a if a > 0 else zero_x) for a in alphas}
  fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
  for r in members:
    ax.plot(xs[r["alpha"]], r[key], "o", color="0.6", ms=4)
  means = [pooled[a][key] if a in pooled else
           np.mean([r[key] for r in members if r["alpha"] == a])
           for a in alphas]
  ax.plot([xs[a] for a in alphas], means, "-o", color="C0",
          label="mean over seeds")
  if pooled and all(f"{key}_ci_low" in r for r in pooled.values()):
    have = [a for a in alphas if a in pooled]
    ax.errorbar([xs[a] for a in have], [pooled[a][key] for a in have],
                color="C0", capsize=4, ls="none",
                yerr=[[max(0.0, pooled[a][key] - pooled[a][f"{key}_ci_low"])
                       for a in have],
                      [max(0.0, pooled[a][f"{key}_ci_high"] - pooled[a][key])
                       for a in have]], label="95% interval")
  ax.legend(fontsize=8)
  ax.set_xscale("log")
  ax.set_xticks([xs[a] for a in alphas])
  ax.set_xticklabels([("0" if a == 0 else f"{a:g}") for a in alphas],
                     rotation=45)
  ax.set_xlabel("alpha")
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  _save(fig.savefig, path)
  plt.close(fig)
  return path


# ------------------------------------------------------- robustness --


def _log_ticks(ax, values) -> None:
  """A log x axis labelled at `values` (plain numbers, no 10^x)."""
  ax.set_xscale("log")
  ax.set_xticks(values, [f"{v:g}" for v in values])
  ax.minorticks_off()


def _model_legend(fig, names, styles) -> None:
  """One legend beside the panels: a colour per model, then the line
  styles (what each kind of line is), so that it never covers a curve."""
  from matplotlib.lines import Line2D  # pylint: disable=g-import-not-at-top
  handles = [Line2D([], [], color=f"C{k % 10}", lw=2, label=name)
             for k, name in enumerate(names)]
  handles += [Line2D([], [], color="0.3", ls=ls, marker=m, ms=4, label=label)
              for ls, m, label in styles]
  fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5),
             fontsize=8, frameon=False)


def _band(ax, xs, c, prefix: str, colour: str) -> None:
  """The 95% interval of a curve as a light band, where the JSON has one
  ('ci_low'/'ci_high', or with `prefix`, e.g. 'eot_')."""
  low, high = c.get(f"{prefix}ci_low"), c.get(f"{prefix}ci_high")
  if low is not None and high is not None:
    ax.fill_between(xs, low, high, color=colour, alpha=0.12, lw=0)


def plot_budgets(results, path) -> None:
  """Success against budget, one panel per norm, a colour per model;
  PGD solid, Square dashed, PGD under EOT dotted."""
  plt = _plt()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
  for ax, norm in zip(axes, NORMS):
    for k, r in enumerate(results["models"].values()):
      colour = f"C{k % 10}"
      for attack, style in (("pgd", "-o"), ("square", "--s")):
        c = r["budgets"][f"{attack}_{norm}"]
        ax.plot(c["budgets"], c["success"], style, color=colour, ms=4)
        if attack == "pgd":
          _band(ax, c["budgets"], c, "", colour)
      c = r["budgets"][f"pgd_{norm}"]
      ax.plot(c["budgets"], c["eot_success"], ":", color=colour)
    _log_ticks(ax, next(iter(results["models"].values()))["budgets"][
        f"pgd_{norm}"]["budgets"])
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("budget epsilon (" + ("per pixel" if norm == "linf"
                                        else "L2 per image")
                  + ", inside the mask)")
    ax.set_ylabel("victims not classified as stop")
    ax.set_title(f"{norm}: success against budget", fontsize=10)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  _model_legend(fig, list(results["models"]),
                [("-", "o", "PGD"), ("--", "s", "Square (no gradient)"),
                 (":", "", "PGD under EOT")])
  _save(fig.savefig, path, bbox_inches="tight")
  plt.close(fig)


def plot_steps(results, path) -> None:
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=110)
  for k, (name, r) in enumerate(results["models"].items()):
    s = r["steps"]
    ax.plot(s["steps"], s["success"], "-o", color=f"C{k % 10}", label=name)
    _band(ax, s["steps"], s, "", f"C{k % 10}")
  _log_ticks(ax, next(iter(results["models"].values()))["steps"]["steps"])
  ax.set_ylim(-0.03, 1.03)
  ax.set_xlabel("PGD steps")
  ax.set_ylabel("victims not classified as stop")
  any_model = next(iter(results["models"].values()))
  ax.set_title(f"PGD linf, budget {any_model['steps']['budget']:g}: success "
               "against steps", fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  _save(fig.savefig, path)
  plt.close(fig)


def plot_transfer(results, path) -> None:
  """Heat maps: perturbation made on the row model, shown to the column
  model; the diagonal is white-box."""
  plt = _plt()
  kinds = list(results["transfer"])
  names = results["transfer"][kinds[0]]["sources"]
  size = 1.0 + 0.75 * len(names)
  fig, axes = plt.subplots(1, len(kinds), figsize=(size * len(kinds) + 1,
                                                   size + 0.8), dpi=110)
  for ax, kind in zip(np.atleast_1d(axes), kinds):
    m = np.asarray(results["transfer"][kind]["matrix"])
    ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
    for i in range(len(names)):
      for j in range(len(names)):
        ax.text(j, i, f"{m[i, j]:.0%}", ha="center", va="center",
                color="white" if m[i, j] < 0.6 else "black", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right",
                  fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("shown to")
    ax.set_ylabel("made on")
    ax.set_title({"pgd_linf": "PGD linf (reference budget)",
                  "rp2": "physical RP2 sticker"}.get(kind, kind), fontsize=9)
  fig.tight_layout()
  _save(fig.savefig, path)
  plt.close(fig)


def plot_physical(results, path, data: str) -> bool:
  """Success against viewing angle and distance for the models on `data`;
  perturbed solid, clean dashed. False when no model is on `data`."""
  chosen = [(n, r) for n, r in results["models"].items() if r["data"] == data]
  if not chosen:
    return False
  plt = _plt()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.0), dpi=110)
  for k, (_, r) in enumerate(chosen):
    p, colour = r["physical"], f"C{k % 10}"
    for ax, axis in ((axes[0], "angle"), (axes[1], "distance")):
      xs = p["angles"] if axis == "angle" else p["distances"]
      ax.plot(xs, p[f"perturbed_{axis}"], "-o", color=colour, ms=4)
      _band(ax, xs, p, f"perturbed_{axis}_", colour)
      ax.plot(xs, p[f"clean_{axis}"], "--", color=colour)
  axes[0].set_xlabel("viewing angle (yaw, degrees)")
  axes[1].set_xlabel("distance: sign width on the sensor (pixels)")
  axes[1].invert_xaxis()
  for ax in axes:
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("victims not classified as stop")
    ax.grid(alpha=0.3)
  axes[0].set_title(f"{data} victims: success against viewing angle",
                    fontsize=10)
  axes[1].set_title(f"{data} victims: success against distance", fontsize=10)
  fig.tight_layout()
  _model_legend(fig, [n for n, _ in chosen],
                [("-", "o", "with the sticker"), ("--", "", "clean")])
  _save(fig.savefig, path, bbox_inches="tight")
  plt.close(fig)
  return True


def robustness_figures(results, figdir: epath.Path) -> list[tuple[str, str]]:
  """Every figure of the robustness results: (path, caption) pairs."""
  figdir.mkdir(parents=True, exist_ok=True)
  out = []
  path = figdir / "robustness_budgets.png"
  plot_budgets(results, path)
  out.append((str(path), "Success against budget inside the sticker mask: "
              "PGD (solid, its 95% interval shaded), Square Attack (dashed, "
              "gradient-free), PGD's images under fresh physical transforms "
              "(dotted)."))
  path = figdir / "robustness_steps.png"
  plot_steps(results, path)
  out.append((str(path), "PGD success against its number of steps (95% "
              "intervals shaded)."))
  path = figdir / "robustness_transfer.png"
  plot_transfer(results, path)
  out.append((str(path), "Transfer: perturbations made on the row model, "
              "shown to the column model (synthetic victims); the diagonal "
              "is white-box."))
  for data in ("synthetic", "rp2"):
    path = figdir / f"robustness_physical_{data}.png"
    if plot_physical(results, path, data):
      out.append((str(path), f"Physical test bench, {data} victims: the RP2 "
                  "sticker (solid) and the clean signs (dashed) seen from "
                  "a turned viewpoint and from afar."))
  return out
