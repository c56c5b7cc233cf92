"""Charts of results drawn with matplotlib: a confusion matrix, the proxy
bars of the white-box grid, and a metric against the penalty weight alpha."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from etils import epath
import numpy as np

from blurnet_jax.classes import CLASS_NAMES
from blurnet_jax.plots import canvas


def confusion_figure(confusion: np.ndarray, path: epath.PathLike, *,
                     title: str, class_names=CLASS_NAMES) -> epath.Path:
  """Writes a row-normalised confusion matrix (rows: true, columns:
  predicted), each cell's share printed where it is at least 5%."""
  confusion = np.asarray(confusion, np.float64)
  shares = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
  plt = canvas.pyplot()
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
  return canvas.write_figure(plt, fig, path)


def proxy_bars(rows: Sequence[Mapping], path: epath.PathLike, *,
               gap_points: float) -> epath.Path:
  """Average white-box success per row (`study.proxy.proxy_rows`): the RP2
  model first, its level as a line and the band `gap_points` below it."""
  plt = canvas.pyplot()
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
  return canvas.write_figure(plt, fig, path)


def plot_sweep(rows: list[dict], path: epath.PathLike, *, title: str,
               key: str = "test_accuracy", ylabel: str = "test accuracy"
               ) -> epath.Path:
  """Every seed of `key` against alpha (grey points), and the mean over the
  seeds with its 95% interval (the rows with seed 'all', from
  `study.alpha_curves.by_alpha`; without them, the plain mean); alpha 0 drawn at
  the left."""
  plt = canvas.pyplot()
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
  canvas.save_on_writer(fig.savefig, path)
  plt.close(fig)
  return path


def defence_scatter(rows: Sequence[Mapping], path: epath.PathLike, *,
                    title: str) -> epath.Path:
  """Clean accuracy against white-box success (left: RP2; right: any
  attack, the per-victim worst case), one point per defence and seed, each
  with its 95% interval bars (the rows of `study.defence_stages`: their
  'per_seed' intervals)."""
  plt = canvas.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(12, 5.5), sharey=True)
  cmap = plt.get_cmap("tab10")
  markers = "osD^v<>Ph*X"

  def bars(intervals):
    """Percent means and error bars; a rate no outcome counted (NaN, or
    None as JSON keeps it) is not drawn."""
    def pct(key):
      return np.array([np.nan if s.get(key) is None else 100 * s[key]
                       for s in intervals], np.float64)
    mean, low, high = pct("mean"), pct("ci_low"), pct("ci_high")
    return mean, np.nan_to_num([mean - low, high - mean])

  for ax, key, label in ((axes[0], "rp2_success", "white-box RP2 success"),
                         (axes[1], "any_success", "success of any attack")):
    for i, r in enumerate(rows):
      x, xerr = bars(r["per_seed"][key])
      y, yerr = bars(r["per_seed"]["clean_accuracy"])
      ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=markers[i % len(markers)],
                  color=cmap(i % 10), capsize=3, ms=7, lw=1,
                  label=r["defence"])
    ax.set_xlabel(f"{label} on the victims (%, adaptive)")
    ax.set_xlim(-2, 102)
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("clean accuracy on held-out data (%)")
  axes[1].legend(fontsize=8, loc="best")
  fig.suptitle(title, fontsize=10)
  return canvas.write_figure(plt, fig, path)


def forest_plot(panels: Mapping[str, Sequence[Mapping]],
                path: epath.PathLike, *, title: str) -> epath.Path:
  """Every claim's paired difference with its 95% interval, one panel per
  data set (victim set): a row per defended variant ('label', in points:
  'difference', 'ci_low', 'ci_high'; 'expected' the slides' cut scaled to
  the measured baseline, or None; 'verdict'; 'signs'). Zero is the dashed
  line; the slides' cut a red cross, half of it a red tick: a claim is
  supported where the interval lies left of zero and reaches past half the
  cut, contradicted where it stays right of half the cut."""
  plt = canvas.pyplot()
  names = list(panels)
  height = max(2.5, 0.55 * max(len(r) for r in panels.values()) + 1.5)
  fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), height),
                           squeeze=False)
  for ax, name in zip(axes[0], names):
    rows = list(panels[name])
    ys = np.arange(len(rows))[::-1]
    for y, r in zip(ys, rows):
      d, low, high = r["difference"], r["ci_low"], r["ci_high"]
      if d is None or not np.isfinite(d):
        ax.text(0, y, "no outcome counts", va="center", fontsize=8)
        continue
      colour = {"supported": "tab:green", "contradicted": "tab:red"}.get(
          r.get("verdict"), "tab:grey")
      ax.errorbar([d], [y], xerr=[[d - low], [high - d]], fmt="o",
                  color=colour, capsize=4, ms=6, lw=1.5)
      expected = r.get("expected")
      if expected is not None and np.isfinite(expected):
        ax.plot([expected], [y], "x", color="tab:red", ms=8, mew=2)
        ax.plot([expected / 2], [y], "|", color="tab:red", ms=12, mew=2)
    ax.axvline(0, color="black", ls="--", lw=1)
    ax.set_yticks(ys)
    ax.set_yticklabels([f"{r['label']}\n{r.get('verdict') or ''}"
                        f" ({r.get('signs', '?')} signs)" for r in rows],
                       fontsize=8)
    ax.set_xlabel("success, defended minus baseline (points)")
    ax.set_title(name, fontsize=9)
    ax.grid(alpha=0.3, axis="x")
  fig.suptitle(title, fontsize=10)
  return canvas.write_figure(plt, fig, path)
