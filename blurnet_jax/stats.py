"""Uncertainty for the study's figures: intervals, paired tests, verdicts.

The study's outcomes are binary (a victim classified as stop or not, an
attack that moved a victim or not) on a few dozen victims, repeated over a
few training seeds (and attack keys). Three tools:

* `wilson_interval(k, n)`: the 95% Wilson score interval of a proportion,
  for a figure where only the victims vary (one model, one attack);
* `interval(outcomes, clusters=...)`: the mean of outcomes shaped
  (seeds, victims) (more axes, e.g. targets or attack keys, are averaged
  per victim first; with `clusters`, the victims of one physical sign,
  frames of one video track, are averaged into one unit next) and a
  two-way t-interval whose variance has a seed part and a unit part, so
  that both sources of variation are in it;
* `paired_difference(a, b, clusters=...)`: the difference of two such
  arrays measured on the same victims, targets and attack keys, with the
  same interval on the per-cell differences, and an exact McNemar test on
  the discordant (seed, victim, ...) cells (with clusters, whose frames are
  not independent pairs, the t-test over signs instead);

and `verdict`, which reads a paired difference against a claim of the
slides. A NaN outcome is a cell that does not count (a victim the model
misclassifies before any attack, which the slides leave out of the
success rate): means and intervals run over the cells that count, and a
paired difference over the cells that count in both arms. All are
deterministic; t quantiles and binomial tails come from `scipy.stats`.
`tests/test_stats.py` checks by simulation that the nominal 95% intervals
cover the truth in experiments shaped like the study's, and that with
signs seen in many frames only the clustered interval does (replicates x
signs x frames: 93-97% over 1,000 draws; the per-frame interval falls
short).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

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
  """The q-quantile of Student's t with `df` (real) degrees of freedom
  (`scipy.stats.t`)."""
  return float(scipy_stats.t.ppf(q, df))


def by_cluster(x: np.ndarray, clusters) -> np.ndarray:
  """(seeds, victims) -> (seeds, clusters): each cluster's mean over its
  victims that count (NaN where none does), clusters in sorted order.

  A cluster is one physical sign (a video track): its frames are not
  independent victims, so every interval treats the cluster as the unit.
  """
  clusters = np.asarray(clusters)
  if clusters.shape != (x.shape[1],):
    raise ValueError(f"clusters has shape {clusters.shape}; give one "
                     f"cluster (track) per victim, {x.shape[1]}")
  ids = np.unique(clusters)
  return np.stack([nanmean(x[:, clusters == c], 1) for c in ids], axis=1)


def _units(outcomes, clusters) -> np.ndarray:
  """(seeds, units): outcomes averaged per victim, then per cluster."""
  x = _per_victim(outcomes)
  return x if clusters is None else by_cluster(x, clusters)


def _two_way(x: np.ndarray, level: float) -> tuple[float, float, float]:
  """(mean, half-width, df) of the grand mean of a (seeds, units) array
  (units: victims, or the physical signs of `by_cluster`).

  The crossed random-effects estimate of the mean's variance: the spread of
  the S seed means over S (`a`) plus that of the U unit means over U
  (`b`), each of which also holds the seed x unit residual once, minus that
  residual (`e`, the mean square of the additive fit's residuals over S U):
  (MS_seeds + MS_units - MS_residual) / (S U), unbiased for a complete
  array. Cells that do not count (NaN) leave the fit's means and the
  residual's degrees of freedom. It never falls below max(a, b). The
  interval is Student's t with Satterthwaite degrees of freedom, so three
  seeds give a wide interval, as they should. With one seed only the unit
  part is there.
  """
  seed_all, unit_all = nanmean(x, 1), nanmean(x, 0)
  seed_means = seed_all[~np.isnan(seed_all)]
  unit_means = unit_all[~np.isnan(unit_all)]
  s, v = len(seed_means), len(unit_means)
  if v == 0:
    raise ValueError("no outcome counts: every cell is NaN (every victim "
                     "misclassified before the attack)")
  a = float(np.var(seed_means, ddof=1)) / s if s > 1 else 0.0
  b = float(np.var(unit_means, ddof=1)) / v if v > 1 else 0.0
  mean = float(np.nanmean(x))
  terms = [(a, s - 1), (b, v - 1)]
  se2 = a + b
  if s > 1 and v > 1:
    residual = x - seed_all[:, None] - unit_all[None, :] + mean
    dfe = int(np.sum(~np.isnan(x))) - s - v + 1
    if dfe > 0:
      e = float(np.nansum(residual ** 2)) / dfe / (s * v)
      if a + b - e > max(a, b):
        se2, terms = a + b - e, terms + [(e, dfe)]
      else:
        se2 = max(a, b)
        terms = [max(terms)]
  if se2 <= 0:
    return mean, 0.0, float("inf")
  df = se2 ** 2 / sum(c * c / d for c, d in terms if d > 0)
  t = _t_quantile(0.5 + level / 2, df)
  return mean, t * math.sqrt(se2), float(df)


def variance_components(outcomes, clusters=None) -> dict[str, Any]:
  """Moment estimates of what spreads a grand mean of `outcomes` (members,
  victims, ...; NaN: not counted), for planning a design: 'replicate' (R
  times the seed part of `_two_way` on sign means: the spread of the
  members' means, conservative where signs are nested in members),
  'sign' (S times its sign part, less the share of the frames behind each
  sign's mean) and 'frame' (the pooled variance of a member's frames
  within one sign; 0 where no sign has two), with the sizes they were
  measured at ('frames_per_sign': the counted outcomes behind a sign's
  mean, over every member: F nested in folds, R F crossed)."""
  x = _per_victim(outcomes)
  clusters = (np.arange(x.shape[1]) if clusters is None
              else np.asarray(clusters))
  units = by_cluster(x, clusters)
  ss, dof, inverse = 0.0, 0, []
  for c in np.unique(clusters):
    cells = x[:, clusters == c]
    counted = int(np.sum(~np.isnan(cells)))
    if counted:
      inverse.append(1.0 / counted)
    for row in cells:
      v = row[~np.isnan(row)]
      if len(v) > 1:
        ss += float(np.sum((v - v.mean()) ** 2))
        dof += len(v) - 1
  frame = ss / dof if dof else 0.0
  seeds = nanmean(units, 1)
  seeds = seeds[~np.isnan(seeds)]
  signs = nanmean(units, 0)
  signs = signs[~np.isnan(signs)]
  r, n = len(seeds), len(signs)
  replicate = float(np.var(seeds, ddof=1)) if r > 1 else 0.0
  sign = float(np.var(signs, ddof=1)) if n > 1 else 0.0
  frames = 1.0 / float(np.mean(inverse)) if inverse else 1.0
  return {"replicate": replicate,
          "sign": max(0.0, sign - frame / frames),
          "frame": frame, "replicates": r, "signs": n,
          "frames_per_sign": frames}


def predicted_half_width(components: dict[str, Any], *, replicates: int,
                         signs: int, frames_per_sign: float,
                         level: float = LEVEL) -> float:
  """The 95% half-width `interval` would give a grand mean measured on
  `replicates` members and `signs` signs, each sign's mean resting on
  `frames_per_sign` outcomes (over every member), spread as `components`
  (`variance_components`): t with Satterthwaite df times the root of
  replicate/R + (sign + frame/F)/S."""
  if replicates < 1 or signs < 1 or frames_per_sign <= 0:
    raise ValueError(f"a design of {replicates} replicate(s), {signs} "
                     f"sign(s) and {frames_per_sign} frame(s) per sign "
                     "measures nothing; give at least one of each")
  a = components["replicate"] / replicates
  b = (components["sign"] + components["frame"] / frames_per_sign) / signs
  if a + b <= 0:
    return 0.0
  terms = [(a, replicates - 1), (b, signs - 1)]
  df = (a + b) ** 2 / sum(c * c / d for c, d in terms if d > 0 and c > 0)
  return _t_quantile(0.5 + level / 2, df) * math.sqrt(a + b)


def interval(outcomes, *, clusters=None, level: float = LEVEL
             ) -> dict[str, Any]:
  """Mean of `outcomes` (seeds, victims, ...) with its 95% interval.

  Outcomes are averaged over the axes after the victims (targets, attack
  keys) first, then, given `clusters` (one id per victim: its physical
  sign), over the victims of each cluster, so that a sign seen in many
  frames counts once (`by_cluster`). The interval is the two-way
  t-interval of `_two_way` over seeds and units (victims or signs),
  clipped to [0, 1]; where it has no width (every outcome alike), or
  where one seed measured one binary outcome per independent victim (a
  plain proportion), the Wilson interval of the pooled outcomes stands
  in. 'method' says which; 'n_signs' is the number of independent units
  that count.
  """
  x = _units(outcomes, clusters)
  out = {"n_seeds": int(x.shape[0]),
         "n_victims": int(_per_victim(outcomes).shape[1])}
  if np.isnan(x).all():  # no victim counts (none recognised)
    return out | {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                  "n_counted": 0, "n_signs": 0,
                  "method": "no outcome counts"}
  mean, half, df = _two_way(x, level)
  out["mean"] = mean
  raw = np.asarray(outcomes, np.float64)
  out["n_counted"] = int(np.sum(~np.isnan(_per_victim(outcomes))))
  out["n_signs"] = int(np.sum(~np.isnan(nanmean(x, 0))))
  proportion = (clusters is None and x.shape[0] == 1 and raw.size == x.size
                and bool(np.all((raw == 0) | (raw == 1) | np.isnan(raw))))
  if half > 0 and not proportion:
    return out | {"ci_low": max(0.0, mean - half),
                  "ci_high": min(1.0, mean + half), "df": round(df, 2),
                  "method": "two-way t (seeds x victims)" if clusters is None
                  else "two-way t (seeds x signs)"}
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
  """Two-sided exact McNemar p-value of b vs c discordant pairs (the exact
  binomial test of min(b, c) in b + c at 1/2, `scipy.stats.binomtest`)."""
  if b + c == 0:
    return 1.0
  return float(scipy_stats.binomtest(min(b, c), b + c, 0.5).pvalue)


def paired_difference(a, b, *, clusters=None, level: float = LEVEL
                      ) -> dict[str, Any]:
  """`mean(b) - mean(a)` for outcomes on the same victims, targets and keys.

  Args:
    a, b: binary outcomes of one shape (seeds, victims, ...), e.g. a = the
      baseline's white-box successes, b = a defended variant's; seed i of
      one arm is paired with seed i of the other.
    clusters: one id per victim (its physical sign), or None: the per-cell
      differences are averaged within each sign before the interval
      (`interval`).

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
  cells = _per_victim(xb) - _per_victim(xa)
  d = cells if clusters is None else by_cluster(cells, clusters)
  if np.isnan(d).all():
    return {"difference": math.nan, "ci_low": math.nan, "ci_high": math.nan,
            "df": None, "a_only": 0, "b_only": 0, "p_value": 1.0,
            "n_seeds": int(d.shape[0]), "n_victims": int(cells.shape[1]),
            "n_signs": 0, "n_counted": 0}
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
  if clusters is None:
    p_value, test = mcnemar_exact(a_only, b_only), "exact McNemar (cells)"
  else:  # frames of one sign are not independent pairs: the t over signs
    t = (_t_quantile(0.5 + level / 2, df) if math.isfinite(df) else Z95)
    p_value = (float(2 * scipy_stats.t.sf(abs(mean) / (half / t), df))
               if half > 0 else 1.0)
    test = "two-way t (seeds x signs)"
  # A difference of shares lies in [-1, 1], and so does its interval.
  return {"difference": mean, "ci_low": max(-1.0, mean - half),
          "ci_high": min(1.0, mean + half),
          "df": round(df, 2) if math.isfinite(df) else None,
          "a_only": a_only, "b_only": b_only,
          "p_value": p_value, "test": test,
          "n_seeds": int(d.shape[0]), "n_victims": int(cells.shape[1]),
          "n_signs": int(np.sum(~np.isnan(nanmean(d, 0)))),
          "n_counted": int(np.sum(~np.isnan(cells)))}


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
