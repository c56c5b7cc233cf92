"""BlurNet beside the defences a practitioner would pick instead, on the
same real victims, with adaptive attacks and intervals.

A `Defence` says how a defended model is judged (`predict_fn`) and what an
attacker who knows it differentiates (`attack_fn`), or one who does not
(`naive_attack_fn`):

* `undefended` (baseline, BlurNet, adversarial training): judged and
  attacked as it is; nothing to adapt to, no naive attack.
* `transform_defence` (median filter, JPEG): judged through the transform,
  attacked through `bpda`; the naive attack differentiates the transform
  as implemented (JPEG's gradient is zero almost everywhere). The attack
  made on the plain model is the transfer from the baseline
  (`transfer_from`) when the members are the baseline's.
* `smoothing_defence` (column smoothing): judged by the vote, attacked
  through the soft vote (`soft_vote_apply_fn`); the naive attack
  differentiates the base classifier on the middle band (the vote's own
  gradient is zero); certified against a patch as wide as the mask.

As in Table 2 on real photographs (`study.real`), a victim counts for a
member when the member reads it, clean, as stop, and an attack succeeds
when the member no longer does; the other outcomes are NaN. Every
defence is measured through `evaluation.evaluate` (`DefenceMeasure`): the
member of seed s meets the same attack keys in every defence, so the rows
pair cell by cell (`compare_defences`).
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import functools
from typing import Any

import jax
import numpy as np

from blurnet_jax import models
from blurnet_jax import stats
from blurnet_jax.attacks import grid
from blurnet_jax.attacks import pgd
from blurnet_jax.attacks import rp2
from blurnet_jax.attacks import square
from blurnet_jax.attacks.transforms import TransformConfig
from blurnet_jax.classes import IMAGE_SHAPE, LISA, LabelSpace
from blurnet_jax.defences import occlusion
from blurnet_jax.defences import smoothing
from blurnet_jax.defences import transforms
from blurnet_jax.models import ApplyFn
from blurnet_jax.study import evaluation
from blurnet_jax.study.evaluation import Population, Victims

#: The sticker's budget for PGD and Square: L-inf 1 inside the mask (any
#: colour), RP2's threat model.
EPSILON = 1.0
#: The rates `compare_defences` pairs.
COMPARED = ("clean_accuracy", "false_stop", "rp2_success", "pgd_success",
            "square_success", "roa_success", "any_success")
#: The attacks of 'any_success', by the row's key of their success.
ATTACKS = ("rp2_success", "pgd_success", "square_success", "roa_success")
#: Each attack's key: fold_in(member_key(key, seed), index).
_KEYS = {"rp2": 0, "pgd": 1, "square": 2, "roa": 3}

#: `certify(params, images, mask) -> (N,) bool`: no sticker inside `mask`
#: can change the member's class of each image.
Certify = Callable[[Any, np.ndarray, np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True, eq=False)
class Defence:
  """A defended population and how it is judged and attacked.

  Attributes:
    population: the members (and their seeds) the defence wraps, named as
      the row.
    predict_fn: the defended classifier, its argmax the defence's class
      (clean accuracy, recognised victims, success; Square queries it).
    attack_fn: what adaptive gradient attacks (RP2, PGD, ROA) differentiate.
    naive_attack_fn: the non-adaptive attacker's, or None where there is
      no mechanism to adapt to.
    certify: a `Certify`, or None.
  """

  population: Population
  predict_fn: ApplyFn
  attack_fn: ApplyFn
  naive_attack_fn: ApplyFn | None = None
  certify: Certify | None = None

  def __post_init__(self):
    if not isinstance(self.population, Population):
      raise ValueError(f"Defence.population must be a Population, got "
                       f"{type(self.population).__name__}.")
    for field in ("predict_fn", "attack_fn", "naive_attack_fn", "certify"):
      value = getattr(self, field)
      optional = field in ("naive_attack_fn", "certify")
      if not (callable(value) or (optional and value is None)):
        raise ValueError(f"Defence.{field} must be callable, got "
                         f"{type(value).__name__}.")

  @property
  def name(self) -> str:
    return self.population.name

  @property
  def members(self) -> tuple[Any, ...]:
    return self.population.members

  @property
  def seeds(self) -> tuple[int, ...]:
    return self.population.seeds


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """The attacks of `evaluate_defence`, checked when made: the RP2 grid's
  `targets` (() for every class but stop), `steps`, EOT `num_transforms`
  (physical) and `chunk` (`grid.attack_targets`); PGD's steps; Square's
  queries and p_init; ROA's config."""

  targets: tuple = ()
  steps: int = 300
  num_transforms: int = 8
  chunk: int = -1
  pgd_steps: int = 100
  square_queries: int = 2000
  square_p_init: float = 0.3
  roa: occlusion.RoaConfig = occlusion.RoaConfig()

  def __post_init__(self):
    for make in (self.rp2_config, self.pgd_config, self.square_config):
      make()  # each config checks its own fields
    if not isinstance(self.roa, occlusion.RoaConfig):
      raise ValueError(f"EvalSettings.roa must be a RoaConfig, got "
                       f"{type(self.roa).__name__}.")

  def rp2_config(self) -> rp2.RP2Config:
    return rp2.RP2Config(steps=self.steps, num_transforms=self.num_transforms,
                         transforms=TransformConfig.physical())

  def pgd_config(self) -> pgd.PGDConfig:
    return pgd.PGDConfig(steps=self.pgd_steps)

  def square_config(self) -> square.SquareConfig:
    return square.SquareConfig(queries=self.square_queries,
                               p_init=self.square_p_init)


def undefended(population: Population) -> Defence:
  """A model that is its own defence (baseline, BlurNet, adversarial
  training): judged and attacked as it is, no naive attack."""
  return Defence(population, population.apply_fn, population.apply_fn)


def transform_defence(name: str, population: Population,
                      transform) -> Defence:
  """`population` through `transform` (an `InputTransform`), as the row
  `name`: attacked through BPDA, naively through the transform's own
  gradient."""
  seen = transforms.defended(population.apply_fn, transform)
  return Defence(population.renamed(name), seen,
                 transforms.defended(population.apply_fn, transform,
                                     adaptive=True),
                 naive_attack_fn=seen)


@functools.lru_cache(maxsize=None)
def one_band_apply_fn(apply_fn: ApplyFn, band: int, start: int) -> ApplyFn:
  """The base classifier on RGB images seen through the one band of columns
  from `start` (`ablate_columns`); cached."""

  def apply(params, images):
    return apply_fn(params, smoothing.ablate_columns(images, start, band))

  return apply


@functools.lru_cache(maxsize=None)
def _smoothed_certify(apply_fn: ApplyFn, band: int,
                      num_classes: int) -> Certify:

  def certify(params, images, mask):
    counts = smoothing.column_votes(apply_fn, params, images, band,
                                    num_classes)
    masks = mask if np.ndim(mask) == 4 else [mask] * len(images)
    widths = np.asarray([smoothing.patch_width(m) for m in masks])
    out = np.zeros(len(images), bool)
    for width in np.unique(widths):
      safe = np.asarray(smoothing.certified(counts, int(width), band))
      out[widths == width] = safe[widths == width]
    return out

  return certify


def smoothing_defence(population: Population, band: int,
                      num_classes: int) -> Defence:
  """Column smoothing of `population` (base classifiers of 6-channel
  ablated inputs) with bands `band` wide: judged by the vote, attacked
  through the soft vote, naively through the middle band, certified
  against the mask's width."""
  if isinstance(band, bool) or not isinstance(band, int) or not (
      1 <= band <= IMAGE_SHAPE[1]):
    raise ValueError(f"band={band!r} must be an int in 1..{IMAGE_SHAPE[1]}.")
  base = population.apply_fn
  return Defence(
      population, smoothing.smoothed_apply_fn(base, band, num_classes),
      smoothing.soft_vote_apply_fn(base, band),
      naive_attack_fn=one_band_apply_fn(base, band,
                                        (IMAGE_SHAPE[1] - band) // 2),
      certify=_smoothed_certify(base, band, num_classes))


def _attack_key(member_key, attack: str) -> jax.Array:
  """The key of one attack of a member (`evaluation.member_key`)."""
  return jax.random.fold_in(member_key, _KEYS[attack])


def _predictions(predict_fn: ApplyFn, params, images) -> np.ndarray:
  """int classes of images (..., 32, 32, 3), shaped as their leading axes."""
  images = np.asarray(images, np.float32)
  flat = images.reshape((-1,) + images.shape[-3:])
  return models.predict(predict_fn, params, flat).reshape(images.shape[:-3])


def counted(outcomes, recognised) -> np.ndarray:
  """float64 `outcomes` (seeds, victims, ...) with NaN where `recognised`
  (seeds, victims) is False: the victims that do not count."""
  outcomes = np.asarray(outcomes, np.float64)
  seen = np.asarray(recognised, bool)
  seen = seen.reshape(seen.shape + (1,) * (outcomes.ndim - seen.ndim))
  return np.where(seen, outcomes, np.nan)


def _rp2_noise(attack_fn, params, victims, mask, key, settings, labels):
  """(targets, 32, 32, 3): one member's RP2 sticker per target."""
  targets = grid.parse_targets(settings.targets, labels)
  return np.asarray(grid.attack_targets(
      attack_fn, params, victims, mask, targets, key,
      cfg=settings.rp2_config(), chunk=settings.chunk)["noise"])


def sticker_moved(predict_fn, params, victims, mask, noise, settings,
                  stop: int) -> np.ndarray:
  """(victims, targets) True where the member no longer reads a victim
  wearing the RP2 sticker of a target (`noise`, (targets, 32, 32, 3)) as
  `stop`."""
  cfg = settings.rp2_config()
  adversarial = np.stack([np.asarray(rp2.apply_perturbation(
      victims, mask, n, cfg)) for n in noise], axis=1)
  return _predictions(predict_fn, params, adversarial) != stop


def _attack_one(attack, defence, params, victims, mask, key, settings, stop):
  """One member's adversarial victims under 'pgd', 'square' or 'roa'."""
  if attack == "pgd":
    return pgd.pgd_attack(defence.attack_fn, params, victims, stop, mask,
                          key, EPSILON, cfg=settings.pgd_config())
  if attack == "roa":  # places its own rectangle: no mask
    return occlusion.roa_attack(defence.attack_fn, params, victims, stop,
                                key, settings.roa)
  cfg = settings.square_config()
  if mask.ndim == 3:
    return square.square_attack(defence.predict_fn, params, victims, stop,
                                mask, key, EPSILON, cfg=cfg)
  parts = [square.square_attack(  # Square takes one mask: victim by victim
      defence.predict_fn, params, victims[i:i + 1], stop, mask[i],
      jax.random.fold_in(key, i), EPSILON, cfg=cfg)["adversarial"]
           for i in range(len(victims))]
  return {"adversarial": np.concatenate([np.asarray(p) for p in parts])}


def any_success(row: dict[str, Any]) -> np.ndarray:
  """(seeds, victims): 1.0 where any attack of `ATTACKS` (RP2: any
  target) moved the victim, the per-victim worst case; NaN where the
  victim does not count."""
  rp2_any = np.max(row["_rp2_success"], axis=2)  # NaN stays NaN
  return np.max(np.stack([rp2_any] + [row[f"_{a}"] for a in ATTACKS[1:]]),
                axis=0)


def _rate(row: dict[str, Any], name: str, outcomes: np.ndarray,
          tracks=None) -> None:
  """The rate's outcomes under '_name' (in memory only) and its mean with
  the 95% interval over seeds and victims (or signs: `tracks`) under
  'name'."""
  row[f"_{name}"] = outcomes
  row[name] = evaluation.rate(outcomes, tracks)


@dataclasses.dataclass(frozen=True, eq=False)
class DefenceMeasure:
  """The defence study's measurement (`evaluation.evaluate`): on each
  member, the clean figures on the held-out split, every attack of
  `ATTACKS` (adaptive), the certificate, the baseline's transferred
  stickers and the naive RP2 attack where they apply; pooled into the
  row `evaluate_defence` describes.

  Attributes:
    defence: how the members are judged and attacked.
    settings: the attacks.
    test_split: (images, labels) of the held-out split.
    labels: the victims' label space.
    transfer_noise: (members, targets, 32, 32, 3): the baseline's RP2
      stickers, member i's shown to member i; or None.
  """

  defence: Defence
  settings: EvalSettings
  test_split: tuple[np.ndarray, np.ndarray]
  labels: LabelSpace = LISA
  transfer_noise: np.ndarray | None = None

  def member(self, population, victims, params, key, index, count):
    d, s, stop = self.defence, self.settings, self.labels.stop
    images, mask = victims.images, victims.mask
    test_images, test_labels = self.test_split
    predicted = models.predict(d.predict_fn, params, test_images)
    others = test_labels != stop
    out = {"recognised": _predictions(d.predict_fn, params, images) == stop,
           "clean_accuracy": predicted == test_labels,
           # no other class: no outcome counts, a NaN rate
           "false_stop": predicted[others] == stop if others.any()
                         else np.full(1, np.nan)}
    out["rp2_noise"] = _rp2_noise(d.attack_fn, params, images, mask,
                                  _attack_key(key, "rp2"), s, self.labels)
    out["rp2_success"] = sticker_moved(d.predict_fn, params, images, mask,
                                       out["rp2_noise"], s, stop)
    for attack in ("pgd", "square", "roa"):
      adversarial = _attack_one(attack, d, params, images, mask,
                                _attack_key(key, attack), s, stop)
      out[f"{attack}_success"] = _predictions(
          d.predict_fn, params, adversarial["adversarial"]) != stop
    if d.certify is not None:
      out["certified"] = np.asarray(d.certify(params, images, mask), bool)
    if self.transfer_noise is not None:
      out["transfer_success"] = sticker_moved(
          d.predict_fn, params, images, mask, self.transfer_noise[index], s,
          stop)
    if d.naive_attack_fn is not None:
      noise = _rp2_noise(d.naive_attack_fn, params, images, mask,
                         _attack_key(key, "rp2"), s, self.labels)
      out["naive_rp2_success"] = sticker_moved(d.predict_fn, params, images,
                                               mask, noise, s, stop)
    return out

  def pool(self, population, victims, measured):
    stack = lambda name: np.stack([m[name] for m in measured])
    recognised = stack("recognised")
    targets = grid.parse_targets(self.settings.targets, self.labels)
    tracks = victims.tracks
    row = {"defence": population.name, "seeds": list(population.seeds),
           "victims": int(len(victims.images)), "n_signs": victims.signs,
           "tracks": None if tracks is None else tracks.tolist(),
           "victims_recognised": recognised.sum(1).tolist(),
           "targets": targets}
    _rate(row, "clean_accuracy", stack("clean_accuracy").astype(np.float64))
    _rate(row, "false_stop", stack("false_stop").astype(np.float64))
    row["_rp2_noise"] = stack("rp2_noise")
    _rate(row, "rp2_success", counted(stack("rp2_success"), recognised),
          tracks)
    row["rp2_success_per_target"] = stats.nanmean(
        np.moveaxis(row["_rp2_success"], 2, 0).reshape(len(targets), -1),
        1).tolist()
    for attack in ("pgd", "square", "roa"):
      _rate(row, f"{attack}_success",
            counted(stack(f"{attack}_success"), recognised), tracks)
    _rate(row, "any_success", any_success(row), tracks)
    for name in ("certified", "transfer_success", "naive_rp2_success"):
      if name in measured[0]:
        _rate(row, name, counted(stack(name), recognised), tracks)
    if "naive_rp2_success" in measured[0]:
      row["adaptive_vs_naive"] = evaluation.paired(
          row["_naive_rp2_success"], row["_rp2_success"], tracks)
      row["adaptive_raises"] = bool(row["adaptive_vs_naive"]["ci_low"] > 0)
    else:
      row["adaptive_raises"] = None
    return row


def _check_call(defence, victims, settings, transfer_from) -> None:
  for name, value, kind in (("defence", defence, Defence),
                            ("settings", settings, EvalSettings),
                            ("victims", victims, Victims)):
    if not isinstance(value, kind):
      raise ValueError(f"{name} must be a {kind.__name__}, got "
                       f"{type(value).__name__}.")
  if transfer_from is not None and (
      "_rp2_noise" not in transfer_from
      or transfer_from["seeds"] != list(defence.seeds)):
    raise ValueError(f"transfer_from must be an evaluate_defence row of the "
                     f"seeds {list(defence.seeds)}, in memory (with its "
                     "'_rp2_noise').")


def evaluate_defence(defence: Defence, victims: Victims, test_split, key,
                     settings: EvalSettings, *,
                     transfer_from: dict[str, Any] | None = None,
                     labels: LabelSpace = LISA) -> dict[str, Any]:
  """One defence's row (`evaluation.evaluate` with `DefenceMeasure`):
  every rate per seed, with its 95% interval.

  Args:
    defence: the defence.
    victims: real stop signs in [0, 1] and the sticker's place.
    test_split: (images, labels) of the held-out split.
    key: PRNG key; member i's attacks fold in its seed
      (`evaluation.member_key`), then the attack's index.
    settings: the attacks.
    transfer_from: the baseline's row (seed-matched, in memory): its RP2
      stickers are shown to this defence ('transfer_success').
    labels: the victims' label space.

  Returns:
    'clean_accuracy' (on the test split), 'false_stop' (the test split's
    other classes read as stop: a stop bias makes stop victims look
    robust), 'rp2_success' (the adaptive grid, averaged over targets),
    'pgd_success', 'square_success', 'roa_success', 'any_success' (the
    per-victim worst case over those attacks), and where they apply
    'certified', 'transfer_success', 'naive_rp2_success' with
    'adaptive_vs_naive' and 'adaptive_raises': each a `stats.interval`,
    its outcomes (seeds, victims[, targets]) under the same key with a
    leading '_' (`jsonio` drops them).
  """
  _check_call(defence, victims, settings, transfer_from)
  measure = DefenceMeasure(
      defence, settings,
      (np.asarray(test_split[0]), np.asarray(test_split[1])), labels,
      transfer_noise=None if transfer_from is None
      else transfer_from["_rp2_noise"])
  return evaluation.evaluate(defence.population, victims, key, measure)


def _paired(base: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
  """`stats.paired_difference` (row minus base) of every compared rate."""
  if base["seeds"] != row["seeds"]:
    raise ValueError(f"rows {base['defence']!r} and {row['defence']!r} have "
                     f"seeds {base['seeds']} and {row['seeds']}; pair rows of "
                     "the same seeds.")
  out = {}
  tracks = evaluation.tracks_of(base)
  for rate in COMPARED:
    if f"_{rate}" not in base or f"_{rate}" not in row:
      raise ValueError(f"row {row['defence']!r} or {base['defence']!r} lacks "
                       f"'_{rate}'; compare the rows evaluate_defence "
                       "returned, before they are written.")
    # Clean accuracy and the stop bias are on the held-out split, not on
    # the victims: their cells are images, not frames of the victims' signs.
    on_victims = rate not in ("clean_accuracy", "false_stop")
    out[rate] = evaluation.paired(base[f"_{rate}"], row[f"_{rate}"],
                                  tracks if on_victims else None)
  return out


def compare_defences(rows: list[dict[str, Any]], reference: str) -> None:
  """Adds to each row its paired differences (row minus other: same seeds,
  victims, targets and keys) in every `COMPARED` rate against the
  'baseline' row ('vs_baseline') and against the `reference` row, BlurNet
  ('vs_reference', with 'reference' its name); a row is not compared with
  itself."""
  by_name = {r["defence"]: r for r in rows}
  if len(by_name) != len(rows):
    raise ValueError("rows hold a defence name twice; name each row once.")
  for name in ("baseline", reference):
    if name not in by_name:
      raise ValueError(f"no row is named {name!r}; rows: {sorted(by_name)}.")
  for key, other in (("vs_baseline", by_name["baseline"]),
                     ("vs_reference", by_name[reference])):
    for row in rows:
      if row is not other:
        row[key] = _paired(other, row)
  for row in rows:
    row["reference"] = reference
