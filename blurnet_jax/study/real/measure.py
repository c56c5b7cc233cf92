"""Table 2 on real photographs: the defended family trained on LISA crops or
GTSRB, attacked white-box on real stop signs (the study behind
`launch.reproduce --config.data.source=lisa_crops|gtsrb`).

Stages, each a function of the config and earlier results:

* `victim_sets`: the real victims, fixed before any model is trained: the
  RP2 authors' 40 real stop signs (LISA sources; none that near-duplicates
  a crop of the data set) and held-out stop signs of the test split
  (held-out tracks; official test images on GTSRB), none a near-duplicate
  of a training stop sign, spread over tracks; each with the RP2 authors'
  camouflage mask (on GTSRB placed on the victim's sign box);
* `table2_rows`: every variant, seed by seed, on each victim set: clean
  accuracy on the whole held-out split, white-box success counted over the
  victims each model classifies as stop (the slides' reading), paired
  differences against the baseline, the treatment checks
  (`effects.treatment`) and the verdicts (`table2.compare`);
* `oracle`: the RP2 model's reading of every LISA crop (per class, the
  confusion, the output map it implies).
"""

from __future__ import annotations

from typing import Any

import ml_collections
import numpy as np

from blurnet_jax.classes import LabelSpace
from blurnet_jax.data import common
from blurnet_jax.data import datasets
from blurnet_jax.data import masks as masks_lib
from blurnet_jax.study.evaluators import oracle as oracle_lib
from blurnet_jax.data import splits
from blurnet_jax.study.claims import effects
from blurnet_jax.study.evaluators import table2
from blurnet_jax.study import evaluation
from blurnet_jax.study.evaluation import Population, Victims
from blurnet_jax.study.zoo import RP2Data

#: What each real source's rows rest on (the report's "data" line).
SOURCES = {
    "lisa_crops": "real LISA crops (Mogelmose et al. 2012), models trained "
                  "from scratch, test split by video track",
    "lisa": "the LISA Traffic Sign Dataset's boxes, models trained from "
            "scratch, test split by track",
    "gtsrb": "GTSRB (Stallkamp et al. 2012), models trained from scratch, "
             "the official test split",
}


def _spread(rows: np.ndarray, groups: np.ndarray, n: int, seed: int
            ) -> np.ndarray:
  """Up to `n` of `rows`, one per group in turn (groups in a seeded order,
  each group's rows in a seeded order), so that the victims cover as many
  physical signs as they can."""
  rng = np.random.default_rng(seed)
  order = {g: list(rng.permutation(rows[groups == g]))
           for g in rng.permutation(np.unique(groups))}
  out = []
  while len(out) < n and any(order.values()):
    for g in list(order):
      if order[g] and len(out) < n:
        out.append(order[g].pop(0))
  return np.sort(np.asarray(out, np.int64))


def _frames_per_track(rows: np.ndarray, groups: np.ndarray, frames: int
                      ) -> np.ndarray:
  """Up to `frames` of `rows` per group (track), evenly spaced along the
  group's rows (the track's frames in order), sorted."""
  out = []
  for g in np.unique(groups):
    mine = rows[groups == g]
    pick = np.unique(np.linspace(0, len(mine) - 1, min(frames, len(mine)))
                     .round().astype(int))
    out.extend(mine[pick])
  return np.sort(np.asarray(out, np.int64))


def fold_builders(config) -> list[Any]:
  """The data set prepared once per fold of `config.real.folds`: fold k's
  test split is the k-th of a grouped k-fold by track."""
  out = []
  for k in range(int(config.real.folds)):
    data = ml_collections.ConfigDict(config.data.to_dict())
    data.folds, data.fold = int(config.real.folds), k
    out.append(datasets.prepare(data))
  return out


def fold_victims(config, labels: LabelSpace, real: RP2Data) -> Victims:
  """The held-out victims of a grouped k-fold (`config.real.folds`): in
  each fold, `config.real.frames_per_sign` frames (evenly spaced) of
  every stop track it holds out, none a near-duplicate of the fold's
  training stop signs; each victim carries its track and its fold, so
  that only the models trained without its fold attack it."""
  parts, candidates, excluded = [], 0, 0
  for k, builder in enumerate(fold_builders(config)):
    train_x, train_y = datasets.load_split(builder, "train")
    test_x, test_y = datasets.load_split(builder, "test")
    groups = datasets.load_field(builder, "test", "group")
    stops = np.flatnonzero(test_y == labels.stop)
    _, duplicate = splits.near_duplicates(test_x[stops],
                                          train_x[train_y == labels.stop])
    kept = stops[~duplicate]
    chosen = _frames_per_track(kept, groups[kept],
                               int(config.real.frames_per_sign))
    parts.append((test_x[chosen], groups[chosen], np.full(len(chosen), k)))
    candidates += len(stops)
    excluded += int(duplicate.sum())
  images, tracks, folds = (np.concatenate(p) for p in zip(*parts))
  return Victims(
      "held_out", common.to_float(images), real.mask, label=labels.stop,
      tracks=tracks, folds=folds, info={
          "description": f"stop crops of every track, each held out in one "
                         f"of {config.real.folds} folds "
                         f"({config.data.source})",
          "candidates": candidates, "excluded_near_duplicates": excluded,
          "duplicate_threshold": splits.DUPLICATE_DISTANCE,
          "victims": int(len(images)),
          "tracks": int(len(np.unique(tracks))),
          "frames_per_sign": int(config.real.frames_per_sign),
          "per_fold": np.bincount(folds).tolist()})


def victim_sets(config, builder, labels: LabelSpace, real: RP2Data
                ) -> list[Victims]:
  """The study's real victims (see the module doc), from the prepared
  data set `builder`; deterministic in `config.real.victim_seed`."""
  source = config.data.source
  train_x, train_y = datasets.load_split(builder, "train")
  test_x, test_y = datasets.load_split(builder, "test")
  stop_train = train_x[train_y == labels.stop]
  sets = []
  if labels.name == "lisa":
    everything = np.concatenate([train_x, test_x])
    distance, duplicate = splits.near_duplicates(real.images, everything)
    sets.append(Victims("rp2", real.images[~duplicate], real.mask,
                        label=labels.stop, info={
        "description": "the RP2 authors' real stop-sign victims (their own "
                       "photographs, packaged with the project)",
        "candidates": int(len(real.images)),
        "excluded_near_duplicates": int(duplicate.sum()),
        "nearest_crop_distance_min": float(distance.min()),
        "victims": int((~duplicate).sum())}))
  if int(config.real.get("folds", 0)):
    sets.append(fold_victims(config, labels, real))
    return _checked(sets)
  groups = datasets.load_field(builder, "test", "group")
  roi = datasets.load_field(builder, "test", "roi")
  stops = np.flatnonzero(test_y == labels.stop)
  distance, duplicate = splits.near_duplicates(test_x[stops], stop_train)
  chosen = _spread(stops[~duplicate], groups[stops[~duplicate]],
                   config.real.victims, config.real.victim_seed)
  if labels.name == "gtsrb":
    mask = np.stack([masks_lib.place_in_box(real.mask, roi[i])
                     for i in chosen])
  else:
    mask = real.mask
  sets.append(Victims(
      "held_out", common.to_float(test_x[chosen]), mask, label=labels.stop,
      tracks=groups[chosen] if labels.name != "gtsrb" else None, info={
      "description": ("official test stop signs" if labels.name == "gtsrb"
                      else "stop crops of held-out tracks") + f" ({source})",
      "candidates": int(len(stops)),
      "excluded_near_duplicates": int(duplicate.sum()),
      "duplicate_threshold": splits.DUPLICATE_DISTANCE,
      "victims": int(len(chosen)),
      "tracks": int(len(np.unique(groups[chosen])))
                if labels.name != "gtsrb" else None,
      "test_indices": chosen.tolist()}))
  return _checked(sets)


def _checked(sets: list[Victims]) -> list[Victims]:
  for v in sets:
    if not len(v.images):
      raise ValueError(
          f"no {v.name} victims are left ({v.info['candidates']} "
          f"candidates, {v.info['excluded_near_duplicates']} near-duplicates "
          "of training images): check that the test split holds stop signs "
          "of their own tracks")
  return sets


def dataset_name(source: str, victims: Victims) -> str:
  return f"{source}: {victims.name}"


def table2_rows(config, trained: dict[str, Population], key,
                sets: list[Victims], test_split, labels: LabelSpace
                ) -> list[dict[str, Any]]:
  """Table 2 on each victim set (see the module doc), every variant through
  `evaluation.evaluate` (the same id meets the same attack key in every
  variant, so the cells pair); the treatment checks on
  `effects.PROBE_IMAGES` held-out images."""
  settings = table2.grid_settings(config.real.grid)
  settings["targets"] = tuple(config.real.grid.targets[labels.name])
  test_folds = None
  if int(config.real.get("folds", 0)):  # every fold's held-out split
    splits_ = [datasets.load_split(b, "test") for b in fold_builders(config)]
    test_split = tuple(np.concatenate(p) for p in zip(*splits_))
    test_folds = np.concatenate([np.full(len(y), k)
                                 for k, (_, y) in enumerate(splits_)])
  test_images, _ = test_split
  pick = np.random.default_rng(0).permutation(len(test_images))
  probe = common.to_float(test_images[np.sort(pick[:effects.PROBE_IMAGES])])
  base = trained["baseline"]
  treatments = table2.trained_treatments(base.model, base.members, trained,
                                         probe)
  rows = []
  for victims in sets:
    grid = table2.Grid(settings, dataset_name(config.data.source, victims),
                       labels=labels, test_split=test_split,
                       count_recognised=True, test_folds=test_folds,
                       ladder=tuple(config.real.get("ladder", ())))
    rows += [evaluation.evaluate(m, victims, key, grid)
             for m in trained.values()]
    table2.compare(rows, grid.dataset, treatments)
  return rows


def oracle(builder) -> dict[str, Any]:
  """The RP2 model on every image of a LISA source (train and test): its
  per-class accuracy, confusion and the output map it implies
  (`oracle.oracle_report`)."""
  parts = [datasets.load_split(builder, s) for s in ("train", "test")]
  images = np.concatenate([x for x, _ in parts])
  labels = np.concatenate([y for _, y in parts])
  report = oracle_lib.oracle_report(images, labels)
  report["map_confirmed"] = (report["measured_output_map"]
                             == list(oracle_lib.OUTPUT_CLASSES))
  return report
