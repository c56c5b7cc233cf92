"""The stages of the defence study: BlurNet beside the defences a
practitioner would pick instead, on one real source (`data.source`
lisa_crops, gtsrb or lisa), in order for `stages.run_stages`:

  data      the source prepared from `data.manual_dir` (data.json)
  victims   the real victims, fixed before any model is trained
  train     every defence of `real.variants`, trained as Table 2 on real
            photographs trains its variants (training.json, with each
            one's wall seconds)
  defences  every defence judged and attacked on one victim set with the
            same keys (`study.defence_eval`): one row each, paired against
            the baseline and against BlurNet, with its training cost and
            the checklist's flags (defences.json)

The rows of the input transformations wrap the baseline's members at test
time (their training is the baseline's). The report's table, scatter and
reading are drawn from defences.json (`study.defence_report`).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import ml_collections
import numpy as np

from blurnet_jax.classes import IMAGE_SHAPE, REAL_SOURCES, LabelSpace
from blurnet_jax.data import datasets
from blurnet_jax.defences import occlusion
from blurnet_jax.defences import smoothing
from blurnet_jax.defences.transforms import InputTransform
from blurnet_jax.study.defences import evaluate as defence_eval
from blurnet_jax.study.defences import report as defence_report
from blurnet_jax.study.real import stages as real_stages
from blurnet_jax.study.real.stages import Inputs
from blurnet_jax.study.stages import Stage
from blurnet_jax.study.claims import checks
from blurnet_jax.study import evaluation
from blurnet_jax.study.evaluation import Population

#: The rates drawn per seed in the report's scatter.
PER_SEED = ("clean_accuracy", "rp2_success", "any_success")
def eval_settings(config: ml_collections.ConfigDict, labels: LabelSpace
                  ) -> defence_eval.EvalSettings:
  """The attacks of `config.defences` on the label space `labels`."""
  d = config.defences
  return defence_eval.EvalSettings(
      targets=tuple(d.targets[labels.name]), steps=d.steps,
      num_transforms=d.num_transforms, chunk=d.chunk, pgd_steps=d.pgd_steps,
      square_queries=d.square_queries, square_p_init=d.square_p_init,
      roa=occlusion.RoaConfig(**d.roa.to_dict()))


def defences(config: ml_collections.ConfigDict,
             trained: dict[str, Population], labels: LabelSpace
             ) -> list[defence_eval.Defence]:
  """Every defence of the study: the trained ones in `real.variants`'
  order, the baseline first (column smoothing judged by its vote), then
  each input
  transformation of `defences.transforms` on the baseline."""
  out = []
  for name in sorted(config.real.variants, key=lambda n: n != "baseline"):
    m = trained[name]
    out.append(defence_eval.smoothing_defence(m, m.band, labels.num_classes)
               if m.defence_kind == "smoothing"
               else defence_eval.undefended(m))
  for name, t in config.defences.transforms.items():
    out.append(defence_eval.transform_defence(
        name, trained["baseline"], InputTransform(**t.to_dict())))
  return out


def certificate_reach(mask, band: int) -> dict[str, Any]:
  """What column smoothing can certify against a sticker in `mask` (one or
  one per victim): its widest patch meets `bands_met` of the 32 band
  positions, each moving one vote, so a vote is certifiable only when the
  top class leads by 2 x bands_met; at `certifiable=False` that lead
  exceeds the 32 votes and nothing can be certified."""
  masks = mask if np.ndim(mask) == 4 else [mask]
  width = max(smoothing.patch_width(m) for m in masks)
  met = min(IMAGE_SHAPE[1], width + band - 1)
  return {"band": band, "patch_width": width, "bands_met": met,
          "votes": IMAGE_SHAPE[1], "certifiable": 2 * met < IMAGE_SHAPE[1]}


def held_out_draw(split, count: int):
  """`count` images of the held-out `split` (images, labels), drawn with a
  fixed seed, in their order (all of them for 0 or more than there are)."""
  images, labels = split
  if count < 0:
    raise ValueError(f"defences.test_images={count} must be >= 0 (0: the "
                     "whole held-out split)")
  if count == 0 or count >= len(labels):
    return images, labels
  chosen = np.sort(np.random.default_rng(0).choice(len(labels), count,
                                                   replace=False))
  return images[chosen], labels[chosen]


def training_cost(trained: dict[str, Population], name: str
                  ) -> dict[str, Any]:
  """The defence's training: what it trained as, its wall seconds and
  their multiple of the baseline's (a test-time transform adds none)."""
  variant = name if name in trained else "baseline"
  seconds = trained[variant].train_seconds
  base = trained["baseline"].train_seconds
  return {"trained_as": variant,
          "kind": (trained[variant].defence_kind if name in trained
                   else "input transform"),
          "seconds": seconds,
          "cost": seconds / base if base > 0 else None}


def _finish(row: dict[str, Any], baseline: dict[str, Any],
            cost: dict[str, Any]) -> None:
  """The row's per-seed rates (the scatter), strongest attack, cost and
  flags."""
  tracks = evaluation.tracks_of(row)
  row["per_seed"] = {rate: [evaluation.rate(
      row[f"_{rate}"][i:i + 1], None if rate == "clean_accuracy" else tracks)
                            for i in range(len(row["seeds"]))]
                     for rate in PER_SEED}
  worst = max(defence_eval.ATTACKS,
              key=lambda a: np.nan_to_num(row[a]["mean"], nan=-1))
  row["worst_attack"] = worst.removesuffix("_success")
  row["train"] = cost
  row["checks"] = checks.defence_checks(row, baseline)
  row["flags"] = checks.flags(row["checks"])


def defences_stage(config, inputs: Inputs) -> dict[str, Any]:
  """Every defence's row on the victim set `defences.victim_set`, the
  baseline's first (its stickers transfer to the others)."""
  labels = inputs.labels
  chosen = config.defences.victim_set[labels.name]
  sets = {v.name: v for v in inputs.victim_sets}
  if chosen not in sets:
    raise ValueError(f"defences.victim_set.{labels.name}={chosen!r}; this "
                     f"source has the victim sets {sorted(sets)}")
  victims = sets[chosen]
  settings = eval_settings(config, labels)
  test_split = held_out_draw(datasets.load_split(inputs.builder, "test"),
                             int(config.defences.test_images))
  key = jax.random.fold_in(inputs.key, 3)
  rows: list[dict[str, Any]] = []
  built = defences(config, inputs.trained, labels)
  for i, defence in enumerate(built):
    print(f"defences: {defence.name} ({i + 1}/{len(built)})", flush=True)
    t0 = time.perf_counter()
    rows.append(defence_eval.evaluate_defence(
        defence, victims, test_split, key, settings,
        transfer_from=rows[0] if rows else None, labels=labels))
    rows[-1]["eval_seconds"] = round(time.perf_counter() - t0, 1)
  defence_eval.compare_defences(rows, config.defences.reference)
  for row in rows:
    if "certified" in row:
      row["certificate"] = certificate_reach(
          victims.mask, inputs.trained[row["defence"]].band)
    _finish(row, rows[0], training_cost(inputs.trained,
                                        row["defence"]))
  return {"defences": {"source": config.data.source, "labels": labels.name,
                       "victim_set": chosen, "victims": victims.info,
                       "reference": config.defences.reference,
                       "settings": config.defences.to_dict(),
                       "rows": rows}}


#: Table 2 on real photographs' data, victims and train stages, then the
#: defences.
STAGES = tuple(s for s in real_stages.STAGES
               if s.name in ("data", "victims", "train")) + (
    Stage("defences", defences_stage, ("defences",),
          lambda r: defence_report.defences_text(r["defences"])),)


def check(config: ml_collections.ConfigDict) -> None:
  """One-line errors for a config the study cannot run."""
  if config.data.source not in REAL_SOURCES:
    raise ValueError(
        f"the defence study runs on a real source, not data.source="
        f"{config.data.source!r}; pass --config.data.source=lisa_crops (or "
        "gtsrb) and --config.data.manual_dir=PATH")
  if int(config.real.get("folds", 0)):
    raise ValueError(f"real.folds={config.real.folds}: the defence study "
                     "measures one split, not a grouped k-fold yet; pass "
                     "--config.real.folds=0")
  for name in ("baseline", config.defences.reference):
    if name not in config.real.variants:
      raise ValueError(f"real.variants={tuple(config.real.variants)} lacks "
                       f"{name!r}: every defence is paired against the "
                       "baseline and against defences.reference")
