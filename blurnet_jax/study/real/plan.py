"""The plan of a decisive real study, read from a finished one (the pilot):
what each claim's paired difference varies with, and which design brings
every 95% interval under half the slides' cut scaled to the measured
baseline within the time budget.

  plan = plan_from(config, rows, seconds)   # plan.json

The variance components of each defended row's per-cell differences
(`stats.variance_components`: between replicates, between signs, between
frames of one sign) give the half-width a design of F folds x s seeds x f
frames per sign would reach (`stats.predicted_half_width`); the pilot's
own seconds per trained member and per attacked victim give its minutes.
A claim whose pilot interval already lies wholly on one side of half the
cut is decided: more data cannot move its verdict's side. The plan picks
the cheapest design whose predicted half-widths put every open claim
under its target within `BUDGET_MINUTES`; where none does, the one that
meets the most, then the narrowest, and says which claims stay open.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from blurnet_jax import stats

#: The time one decisive run may take on the machine the pilot ran on.
BUDGET_MINUTES = 60.0
#: The designs weighed: folds, seeds per fold, frames per held-out sign.
FOLDS = (5, 10)
SEEDS = (1, 2, 3)
FRAMES = (2, 4, 8)


def _differences(base: dict[str, Any], row: dict[str, Any]) -> np.ndarray:
  """(members, victims, targets) per-cell differences, row minus base."""
  a = np.asarray(base["outcomes"], np.float64).transpose(0, 2, 1)
  b = np.asarray(row["outcomes"], np.float64).transpose(0, 2, 1)
  return b - a


def claims(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Each defended row with a claim: its components, target half-width
  (half the slides' cut scaled to its baseline) and pilot figures."""
  out = []
  for r in rows:
    d = r.get("vs_baseline")
    if d is None or d.get("expected_difference") in (None, 0.0):
      continue
    base = next(b for b in rows if b["dataset"] == r["dataset"]
                and b["variant"] == "baseline")
    tracks = None if r.get("tracks") is None else np.asarray(r["tracks"])
    components = stats.variance_components(_differences(base, r), tracks)
    if components["signs"] < 2:  # too few counted signs to plan from
      continue
    out.append({"dataset": r["dataset"], "variant": r["variant"],
                "target": abs(d["expected_difference"]) / 2,
                "pilot": {"difference": d["difference"],
                          "ci_low": d["ci_low"], "ci_high": d["ci_high"],
                          "half_width": (d["ci_high"] - d["ci_low"]) / 2},
                "components": components})
  return out


def _minutes(pilot: dict[str, float], folds: int, seeds: int, frames: int,
             signs: int) -> float:
  """Minutes of a design, from the pilot's seconds per trained member and
  per attacked (member, victim)."""
  members = pilot["variants"] * folds * seeds
  attacked = pilot["variants"] * seeds * (signs * frames + pilot[
      "crossed_victims"] * folds)
  return (members * pilot["train_member_s"]
          + attacked * pilot["attack_victim_s"]) / 60


def pilot_costs(config, rows, seconds, victims: dict[str, Any]
                ) -> dict[str, float]:
  """The pilot's seconds per trained member and per attacked victim."""
  variants = len({r["variant"] for r in rows})
  folds = max(1, int(config.real.get("folds", 0)))
  seeds = len(config.real.seeds)
  crossed = sum(v["victims"] for k, v in victims.items() if k != "held_out")
  held = victims.get("held_out", {}).get("victims", 0)
  attacked = variants * seeds * (held + crossed * folds)
  return {"variants": variants, "crossed_victims": crossed,
          "train_member_s": seconds.get("train", 0.0) / (
              variants * folds * seeds),
          "attack_victim_s": seconds.get("table2", 0.0) / max(1, attacked)}


def plan_from(config, rows: list[dict[str, Any]], seconds: dict[str, float],
              victims: dict[str, Any]) -> dict[str, Any]:
  """plan.json: every claim's components and target, the designs weighed
  with their predicted half-widths and minutes, and the one chosen."""
  found = claims(rows)
  pilot = pilot_costs(config, rows, seconds, victims)
  signs = int(victims.get("held_out", {}).get("tracks") or 0)
  designs = []
  for folds, seeds, frames in itertools.product(FOLDS, SEEDS, FRAMES):
    halves = {}
    for c in found:
      comp = c["components"]
      crossed = not c["dataset"].endswith("held_out")
      halves[f"{c['dataset']} / {c['variant']}"] = stats.predicted_half_width(
          comp, replicates=folds * seeds,
          signs=comp["signs"] if crossed else signs or comp["signs"],
          frames_per_sign=folds * seeds if crossed else seeds * frames)
    designs.append({"folds": folds, "seeds": seeds, "frames_per_sign": frames,
                    "minutes": round(_minutes(pilot, folds, seeds, frames,
                                              signs), 1),
                    "half_widths": halves})
  # The claims the pilot left open decide the design; every claim's
  # target counts where none is open.
  still_open = [c for c in found if not _decided(c)]
  weighed = still_open or found
  ratios = lambda d: [d["half_widths"][f"{c['dataset']} / {c['variant']}"]
                      / c["target"] for c in weighed]
  for d in designs:
    d["meets_targets"] = all(r < 1 for r in ratios(d))
  fits = [d for d in designs if d["minutes"] <= BUDGET_MINUTES]
  chosen = min((d for d in fits if d["meets_targets"]),
               key=lambda d: d["minutes"], default=None)
  if chosen is None and fits:  # the closest: most met, then the narrowest
    chosen = min(fits, key=lambda d: (-sum(r < 1 for r in ratios(d)),
                                      sum(ratios(d)), d["minutes"]))
  return {"budget_minutes": BUDGET_MINUTES, "pilot": pilot,
          "claims": found, "designs": designs, "chosen": chosen,
          "open": [f"{c['dataset']} / {c['variant']}" for c in still_open],
          "decided_by_pilot": [f"{c['dataset']} / {c['variant']}"
                               for c in found if _decided(c)]}


def _decided(claim: dict[str, Any]) -> bool:
  """Whether the pilot's interval already lies wholly on one side of half
  the slides' cut (a fall: -target): below it the claim is supported (if
  it also excludes zero, which it then does), above it contradicted."""
  p, half = claim["pilot"], -claim["target"]
  return bool(p["ci_high"] < half or p["ci_low"] > half)


def plan_text(plan: dict[str, Any]) -> str:
  """The plan in a few lines (printed by the stage)."""
  lines = [f"plan (budget {plan['budget_minutes']:g} min; pilot "
           f"{plan['pilot']['train_member_s']:.0f} s per trained member, "
           f"{plan['pilot']['attack_victim_s']:.2f} s per attacked victim):"]
  for c in plan["claims"]:
    p = c["pilot"]
    lines.append(f"  {c['dataset']} / {c['variant']}: pilot "
                 f"{100 * p['difference']:+.1f} [{100 * p['ci_low']:+.1f}, "
                 f"{100 * p['ci_high']:+.1f}], target half-width "
                 f"{100 * c['target']:.1f} points")
  if not plan["claims"]:
    lines.append("  no claim has an effect to expect (no baseline is "
                 "fooled): nothing to plan")
    return "\n".join(lines)
  d = plan["chosen"]
  if d is None:
    lines.append("  no design fits the budget")
    return "\n".join(lines)
  lines.append("  open after this run: " + (", ".join(plan["open"])
                                              or "none (every claim decided)"))
  verb = "meets every open claim's target" if d["meets_targets"] else (
      "is the closest within the budget (targets not all met)")
  lines.append(f"  chosen: {d['folds']} folds x {d['seeds']} seed(s) x "
               f"{d['frames_per_sign']} frames per sign, "
               f"{d['minutes']:.0f} min predicted, {verb}:")
  for name, h in d["half_widths"].items():
    lines.append(f"    {name}: predicted half-width {100 * h:.1f} points"
                 + ("" if math.isfinite(h) else " (no spread measured)"))
  return "\n".join(lines)
