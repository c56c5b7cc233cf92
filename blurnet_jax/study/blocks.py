"""Report blocks shared by the study reports (the synthetic study's
`report` and the real-data study's `real_report`): the findings, Table 2
and figures, from JSON-able rows."""

from __future__ import annotations

from typing import Any

from blurnet_jax import document as R
from blurnet_jax.study.claims import findings as findings_lib


def findings_blocks(entries) -> list[Any]:
  """The report's opening: one paragraph per claim of the slides."""
  if entries is None:
    return [not_run("findings.json")]
  counts = findings_lib.summary_counts(entries)
  return [R.Paragraph(
      "One paragraph per claim of the slides: the verdict, the figures with "
      "95% intervals, the data and what remains confounded. Verdicts: "
      "supported when the interval of the paired difference excludes zero in "
      "the slides' direction and the effect is at least half the one the "
      "slides imply; contradicted when it excludes zero the other way or "
      "excludes half that effect; inconclusive otherwise (the effect the "
      "slides imply: Table 1, their difference; Table 2, their relative cut "
      "of the baseline's success applied to the baseline measured here, "
      "e.g. 49.2% to 24.1% is -51%, -8.7 points on a 17% baseline); "
      "undertrained when a model "
      "behind it is below 90% test accuracy; not in effect when the defence "
      "did not act on the first layer's maps (or cost more than 2 points of "
      "clean accuracy). Intervals: Wilson where only "
      "victims vary (Table 1, one model); a two-way t-interval over seeds "
      "and victims elsewhere (Table 2: per-victim outcomes averaged over "
      "targets, seed i of every variant attacked with the same key); paired "
      "tests are exact McNemar on the discordant (seed, victim, target) "
      "cells. Counts: " + ", ".join(f"{k} {v}" for k, v in counts.items())
      + ".")] + [R.Paragraph(findings_lib.text(e)) for e in entries]


def not_run(filename: str) -> R.Paragraph:
  return R.Paragraph(f"Not in this run: {filename} is missing "
                     "(the stage has not finished).")


def not_run_stage(stage: str) -> R.Paragraph:
  """`not_run` of a stage's results file (STAGE.json)."""
  return not_run(f"{stage}.json")


def fmt_pct(x) -> str:
  """A share as '12.3%' ('  n/a' for None), for the console tables."""
  return "  n/a" if x is None else f"{x:.1%}"


def figures_of(figures: dict[str, list], section: str) -> list[R.Figure]:
  return [R.Figure(p, c) for p, c in figures.get(section, [])]


def pct(x):
  return None if x is None else 100.0 * x


def ci(r, key) -> str:
  """'[lo, hi]' in percent of `key`'s interval in row `r`, '' if none."""
  lo, hi = r.get(f"{key}_ci_low"), r.get(f"{key}_ci_high")
  return "" if lo is None or lo != lo else f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def table2_block(rows, caption) -> R.Table:
  columns = ["variant", "data", "alpha", "seeds", "signs", "acc.", "95% CI",
             "slides acc.", "avg success", "95% CI ", "slides avg",
             "worst success", "95% CI  ", "slides worst", "L2", "slides L2",
             "vs baseline [95% CI]", "p", "verdict"]
  out = []
  for r in rows:
    d = r.get("vs_baseline")
    out.append([
        r["variant"], r["dataset"], r["alpha"], r.get("n_seeds", 1),
        r.get("n_signs_counted", r.get("n_counted")),
        100 * r["legit_acc"], ci(r, "legit_acc"),
        pct(r.get("slides_legit_acc")), pct(r["avg_success"]),
        ci(r, "avg_success"), pct(r.get("slides_avg_success")),
        pct(r["worst_success"]), ci(r, "worst_success"),
        pct(r.get("slides_worst_success")), r["l2_distortion"],
        r.get("slides_l2_distortion"),
        "" if d is None or d["difference"] is None else (
            f"{100 * d['difference']:+.1f} [{100 * d['ci_low']:+.1f}, "
            f"{100 * d['ci_high']:+.1f}]"),
        None if d is None else d["p_value"],
        r.get("verdict", {}).get("verdict", "")])
  fmt = {"alpha": "g", "acc.": ".1f", "slides acc.": ".1f",
         "avg success": ".1f", "slides avg": ".1f", "worst success": ".1f",
         "slides worst": ".1f", "L2": ".3f", "slides L2": ".3f",
         "p": ".2g"}
  return R.Table(columns, out, caption=caption, formats=fmt)
