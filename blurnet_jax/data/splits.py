"""Leak-free splits of real photographs, and near-duplicate checks.

  held_out = grouped_split(labels, groups, fraction=0.2, seed=0)
  fold_of = grouped_folds(labels, groups, folds=5, seed=0)
  distance, duplicate = near_duplicates(victims, training_images)

A group is one physical sign (a LISA video track, a GTSRB (class, track)):
its images are near-copies of each other, so a group lies wholly on one
side of a split, whatever classes it holds.
"""

from __future__ import annotations

import numpy as np

#: Mean absolute pixel difference (of 255) under which two 32x32 images are
#: taken for the same photograph: two copies of one LISA annotation differ
#: by about 5/255 after JPEG compression (the crops' README).
DUPLICATE_DISTANCE = 5.0 / 255.0


def grouped_split(labels, groups, *, fraction: float, seed: int,
                  class_names=None) -> np.ndarray:
  """bool (N,): True for the examples held out, by whole groups.

  Stratified: each class, rarest (fewest groups) first, gets groups of its
  own held out, in a seeded random order, until at least `fraction` of its
  examples are held out, but never its last group on the training side (a
  group holding several classes counts for each of them). So every class
  has held-out and training examples.

  Args:
    labels: int (N,) class of each example.
    groups: (N,) any hashable ids (ints or strings): the physical sign.
    fraction: the share of each class to hold out, in (0, 1).
    seed: the order in which a class's groups are tried.
    class_names: names for the error messages (default: the indices).

  Raises:
    ValueError: lengths differ, a bad fraction, or a class with fewer than
      two groups (it cannot be both trained on and held out).
  """
  labels = np.asarray(labels)
  groups = np.asarray(groups)
  if labels.shape != groups.shape or labels.ndim != 1:
    raise ValueError(f"labels {labels.shape} and groups {groups.shape} must "
                     "be 1-D arrays of one length")
  if not 0 < fraction < 1:
    raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
  ids, group_of = np.unique(groups, return_inverse=True)
  classes = np.unique(labels)
  name = (lambda c: class_names[c]) if class_names is not None else str
  # counts[g, c]: examples of class c in group g.
  index = np.searchsorted(classes, labels)
  counts = np.zeros((len(ids), len(classes)), np.int64)
  np.add.at(counts, (group_of, index), 1)
  has = counts > 0
  train_groups = has.sum(0)  # groups of each class still on the train side
  for c, n in zip(classes, train_groups):
    if n < 2:
      raise ValueError(
          f"class {name(int(c))} has {n} group(s) (physical signs); a "
          "grouped split needs at least 2 per class: add images of another "
          "sign of that class or drop the class")
  held = np.zeros(len(ids), bool)
  rng = np.random.default_rng(seed)
  total = counts.sum(0)
  for j in np.argsort(train_groups, kind="stable"):
    for g in rng.permutation(np.flatnonzero(has[:, j])):
      held_count = counts[held, j].sum()
      if held_count >= fraction * total[j] and held_count > 0:
        break
      if held[g] or np.any(train_groups[has[g]] < 2):
        continue
      held[g] = True
      train_groups[has[g]] -= 1
  return held[group_of]


def grouped_folds(labels, groups, *, folds: int, seed: int) -> np.ndarray:
  """int (N,): the fold (0 .. folds - 1) of each example, by whole groups.

  Grouped, stratified k-fold: each class, rarest (fewest groups) first,
  deals its groups not yet dealt, in a seeded random order, each to the
  fold holding the fewest of the class's examples so far (ties: the lower
  fold). So every group (physical sign) is held out in exactly one fold,
  and each fold holds about 1/folds of every class with at least `folds`
  groups. A group holding several classes is dealt once.

  Raises:
    ValueError: lengths differ or fewer than 2 folds.
  """
  labels = np.asarray(labels)
  groups = np.asarray(groups)
  if labels.shape != groups.shape or labels.ndim != 1:
    raise ValueError(f"labels {labels.shape} and groups {groups.shape} must "
                     "be 1-D arrays of one length")
  if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
    raise ValueError(f"folds={folds!r} must be an int >= 2")
  ids, group_of = np.unique(groups, return_inverse=True)
  classes, index = np.unique(labels, return_inverse=True)
  counts = np.zeros((len(ids), len(classes)), np.int64)
  np.add.at(counts, (group_of, index), 1)
  has = counts > 0
  fold = np.full(len(ids), -1)
  rng = np.random.default_rng(seed)
  for j in np.argsort(has.sum(0), kind="stable"):
    load = np.zeros(folds, np.int64)  # the class's examples per fold
    for g in np.flatnonzero(has[:, j] & (fold >= 0)):
      load[fold[g]] += counts[g, j]
    for g in rng.permutation(np.flatnonzero(has[:, j] & (fold < 0))):
      fold[g] = int(np.argmin(load))
      load[fold[g]] += counts[g, j]
  return fold[group_of]


def _unit(images) -> np.ndarray:
  """float32 pixels in [0, 1] of uint8 or [0, 1] float images."""
  x = np.asarray(images)
  if x.dtype == np.uint8:
    return x.astype(np.float32) / 255.0
  return x.astype(np.float32)


def near_duplicates(images, references, *,
                    threshold: float = DUPLICATE_DISTANCE
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Each image's distance to its nearest reference, and whether it is a
  near-duplicate (distance below `threshold`).

  The distance is the mean absolute difference of the pixels, as a share
  of 255 (each set uint8, or floats in [0, 1]).

  Returns:
    float64 (N,) distances (inf with no references) and bool (N,).
  """
  a, b = _unit(images), _unit(references)
  a = a.reshape(len(a), int(np.prod(a.shape[1:])))
  b = b.reshape(len(b), int(np.prod(b.shape[1:])))
  best = np.full(len(a), np.inf)
  chunk = max(1, 25_000_000 // max(1, a.size))  # ~100 MB of differences
  for start in range(0, len(b), chunk):
    part = b[start:start + chunk]
    d = np.abs(a[:, None, :] - part[None]).mean(-1)
    best = np.minimum(best, d.min(1))
  return best, best < threshold
