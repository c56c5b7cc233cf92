"""The robustness checklist's settings (the `robustness` block of
configs/robustness.py), read and checked: budgets, the reference budget,
the steps curve, the physical bench's viewpoints and the attack configs.
A wrong value is one clear error before any attack runs."""

from __future__ import annotations

import math
from typing import Any

from blurnet_jax.attacks import pgd
from blurnet_jax.attacks import square
from blurnet_jax.classes import IMAGE_SHAPE

ATTACKS = ("pgd", "square")
NORMS = pgd.NORMS
UNBOUNDED = {"linf": 1.0, "l2": math.sqrt(math.prod(IMAGE_SHAPE))}


def _values(values, name: str, cast, valid, what: str) -> list:
  """The values of a tuple setting, each `cast` and `valid`."""
  if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
    values = (values,)
  try:
    out = [cast(v) for v in values]
  except (TypeError, ValueError):
    out = []
  if not out or not all(valid(v) for v in out):
    raise ValueError(f"robustness.{name}={values!r} must be a tuple of "
                     f"{what}")
  return out


def _floats(values, name: str) -> list[float]:
  return _values(values, name, float, lambda v: math.isfinite(v) and v >= 0,
                 "numbers >= 0, e.g. (0.1, 0.25, 1.0)")


def _ints(values, name: str, lo: int, hi: int) -> list[int]:
  return _values(values, name, int, lambda v: lo <= v <= hi,
                 f"integers in {lo}..{hi}")


def attack_configs(rc) -> dict[str, Any]:
  """The PGD / Square configs of a robustness block, by 'attack_norm'."""
  out = {}
  for norm in NORMS:
    for attack in ATTACKS:
      out[f"{attack}_{norm}"] = (
          pgd.PGDConfig(norm=norm, steps=int(rc.pgd_steps))
          if attack == "pgd" else square.SquareConfig(
              norm=norm, queries=int(rc.square_queries),
              p_init=float(rc.square_p_init)))
  return out


def settings(rc) -> tuple[dict[str, list[float]], float, list[int]]:
  """The budgets, reference budget and steps of `rc`, checked."""
  budgets = {"linf": _floats(rc.linf_budgets, "linf_budgets"),
             "l2": _floats(rc.l2_budgets, "l2_budgets")}
  reference = float(rc.reference_linf)
  if reference not in budgets["linf"]:
    raise ValueError(f"robustness.reference_linf={reference:g} is not one of "
                     f"linf_budgets {budgets['linf']}; add it there")
  steps = _ints(rc.steps_curve, "steps_curve", 1, 100000)
  physical_settings(rc)  # before the long part: a typo fails at once
  return budgets, reference, steps


def physical_settings(rc) -> tuple[list[float], list[int]]:
  """The viewing angles (degrees, below 90) and distances (sign width in
  pixels) of the physical bench, checked."""
  angles = _floats(rc.angles, "angles")
  if any(a >= 90 for a in angles):
    raise ValueError(f"robustness.angles={rc.angles!r} must be below 90")
  return angles, _ints(rc.distances, "distances", 1, IMAGE_SHAPE[0])
