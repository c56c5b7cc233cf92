"""The robustness checklist's report blocks: a summary row per model, the
checks and their flags, the figures (the synthetic study's report and the
checklist study's own, `render`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import ml_collections

from blurnet_jax import distributed
from blurnet_jax import document as R
from blurnet_jax import plots
from blurnet_jax import stats
from blurnet_jax.jsonio import read_json


def summary_rows(results) -> list[dict[str, Any]]:
  """One row per model: the robustness figures and its flags."""
  rows = []
  for name, r in results["models"].items():
    def ci(c, i=None, prefix="", n=r["victims"]):
      """The JSON's interval of a rate; for a file written before rates
      carried one (one member), the Wilson interval over the victims."""
      if f"{prefix}ci_low" in c:
        low, high = c[f"{prefix}ci_low"], c[f"{prefix}ci_high"]
        if i is not None:
          low, high = low[i], high[i]
      else:
        rate = c[prefix.rstrip("_") or "success"]
        rate = rate if i is None else rate[i]
        low, high = stats.wilson_interval(int(round(rate * n)), n)
      return f"[{100 * low:.0f}, {100 * high:.0f}]"

    row = {"variant": name, "data": r["data"], "members": r.get("members", 1),
           "clean not stop": r["clean"]}
    for key, c in r["budgets"].items():
      row[f"{key} @max"] = c["success"][-1]
      row[f"{key} 95% CI"] = ci(c, -1)
    row["pgd_linf @max, EOT"] = r["budgets"]["pgd_linf"]["eot_success"][-1]
    p = r["physical"]
    row["sticker"] = r["sticker"]
    row["sticker 95% CI"] = ci(r, prefix="sticker_")
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
  fmt = {c: ".0%" for c in columns
         if c not in ("variant", "data", "members", "flags")
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
          "victims). 'members': the seeds of the model measured (member j "
          "attacked with key j; on the RP2 model, attack keys); each rate "
          "is their mean with a 95% interval (Wilson over victims for one "
          "member, else the two-way t over members and victims)."),
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


def render(workdir: str | os.PathLike[str]) -> Path:
  """The checklist's WORKDIR/report/ again from its saved config.json and
  robustness.json (the figures drawn into WORKDIR/figures; process 0
  only)."""
  workdir = Path(workdir)
  if not distributed.is_writer():
    return workdir / "report" / "report.md"
  config = ml_collections.ConfigDict(read_json(workdir / "config.json",
                                               "study config"))
  results = read_json(workdir / "robustness.json", "robustness results")
  figures = plots.robustness_figures(results, workdir / "figures")
  md, _ = R.write_report(
      workdir / "report", "Robustness checklist",
      robustness_blocks(results, [R.Figure(p, c) for p, c in figures],
                        config.robustness) + [
          R.Heading("Config"),
          R.Code(json.dumps(config.to_dict(), indent=2), "json")])
  return md
