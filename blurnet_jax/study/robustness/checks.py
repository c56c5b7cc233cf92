"""The robustness checklist's verdicts on one model's pooled figures
(`robustness_pool.pool_members`): each check passes or fails with the
numbers behind it; a failed check is a flag. One victim of slack: the
attacks start at random points, so two runs can differ by a victim
without anything being wrong."""

from __future__ import annotations

from typing import Any

from blurnet_jax.study.robustness.settings import NORMS


def _drops(values: list[float]) -> float:
  """The largest fall from one point of a curve to any later point."""
  worst = 0.0
  for i, v in enumerate(values):
    for later in values[i + 1:]:
      worst = max(worst, v - later)
  return worst


def transfer_gaps(names: list[str], matrix: list[list[float]]
                  ) -> dict[str, dict[str, Any]]:
  """Per model j of a transfer matrix (`robustness_attacks.transfer_matrix`
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


def checks(result: dict[str, Any], slack: float) -> list[dict[str, Any]]:
  """The checklist on one model's `robustness.evaluate_model` result.

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
                 "passed": drop <= slack + 1e-9,
                 "detail": f"largest fall {drop:.1%}; " + ", ".join(
                     f"{b:g}: {s:.0%}" for b, s in zip(c["budgets"],
                                                       c["success"]))})
  s = result["steps"]
  drop = _drops(s["success"])
  rows.append({"check": "PGD success grows with the steps",
               "passed": drop <= slack + 1e-9,
               "detail": f"largest fall {drop:.1%}; " + ", ".join(
                   f"{n}: {v:.0%}" for n, v in zip(s["steps"],
                                                   s["success"]))})
  for norm in NORMS:
    p, q = result["budgets"][f"pgd_{norm}"], result["budgets"][f"square_{norm}"]
    over = [(b, qs - ps) for b, ps, qs in zip(p["budgets"], p["success"],
                                              q["success"])]
    worst_b, worst = max(over, key=lambda t: t[1])
    rows.append({"check": f"gradient-free <= gradient-based ({norm})",
                 "passed": worst <= slack + 1e-9,
                 "detail": f"Square - PGD at most {worst:+.1%} (budget "
                           f"{worst_b:g})"})
  if "transfer" in result:
    for kind, t in result["transfer"].items():
      gap = t["best_transfer"] - t["white_box"]
      rows.append({"check": f"white-box >= transfer ({kind})",
                   "passed": gap <= slack + 1e-9,
                   "detail": f"white-box {t['white_box']:.0%}, best "
                             f"transfer {t['best_transfer']:.0%} (from "
                             f"{t['best_source']})"})
  return rows
