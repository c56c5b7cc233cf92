"""Uncertainty for the study's figures: intervals, paired tests, verdicts.

The study's outcomes are binary (a victim classified as stop or not, an
attack that moved a victim or not) on a few dozen victims, repeated over a
few training seeds (and attack keys). Three tools:

* `wilson_interval(k, n)`: the 95% Wilson score interval of a proportion,
  for a figure where only the victims vary (one model, one attack);
* `interval(outcomes)`: the mean of outcomes shaped (seeds, victims)
  (more axes, e.g. targets or attack keys, are averaged per victim first)
  and a two-way t-interval whose variance has a seed part and a victim
  part, so that both sources of variation are in it;
* `paired_difference(a, b)`: the difference of two such arrays measured on
  the same victims, targets and attack keys, with the same interval on the
  per-cell differences and an exact McNemar test on the discordant
  (seed, victim, ...) cells;

and `verdict`, which reads a paired difference against a claim of the
slides. A NaN outcome is a cell that does not count (a victim the model
misclassifies before any attack, which the slides leave out of the
success rate): means and intervals run over the cells that count, and a
paired difference over the cells that count in both arms. All are deterministic; `tests/test_stats.py` checks by simulation
that the nominal 95% intervals cover the truth at least 90% of the time in
experiments shaped like the study's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Two-sided 95%.
LEVEL = 0.95
Z95 = 1.959963984540054
VERDICTS = ("supported", "contradicted", "inconclusive", "undertrained",
            "not in effect")


def wilson_interval(k: int, n: int, *, z: float = Z95) -> tuple[float, float]:
  """The Wilson score interval of k successes in n trials (95% by default).

  For k = 8 of n = 40 (20%): (0.105, 0.348).
  """
  if n <= 0:
    raise ValueError(f"n={n} trials; a proportion needs n >= 1")
  if not 0 <= k <= n:
    raise ValueError(f"k={k} successes is outside 0..n={n}")
  p = k / n
  denom = 1.0 + z * z / n
  centre = (p + z * z / (2 * n)) / denom
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
  low = 0.0 if k == 0 else max(0.0, centre - half)
  high = 1.0 if k == n else min(1.0, centre + half)
  return low, high


def _per_victim(outcomes) -> np.ndarray:
  """(seeds, victims, ...) -> (seeds, victims): the mean over extra axes."""
  x = np.asarray(outcomes, np.float64)
  if x.ndim == 1:
    x = x[None]
  if x.ndim < 2 or x.shape[0] < 1 or x.shape[1] < 1:
    raise ValueError(f"outcomes need shape (seeds, victims, ...), got "
                     f"{x.shape}")
  x = x.reshape(x.shape[0], x.shape[1], -1)
  return nanmean(x, -1)


def nanmean(x: np.ndarray, axis) -> np.ndarray:
  """Mean over `axis` of the cells that are not NaN (NaN where none is)."""
  valid = ~np.isnan(x)
  n = valid.sum(axis)
  total = np.where(valid, x, 0.0).sum(axis)
  return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _t_quantile(q: float, df: float) -> float:
  """The q-quantile of Student's t with `df` (real) degrees of freedom, by
  bisection on its CDF (the regularised incomplete beta by continued
  fraction, as in Numerical Recipes); no scipy."""
  df = min(df, 1e7)

  def betacf(a, b, x):
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
      m2 = 2 * m
      for aa in (m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
                 -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))):
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
      if abs(delta - 1.0) < 1e-13:
        break
    return h

  def ibeta(a, b, x):
    if x <= 0.0:
      return 0.0
    if x >= 1.0:
      return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log(1.0 - x))
    if x < (a + 1.0) / (a + b + 2.0):
      return front * betacf(a, b, x) / a
    return 1.0 - front * betacf(b, a, 1.0 - x) / b

  def cdf(t):
    tail = 0.5 * ibeta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail

  lo, hi = -1e3, 1e3
  for _ in range(100):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if cdf(mid) < q else (lo, mid)
  return (lo + hi) / 2


def _two_way(x: np.ndarray, level: float) -> tuple[float, float, float]:
  """(mean, half-width, df) of the grand mean of a (seeds, victims) array.

  The mean's variance has a seed part and a victim part: the spread of the
  S seed means over S, and the spread of the V victim means over V (the
  shared residual is counted in both, which errs wide). The interval is
  Student's t with Welch-Satterthwaite degrees of freedom, so three seeds
  give a wide interval, as they should. With one seed only the victim part
  is there.
  """
  seed_means = nanmean(x, 1)
  victim_means = nanmean(x, 0)
  seed_means = seed_means[~np.isnan(seed_means)]
  victim_means = victim_means[~np.isnan(victim_means)]
  s, v = len(seed_means), len(victim_means)
  if v == 0:
    raise ValueError("no outcome counts: every cell is NaN (every victim "
                     "misclassified before the attack)")
  a = float(np.var(seed_means, ddof=1)) / s if s > 1 else 0.0
  b = float(np.var(victim_means, ddof=1)) / v if v > 1 else 0.0
  se2 = a + b
  mean = float(np.nanmean(x))
  if se2 <= 0:
    return mean, 0.0, float("inf")
  df = se2 ** 2 / ((a * a / (s - 1) if s > 1 else 0.0)
                   + (b * b / (v - 1) if v > 1 else 0.0))
  t = _t_quantile(0.5 + level / 2, df)
  return mean, t * math.sqrt(se2), float(df)


def interval(outcomes, *, level: float = LEVEL) -> dict[str, Any]:
  """Mean of `outcomes` (seeds, victims, ...) with its 95% interval.

  Outcomes are averaged over the axes after the victims (targets, attack
  keys) first. The interval is the two-way t-interval of `_two_way`,
  clipped to [0, 1]; where it has no width (every outcome alike), or where
  one seed measured one binary outcome per victim (a plain proportion),
  the Wilson interval of the pooled outcomes stands in. 'method' says
  which.
  """
  x = _per_victim(outcomes)
  out = {"n_seeds": int(x.shape[0]), "n_victims": int(x.shape[1])}
  if np.isnan(x).all():  # no victim counts (none recognised)
    return out | {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                  "n_counted": 0, "method": "no outcome counts"}
  mean, half, df = _two_way(x, level)
  out["mean"] = mean
  raw = np.asarray(outcomes, np.float64)
  out["n_counted"] = int(np.sum(~np.isnan(x)))
  proportion = (x.shape[0] == 1 and raw.size == x.size
                and bool(np.all((raw == 0) | (raw == 1) | np.isnan(raw))))
  if half > 0 and not proportion:
    return out | {"ci_low": max(0.0, mean - half),
                  "ci_high": min(1.0, mean + half), "df": round(df, 2),
                  "method": "two-way t (seeds x victims)"}
  counted = raw[~np.isnan(raw)]
  low, high = wilson_interval(int(round(counted.sum())), counted.size)
  return out | {"ci_low": low, "ci_high": high, "method": "Wilson (pooled)"}


def mean_interval(values, *, level: float = LEVEL) -> dict[str, Any]:
  """Mean of real-valued `values` (seeds, items) with the two-way t
  interval of `_two_way`, not clipped (e.g. log ratios, which may be of
  either sign)."""
  x = np.asarray(values, np.float64)
  if x.ndim != 2 or x.size == 0:
    raise ValueError(f"values must be a non-empty (seeds, items) array, got "
                     f"shape {x.shape}")
  mean, half, df = _two_way(x, level)
  return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half,
          "df": round(df, 2) if math.isfinite(df) else None,
          "n_seeds": int(x.shape[0]), "n_victims": int(x.shape[1])}


def mcnemar_exact(b: int, c: int) -> float:
  """Two-sided exact McNemar p-value of b vs c discordant pairs."""
  n = b + c
  if n == 0:
    return 1.0
  k = min(b, c)
  if n <= 1000:  # P(X <= k), X ~ Binomial(n, 1/2), from exact integers
    return min(1.0, 2.0 * sum(math.comb(n, i) for i in range(k + 1))
               / 2.0**n)
  # Summed in logs beyond: 2**n overflows a float past n = 1023 (thousands
  # of test images, paired).
  logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
          - n * math.log(2.0) for i in range(k + 1)]
  top = max(logs)
  tail = math.exp(top) * sum(math.exp(v - top) for v in logs)
  return min(1.0, 2.0 * tail)


def paired_difference(a, b, *, level: float = LEVEL) -> dict[str, Any]:
  """`mean(b) - mean(a)` for outcomes on the same victims, targets and keys.

  Args:
    a, b: binary outcomes of one shape (seeds, victims, ...), e.g. a = the
      baseline's white-box successes, b = a defended variant's; seed i of
      one arm is paired with seed i of the other.

  Returns:
    'difference' and its paired interval 'ci_low'/'ci_high' (the two-way t
    interval of the per-cell differences); the exact McNemar test on the
    discordant cells: 'a_only' (a succeeded, b not), 'b_only', 'p_value'.
  """
  xa, xb = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if xa.shape != xb.shape:
    raise ValueError(f"paired outcomes need one shape, got {xa.shape} and "
                     f"{xb.shape}; measure both arms on the same victims, "
                     "targets and keys")
  both = ~(np.isnan(xa) | np.isnan(xb))  # cells that count in both arms
  xa, xb = np.where(both, xa, np.nan), np.where(both, xb, np.nan)
  d = _per_victim(xb) - _per_victim(xa)
  if np.isnan(d).all():
    return {"difference": math.nan, "ci_low": math.nan, "ci_high": math.nan,
            "df": None, "a_only": 0, "b_only": 0, "p_value": 1.0,
            "n_seeds": int(d.shape[0]), "n_victims": int(d.shape[1]),
            "n_counted": 0}
  mean, half, df = _two_way(d, level)
  a_only = int(np.sum((xa > 0.5) & (xb <= 0.5)))
  b_only = int(np.sum((xb > 0.5) & (xa <= 0.5)))
  if half == 0:
    # Every per-cell difference alike: no discordant cell at all, or every
    # cell discordant the same way. The t-interval has no spread to
    # measure; the share of cells on the other side is 0 of n, and its
    # Wilson upper bound stands in as the half-width (0 of 120: +-3.1
    # points), for a difference of 0 as for one of +-1.
    counted = int(both.sum())
    discordant = a_only + b_only
    half = wilson_interval(min(discordant, counted - discordant), counted)[1]
    df = float("inf")
  # A difference of shares lies in [-1, 1], and so does its interval.
  return {"difference": mean, "ci_low": max(-1.0, mean - half),
          "ci_high": min(1.0, mean + half),
          "df": round(df, 2) if math.isfinite(df) else None,
          "a_only": a_only, "b_only": b_only,
          "p_value": mcnemar_exact(a_only, b_only),
          "n_seeds": int(d.shape[0]), "n_victims": int(d.shape[1]),
          "n_counted": int(np.sum(~np.isnan(d)))}


MIN_ACCURACY = 0.90  # below it a model is 'undertrained': no verdict


def verdict(diff: dict[str, Any], slides_effect: float, *,
            accuracy: float | None = None,
            min_accuracy: float = MIN_ACCURACY) -> dict[str, Any]:
  """A claim of the slides read against a measured paired difference.

  Args:
    diff: a `paired_difference` (defended minus baseline).
    slides_effect: the slides' difference, same sign convention (e.g.
      -0.41 for white-box success falling from 49% to 8%).
    accuracy: the lowest test accuracy among the models behind `diff`.

  Returns:
    'verdict': 'supported' when the interval excludes zero in the slides'
    direction and the effect is at least half the slides' size;
    'contradicted' when it excludes zero in the other direction or excludes
    half the slides' effect; 'inconclusive' otherwise; 'undertrained' when
    `accuracy` is below `min_accuracy` (then nothing is concluded). Plus
    'reason', one sentence.
  """
  if slides_effect == 0:
    raise ValueError("a verdict needs a non-zero slides_effect")
  sign = 1.0 if slides_effect > 0 else -1.0
  # In the slides' direction: positive means "as the slides say".
  low = min(sign * diff["ci_low"], sign * diff["ci_high"])
  high = max(sign * diff["ci_low"], sign * diff["ci_high"])
  effect, half = sign * diff["difference"], abs(slides_effect) / 2
  if accuracy is not None and accuracy < min_accuracy:
    return {"verdict": "undertrained",
            "reason": f"test accuracy {accuracy:.1%} is below "
                      f"{min_accuracy:.0%}: the models are too weak for a "
                      "verdict"}
  if math.isnan(diff["difference"]):
    return {"verdict": "inconclusive",
            "reason": "no victim is recognised as stop by both models"}
  if low > 0 and effect >= half:
    return {"verdict": "supported",
            "reason": "the interval excludes zero in the slides' direction "
                      "and the effect is at least half the one the slides "
                      "imply"}
  if high < 0:
    return {"verdict": "contradicted",
            "reason": "the interval excludes zero in the opposite "
                      "direction"}
  if high < half:
    return {"verdict": "contradicted",
            "reason": "the interval excludes half the effect the slides imply"}
  return {"verdict": "inconclusive",
          "reason": "the interval holds both zero or a small effect and "
                    "half the effect the slides imply"}
