"""The defence study's report, from defences.json (`study.defence_stages`):
the robustness table, the paired differences, the checklist, the scatter of
clean accuracy against white-box success, and a reading of them that says
which defence to pick within what the intervals allow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_collections

from blurnet_jax import distributed
from blurnet_jax import document as R
from blurnet_jax import plots
from blurnet_jax.data import sources
from blurnet_jax.jsonio import read_json

#: The table's rates: (row key, column title).
RATES = (("clean_accuracy", "clean acc."), ("false_stop", "read as stop"),
         ("rp2_success", "RP2"), ("pgd_success", "PGD"),
         ("square_success", "Square"), ("roa_success", "ROA"),
         ("any_success", "any attack"), ("certified", "certified"),
         ("transfer_success", "transfer"), ("naive_rp2_success",
                                            "naive RP2"))
#: The paired rates, as `defence_eval.COMPARED`.
PAIRED = (("clean_accuracy", "clean acc."), ("false_stop", "read as stop"),
          ("rp2_success", "RP2"), ("pgd_success", "PGD"),
          ("square_success", "Square"), ("roa_success", "ROA"),
          ("any_success", "any attack"))


def rate(r: dict[str, Any] | None) -> str:
  """'m [lo, hi]' in percent, '' for a rate the row lacks."""
  if not r or r.get("mean") is None or r["mean"] != r["mean"]:
    return ""
  return (f"{100 * r['mean']:.1f} [{100 * r['ci_low']:.1f}, "
          f"{100 * r['ci_high']:.1f}]")


def diff(d: dict[str, Any] | None) -> str:
  """'+d [lo, hi]' points of a paired difference, '' for none."""
  if not d or d.get("difference") is None or d["difference"] != d[
      "difference"]:
    return ""
  return (f"{100 * d['difference']:+.1f} [{100 * d['ci_low']:+.1f}, "
          f"{100 * d['ci_high']:+.1f}]")


def cost(row: dict[str, Any]) -> str:
  c = row["train"]["cost"]
  return "" if c is None else f"{c:.2f}x"


def table_block(results: dict[str, Any]) -> R.Table:
  columns = (["defence", "trained as"] + [t for _, t in RATES]
             + ["train cost", "flags"])
  rows = [[r["defence"], r["train"]["trained_as"]]
          + [rate(r.get(k)) for k, _ in RATES]
          + [cost(r), "; ".join(r["flags"]) or "none"]
          for r in results["rows"]]
  return R.Table(columns, rows, caption=(
      "Each rate in % with its 95% interval over seeds and victims. clean "
      "acc.: held-out test split; read as stop: its other classes' images "
      "the defence reads as stop (a stop bias flatters every success rate "
      "below). RP2, PGD, Square, ROA: success of each "
      "attack made through the defence's own mechanism (BPDA through input "
      "transformations, the soft vote of column smoothing); any attack: "
      "victims moved by at least one of them (the per-victim worst case); "
      "certified: "
      "victims whose class no patch as wide as the sticker can change; "
      "transfer: the baseline's RP2 stickers shown to the defence; naive "
      "RP2: the attack that ignores the mechanism; train cost: training "
      "wall time as a multiple of the baseline's."))


def paired_block(results: dict[str, Any]) -> R.Table:
  ref = results["reference"]
  columns = ["defence"] + [f"{t} vs baseline" for _, t in PAIRED] + [
      f"{t} vs {ref}" for _, t in PAIRED]
  rows = []
  for r in results["rows"]:
    vb, vr = r.get("vs_baseline", {}), r.get("vs_reference", {})
    rows.append([r["defence"]] + [diff(vb.get(k)) for k, _ in PAIRED]
                + [diff(vr.get(k)) for k, _ in PAIRED])
  return R.Table(columns, rows, caption=(
      "Paired differences in points (defence minus other; the same seeds, "
      "victims, targets and attack keys), 95% intervals: against the "
      f"undefended baseline and against BlurNet ({ref})."))


def checks_block(results: dict[str, Any]) -> R.Table:
  rows = [[r["defence"], c["check"], "pass" if c["passed"] else "FLAG",
           c["detail"]] for r in results["rows"] for c in r["checks"]]
  return R.Table(["defence", "check", "result", "numbers"], rows, caption=(
      "The checklist per defence, one victim of slack: an adaptive attack "
      "stronger than the naive one flags an evaluation the naive attack "
      "would have flattered; Square beating PGD flags masked gradients; a "
      "transferred sticker beating the white-box one, a weak attack."))


def _num(x) -> float:
  """A figure of the results as a float: NaN where none was measured
  (NaN in memory, None once written to JSON)."""
  return float("nan") if x is None else float(x)


def _cut(r: dict[str, Any], key: str) -> bool:
  """Whether the paired difference against the baseline in `key` lies
  wholly below zero."""
  return _num(r["vs_baseline"][key]["ci_high"]) < 0


def _mcnemar_cut(r: dict[str, Any]) -> bool:
  """Whether the worst case fell against the baseline on the paired cells
  of these models (exact McNemar p < 0.05, fewer successes)."""
  d = r["vs_baseline"]["any_success"]
  return _num(d.get("p_value", 1.0)) < 0.05 and _num(d["difference"]) < 0


def _lowest(rows):
  """The row of the lowest measured worst case, ties to the fewer flags,
  then to the cheaper training (none measured: None)."""
  measured = [r for r in rows if _num(r["any_success"]["mean"]) ==
              _num(r["any_success"]["mean"])]
  return min(measured, key=lambda r: (_num(r["any_success"]["mean"]),
                                      len(r.get("flags", ())),
                                      _num(r["train"]["cost"] or 0)),
             default=None)


def _picked(cuts: list[dict[str, Any]]) -> str:
  """The sentence naming the defences whose worst-case cut excludes zero,
  and the lowest of them with its costs and flags."""
  pick = _lowest(cuts)
  vb = pick["vs_baseline"]
  return (
      "Defences whose paired cut of that worst case excludes zero: "
      f"{', '.join(r['defence'] for r in cuts)}. The lowest is "
      f"{pick['defence']}'s, {rate(pick['any_success'])}% "
      f"({diff(vb['any_success'])} points; RP2 "
      f"{diff(vb['rp2_success'])}), at {diff(vb['clean_accuracy'])} "
      f"points of clean accuracy and {cost(pick) or 'no extra'} the "
      "baseline's training time"
      + (f"; but it is flagged ({'; '.join(pick['flags'])})."
         if pick["flags"] else "."))


def _inconclusive(others: list[dict[str, Any]]) -> str:
  """No seed-level cut: the lowest point estimate, and the defences whose
  worst case falls on these models alone (exact McNemar)."""
  low = _lowest(others)
  out = ("No defence lowers the worst case below the baseline's with 95% "
         "confidence over training seeds at this size: inconclusive." + (
             "" if low is None else
             f" The lowest point estimate is {low['defence']}'s, "
             f"{rate(low['any_success'])}% "
             f"({diff(low['vs_baseline']['any_success'])} points)."))
  conditional = [r for r in others if _mcnemar_cut(r)]
  if conditional:
    out += (
        " On these trained models alone (exact McNemar test over the "
        "paired seed-victim cells, which does not generalise over "
        "training seeds), the worst case falls for " + ", ".join(
            f"{r['defence']} (p = "
            f"{r['vs_baseline']['any_success']['p_value']:.1g}; clean "
            f"accuracy {diff(r['vs_baseline']['clean_accuracy'])} "
            f"points, {cost(r) or 'no extra'} training"
            + (f"; flagged: {'; '.join(r['flags'])}" if r["flags"]
               else "") + ")"
            for r in conditional) + ".")
  return out


def _certificates(rows: list[dict[str, Any]]) -> list[str]:
  """A sentence per defence that reads no victim as stop, and per
  certifying defence its certified share and what bounds it."""
  out = []
  for r in rows:
    if not sum(r["victims_recognised"]):
      out.append(f"{r['defence']} reads none of the victims as stop: no "
                 "attack on it counts.")
    elif "certified" in r:
      reach = r.get("certificate")
      out.append(
          f"{r['defence']} certifies {rate(r['certified'])}% of the "
          "victims it recognises against a sticker-wide patch" + (
              "." if reach is None or reach["certifiable"] else (
                  f": the sticker spans {reach['patch_width']} columns and "
                  f"meets {reach['bands_met']} of the {reach['votes']} "
                  f"bands of {reach['band']}, more than half the votes, so "
                  "nothing can be certified.")))
  return out


def reading(results: dict[str, Any]) -> str:
  """One paragraph: which defences lower the per-victim worst case over
  the attacks ('any attack') below the baseline's with 95% confidence,
  which of those to pick (the lowest worst case, then the less flagged,
  then the cheaper), at
  what cost, and BlurNet beside it; 'inconclusive' where no interval
  decides. Flags (a stop bias, an adaptive attack beating the naive one)
  are named, since they qualify the pick."""
  rows = {r["defence"]: r for r in results["rows"]}
  base, ref = rows["baseline"], rows[results["reference"]]
  n = f"{base['victims']} victims x {len(base['seeds'])} seeds"
  others = [r for r in rows.values() if r is not base]
  cuts = [r for r in others if _cut(r, "any_success")]
  out = [f"On {results['source']} ({n}), the undefended baseline is moved "
         f"by at least one attack on {rate(base['any_success'])}% of the "
         f"victims (white-box RP2 alone: {rate(base['rp2_success'])}%).",
         _picked(cuts) if cuts else _inconclusive(others)]
  if ref is not base:
    vb, pick = ref["vs_baseline"], _lowest(cuts) if cuts else None
    out.append(f"BlurNet ({ref['defence']}) against the baseline: "
               f"{diff(vb['any_success'])} points of worst-case success, "
               f"{diff(vb['rp2_success'])} of RP2 success, "
               f"{diff(vb['clean_accuracy'])} of clean accuracy"
               + (f"; the pick against BlurNet: "
                  f"{diff(pick['vs_reference']['any_success'])}."
                  if pick is not None and pick is not ref else "."))
  out += _certificates(list(rows.values()))
  flagged = [f"{r['defence']} ({'; '.join(r['flags'])})"
             for r in rows.values() if r["flags"]]
  out.append("Checklist flags: " + (", ".join(flagged) if flagged
                                    else "none") + ".")
  return " ".join(out)


def defences_text(results: dict[str, Any]) -> str:
  """The console summary: a line per defence, then the reading."""
  lines = [f"  {'defence':14s} {'clean acc.':20s} {'RP2':20s} "
           f"{'any attack':20s} {'cost':>6s} flags"]
  for r in results["rows"]:
    lines.append(f"  {r['defence']:14s} {rate(r['clean_accuracy']):20s} "
                 f"{rate(r['rp2_success']):20s} "
                 f"{rate(r['any_success']):20s} {cost(r):>6s} "
                 f"{'; '.join(r['flags']) or 'none'}")
  return "\n".join(lines + ["", reading(results)])


def blocks(config, results: dict[str, Any], figdir: Path) -> list[Any]:
  """The report's blocks; the scatter is drawn into `figdir`."""
  d = results["defences"]
  scatter = plots.defence_scatter(
      d["rows"], figdir / "defences_scatter.png",
      title=f"{d['source']}: clean accuracy against white-box success, one "
            "point per defence and seed (95% intervals)")
  return [
      R.Heading("Reading"), R.Paragraph(reading(d)),
      R.Heading("Robustness per defence"), table_block(d),
      R.Figure(str(scatter), "Clean accuracy against adaptive white-box "
               "success (left: RP2; right: any attack, the per-victim worst "
               "case), one point per defence and training seed, with 95% "
               "intervals over the victims and the test images."),
      paired_block(d), checks_block(d),
      R.Heading("Data, victims and training"),
      *([R.Paragraph(f"Data: {sources.data_line(results['data'])}.")]
        if "data" in results else []),
      R.Paragraph(f"Victims: {d['victims']['description']}, "
                  f"{d['victims']['victims']} of "
                  f"{d['victims']['candidates']} candidates; targets "
                  f"{d['rows'][0]['targets']}."),
      R.Table(["defence", "seeds", "train seconds"],
              [[name, len(m["seeds"]), m.get("train_seconds")]
               for name, m in results["training"].items()],
              caption="Training wall seconds (compilation included)."),
      R.Heading("Config"),
      R.Code(json.dumps(config.to_dict(), indent=2), "json")]


def write_report(workdir: Path, config, results: dict[str, Any]) -> Path:
  """WORKDIR/report/ of the defence study (process 0 only)."""
  report_dir = Path(workdir) / "report"
  if not distributed.is_writer():
    return report_dir / "report.md"
  md, _ = R.write_report(
      report_dir, f"BlurNet beside other defences ({config.data.source})",
      blocks(config, results, Path(workdir) / "figures"))
  return md


def render(workdir) -> Path:
  """WORKDIR/report/ again from a defence study's saved config.json,
  defences.json and training.json (`launch.report`)."""
  workdir = Path(workdir)
  config = ml_collections.ConfigDict(read_json(workdir / "config.json",
                                               "study config"))
  results = {name: read_json(workdir / f"{name}.json", f"{name} results")
             for name in ("defences", "training", "data")
             if name != "data" or (workdir / "data.json").exists()}
  return write_report(workdir, config, results)
