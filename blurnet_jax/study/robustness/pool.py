"""The robustness checklist's figures of one model: its members' per-victim
outcomes (`measure.measure`, one per seed or attack key) pooled into rates
with 95% intervals (`evaluation.rates`, the one pooler), the JSON-ready
result the checks read."""

from __future__ import annotations

from typing import Any

import numpy as np

from blurnet_jax.study.evaluation import rates as _rate
from blurnet_jax.study.robustness.settings import (UNBOUNDED,
                                                   physical_settings,
                                                   settings)


def pool_members(measured: list[dict[str, Any]], rc) -> dict[str, Any]:
  """The checklist's figures of one model from its members' `measure`
  results (seeds of a trained variant, or attack keys on one model): each
  rate the mean over members and victims with 'ci_low'/'ci_high' beside
  it; the gradient check the worst member's."""
  budgets, reference, steps = settings(rc)
  angles, distances = physical_settings(rc)
  trees = [m["outcomes"] for m in measured]
  stack = lambda get: np.stack([get(t) for t in trees])
  g = [m["gradients"] for m in measured]
  out: dict[str, Any] = {
      "victims": int(trees[0]["clean"].shape[-1]), "members": len(trees),
      "gradients": {"finite": min(v["finite"] for v in g),
                    "nonzero": min(v["nonzero"] for v in g),
                    "median_norm": float(np.median(
                        [v["median_norm"] for v in g]))}}
  for name in ("clean", "clean_eot", "sticker", "sticker_eot"):
    mean, low, high = _rate(stack(lambda t, n=name: t[n]))
    out |= {name: mean, f"{name}_ci_low": low, f"{name}_ci_high": high}
  out["budgets"], out["unbounded"] = {}, {}
  for name in trees[0]["budgets"]:
    norm = name.split("_")[1]
    c = {"budgets": budgets[norm]}
    for field in ("success", "eot_success"):
      mean, low, high = _rate(stack(lambda t, n=name, f=field:
                                    t["budgets"][n][f]))
      prefix = "" if field == "success" else "eot_"
      c |= {field: mean, f"{prefix}ci_low": low, f"{prefix}ci_high": high}
    out["budgets"][name] = c
  for norm in trees[0]["unbounded"]:
    mean, low, high = _rate(stack(lambda t, n=norm: t["unbounded"][n]))
    out["unbounded"][norm] = {"budget": UNBOUNDED[norm], "success": mean,
                              "ci_low": low, "ci_high": high}
  mean, low, high = _rate(stack(lambda t: t["steps"]))
  out["steps"] = {"norm": "linf", "budget": reference, "steps": steps,
                  "success": mean, "ci_low": low, "ci_high": high}
  out["physical"] = {"angles": angles, "distances": distances}
  for name in trees[0]["physical"]:
    mean, low, high = _rate(stack(lambda t, n=name: t["physical"][n]))
    out["physical"] |= {name: mean, f"{name}_ci_low": low,
                        f"{name}_ci_high": high}
  return out
