"""What the study concludes about each claim of the slides, with intervals.

`findings(...)` reads the stage results and returns one entry per claim:
Table 1's fixed filters (on the RP2 data), Table 2's defended variants
(paired against the baseline on the synthetic set), and the spectral
argument (on the RP2 data). Each entry has its verdict (`stats.verdict`),
the figures with their 95% intervals, the data it rests on and the
confounders that remain. The report opens with them.
"""

from __future__ import annotations

from typing import Any


from blurnet_jax import spectral
from blurnet_jax import stats
from blurnet_jax.study.synthetic import table1

#: What the Table 2 verdicts of each data set rest on, and inherit.
DATA = {
    "synthetic": ("models trained from scratch on the synthetic set, "
                  "synthetic victims",
                  "the synthetic proxy, not LISA: the LISA-trained RP2 model "
                  "misreads a good part of the synthetic signs (the proxy "
                  "section gives how many), and synthetic-trained "
                  "baselines are harder to attack than the RP2 model on the "
                  "same real victims"),
    "lisa-full": ("the RP2 authors' LISA weights fine-tuned on the synthetic "
                  "set (every layer), attacked on the 40 real victims",
                  "fine-tuning on synthetic signs moves the model away from "
                  "LISA; the control is fine-tuned the same way"),
    "lisa-frozen": ("the RP2 authors' LISA weights with only the variant's "
                    "addition trained on the synthetic set, attacked on the "
                    "40 real victims",
                    "the added layer is trained on synthetic signs; the "
                    "control is the RP2 model itself"),
}


def spectral_claim(model, params, filtered_model, filtered_params, natural,
                   perturbed, *, radius: float) -> dict[str, Any]:
  """The spectral argument, victim by victim: the sticker raises the
  high-frequency share of the L1 maps (perturbed - natural > 0), and the
  inserted L1 filter removes that rise (what conv2 sees rises less)."""
  nat = spectral.per_image_shares(filtered_model, filtered_params, natural,
                                  radius=radius)
  per = spectral.per_image_shares(filtered_model, filtered_params, perturbed,
                                  radius=radius)
  rise = per["l1"] - nat["l1"]
  rise_filtered = per["l1_filtered"] - nat["l1_filtered"]
  removed = rise - rise_filtered
  ci_rise = stats.interval(rise[None])
  ci_filtered = stats.interval(rise_filtered[None])
  ci_removed = stats.interval(removed[None])
  if ci_rise["ci_high"] < 0:
    verdict = {"verdict": "contradicted",
               "reason": "the sticker lowers the L1 maps' high-frequency "
                         "share"}
  elif ci_rise["ci_low"] > 0 and ci_removed["ci_low"] > 0:
    verdict = {"verdict": "supported",
               "reason": "the sticker raises the L1 maps' high-frequency "
                         "share and the filter removes that rise"}
  else:
    verdict = {"verdict": "inconclusive",
               "reason": "the intervals do not separate the rise, or what "
                         "the filter removes of it, from zero"}
  return {"claim": "spectral: stickers add high-frequency energy to the L1 "
                   "maps that the filters remove",
          "data": "rp2", "radius": radius,
          "rise_l1": ci_rise, "rise_l1_filtered": ci_filtered,
          "removed": ci_removed, **verdict,
          "confounders": "one model (the RP2 authors'), the authors' own "
                         "camouflage perturbation, 40 victims; shares are "
                         "per-image means over the maps with power"}


#: The same for the real sources' rows ('SOURCE: VICTIMS').
REAL_DATA = {
    "lisa_crops": ("models trained from scratch on real LISA crops (JPEG "
                   "previews, 32x32), test split by video track",
                   "a few tracks in some classes (turnRight 4); the crops "
                   "are JPEG-compressed previews"),
    "lisa": ("models trained from scratch on the LISA boxes, test split by "
             "track", "the user's LISA copy and crop margin"),
    "gtsrb": ("models trained from scratch on GTSRB, the official test "
              "split", "German signs; the victims are official-test stop "
              "signs, the sticker placed on each one's sign box"),
}
REAL_VICTIMS = {"rp2": "attacked on the RP2 authors' 40 real stop signs",
                "held_out": "attacked on held-out real stop signs"}


def data_of(dataset: str) -> tuple[str, str]:
  """(what the rows of `dataset` rest on, what they inherit)."""
  if dataset in DATA:
    return DATA[dataset]
  source, _, victims = dataset.partition(": ")
  rests, confounders = REAL_DATA[source]
  return f"{rests}, {REAL_VICTIMS[victims]}", confounders


def findings(table1_rows, table2_rows, spectral: dict[str, Any] | None,
             *, replicates: str = "seeds") -> list[dict[str, Any]]:
  """One entry per claim of the slides (see the module doc); `replicates`
  names what the members of a row are ('seeds', or 'folds' of a grouped
  k-fold)."""
  out = []
  real = [r for r in table1_rows if r["dataset"] == "rp2"]
  reading = table1.slides_reading(real)["follows"] if real else None
  for v in table1.verdicts(table1_rows, reading) if reading else []:
    out.append(v | {"confounders": "one model (the RP2 authors') and one "
                    "perturbation (theirs): only the 40 victims vary"})
  for r in table2_rows:
    if "verdict" not in r:
      continue
    d = r["vs_baseline"]
    undertrained = r["verdict"]["verdict"] == "undertrained"
    out.append({
        "claim": f"Table 2: {r['variant']} lowers white-box success "
                 f"({r['dataset']})",
        "variant": r["variant"], "data": r["dataset"],
        "avg_success": [r["avg_success"], r["avg_success_ci_low"],
                        r["avg_success_ci_high"]],
        "legit_acc": r["legit_acc"], "n_seeds": r["n_seeds"],
        "n_signs": d.get("n_signs"), "test": d.get("test"),
        "replicates": replicates,
        **{k: d[k] for k in ("difference", "ci_low", "ci_high", "a_only",
                             "b_only", "p_value", "slides_difference")},
        "slides_relative": d.get("slides_relative"),
        "expected_difference": d.get("expected_difference"),
        **r["verdict"],
        "rests_on": data_of(r["dataset"])[0],
        "confounders": data_of(r["dataset"])[1] + (
            "; undertrained models" if undertrained else "")})
  if spectral is not None:
    out.append(spectral)
  return out


def summary_counts(entries) -> dict[str, int]:
  """How many claims got each verdict."""
  return {v: sum(e["verdict"] == v for e in entries)
          for v in stats.VERDICTS if any(e["verdict"] == v for e in entries)}


def _pct(x) -> str:
  return "n/a" if x is None or x != x else f"{100 * x:.1f}"


def _expected(entry: dict[str, Any]) -> str:
  """The slides' cut and what it means on this baseline."""
  if entry.get("expected_difference") is None:  # findings of older runs
    return f"slides: {_pct(entry['slides_difference'])}"
  return (f"slides: {_pct(entry['slides_difference'])}, a "
          f"{-100 * entry['slides_relative']:.0f}% cut of their baseline's "
          f"success, {_pct(entry['expected_difference'])} on this one")


def text(entry: dict[str, Any]) -> str:
  """One paragraph: the verdict, the figures with intervals, the data."""
  v = entry["verdict"].upper()
  if entry["claim"].startswith("spectral"):
    r, f, m = entry["rise_l1"], entry["rise_l1_filtered"], entry["removed"]
    return (f"{entry['claim']}: {v}. On the RP2 model and its 40 real "
            f"victims the authors' sticker changes the high-frequency share "
            f"(above {entry['radius']} x Nyquist) of the L1 maps by "
            f"{r['mean']:+.4f} [95% CI {r['ci_low']:+.4f}, "
            f"{r['ci_high']:+.4f}] and, after an inserted 5x5 box filter, of "
            f"what conv2 sees by {f['mean']:+.4f} [{f['ci_low']:+.4f}, "
            f"{f['ci_high']:+.4f}] (removed: {m['mean']:+.4f} "
          f"[{m['ci_low']:+.4f}, {m['ci_high']:+.4f}]); {entry['reason']}. "
          "The effect is small against the natural share of the L1 maps. "
          "Confounders: "
            f"{entry['confounders']}.")
  if entry["claim"].startswith("Table 1"):
    return (f"{entry['claim']}: {v}. Success falls by "
            f"{_pct(-entry['difference'])} points [95% CI "
            f"{_pct(-entry['ci_high'])}, {_pct(-entry['ci_low'])}] against "
            f"the undefended model (slides: {_pct(-entry['slides_difference'])}"
            f"), on the same 40 real victims (exact McNemar p = "
            f"{entry['p_value']:.2g}, {entry['a_only']} victims saved, "
            f"{entry['b_only']} newly fooled); {entry['reason']}. Data: the "
            f"RP2 assets; reading: {entry['reading']}. Confounders: "
            f"{entry['confounders']}.")
  s = entry["avg_success"]
  signs = (f" and {entry['n_signs']} physical signs"
           if entry.get("n_signs") else "")
  test = ("t-test over signs" if str(entry.get("test", "")).startswith(
      "two-way") else "McNemar")
  return (f"{entry['claim']}: {v}. Average white-box success "
          f"{_pct(s[0])}% [95% CI {_pct(s[1])}, {_pct(s[2])}] over "
          f"{entry['n_seeds']} {entry.get('replicates', 'seeds')}{signs}; "
          f"paired difference against the baseline "
          f"{_pct(entry['difference'])} points [{_pct(entry['ci_low'])}"
          f", {_pct(entry['ci_high'])}] ({_expected(entry)}; {test} p = "
          f"{entry['p_value']:.2g}); accuracy {_pct(entry['legit_acc'])}%;"
          f" {entry['reason']}. Data: {entry['rests_on']}. Confounders: "
          f"{entry['confounders']}.")
