"""The one evaluation behind every row of every study: a population (a
model and its members), a victim set, a key and a measurement.

  row = evaluate(population, victims, key, table2.Grid(...))
  row = evaluate(rp2.population, rp2.victims, key, grid, ids=(0, 1, 2))

Table 2 (synthetic, real, LISA-initialised, the proxy), the robustness
checklist and the defence study each define a measurement: what one member
measures on the victims under its key (`member`), and how the members'
measurements pool into the row (`pool`). `evaluate` is the loop between
them, and `member_key` its one rule for the attack randomness: member i
meets `fold_in(key, ids[i])`, its id being its training seed (or, for a
model of one member attacked several times, the attack's number). The
same id gives the same randomness in every model, so rows of different
models pair member by member.

`rate` and `rates` are the one interval pooler of the outcomes the
measurements return: the mean over members and victims with the 95%
interval of `stats.interval` (Wilson for one member of 0/1 outcomes, else
the two-way t over members and victims); NaN outcomes (victims that do not
count for a member) are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
from typing import Any, Protocol

import jax
import numpy as np

from blurnet_jax import stats
from blurnet_jax.classes import IMAGE_SHAPE, STOP
from blurnet_jax.models import ApplyFn


@dataclasses.dataclass(frozen=True, eq=False)
class Population:
  """A model and its members: the params of each trained seed (or fold),
  or the RP2 authors' model as its one member.

  Attributes:
    name: the row's name ('baseline', 'linf_5x5', 'rp2', ...).
    apply_fn: `apply_fn(params, images) -> logits` of every member.
    members: one params tree per member.
    seeds: one id per member, its training seed: the id `member_key`
      folds into the attack key.
    model: the flax module (feature maps, spectra), or None.
    alpha, penalty_kind: the training penalty.
    defence_kind, band: the training defence (`defences.training`; band
      only for 'smoothing').
    results: one training row per member (test accuracy and loss,
      victims read as stop).
    train_seconds: wall seconds of its training, over every run.
    folds: the fold of a grouped k-fold each member was trained without
      (its held-out fold), or None: every member held out the same split.
  """

  name: str
  apply_fn: ApplyFn
  members: tuple[Any, ...]
  seeds: tuple[int, ...]
  model: Any = None
  alpha: float = 0.0
  penalty_kind: str = "none"
  defence_kind: str = "none"
  band: int = 0
  results: tuple[dict[str, Any], ...] = ()
  train_seconds: float = 0.0
  folds: tuple[int, ...] | None = None

  def __post_init__(self):
    if not isinstance(self.name, str) or not self.name:
      raise ValueError(f"Population.name={self.name!r} must be a non-empty "
                       "str.")
    if not callable(self.apply_fn):
      raise ValueError(f"Population {self.name!r}: apply_fn must be "
                       f"callable, got {type(self.apply_fn).__name__}.")
    object.__setattr__(self, "members", tuple(self.members))
    object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
    if not self.seeds or len(self.members) != len(self.seeds):
      raise ValueError(f"Population {self.name!r} has {len(self.members)} "
                       f"members and {len(self.seeds)} seeds; give one seed "
                       "per member, at least one.")
    if self.folds is not None:
      object.__setattr__(self, "folds", tuple(int(f) for f in self.folds))
      if len(self.folds) != len(self.members):
        raise ValueError(f"Population {self.name!r}: {len(self.folds)} "
                         f"folds for {len(self.members)} members; give one "
                         "held-out fold per member.")

  @property
  def params(self) -> Any:
    """The first member's params: what one model stands for (Table 1's
    figures, the spectra, the transfer matrices)."""
    return self.members[0]

  @property
  def test_accuracy(self) -> float:
    """The mean test accuracy of the members' training rows."""
    return float(np.mean([r["test_accuracy"] for r in self.results]))

  def first(self, count: int) -> Population:
    """The population of its first `count` members."""
    return dataclasses.replace(
        self, members=self.members[:count], seeds=self.seeds[:count],
        results=self.results[:count],
        folds=None if self.folds is None else self.folds[:count])

  def renamed(self, name: str) -> Population:
    return dataclasses.replace(self, name=name)

  def held_out(self, index: int, folds) -> np.ndarray | None:
    """bool: which items of `folds` (the fold each victim or test image is
    held out in) member `index` may be measured on, those of its own
    held-out fold; None where `folds` is None (every item)."""
    if folds is None:
      return None
    if self.folds is None:
      raise ValueError(f"Population {self.name!r} has no folds, but its "
                       "victims are held out fold by fold; train it with "
                       "the same real.folds")
    return np.asarray(folds) == self.folds[index]


@dataclasses.dataclass(frozen=True, eq=False)
class Victims:
  """Real or synthetic signs attacked together (one universal sticker).

  Attributes:
    name: 'rp2' (the RP2 authors' victims), 'held_out', 'synthetic'.
    images: float32 [0, 1] (N, 32, 32, 3).
    mask: the sticker's place: (32, 32, C), or (N, 32, 32, C) one per
      victim.
    label: the victims' true class (stop in its label space).
    tracks: (N,) the physical sign of each victim (its video track), or
      None where each victim is a sign of its own.
    sticker: (N, 32, 32, 3) the victims already wearing a physical
      perturbation (the RP2 authors' own), or None.
    info: JSON-able: where the victims come from, what was excluded.
    folds: (N,) the fold of a grouped k-fold each victim is held out in:
      only the members trained without that fold attack it
      (`Population.folds`); None: every member attacks every victim.
  """

  name: str
  images: np.ndarray
  mask: np.ndarray
  label: int = STOP
  tracks: np.ndarray | None = None
  sticker: np.ndarray | None = None
  info: dict[str, Any] = dataclasses.field(default_factory=dict)
  folds: np.ndarray | None = None

  def __post_init__(self):
    images = np.asarray(self.images, np.float32)
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
      raise ValueError(f"victims {self.name!r} must have shape (N, 32, 32, "
                       f"3), got {images.shape}.")
    object.__setattr__(self, "images", images)
    object.__setattr__(self, "mask", np.asarray(self.mask, np.float32))
    if self.tracks is not None:
      tracks = np.asarray(self.tracks)
      if tracks.shape != (len(images),):
        raise ValueError(f"victims {self.name!r}: tracks of shape "
                         f"{tracks.shape}; give one track per victim "
                         f"({len(images)}).")
      object.__setattr__(self, "tracks", tracks)
    if self.folds is not None:
      folds = np.asarray(self.folds, np.int64)
      if folds.shape != (len(images),):
        raise ValueError(f"victims {self.name!r}: folds of shape "
                         f"{folds.shape}; give one fold per victim "
                         f"({len(images)}).")
      object.__setattr__(self, "folds", folds)

  def subset(self, keep: np.ndarray) -> Victims:
    """The victims where `keep` (bool (N,)) holds."""
    take = lambda a: None if a is None else np.asarray(a)[keep]
    mask = self.mask[keep] if self.mask.ndim == 4 else self.mask
    return dataclasses.replace(
        self, images=self.images[keep], mask=mask, tracks=take(self.tracks),
        sticker=take(self.sticker), folds=take(self.folds))

  @property
  def signs(self) -> int:
    """The number of physical signs among the victims."""
    if self.tracks is None:
      return int(len(self.images))
    return int(len(np.unique(self.tracks)))


def member_key(key: jax.Array, member_id: int) -> jax.Array:
  """The attack key of the member of id `member_id`: every evaluation's
  one per-member key rule."""
  return jax.random.fold_in(key, int(member_id))


class Measurement(Protocol):
  """What a study measures on one member, and how its members pool."""

  def member(self, population: Population, victims: Victims, params,
             key: jax.Array, index: int, count: int) -> dict[str, Any]:
    """Member `index` of `count` (params `params`) of `population` on the
    victims, attacked with `key`."""

  def pool(self, population: Population, victims: Victims,
           measured: list[dict[str, Any]]) -> dict[str, Any]:
    """The row from every member's `member` result, in member order."""


def cells(population: Population, ids: Sequence[int] | None = None
          ) -> list[tuple[int, Any]]:
  """(id, params) of each member evaluated: the population's members with
  their seeds; with `ids`, a one-member population (the RP2 model) under
  each id, or one id per member."""
  if ids is None:
    return list(zip(population.seeds, population.members))
  ids = tuple(int(i) for i in ids)
  if not ids:
    raise ValueError(f"evaluate {population.name!r}: ids=() names no "
                     "member; give at least one id.")
  if len(population.members) == 1:
    return [(i, population.members[0]) for i in ids]
  if len(ids) != len(population.members):
    raise ValueError(f"evaluate {population.name!r}: {len(ids)} ids for "
                     f"{len(population.members)} members; give one id per "
                     "member (or none: the members' seeds).")
  return list(zip(ids, population.members))


def evaluate(population: Population, victims: Victims, key: jax.Array,
             measurement: Measurement, *,
             ids: Sequence[int] | None = None) -> dict[str, Any]:
  """`measurement` on every member of `population` (see `cells`), member
  i with the key `member_key(key, id_i)`, pooled into one row."""
  chosen = cells(population, ids)
  measured = [measurement.member(population, victims, params,
                                 member_key(key, member_id), index,
                                 len(chosen))
              for index, (member_id, params) in enumerate(chosen)]
  return measurement.pool(population, victims, measured)


def label(population: Population, index: int, count: int,
          what: str = "") -> str:
  """The progress label of member `index` of `count`."""
  head = f"{what} {population.name}".strip()
  return f"{head} [{index + 1}/{count}]" if count > 1 else head


def rate(outcomes, clusters=None) -> dict[str, Any]:
  """The mean of `outcomes` (members, victims, ...) with its 95% interval
  (`stats.interval`); NaN outcomes do not count. `clusters`: the physical
  sign of each victim (`Victims.tracks`), each sign one unit."""
  return stats.interval(np.asarray(outcomes, np.float64), clusters=clusters)


def paired(a, b, clusters=None) -> dict[str, Any]:
  """`stats.paired_difference` (b minus a) of outcomes on the same members
  (by id), victims and attack keys, each sign one unit given
  `clusters`."""
  return stats.paired_difference(a, b, clusters=clusters)


def tracks_of(row: dict[str, Any]) -> np.ndarray | None:
  """The victims' tracks a row was measured on (None: every victim a sign
  of its own)."""
  tracks = row.get("tracks")
  return None if tracks is None else np.asarray(tracks)


def rates(stack) -> tuple[Any, Any, Any]:
  """`rate` of each index of the middle axes of `stack` (members, ...,
  victims): (means, lows, highs), each shaped as the middle axes (scalars
  without them), rounded to 6 digits."""
  x = np.asarray(stack, np.float64)
  flat = x.reshape(x.shape[0], -1, x.shape[-1])
  cis = [rate(flat[:, i]) for i in range(flat.shape[1])]
  shape = x.shape[1:-1]
  return tuple(np.asarray([c[k] for c in cis]).reshape(shape).round(6)
               .tolist() for k in ("mean", "ci_low", "ci_high"))

