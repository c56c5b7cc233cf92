"""The study's figures, drawn from its saved results alone (JSON, and the
arrays of the .npz results): no model is loaded.

  figures = draw(workdir, results, real=False)  # {section: [(path, caption)]}

`report.render_synthetic` and `render_real` call `draw` before they write
the report, so
`launch.report` redraws every figure of a finished (or partly finished)
run. A section whose results are absent has no figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from blurnet_jax import plots
from blurnet_jax.classes import CLASS_NAMES
from blurnet_jax.study.evaluators import oracle
from blurnet_jax.study.synthetic import proxy
from blurnet_jax.study.evaluators import high_frequency

Figures = list[tuple[str, str]]
#: Victims shown per set.
SHOWN = 10


def oracle_figure(report: dict[str, Any], figdir: Path, *,
                  real: bool) -> Figures:
  """The RP2 model's confusion on the synthetic test split or on every
  crop of a real source."""
  path = figdir / "oracle_confusion.png"
  if real:
    title = ("RP2 (LISA) model on every real LISA crop: "
             f"{100 * report['accuracy']:.1f}% over classes 1-17")
    caption = ("The RP2 model on every crop of the source (train and "
               "test): rows the true class, columns its prediction, "
               "percent of each row.")
  else:
    title = oracle.figure_title(report)
    caption = ("The RP2 (LISA-trained) model on the synthetic test split: "
               "rows the true class, columns its prediction, percent of "
               "each row.")
  plots.confusion_figure(np.asarray(report["confusion"]), path, title=title)
  return [(str(path), caption)]


def table1_figure(victims: dict[str, np.ndarray], figdir: Path) -> Figures:
  """Synthetic victims before and after the camouflage perturbation."""
  path = figdir / "table1_synthetic_victims.png"
  plots.image_grid(
      [victims["images"][:SHOWN], victims["adversarial"][:SHOWN]],
      ["natural", "perturbed"],
      [[CLASS_NAMES[c] for c in victims[f"{k}_labels"][:SHOWN]]
       for k in ("images", "adversarial")], path)
  return [(str(path), "Synthetic victims before (top) and after (bottom) "
           "the project's camouflage perturbation, with the baseline's "
           "labels.")]


def proxy_figure(rows, figdir: Path) -> Figures:
  path = figdir / "proxy_success.png"
  plots.proxy_bars(rows, path, gap_points=proxy.GAP_POINTS)
  return [(str(path), "Average white-box success on the 40 real victims "
           "(95% intervals): the RP2 model (red, its level a line, the band "
           f"{proxy.GAP_POINTS:g} points below it shaded) and a "
           "synthetic-trained baseline per setting, with its test accuracy "
           "and the RP2 model's accuracy on its test split.")]


def spectral_figures(maps: dict[str, np.ndarray], figdir: Path) -> Figures:
  """The slides' spectrum figures: input, L1, L1 after a filter, L2, for
  each victim set of `spectra.spectral_maps`."""
  out = []
  for prefix, label in high_frequency.SPECTRAL_SETS:
    source = high_frequency.unflatten_maps(maps, prefix)
    for layer, what in high_frequency.FIGURES:
      if layer not in source:
        continue
      path = figdir / f"{prefix}_spectrum_{layer}.png"
      plots.plot_spectra(source[layer], path,
                         title=f"{label}: {what}, natural vs perturbed")
      out.append((str(path), f"{label}: log-shifted, normalised FFT "
                  f"magnitude of the {what}; centre = low frequencies."))
  return out


def sweep_figures(rows, figdir: Path) -> Figures:
  """Test accuracy and white-box success against alpha, per penalty."""
  out = []
  for penalty in ("linf", "tv"):
    members = [r for r in rows if r["penalty"] == penalty]
    if not members:
      continue
    for key, label in (("test_accuracy", "test accuracy"),
                       ("avg_success", "white-box avg success")):
      path = figdir / f"sweep_{penalty}_{key}.png"
      plots.plot_sweep(members, path, key=key, ylabel=label,
                       title=f"{penalty} penalty: {label} against alpha")
      out.append((str(path), f"{penalty} sweep: {label} against alpha"))
  return out


def victims_figure(preview: dict[str, np.ndarray], figdir: Path) -> Figures:
  """The first victims of each set of a real-data study."""
  path = figdir / "victims.png"
  plots.image_grid(list(preview.values()), list(preview),
                   [[f"#{i}" for i in range(len(v))]
                    for v in preview.values()], path)
  return [(str(path), "The first victims of each set.")]


def forest_rows(rows) -> dict[str, list[dict[str, Any]]]:
  """Table 2's defended rows with a paired difference, by data set, in
  points: what `plots.forest_plot` draws."""
  panels: dict[str, list[dict[str, Any]]] = {}
  for r in rows:
    d = r.get("vs_baseline")
    if d is None:
      continue
    pts = lambda v: None if v is None else 100 * v
    panels.setdefault(r["dataset"], []).append({
        "label": r["variant"], "difference": pts(d["difference"]),
        "ci_low": pts(d["ci_low"]), "ci_high": pts(d["ci_high"]),
        "expected": pts(d.get("expected_difference")),
        "verdict": (r.get("verdict") or {}).get("verdict"),
        "signs": d.get("n_signs", d.get("n_victims"))})
  return panels


def table2_forest(rows, figdir: Path) -> Figures:
  """The forest plot of Table 2's paired differences."""
  panels = forest_rows(rows)
  if not panels:
    return []
  path = figdir / "table2_forest.png"
  plots.forest_plot(panels, path, title="Each defence against the "
                    "baseline: white-box success, paired difference with "
                    "its 95% interval")
  return [(str(path), "Every claim at a glance: the paired difference in "
           "average white-box success (defended minus baseline, points) "
           "with its 95% interval, one panel per victim set. The red cross "
           "is the slides' cut scaled to this baseline, the red tick half "
           "of it; green: supported, red: contradicted, grey: otherwise. "
           "Signs: the independent physical signs behind the interval.")]


def draw(workdir: Path, results: dict[str, Any], *, real: bool
         ) -> dict[str, Figures]:
  """Every figure the results allow, under WORKDIR/figures (`real`: the
  results are of real photographs, which the oracle figure says)."""
  figdir = Path(workdir) / "figures"
  figdir.mkdir(parents=True, exist_ok=True)
  drawers = (
      ("victims", "victims_preview", victims_figure),
      ("table2", "table2", table2_forest),
      ("oracle", "oracle",
       lambda r, d: oracle_figure(r, d, real=real)),
      ("table1", "table1_victims", table1_figure),
      ("proxy", "proxy", proxy_figure),
      ("spectral", "spectral_maps", spectral_figures),
      ("sweep", "sweep", sweep_figures),
      ("robustness", "robustness", plots.robustness_figures),
  )
  return {section: draw_fn(results[name], figdir)
          for section, name, draw_fn in drawers if name in results}
