"""The checks of every evaluation, defined once: the robustness
checklist's on one model's pooled figures (`checklist_checks`) and the
defence study's on one defence row (`defence_checks`). Each check passes
or fails with the numbers behind it; a failed check is a flag (`flags`).
One victim of slack: the attacks start at random points, so two runs can
differ by a victim without anything being wrong."""

from __future__ import annotations

from typing import Any

import numpy as np

from blurnet_jax.study.robustness.settings import NORMS

#: Clean accuracy below this flags a defence (Table 2's rule: a model
#: below it is undertrained, or the defence costs too much to deploy).
MIN_CLEAN_ACCURACY = 0.90
#: A stop bias flagged: at least this share of the other classes' test
#: images read as stop, and at least `STOP_BIAS_FACTOR` times the
#: baseline's share.
STOP_BIAS_SHARE = 0.05
STOP_BIAS_FACTOR = 2.0




def no_stronger(strong: float, weak: float, slack: float) -> bool:
  """Whether `strong` exceeds `weak` by at most `slack` (one victim), the
  rule of every 'must not beat' and 'must not fall' check."""
  return bool(strong - weak <= slack + 1e-9)


def flags(rows: list[dict[str, Any]]) -> list[str]:
  """The names of the failed checks."""
  return [c["check"] for c in rows if not c["passed"]]


def _drops(values: list[float]) -> float:
  """The largest fall from one point of a curve to any later point."""
  worst = 0.0
  for i, v in enumerate(values):
    for later in values[i + 1:]:
      worst = max(worst, v - later)
  return worst


def transfer_gaps(names: list[str], matrix: list[list[float]]
                  ) -> dict[str, dict[str, Any]]:
  """Per model j of a transfer matrix (`robustness.attacks.transfer_matrix`
  between `names`): its white-box rate M[j][j] and the best rate that
  transfers to it from another model, what the check 'white-box >=
  transfer' reads. Empty with a single model."""
  if len(names) < 2:
    return {}
  out = {}
  for j, name in enumerate(names):
    others = [(matrix[i][j], names[i]) for i in range(len(names)) if i != j]
    best, source = max(others)
    out[name] = {"white_box": matrix[j][j], "best_transfer": best,
                 "best_source": source}
  return out


def checklist_checks(result: dict[str, Any], slack: float
                     ) -> list[dict[str, Any]]:
  """The robustness checklist on one model's pooled figures
  (`robustness.pool.pool_members`, with 'transfer' added).

  Returns one row per check: 'check', 'passed' (bool), 'detail' (the
  numbers behind it). `slack` is the tolerated difference (one victim).
  """
  rows = []
  g = result["gradients"]
  rows.append({"check": "gradients finite and non-zero",
               "passed": g["finite"] == 1.0 and g["nonzero"] == 1.0,
               "detail": f"finite {g['finite']:.0%}, non-zero "
                         f"{g['nonzero']:.0%} of victims, median norm "
                         f"{g['median_norm']:.3g}"})
  u = result["unbounded"]
  rows.append({"check": "unbounded attacks reach 100%",
               "passed": all(v["success"] == 1.0 for v in u.values()),
               "detail": ", ".join(f"PGD {n} eps {v['budget']:.3g}: "
                                   f"{v['success']:.0%}"
                                   for n, v in u.items())})
  for name, c in result["budgets"].items():
    drop = _drops(c["success"])
    rows.append({"check": f"{name} success grows with the budget",
                 "passed": no_stronger(drop, 0.0, slack),
                 "detail": f"largest fall {drop:.1%}; " + ", ".join(
                     f"{b:g}: {s:.0%}" for b, s in zip(c["budgets"],
                                                       c["success"]))})
  s = result["steps"]
  drop = _drops(s["success"])
  rows.append({"check": "PGD success grows with the steps",
               "passed": no_stronger(drop, 0.0, slack),
               "detail": f"largest fall {drop:.1%}; " + ", ".join(
                   f"{n}: {v:.0%}" for n, v in zip(s["steps"],
                                                   s["success"]))})
  for norm in NORMS:
    p, q = result["budgets"][f"pgd_{norm}"], result["budgets"][f"square_{norm}"]
    over = [(b, qs - ps) for b, ps, qs in zip(p["budgets"], p["success"],
                                              q["success"])]
    worst_b, worst = max(over, key=lambda t: t[1])
    rows.append({"check": f"gradient-free <= gradient-based ({norm})",
                 "passed": no_stronger(worst, 0.0, slack),
                 "detail": f"Square - PGD at most {worst:+.1%} (budget "
                           f"{worst_b:g})"})
  if "transfer" in result:
    for kind, t in result["transfer"].items():
      gap = t["best_transfer"] - t["white_box"]
      rows.append({"check": f"white-box >= transfer ({kind})",
                   "passed": no_stronger(gap, 0.0, slack),
                   "detail": f"white-box {t['white_box']:.0%}, best "
                             f"transfer {t['best_transfer']:.0%} (from "
                             f"{t['best_source']})"})
  return rows


def defence_checks(row: dict[str, Any], baseline: dict[str, Any]
                   ) -> list[dict[str, Any]]:
  """The checks of one defence study row (one victim of slack, as in
  the checklist): the adaptive attack must not beat the naive one
  (else the naive evaluation overstated the defence), the gradient-free
  Square must not beat masked PGD (gradient masking), the baseline's
  transferred stickers must not beat the white-box attack, the clean
  accuracy must reach `MIN_CLEAN_ACCURACY`, and the defence must not read
  other classes as stop far more often than the `baseline` row does (a
  stop bias makes stop victims look robust)."""
  slack = 1.0 / row["victims"]
  share, base = row["false_stop"]["mean"], baseline["false_stop"]["mean"]
  accuracy = row["clean_accuracy"]["mean"]
  out = [{"check": f"clean accuracy at least {MIN_CLEAN_ACCURACY:.0%}",
          "passed": bool(accuracy >= MIN_CLEAN_ACCURACY),
          "detail": f"clean accuracy {accuracy:.1%} (undertrained, or a "
                    "defence too costly to deploy, below it)"},
         {"check": "no stop bias",
          "passed": not (share >= STOP_BIAS_SHARE
                         and share >= STOP_BIAS_FACTOR * base),
          "detail": f"other classes read as stop: {share:.1%} (baseline "
                    f"{base:.1%})"}]
  if row.get("adaptive_raises") is not None:
    d = row["adaptive_vs_naive"]
    out.append({"check": "adaptive attack no stronger than naive",
                "passed": not row["adaptive_raises"],
                "detail": f"adaptive - naive RP2 success "
                          f"{100 * d['difference']:+.1f} points "
                          f"[{100 * d['ci_low']:+.1f}, "
                          f"{100 * d['ci_high']:+.1f}]"})
  for name, strong, weak in (
      ("Square no stronger than PGD", "square_success", "pgd_success"),
      ("transfer no stronger than white-box", "transfer_success",
       "rp2_success")):
    if strong in row and np.isfinite(row[strong]["mean"]):
      s, w = row[strong]["mean"], row[weak]["mean"]
      out.append({"check": name, "passed": no_stronger(s, w, slack),
                  "detail": f"{strong} {s:.0%}, {weak} {w:.0%}"})
  return out
