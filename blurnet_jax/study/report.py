"""The study's reports, rendered from the JSON results of a finished run.

  render(workdir)  # WORKDIR/report/index.html and report.md

`launch.reproduce` ends by calling `render`; `launch.report` calls it alone,
in seconds, on any finished (or partly finished) run: no model is loaded
and nothing is trained or attacked. A run's results are its `config.json`,
`study.json` (environment, figures, the oracle accuracy), `stages.json`
and one JSON file per stage (`table1.json`, `table2.json`,
`spectral.json`, `sweep.json`, `robustness.json`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from etils import epath
import ml_collections

from blurnet_jax import distributed
from blurnet_jax import document as R
from blurnet_jax import stats
from blurnet_jax.attacks import grid
from blurnet_jax.classes import CLASS_NAMES
from blurnet_jax.jsonio import read_json
from blurnet_jax.study import findings as findings_lib
from blurnet_jax.study import slides
from blurnet_jax.study import table1

#: The stage files a study report reads, by results key.
RESULT_FILES = {"table1": "table1.json", "table2": "table2.json",
                "spectral": "spectral.json", "sweep": "sweep.json",
                "robustness": "robustness.json", "stages": "stages.json",
                "study": "study.json", "findings": "findings.json",
                "lisa": "lisa.json"}
#: Sections a report leaves out (saying so) when their stage has not run.
OPTIONAL = ("spectral", "sweep", "robustness", "findings", "lisa")


def _csv(values) -> str:
  return ",".join(f"{v:g}" if isinstance(v, float) else str(v)
                  for v in values)


def findings_blocks(entries) -> list[Any]:
  """The report's opening: one paragraph per claim of the slides."""
  if entries is None:
    return [_not_run("findings")]
  counts = findings_lib.summary_counts(entries)
  return [R.Paragraph(
      "One paragraph per claim of the slides: the verdict, the figures with "
      "95% intervals, the data and what remains confounded. Verdicts: "
      "supported when the interval of the paired difference excludes zero in "
      "the slides' direction and the effect is at least half the slides'; "
      "contradicted when it excludes zero the other way or excludes half the "
      "slides' effect; inconclusive otherwise; undertrained when a model "
      "behind it is below 90% test accuracy. Intervals: Wilson where only "
      "victims vary (Table 1, one model); a two-way t-interval over seeds "
      "and victims elsewhere (Table 2: per-victim outcomes averaged over "
      "targets, seed i of every variant attacked with the same key); paired "
      "tests are exact McNemar on the discordant (seed, victim, target) "
      "cells. Counts: " + ", ".join(f"{k} {v}" for k, v in counts.items())
      + ".")] + [R.Paragraph(findings_lib.text(e)) for e in entries]


def _not_run(stage: str) -> R.Paragraph:
  return R.Paragraph(f"Not in this run: {RESULT_FILES[stage]} is missing "
                     "(the stage has not finished).")


def _figures(figures: dict[str, list], section: str) -> list[R.Figure]:
  return [R.Figure(p, c) for p, c in figures.get(section, [])]


def _pct(x):
  return None if x is None else 100.0 * x


def _ci(r, key) -> str:
  """'[lo, hi]' in percent of `key`'s interval in row `r`, '' if none."""
  lo, hi = r.get(f"{key}_ci_low"), r.get(f"{key}_ci_high")
  return "" if lo is None else f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def _table1_block(rows, caption) -> R.Table:
  columns = ["variant", "accuracy", "95% CI", "slides accuracy",
             "success (changed)", "95% CI ", "success (not stop)",
             "95% CI  ", "slides success", "diff (changed)",
             "diff (not stop)"]
  out = []
  for r in rows:
    s_acc, s_succ = r.get("slides_accuracy"), r.get("slides_attack_success_rate")
    out.append([r["variant"], _pct(r["accuracy"]), _ci(r, "accuracy"),
                _pct(s_acc), _pct(r["attack_success_rate"]),
                _ci(r, "attack_success_rate"),
                _pct(r["misclassification_rate"]),
                _ci(r, "misclassification_rate"), _pct(s_succ),
                None if s_succ is None else
                _pct(r["attack_success_rate"] - s_succ),
                None if s_succ is None else
                _pct(r["misclassification_rate"] - s_succ)])
  fmt = {c: ".1f" for c in columns[1:] if not c.startswith("95%")}
  return R.Table(columns, out, caption=caption, formats=fmt)


def _table2_block(rows, caption) -> R.Table:
  columns = ["variant", "data", "alpha", "seeds", "acc.", "95% CI",
             "slides acc.", "avg success", "95% CI ", "slides avg",
             "worst success", "95% CI  ", "slides worst", "L2", "slides L2",
             "vs baseline [95% CI]", "McNemar p", "verdict"]
  out = []
  for r in rows:
    d = r.get("vs_baseline")
    out.append([
        r["variant"], r["dataset"], r["alpha"], r.get("n_seeds", 1),
        100 * r["legit_acc"], _ci(r, "legit_acc"),
        _pct(r.get("slides_legit_acc")), 100 * r["avg_success"],
        _ci(r, "avg_success"), _pct(r.get("slides_avg_success")),
        100 * r["worst_success"], _ci(r, "worst_success"),
        _pct(r.get("slides_worst_success")), r["l2_distortion"],
        r.get("slides_l2_distortion"),
        "" if d is None else (f"{100 * d['difference']:+.1f} "
                              f"[{100 * d['ci_low']:+.1f}, "
                              f"{100 * d['ci_high']:+.1f}]"),
        None if d is None else d["p_value"],
        r.get("verdict", {}).get("verdict", "")])
  fmt = {"alpha": "g", "acc.": ".1f", "slides acc.": ".1f",
         "avg success": ".1f", "slides avg": ".1f", "worst success": ".1f",
         "slides worst": ".1f", "L2": ".3f", "slides L2": ".3f",
         "McNemar p": ".2g"}
  return R.Table(columns, out, caption=caption, formats=fmt)


def _spectral_block(rows, caption) -> R.Table:
  columns = ["data", "variant"] + [
      f"{layer} {kind}" for layer in ("input", "l1", "l1_filtered", "l2")
      for kind in ("natural", "perturbed")]
  out = [[r["dataset"], r["variant"]] + [
      r[f"{layer}_{kind}"] for layer in ("input", "l1", "l1_filtered", "l2")
      for kind in ("natural", "perturbed")] for r in rows]
  return R.Table(columns, out, caption=caption,
                          formats={c: ".4f" for c in columns[2:]})


def _sweep_block(rows) -> R.Table:
  columns = ["penalty", "alpha", "seed", "test accuracy", "95% CI",
             "avg success", "95% CI ", "worst success", "L2"]
  out = [[r["penalty"], r["alpha"], r.get("seed", 0), _pct(r["test_accuracy"]),
          _ci(r, "test_accuracy"), _pct(r["avg_success"]),
          _ci(r, "avg_success"), _pct(r["worst_success"]),
          r["l2_distortion"]] for r in rows]
  return R.Table(columns, out, caption="Alpha sweeps",
                          formats={"alpha": "g", "test accuracy": ".1f",
                                   "avg success": ".1f",
                                   "worst success": ".1f", "L2": ".3f"})


def reductions(config) -> list[str]:
  """What the run leaves out of the slides' full protocol, in words."""
  out = []
  if len(config.seeds) < 3:
    out.append(f"seeds: {len(config.seeds)} per Table 2 variant (and attack "
               "keys on the RP2 model), fewer than 3: the intervals are wide "
               "and the verdicts rest on few seeds")
  if any(len(s.sweep.seeds) < 3 for s in config.sweeps.values()):
    out.append("sweeps: one seed per member, intervals over victims only")
  out.append("Table 1 synthetic rows and the robustness checklist: the first "
             "seed's model, Wilson intervals over victims only")
  g = config.grid
  targets = grid.parse_targets(g.targets)
  if config.name == "quick" or len(targets) < len(grid.ALL_TARGETS):
    out.append(f"white-box grid: targets {', '.join(map(str, targets))} "
               f"({', '.join(CLASS_NAMES[t] for t in targets)}), "
               f"{g.victims} victims, {g.num_transforms} transforms, "
               f"{g.steps} steps, {g.eval_transforms} evaluation draws")
  missing = [v for v in slides.TABLE2 if v not in config.models]
  if missing:
    out.append(f"Table 2 variants not trained: {', '.join(missing)}")
  out.append(f"training: {config.num_train_steps} steps of "
             f"{config.batch_size}; data {config.data.train_per_class} train "
             f"+ {config.data.test_per_class} test images per class "
             f"({config.data.source})")
  out.append(f"sweeps: {config.sweep.num_train_steps} training steps per "
             f"member; member grid targets "
             f"{', '.join(map(str, config.sweep.targets))}, "
             f"{config.sweep.steps} steps, {config.sweep.num_transforms} "
             "transforms")
  out.append(f"Table 1 synthetic perturbation: {config.table1.attack_steps} "
             "RP2 steps")
  rc = config.robustness
  out.append(f"robustness checklist: {rc.victims} synthetic victims, PGD "
             f"{rc.pgd_steps} steps, Square {rc.square_queries} queries, "
             f"linf budgets {_csv(rc.linf_budgets)}, L2 budgets "
             f"{_csv(rc.l2_budgets)}, "
             f"physical sticker {rc.rp2_steps} RP2 steps x "
             f"{rc.rp2_transforms} transforms")
  return out


def study_blocks(config, results: dict[str, Any]) -> list[Any]:
  """The blocks of the study's report, from its JSON results (see
  `load_results`)."""
  meta = results["study"]
  figures = meta["figures"]
  env = meta["environment"]
  blocks: list[Any] = [
      R.Paragraph(f"Run `{config.name}` of `launch.reproduce`, seed "
                  f"{config.seed}; jax {env['jax']}, flax {env['flax']}, "
                  f"optax {env['optax']}, backend {env['backend']} "
                  f"({env['device_kind']}). Real RP2 data: "
                  f"{meta['rp2_dir']}."),
      R.Heading("Findings"),
      *findings_blocks(results.get("findings")),
      R.Heading("Settings that differ from the slides"),
      R.Bullets(reductions(config)),
      R.Heading("Table 1: black-box transfer"),
      R.Paragraph(
          "The camouflage perturbation made on the undefended model, shown "
          "to fixed blur filters inserted into that model without "
          "retraining. Accuracy: victims classified as stop. Success is "
          "given in both readings: prediction changed against the clean "
          "prediction (the slides' formula) and perturbed victim not "
          "classified as stop. Percent; diff = ours - slides."),
  ]
  t1 = {"rows": results["table1"]}
  real = [r for r in t1["rows"] if r["dataset"] == "rp2"]
  if real:
    t1["reading"] = table1.slides_reading(real)
  for dataset, caption in (("rp2", "RP2 model, the authors' camouflage "
                            "perturbation, 40 real victims"),
                           ("synthetic", "synthetic baseline, camouflage "
                            "perturbation made by the project's RP2, 40 "
                            "synthetic victims")):
    rows = [r for r in t1["rows"] if r["dataset"] == dataset]
    if rows:
      blocks.append(_table1_block(rows, caption))
  if "reading" in t1:
    rd = t1["reading"]
    blocks.append(R.Paragraph(
        f"On the real data the slides' numbers follow the reading "
        f"'{rd['follows_text']}' (largest distance to a slides cell, per "
        f"reading: {rd['max_distance_points']} points). Every cell within 5 "
        f"points: {'yes' if rd['within_5_points'] else 'no'} (filters: "
        f"{config.table1.padding} padding, {config.table1.position}; the "
        "closer of box and Gaussian per slides row)." + (
            f" Rows more than 5 points from the slides in that reading: "
            f"{', '.join(rd['kernels_beyond_5_points'])}. A Gaussian of the "
            "same width (sigma = 0.3((k-1)/2-1)+0.8, OpenCV's default) "
            "blurs less than a box, so the slides' filters behave as box "
            "(mean) filters; padding (zeros vs reflect) and placement "
            "(before/after the ReLU) move the box rows by at most 5 points."
            if rd["kernels_beyond_5_points"] else "")))
  blocks += _figures(figures, "table1")
  blocks += [
      R.Heading("Table 2: white-box RP2"),
      R.Paragraph(
          "One RP2 attack per target class (camouflage settings, physical "
          "transforms as EOT); success = prediction changed, average and "
          "worst over targets; L2 = dissimilarity. Percent. The synthetic "
          "rows compare by trend with the slides' LISA-trained models "
          "(accuracy: synthetic test split)." + (
              " The rp2 row (the RP2 model and the real victims) compares "
              "digit for digit with the slides' baseline; its accuracy is "
              "on the 40 real victims (on the synthetic test split it is "
              f"{_fmt_pct(meta.get('rp2_synthetic_accuracy')).strip()}: "
              "the LISA-trained model does not read the synthetic renders "
              "well)." if meta.get("rp2_synthetic_accuracy") is not None
              else "")),
      _table2_block(results["table2"], "White-box grid per variant"),
  ]
  blocks += _figures(figures, "table2")
  blocks += [R.Heading("Table 2, LISA-initialised arm")]
  if "lisa" in results:
    L = config.lisa
    blocks += [R.Paragraph(
        "Each variant fine-tuned from the RP2 authors' LISA-trained weights "
        "(the filter inserted; a learned kernel starting as the box of its "
        f"size) on the synthetic set, {L.num_train_steps} steps at lr "
        f"{L.learning_rate:g}, one member per seed, attacked with the "
        "white-box grid on the 40 real victims (targets "
        f"{', '.join(map(str, L.grid.targets))}, {L.grid.steps} steps, "
        f"{L.grid.num_transforms} transforms). lisa-full: every layer "
        "trains; its control is the baseline fine-tuned the same way. "
        "lisa-frozen: only what the variant adds trains (the learned kernel; "
        "for TV the first layer); its control is the RP2 model itself. "
        "Accuracy: real victims classified as stop. Paired differences "
        "against each form's control, seed by seed on the same keys."),
        _table2_block(results["lisa"], "LISA-initialised arm")]
  else:
    blocks.append(_not_run("lisa"))
  blocks += [R.Heading("Spectral analysis")]
  if "spectral" in results:
    blocks += [
        R.Paragraph(f"Share of spectral power above radius "
                    f"{config.spectral_radius} (x Nyquist) of each "
                    "representation, mean over images and maps (means "
                    "removed), natural vs perturbed victims (the Table 1 "
                    "perturbation); l1_filtered is what conv2 sees."),
        _spectral_block(results["spectral"], "High-frequency share"),
    ] + _figures(figures, "spectral")
  else:
    blocks.append(_not_run("spectral"))
  blocks += [R.Heading("Alpha sweeps")]
  blocks += ([_sweep_block(results["sweep"])] + _figures(figures, "sweep")
             if "sweep" in results else [_not_run("sweep")])
  blocks += [R.Heading("Robustness checks (beyond the slides)")]
  if "robustness" in results:
    blocks += robustness_blocks(results["robustness"],
                                _figures(figures, "robustness"),
                                config.robustness)
  else:
    blocks.append(_not_run("robustness"))
  blocks += [
      R.Heading("Wall time per stage"),
      R.Table(["stage", "seconds"],
              [[k, v] for k, v in results["stages"].items()],
              formats={"seconds": ".1f"}),
      R.Heading("Config"),
      R.Code(json.dumps(config.to_dict(), indent=2), "json"),
  ]
  return blocks




def summary_rows(results) -> list[dict[str, Any]]:
  """One row per model: the robustness figures and its flags."""
  rows = []
  for name, r in results["models"].items():
    n = r["victims"]

    def ci(rate, n=n):  # one model, one attack: only the victims vary
      low, high = stats.wilson_interval(int(round(rate * n)), n)
      return f"[{100 * low:.0f}, {100 * high:.0f}]"

    row = {"variant": name, "data": r["data"], "clean not stop": r["clean"]}
    for key, c in r["budgets"].items():
      row[f"{key} @max"] = c["success"][-1]
      row[f"{key} 95% CI"] = ci(c["success"][-1])
    row["pgd_linf @max, EOT"] = r["budgets"]["pgd_linf"]["eot_success"][-1]
    p = r["physical"]
    row["sticker"] = r["sticker"]
    row["sticker 95% CI"] = ci(r["sticker"])
    row["sticker, EOT"] = r["sticker_eot"]
    for axis, where in (("angle", "max angle"), ("distance", "min px")):
      row[f"sticker / clean @{where}"] = (
          f"{p[f'perturbed_{axis}'][-1]:.0%} / {p[f'clean_{axis}'][-1]:.0%}")
    row["flags"] = "; ".join(r["flags"]) or "none"
    rows.append(row)
  return rows


def robustness_blocks(results, figures, rc) -> list[Any]:
  """Report blocks: the summary table, the checks, the figures."""
  rows = summary_rows(results)
  columns = list(rows[0])
  fmt = {c: ".0%" for c in columns if c not in ("variant", "data", "flags")
         and "/" not in c and "CI" not in c}
  any_model = next(iter(results["models"].values()))
  blocks = [
      R.Paragraph(
          "Victims: stop signs; success = perturbed victim not classified as "
          "stop. Budget attacks act inside the sticker mask (PGD "
          f"{rc.pgd_steps} steps with a random start; Square Attack "
          f"{rc.square_queries} queries, no gradient); '@max' is the largest "
          f"budget (linf {float(rc.linf_budgets[-1]):g}, "
          f"L2 {float(rc.l2_budgets[-1]):g}); EOT = "
          f"{rc.eot_samples} fresh physical transforms per image. The "
          "sticker columns are the physical RP2 sticker (the authors' own "
          "on the real victims) as it is, under EOT, and (beside the clean "
          "victims' rate) at the largest "
          f"angle ({float(rc.angles[-1]):g} degrees) and at "
          f"the smallest size ({int(rc.distances[-1])}"
          f" px). Checks allow one victim of slack ({any_model['victims']} "
          "victims)."),
      R.Table(columns, [[r[c] for c in columns] for r in rows],
              caption="Robustness per model", formats=fmt),
  ]
  check_rows = []
  for name, r in results["models"].items():
    for c in r["checks"]:
      check_rows.append([name, c["check"], "pass" if c["passed"] else "FLAG",
                         c["detail"]])
  blocks.append(R.Table(["variant", "check", "result", "numbers"], check_rows,
                        caption="The checklist, per model"))
  blocks += figures
  return blocks


def robustness_text(results) -> str:
  lines = [f"  {'variant':12s} {'data':9s} {'flags'}"]
  for name, r in results["models"].items():
    lines.append(f"  {name:12s} {r['data']:9s} "
                 f"{'; '.join(r['flags']) or 'none'}")
  return "\n".join(lines)


def _fmt_pct(x) -> str:
  return "  n/a" if x is None else f"{x:.1%}"


def table1_text(rows) -> str:
  lines = [f"  {'data':9s} {'variant':22s} {'acc':>6s} {'changed':>8s} "
           f"{'not stop':>8s} {'slides':>13s}"]
  for r in rows:
    slides = (f"{r['slides_accuracy']:.0%}/{r['slides_attack_success_rate']:.1%}"
              if "slides_accuracy" in r else "")
    lines.append(f"  {r['dataset']:9s} {r['variant']:22s} "
                 f"{r['accuracy']:6.1%} {r['attack_success_rate']:8.1%} "
                 f"{r['misclassification_rate']:8.1%} {slides:>13s}")
  return "\n".join(lines)


def table2_text(rows) -> str:
  return "\n".join(
      f"  {r['dataset']:9s} {r['variant']:10s} acc "
      f"{_fmt_pct(r['legit_acc'])} avg {r['avg_success']:.1%} worst "
      f"{r['worst_success']:.1%} L2 {r['l2_distortion']:.3f}" for r in rows)


def load_results(workdir: epath.PathLike
                 ) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
  """The config and every JSON result of a finished study run."""
  workdir = Path(workdir)
  config = ml_collections.ConfigDict(read_json(workdir / "config.json",
                                               "study config"))
  results = {key: read_json(workdir / name, f"{key} results")
             for key, name in RESULT_FILES.items()
             if key not in OPTIONAL or (workdir / name).exists()}
  # Figures are stored relative to the workdir, so a moved run renders.
  results["study"]["figures"] = {
      section: [(str(workdir / p), c) for p, c in items]
      for section, items in results["study"]["figures"].items()}
  return config, results


def render(workdir: epath.PathLike) -> Path:
  """Writes WORKDIR/report/index.html and report.md; returns report.md.
  In a multi-process run process 0 alone renders (the others return the
  path at once and wait at the stage's barrier)."""
  if not distributed.is_writer():
    return Path(workdir) / "report" / "report.md"
  config, results = load_results(workdir)
  md, _ = R.write_report(Path(workdir) / "report", "BlurNet reproduction",
                         study_blocks(config, results))
  return md


def write_robustness_report(workdir: epath.PathLike, config, results,
                            figures: list[tuple[str, str]]) -> Path:
  """WORKDIR/robustness_report/ of `launch.robustness` (process 0 only)."""
  if not distributed.is_writer():
    return Path(workdir) / "robustness_report" / "report.md"
  md, _ = R.write_report(
      Path(workdir) / "robustness_report", "Robustness checklist",
      robustness_blocks(results, [R.Figure(p, c) for p, c in figures],
                        config.robustness) + [
          R.Heading("Config"),
          R.Code(json.dumps(config.to_dict(), indent=2), "json")])
  return md
