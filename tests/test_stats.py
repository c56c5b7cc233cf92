"""Intervals, the paired test and the verdicts: hand computations, and the
nominal 95% intervals covering the truth in simulated experiments shaped
like the study's."""

import math

import numpy as np
import pytest

from blurnet_jax import stats


def test_wilson_interval_by_hand():
  # p = 0.2, n = 40, z = 1.96: centre (0.2 + z^2/80) / (1 + z^2/40).
  z = stats.Z95
  centre = (0.2 + z * z / 80) / (1 + z * z / 40)
  half = z * math.sqrt(0.2 * 0.8 / 40 + z * z / 6400) / (1 + z * z / 40)
  low, high = stats.wilson_interval(8, 40)
  assert (low, high) == pytest.approx((centre - half, centre + half))
  assert (round(low, 3), round(high, 3)) == (0.105, 0.348)
  assert stats.wilson_interval(0, 40)[0] == 0.0
  assert stats.wilson_interval(40, 40)[1] == 1.0
  with pytest.raises(ValueError, match="outside"):
    stats.wilson_interval(41, 40)


def test_mcnemar_exact_by_hand():
  # 1 vs 5 discordant: 2 * P(X <= 1), X ~ Bin(6, 1/2) = 2 * 7/64.
  assert stats.mcnemar_exact(1, 5) == pytest.approx(14 / 64)
  assert stats.mcnemar_exact(5, 1) == stats.mcnemar_exact(1, 5)
  assert stats.mcnemar_exact(0, 0) == 1.0
  assert stats.mcnemar_exact(3, 3) == 1.0
  # Beyond 1023 discordant pairs (2**n overflows a float): the sum of
  # exact integer binomials, as a fraction.
  from fractions import Fraction  # pylint: disable=g-import-not-at-top
  import math  # pylint: disable=g-import-not-at-top
  exact = 2 * Fraction(sum(math.comb(1500, i) for i in range(701)),
                       2**1500)
  assert stats.mcnemar_exact(700, 800) == pytest.approx(float(exact),
                                                        rel=1e-9)
  assert stats.mcnemar_exact(10, 3000) == pytest.approx(0.0, abs=1e-300)


def test_t_quantiles_match_the_tables():
  for df, q975 in ((1, 12.706), (2, 4.303), (5, 2.571), (30, 2.042),
                   (1e9, 1.960)):
    assert stats._t_quantile(0.975, df) == pytest.approx(q975, abs=2e-3)


def test_two_way_interval_by_hand():
  x = np.array([[1, 0, 1, 0, 1, 0, 1, 0, 0, 1],
                [0, 0, 1, 0, 1, 0, 1, 0, 0, 0],
                [1, 0, 1, 0, 0, 0, 1, 0, 0, 1]], float)
  a = np.var(x.mean(1), ddof=1) / 3
  b = np.var(x.mean(0), ddof=1) / 10
  df = (a + b) ** 2 / (a * a / 2 + b * b / 9)
  half = stats._t_quantile(0.975, df) * math.sqrt(a + b)
  ci = stats.interval(x)
  assert ci["mean"] == pytest.approx(x.mean())
  assert (ci["ci_low"], ci["ci_high"]) == pytest.approx(
      (x.mean() - half, x.mean() + half))
  assert ci["df"] == pytest.approx(df, abs=0.01)
  # Every outcome alike: the Wilson interval of the pooled cells.
  flat = stats.interval(np.zeros((2, 20)))
  assert flat["method"].startswith("Wilson")
  assert flat["ci_high"] == pytest.approx(stats.wilson_interval(0, 40)[1])


def test_one_seed_of_binary_outcomes_is_a_wilson_proportion():
  x = np.zeros((1, 40))
  x[0, :8] = 1
  ci = stats.interval(x)
  assert ci["method"].startswith("Wilson")
  assert (ci["ci_low"], ci["ci_high"]) == pytest.approx(
      stats.wilson_interval(8, 40))
  # Averaged over targets first, a victim's outcome is a share, not 0/1:
  # then the t-interval over victims stands.
  shares = np.zeros((1, 40, 2))
  shares[0, :8, 0] = 1
  assert stats.interval(shares)["method"].startswith("two-way")


def test_paired_difference_counts_discordant_cells():
  a = np.zeros((2, 10), int)
  b = np.zeros((2, 10), int)
  a[0, :3] = 1  # baseline only: 3 cells
  b[1, :8] = 1  # defended only: 8 cells
  b[0, 0] = 1  # both: concordant
  d = stats.paired_difference(a, b)
  assert (d["a_only"], d["b_only"]) == (2, 8)
  assert d["difference"] == pytest.approx(b.mean() - a.mean())
  assert d["p_value"] == pytest.approx(stats.mcnemar_exact(2, 8))
  with pytest.raises(ValueError, match="one shape"):
    stats.paired_difference(a, b[:, :5])


def test_identical_arms_get_the_discordance_bound_not_a_zero_interval():
  """Two arms with the same outcome in every cell (seen: a TV penalty of
  1e-4 that moves no victim) have no spread to measure; the interval is
  +- the Wilson upper bound of 0 discordant cells, not [0, 0]."""
  rng = np.random.default_rng(2)
  a = (rng.random((2, 20, 3)) < 0.3).astype(int)
  d = stats.paired_difference(a, a.copy())
  bound = stats.wilson_interval(0, a.size)[1]
  assert d["difference"] == 0.0 and (d["a_only"], d["b_only"]) == (0, 0)
  assert (d["ci_low"], d["ci_high"]) == pytest.approx((-bound, bound))
  assert 0.03 < bound < 0.032  # 0 of 120 cells: about 3.1 points
  assert d["p_value"] == 1.0
  # Against the slides' -41 points it excludes half the effect.
  assert stats.verdict(d, -0.41, accuracy=0.95)["verdict"] == "contradicted"


def test_arms_that_differ_in_every_cell_the_same_way_get_a_tight_interval():
  """Every cell discordant one way (a defence that stops every success)
  has no spread either; the share of cells that went the other way is 0
  of n, so the interval is 1 -+ that same Wilson bound, not [0, 1]."""
  a = np.ones((2, 20, 3), int)
  d = stats.paired_difference(a, np.zeros_like(a))
  bound = stats.wilson_interval(0, a.size)[1]
  assert d["difference"] == -1.0 and (d["a_only"], d["b_only"]) == (120, 0)
  assert (d["ci_low"], d["ci_high"]) == pytest.approx((-1.0, -1.0 + bound))
  assert stats.verdict(d, -0.41, accuracy=0.95)["verdict"] == "supported"


@pytest.mark.parametrize("ci,effect,acc,expected", [
    ((-0.30, -0.10), -0.40, 0.95, "supported"),     # falls, >= half of 0.40
    ((-0.30, -0.01), -0.10, 0.95, "supported"),
    ((0.02, 0.20), -0.40, 0.95, "contradicted"),    # rises instead
    ((-0.15, -0.02), -0.40, 0.95, "contradicted"),  # excludes half (0.20)
    ((-0.30, 0.05), -0.40, 0.95, "inconclusive"),   # holds zero and 0.20
    ((-0.30, -0.10), -0.40, 0.80, "undertrained"),
])
def test_verdicts(ci, effect, acc, expected):
  diff = {"difference": sum(ci) / 2, "ci_low": ci[0], "ci_high": ci[1]}
  assert stats.verdict(diff, effect, accuracy=acc)["verdict"] == expected


def test_nominal_95_intervals_cover_the_truth_in_the_study_shape():
  """Experiments like the study's: 3 seeds x 40 victims x 4 targets of
  binary outcomes. Each victim has its own attackability (Beta), each seed
  shifts it (training variation); the truth is the expected success rate
  over victims and seeds. The two-way interval must cover it in at least
  90% of 200 experiments (nominal 95%); Wilson, which ignores the seeds,
  undercovers when seeds vary, which is why the study uses the two-way
  interval there."""
  rng = np.random.default_rng(2026)
  covered_boot = covered_wilson = 0
  widths = []
  trials, seeds, victims, targets = 200, 3, 40, 4
  for t in range(trials):
    # The truth: the mean over the victim population and the seed
    # population, computed from the generating distribution.
    seed_sd = 0.6
    logit_v = rng.normal(-1.0, 1.0, 100000)
    true_rate = float(np.mean(1 / (1 + np.exp(-(
        logit_v + rng.normal(0, seed_sd, 100000))))))
    v = rng.normal(-1.0, 1.0, victims)
    s = rng.normal(0, seed_sd, seeds)
    p = 1 / (1 + np.exp(-(v[None, :] + s[:, None])))
    x = rng.random((seeds, victims, targets)) < p[..., None]
    ci = stats.interval(x)
    covered_boot += ci["ci_low"] <= true_rate <= ci["ci_high"]
    widths.append(ci["ci_high"] - ci["ci_low"])
    k = int(x.sum())
    low, high = stats.wilson_interval(k, x.size)
    covered_wilson += low <= true_rate <= high
  assert covered_boot / trials >= 0.90, covered_boot / trials
  assert covered_wilson < covered_boot
  assert np.median(widths) < 0.6  # informative, not [0, 1]


def test_sweep_rows_pool_seeds_per_alpha():
  """`by_alpha`: one row per (penalty, alpha) whose figures are the means
  over its seeds and whose intervals are the two-way ones of the stacked
  per-victim outcomes and test correctness."""
  from blurnet_jax.study.synthetic import alpha_curves  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  rows, outcomes, correct = [], [], []
  for alpha in (0.0, 0.1):
    for seed in (0, 1, 2):
      o = (rng.random((40, 2)) < 0.3 + alpha).astype(float)
      c = (rng.random(90) < 0.9).astype(float)
      outcomes.append(o)
      correct.append(c)
      rows.append({"penalty": "linf", "alpha": alpha, "seed": seed,
                   "worst_success": o.mean(0).max(), "l2_distortion": 0.2})
  pooled = alpha_curves.by_alpha(rows, outcomes, correct)
  assert [(r["alpha"], r["seeds"]) for r in pooled] == [
      (0.0, [0, 1, 2]), (0.1, [0, 1, 2])]
  for r, lo in zip(pooled, (0, 3)):
    want = stats.interval(np.stack(outcomes[lo:lo + 3]))
    assert r["avg_success"] == pytest.approx(np.mean(outcomes[lo:lo + 3]))
    assert (r["avg_success_ci_low"], r["avg_success_ci_high"]) == (
        pytest.approx((want["ci_low"], want["ci_high"])))
    assert r["test_accuracy"] == pytest.approx(np.mean(correct[lo:lo + 3]))
    assert r["seed"] == "all" and r["interval"].startswith("two-way")


def test_table1_rows_pool_seeds():
  """`table1.pool`: seed i's rows (its own baseline and perturbation) as
  one row per variant with the seeds x victims interval; one seed alone
  keeps the row's own figures and its Wilson interval."""
  from blurnet_jax.study.synthetic import table1  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)

  def row(variant):
    o = {k: (rng.random(40) < p).astype(int)
         for k, p in (("correct", 0.9), ("changed", 0.4),
                      ("misclassified", 0.5))}
    out = {"dataset": "synthetic", "variant": variant, "outcomes": o}
    for key, name in table1.FIGURES.items():
      low, high = stats.wilson_interval(int(o[name].sum()), 40)
      out |= {key: o[name].mean(), f"{key}_ci_low": low,
              f"{key}_ci_high": high}
    return out

  seeds = [[row("baseline"), row("l1_5x5_box")] for _ in range(3)]
  pooled = table1.pool(seeds)
  assert [r["variant"] for r in pooled] == ["baseline", "l1_5x5_box"]
  for j, r in enumerate(pooled):
    stack = np.stack([s[j]["outcomes"]["changed"] for s in seeds])
    want = stats.interval(stack)
    assert r["attack_success_rate"] == pytest.approx(stack.mean())
    assert (r["attack_success_rate_ci_low"],
            r["attack_success_rate_ci_high"]) == pytest.approx(
                (want["ci_low"], want["ci_high"]))
    assert r["n_seeds"] == 3 and r["outcomes"]["changed"].shape == (3, 40)
  alone = table1.pool(seeds[:1])[1]
  for key in table1.FIGURES:
    for f in (key, f"{key}_ci_low", f"{key}_ci_high"):
      assert alone[f] == pytest.approx(seeds[0][1][f])
