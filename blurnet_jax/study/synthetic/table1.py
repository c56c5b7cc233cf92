"""Table 1: a perturbation made on the undefended model, shown to fixed
blur filters inserted into that model without retraining (black-box
transfer)."""

from __future__ import annotations

from typing import Any

import numpy as np

from blurnet_jax import models
from blurnet_jax import stats
from blurnet_jax.attacks import grid
from blurnet_jax.attacks import rp2
from blurnet_jax.classes import RP2_TARGET, STOP
from blurnet_jax.data import masks as masks_lib
from blurnet_jax.data import synthetic
from blurnet_jax.study.claims import slides

#: The two readings of success, by row key.
READINGS = {"attack_success_rate": "prediction changed vs clean",
            "misclassification_rate": "perturbed victim not classified "
                                      "as stop"}


def filter_variants(table1) -> list[tuple[str, str, dict[str, Any]]]:
  """(name, slides row, LisaCNN fields) of the baseline and every fixed
  filter of Table 1 (`config.table1`): on the input and on the L1 maps,
  each size and kernel."""
  out = [("baseline", "baseline", {})]
  for where in ("input", "l1"):
    for size in table1.sizes:
      for kernel in table1.kernels:
        fields = dict(filter_where=where, filter_kernel=kernel,
                      filter_size=int(size), filter_padding=table1.padding)
        if where == "l1":
          fields["filter_position"] = table1.position
        out.append((f"{where}_{size}x{size}_{kernel}",
                    f"{where}_{size}x{size}", fields))
  return out


def transfer_rows(params, images, adversarial, variants, *,
                  dataset: str) -> list[dict[str, Any]]:
  """Table 1: the perturbed victims shown to each inserted filter.

  `attack_success_rate` is the slides' formula (prediction changed against
  the clean one); `misclassification_rate` counts perturbed victims not
  classified as stop (their true class). One model and one perturbation:
  only the victims vary, so each figure has its 95% Wilson interval.
  """
  rows = []
  for name, slides_row, fields in variants:
    model, p = models.insert_filter(params, **fields)
    f = models.apply_fn_for(model)
    clean = models.predict(f, p, images)
    adv = models.predict(f, p, adversarial)
    row = {"dataset": dataset, "variant": name}
    for key, hits in (("accuracy", clean == STOP),
                      ("attack_success_rate", clean != adv),
                      ("misclassification_rate", adv != STOP)):
      low, high = stats.wilson_interval(int(hits.sum()), len(hits))
      row |= {key: float(hits.mean()), f"{key}_ci_low": low,
              f"{key}_ci_high": high}
    # Per victim, for the paired comparisons of `verdicts` and `pool`.
    row["outcomes"] = {"correct": (clean == STOP).astype(int),
                       "changed": (clean != adv).astype(int),
                       "misclassified": (adv != STOP).astype(int)}
    if slides_row in slides.TABLE1:
      acc, success = slides.TABLE1[slides_row]
      row |= {"slides_variant": slides_row, "slides_accuracy": acc,
              "slides_attack_success_rate": success}
    rows.append(row)
  return rows


#: Each figure of a row and the per-victim outcomes it is the mean of.
FIGURES = {"accuracy": "correct", "attack_success_rate": "changed",
           "misclassification_rate": "misclassified"}


def pool(per_seed: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
  """`transfer_rows` of several seeds (seed i's baseline, its own
  perturbation made with key i) as one row per variant: each figure the
  mean over seeds and victims with its 95% interval (`stats.interval`: the
  two-way t over seeds and victims; for one seed, Wilson over the
  victims), the per-seed figures, outcomes stacked (seeds, victims)."""
  out = []
  for rows in zip(*per_seed):
    row = {k: v for k, v in rows[0].items()
           if k not in FIGURES and not k.startswith(tuple(FIGURES))
           and k != "outcomes"}
    outcomes = {o: np.stack([np.asarray(r["outcomes"][o]) for r in rows])
                for o in FIGURES.values()}
    for key, o in FIGURES.items():
      ci = stats.interval(outcomes[o])
      row |= {key: ci["mean"], f"{key}_ci_low": ci["ci_low"],
              f"{key}_ci_high": ci["ci_high"]}
    row["n_seeds"] = len(rows)
    row["per_seed"] = [{k: r[k] for k in FIGURES} for r in rows]
    row["outcomes"] = outcomes
    out.append(row)
  return out


def slides_reading(rows: list[dict[str, Any]]) -> dict[str, Any]:
  """Which success reading the slides' Table 1 follows, on these rows.

  For each reading, the largest distance (points) between a row with a
  slides value and that value, taking per slides row the closer of the
  box and Gaussian kernels. Also: whether every cell is within 5 points.
  """
  worst = {}
  for key in READINGS:
    per_slide: dict[str, float] = {}
    for r in rows:
      if "slides_variant" not in r:
        continue
      d = max(abs(r["accuracy"] - r["slides_accuracy"]),
              abs(r[key] - r["slides_attack_success_rate"]))
      per_slide[r["slides_variant"]] = min(
          d, per_slide.get(r["slides_variant"], np.inf))
    worst[key] = max(per_slide.values()) * 100 if per_slide else float("nan")
  follows = min(worst, key=worst.get)
  beyond = [r["variant"] for r in rows if "slides_variant" in r and max(
      abs(r["accuracy"] - r["slides_accuracy"]),
      abs(r[follows] - r["slides_attack_success_rate"])) > 0.05 + 1e-9]
  return {"follows": follows, "follows_text": READINGS[follows],
          "max_distance_points": {k: round(v, 2) for k, v in worst.items()},
          "within_5_points": bool(worst[follows] <= 5.0 + 1e-9),
          "kernels_beyond_5_points": beyond}


def synthetic_transfer_perturbation(attack_steps: int, apply_fn, params,
                                    key, desc: str = "") -> dict[str, Any]:
  """The project's camouflage RP2 on a synthetic baseline (target 12)."""
  images = synthetic.synthetic_victims(40, seed=0)
  mask = masks_lib.get_mask("camouflage")
  cfg = rp2.RP2Config(steps=attack_steps, target=RP2_TARGET)
  out = grid.attack_targets(
      apply_fn, params, images, mask, [RP2_TARGET], key, cfg=cfg,
      desc=f"camouflage RP2 on the synthetic baseline{desc}")
  return {"images": images, "adversarial": out["adversarial"][0],
          "noise": out["noise"][0], "mask": mask}


def verdicts(rows: list[dict[str, Any]], reading: str) -> list[dict[str, Any]]:
  """The slides' Table 1 claims on the RP2 data: each fixed box filter
  against the undefended model, success in `reading`, paired on the same
  40 victims (exact McNemar on the discordant victims)."""
  real = {r["variant"]: r for r in rows if r["dataset"] == "rp2"}
  if "baseline" not in real:
    return []
  key = {"attack_success_rate": "changed",
         "misclassification_rate": "misclassified"}[reading]
  base = np.asarray(real["baseline"]["outcomes"][key])[None]
  out = []
  for name, (_, slides_success) in slides.TABLE1.items():
    r = real.get(f"{name}_box")
    if r is None:
      continue
    diff = stats.paired_difference(base, np.asarray(r["outcomes"][key])[None])
    effect = slides_success - slides.TABLE1["baseline"][1]
    out.append({"claim": f"Table 1: {name} box filter", "variant": r["variant"],
                "data": "rp2", "reading": reading,
                "slides_difference": effect, **diff,
                **stats.verdict(diff, effect)})
  return out
