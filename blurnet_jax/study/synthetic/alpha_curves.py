"""What the sweep stage computes: each penalty's alpha population, trained
as one vmapped program, each member attacked white-box."""

from __future__ import annotations

from typing import Any

from etils import epath
import numpy as np

from blurnet_jax import models
from blurnet_jax import stats
from blurnet_jax import sweep as sweep_lib
from blurnet_jax.data import masks as masks_lib
from blurnet_jax.data import synthetic
from blurnet_jax.study import evaluation
from blurnet_jax.study.evaluators import table2


def run_sweeps(config, workdir: epath.Path, key, test) -> list[dict[str, Any]]:
  """Rows of every member of every `config.sweeps` population, then one
  row per (penalty, alpha) over its seeds (`by_alpha`).

  Args:
    test: (images, labels) of the test split, for each member's per-example
      correctness (the seeds x examples interval of test accuracy).
  """
  s = config.sweep
  images = synthetic.synthetic_victims(config.grid.victims, seed=0)
  mask = masks_lib.get_mask("camouflage")
  test_images, test_labels = test
  rows, outcomes, correct = [], [], []
  for penalty, cfg in config.sweeps.items():
    f = models.apply_fn_for(models.model_for(cfg))
    # Each member meets the key of its seed (`evaluation.member_key`), so
    # the alphas of one seed are compared under the same attack randomness.
    member_keys = (evaluation.member_key(key, seed)
                   for _, seed in sweep_lib.members(cfg))

    def on_member(params, f=f):
      result = table2.whitebox(
          f, params, images, mask, next(member_keys), targets=s.targets,
          steps=s.steps, num_transforms=s.num_transforms,
          eval_transforms=config.grid.eval_transforms,
          chunk=config.grid.chunk, desc="member grid")
      outcomes.append(result["outcomes"].T)  # (victims, targets)
      correct.append((models.predict(f, params, test_images)
                      == test_labels).astype(np.float64))
      ci = stats.interval(result["outcomes"].T[None])  # victims vary
      return {k: v for k, v in result.items()
              if k not in ("per_target", "outcomes") and not k.startswith("_")
              } | {"avg_success_ci_low": ci["ci_low"],
                   "avg_success_ci_high": ci["ci_high"]}

    members = sweep_lib.run_sweep(cfg, workdir / "sweeps" / penalty,
                                  on_member=on_member)
    for m in members:
      low, high = stats.wilson_interval(
          int(round(m["test_accuracy"] * len(test_labels))), len(test_labels))
      rows.append({"variant": f"sweep_{penalty}", **m,
                   "test_accuracy_ci_low": low,
                   "test_accuracy_ci_high": high})
  return rows + by_alpha(rows, outcomes, correct)


def by_alpha(rows, outcomes, correct) -> list[dict[str, Any]]:
  """One row per (penalty, alpha): the means over its seeds with the
  two-way intervals over seeds and victims (white-box success, the
  per-victim outcomes averaged over the targets first) and over seeds and
  test examples (accuracy); 'seed' is 'all' and 'seeds' lists them.

  Args:
    rows: the member rows, in the order of `outcomes` and `correct`.
    outcomes: per member, (victims, targets) 0/1 white-box outcomes.
    correct: per member, (examples,) 0/1 test correctness.
  """
  out = []
  groups: dict[tuple[str, float], list[int]] = {}
  for i, r in enumerate(rows):
    groups.setdefault((r["penalty"], r["alpha"]), []).append(i)
  for (penalty, alpha), idx in groups.items():
    avg = stats.interval(np.stack([outcomes[i] for i in idx]))
    acc = stats.interval(np.stack([correct[i] for i in idx]))
    out.append({
        "variant": f"sweep_{penalty}", "penalty": penalty, "alpha": alpha,
        "seed": "all", "seeds": [rows[i]["seed"] for i in idx],
        "test_accuracy": acc["mean"], "test_accuracy_ci_low": acc["ci_low"],
        "test_accuracy_ci_high": acc["ci_high"],
        "avg_success": avg["mean"], "avg_success_ci_low": avg["ci_low"],
        "avg_success_ci_high": avg["ci_high"],
        "worst_success": float(np.mean([rows[i]["worst_success"]
                                         for i in idx])),
        "l2_distortion": float(np.mean([rows[i]["l2_distortion"]
                                        for i in idx])),
        "interval": avg["method"]})
  return out
