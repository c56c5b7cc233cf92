"""The proxy ablation: how attackable synthetic-trained baselines are, per
setting of the synthetic set's knobs, beside the RP2 (LISA) model.

Each setting's baseline population (`config.proxy_models`, one vmapped
population over `config.proxy.seeds`) and the RP2 model are attacked with
the same white-box grid (`config.proxy.grid`) on the 40 real victims
(`evaluation.evaluate`, the RP2 model under the ids of the seeds), so
every setting's outcomes pair cell by cell with the RP2 model's. A row also gives the
setting's test accuracy (its own test split) and the RP2 model's accuracy
on that split (`oracle.oracle_report`: how LISA-like its signs look).

The question: which setting brings the baseline within `GAP_POINTS` of the
RP2 model's average white-box success? Where none does, the proxy's floor
is the open limit of every synthetic Table 2 row.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections
import numpy as np

from blurnet_jax import models
from blurnet_jax import stats
from blurnet_jax.data import datasets
from blurnet_jax.study.evaluators import oracle
from blurnet_jax.study.evaluators import table2
from blurnet_jax.study import evaluation
from blurnet_jax.study.evaluation import Population
from blurnet_jax.study.zoo import RP2Data

#: A setting "closes the gap" when its baseline's average white-box success
#: is at most this many points below the RP2 model's.
GAP_POINTS = 10.0


def knobs(cfg) -> dict[str, Any]:
  """The knobs of a proxy model's train config, as the table shows them."""
  return {"corruption": float(cfg.data.get("corruption", 1.0)),
          "balance": cfg.data.get("balance", "uniform"),
          "train_per_class": int(cfg.data.train_per_class),
          "augment": bool(cfg.augment),
          "steps": int(cfg.num_train_steps)}


def proxy_rows(config, trained: dict[str, Population], key,
               real: RP2Data) -> list[dict[str, Any]]:
  """One row for the RP2 model, then one per setting of `trained` (keyed as
  `config.proxy_models`), 'default' first.

  Each row is a `table2.combine` row (average and worst success with their
  95% intervals over seeds and victims; legit. accuracy = real victims
  classified as stop) plus 'setting', 'knobs', 'test_accuracy' (mean over
  seeds), 'oracle_accuracy' (the RP2 model on the setting's test split,
  classes 1-17) and, for the settings, 'vs_rp2': the paired difference in
  average success against the RP2 model (setting minus RP2) and
  'closes_gap' (within `GAP_POINTS`).
  """
  seeds = tuple(config.proxy.seeds)
  grid = table2.Grid(table2.grid_settings(config.proxy.grid), "rp2")
  rp2_row = evaluation.evaluate(real.population.renamed("baseline"),
                                real.victims, key, grid, ids=seeds)
  rp2_row.update(setting="RP2 model (LISA)", knobs={}, test_accuracy=None,
                 oracle_accuracy=None)
  rows = [rp2_row]
  names = sorted(trained, key=lambda n: (n != "default", n))
  for name in names:
    m, cfg = trained[name], config.proxy_models[name]
    if tuple(m.seeds) != seeds:
      raise ValueError(f"proxy setting {name!r} was trained with seeds "
                       f"{m.seeds}, not proxy.seeds {seeds}; keep "
                       "proxy_models' seeds linked to proxy.seeds")
    test_images, test_labels = datasets.load_split(
        datasets.prepare(cfg.data), "test")
    row = evaluation.evaluate(
        m.renamed("baseline"), real.victims, key,
        dataclasses.replace(grid, dataset="proxy"), ids=seeds)
    accuracy = np.mean([np.mean(models.predict(m.apply_fn, p, test_images)
                                == test_labels) for p in m.members])
    seen = oracle.oracle_report(test_images, test_labels, params=real.params)
    row.update(setting=name, knobs=knobs(cfg),
               test_accuracy=float(accuracy),
               oracle_accuracy=seen["accuracy"],
               oracle_per_class=seen["per_class"])
    diff = stats.paired_difference(rp2_row["outcomes"].transpose(0, 2, 1),
                                   row["outcomes"].transpose(0, 2, 1))
    row["vs_rp2"] = diff
    row["closes_gap"] = bool(
        100 * (rp2_row["avg_success"] - row["avg_success"]) <= GAP_POINTS)
    rows.append(row)
  return rows


def closest(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
  """The setting row whose average success is nearest the RP2 model's."""
  settings = [r for r in rows if r["dataset"] == "proxy"]
  if not settings:
    return None
  target = rows[0]["avg_success"]
  return min(settings, key=lambda r: abs(r["avg_success"] - target))



def table2_setting(config, rows: list[dict[str, Any]]) -> str | None:
  """The setting at which Table 2's variants are trained again:
  `config.proxy.table2` ('' = none, 'closest' = the setting whose baseline
  is nearest the RP2 model, or a setting's name); None when that is the
  default (Table 2 itself) or nothing."""
  choice = config.proxy.get("table2", "")
  if not choice:
    return None
  if choice == "closest":
    best = closest(rows)
    choice = None if best is None else best["setting"]
  elif choice not in config.proxy_models:
    raise ValueError(f"proxy.table2={choice!r} is not a setting of "
                     f"proxy_models ({', '.join(config.proxy_models)}); use "
                     "'', 'closest' or one of them")
  return None if choice in (None, "default") else choice


def variant_configs(config, setting: str) -> ml_collections.ConfigDict:
  """Table 2's variants (`config.models`) at a proxy setting: each
  variant's own train config (its length, seeds and penalty) with the
  setting's data block, augmentation and length factor."""
  base = config.proxy_models[setting]
  factor = max(1, base.num_train_steps // max(1, config.proxy.num_train_steps))
  out = {}
  for name, m in config.models.items():
    v = ml_collections.ConfigDict(m.to_dict())  # values, detached
    v.data = ml_collections.ConfigDict(base.data.to_dict())
    v.augment = bool(base.augment)
    v.num_train_steps = int(m.num_train_steps) * factor
    v.eval_every = v.checkpoint_every = max(1, v.num_train_steps // 2)
    v.log_every = max(1, v.num_train_steps // 10)
    out[name] = v
  return ml_collections.ConfigDict(out)
