r"""An evaluation a sceptical reviewer accepts: adaptive, gradient-free and
physical checks of every model (Carlini et al. 2019's checklist, automated).

    python -m launch.robustness --config=configs/robustness.py:runlocal \
        --workdir=/tmp/robustness

For each model, on stop-sign victims (true class stop; success = the
perturbed victim is not classified as stop):

* gradient check: the input gradient of the loss is finite and non-zero on
  every victim (ART's check; a zero or NaN gradient makes PGD blind);
* unbounded attacks: PGD on the whole image with a budget that covers the
  pixel range (L-inf 1, L2 sqrt(32 * 32 * 3)) must reach 100%;
* budget curves: PGD and the gradient-free Square Attack, L-inf and L2,
  restricted to the sticker mask, success against the budget; each must
  not fall as the budget grows, and Square must not beat PGD (if a
  gradient-free search wins, the gradients mislead: gradient masking);
* a steps curve: PGD success must not fall with more iterations;
* EOT at test time: every attack's images shown under fresh random
  physical transforms;
* transfer: perturbations made on each model (PGD at the reference budget,
  and a physical RP2 sticker) shown to every other one; a model's own
  (white-box) success must not be below what transfers to it;
* physical test bench: an RP2 sticker (EOT over physical transforms)
  measured against viewing angle and against distance.

"Must not fall" and "must not beat" allow one victim of slack: the attacks
start at random points, so two runs can differ by a victim without anything
being wrong. A check that fails becomes a flag in `robustness.json` and in
the report, with the numbers that raised it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np
import optax

from blurnet_jax import distributed
from blurnet_jax import models
from blurnet_jax import plots
from blurnet_jax import stats
from blurnet_jax.attacks import grid
from blurnet_jax.attacks import pgd
from blurnet_jax.attacks import rp2
from blurnet_jax.attacks import square
from blurnet_jax.attacks import transforms
from blurnet_jax.classes import IMAGE_SHAPE, STOP
from blurnet_jax.data import masks as masks_lib
from blurnet_jax.data import synthetic
from blurnet_jax.jsonio import write_json
from blurnet_jax.study import zoo
from blurnet_jax.study.stages import Stages
from blurnet_jax.study.zoo import RP2Data, TrainedModel

ATTACKS = ("pgd", "square")
NORMS = pgd.NORMS
UNBOUNDED = {"linf": 1.0, "l2": math.sqrt(math.prod(IMAGE_SHAPE))}


def _values(values, name: str, cast, valid, what: str) -> list:
  """The values of a tuple setting, each `cast` and `valid`."""
  if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
    values = (values,)
  try:
    out = [cast(v) for v in values]
  except (TypeError, ValueError):
    out = []
  if not out or not all(valid(v) for v in out):
    raise ValueError(f"robustness.{name}={values!r} must be a tuple of "
                     f"{what}")
  return out


def _floats(values, name: str) -> list[float]:
  return _values(values, name, float, lambda v: math.isfinite(v) and v >= 0,
                 "numbers >= 0, e.g. (0.1, 0.25, 1.0)")


def _ints(values, name: str, lo: int, hi: int) -> list[int]:
  return _values(values, name, int, lambda v: lo <= v <= hi,
                 f"integers in {lo}..{hi}")


# ------------------------------------------------------------- programs --


@functools.partial(jax.jit, static_argnames=("apply_fn",))
def _gradients(apply_fn, params, images):
  def loss(x):
    logits = apply_fn(params, x)
    labels = jnp.full(x.shape[:1], STOP)
    return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits,
                                                                   labels))
  return jax.grad(loss)(images)


def gradient_check(apply_fn, params, images) -> dict[str, float]:
  """Share of victims whose input gradient (of the CE of stop) is finite
  everywhere, and share whose gradient is also non-zero; its median norm."""
  g = np.asarray(_gradients(apply_fn, params, jnp.asarray(images)))
  g = g.reshape(len(g), -1)
  finite = np.all(np.isfinite(g), axis=1)
  norm = np.where(finite, np.linalg.norm(np.where(np.isfinite(g), g, 0),
                                         axis=1), 0.0)
  return {"finite": float(finite.mean()),
          "nonzero": float(np.mean(finite & (norm > 0))),
          "median_norm": float(np.median(norm))}


@functools.partial(jax.jit, static_argnames=("attack", "apply_fn", "cfg"))
def _curve(attack, apply_fn, params, images, members, cfg):
  """`attack` for every member (budget, mask, L2 flag, step count, raw
  key): one program, vmapped over them, whatever mix of norms, budgets and
  (PGD) step counts up to `cfg.steps` they hold."""
  def one(epsilon, mask, l2, steps, key):
    key = jax.random.wrap_key_data(key)
    if attack == "pgd":
      out = pgd.pgd_attack(apply_fn, params, images, STOP, mask, key,
                           epsilon, cfg=cfg, l2=l2, steps=steps)
    else:
      out = square.square_attack(apply_fn, params, images, STOP, mask, key,
                                 epsilon, cfg=cfg, l2=l2)
    return out["adversarial"]
  return jax.vmap(one)(*members)


def budget_curve(attack, apply_fn, params, images, masks, key, budgets,
                 cfg, *, l2=None, steps=None) -> np.ndarray:
  """`attack` ('pgd' or 'square', `cfg` its config) at every budget, one
  compiled program for the whole curve (`_curve`).

  Member i has budget `budgets[i]`, mask `masks[i]`, key `key[i]` (or the
  one `key` for all), norm L2 where `l2[i]` (None: `cfg.norm` for all) and,
  for PGD, `steps[i]` <= cfg.steps steps (None: cfg.steps for all); each
  gives what its own single run would (to float rounding). The member axis
  is split over every device of the job (`distributed.global_mesh`),
  padded to a multiple of their count by repeating the last member.

  Returns:
    Host array (len(budgets), N, 32, 32, 3), on every process.
  """
  budgets = np.asarray(budgets, np.float32)
  n = len(budgets)
  keys = jnp.asarray(key)
  if keys.ndim == 0:
    keys = jnp.stack([keys] * n)
  l2 = np.full(n, cfg.norm == "l2") if l2 is None else np.asarray(l2, bool)
  default_steps = getattr(cfg, "steps", 1)
  steps = np.full(n, default_steps, np.int32) if steps is None else (
      np.asarray(steps, np.int32))
  members = (budgets, np.asarray(masks, np.float32), l2, steps,
             np.asarray(jax.random.key_data(keys)))
  mesh = distributed.global_mesh("budget")
  if mesh is None:
    return np.asarray(_curve(attack, apply_fn, params, images,
                             jax.tree.map(jnp.asarray, members), cfg))
  members = distributed.shard_leading(distributed.pad_leading(
      members, distributed.padded_size(n)), mesh)
  params, images = jax.device_get((params, images))
  return distributed.to_host(_curve(attack, apply_fn, params,
                                    np.asarray(images), members, cfg))[:n]


@functools.partial(jax.jit, static_argnames=("apply_fn", "samples"))
def _misclassified(apply_fn, params, sets, key, samples):
  """(K, N, 32, 32, 3) image sets -> per image, not stop as they are (0/1)
  and the share of `samples` fresh physical transforms under which it is
  not stop; each (K, N)."""
  physical = transforms.TransformConfig.physical()

  def one(x, k):
    plain = jnp.argmax(apply_fn(params, x), -1) != STOP
    moved = rp2.predictions_under_transforms(
        k, apply_fn, params, x, transforms=physical,
        num_samples=samples) != STOP
    return plain.astype(jnp.float32), jnp.mean(moved, axis=0)

  keys = jax.random.split(key, sets.shape[0])
  return jax.lax.map(lambda a: one(*a), (sets, keys))


def not_stop(apply_fn, params, images) -> np.ndarray:
  """Per image of `images` (N, 32, 32, 3): 1.0 where not classified as
  stop."""
  return (models.predict(apply_fn, params, images) != STOP).astype(
      np.float64)


def misclassified(apply_fn, params, images) -> float:
  """Share of `images` (N, 32, 32, 3) not classified as stop."""
  return float(np.mean(not_stop(apply_fn, params, images)))


# ----------------------------------------------------------- per model --


def attack_configs(rc) -> dict[str, Any]:
  """The PGD / Square configs of a robustness block, by 'attack_norm'."""
  out = {}
  for norm in NORMS:
    for attack in ATTACKS:
      out[f"{attack}_{norm}"] = (
          pgd.PGDConfig(norm=norm, steps=int(rc.pgd_steps))
          if attack == "pgd" else square.SquareConfig(
              norm=norm, queries=int(rc.square_queries),
              p_init=float(rc.square_p_init)))
  return out


def _settings(rc) -> tuple[dict[str, list[float]], float, list[int]]:
  """The budgets, reference budget and steps of `rc`, checked."""
  budgets = {"linf": _floats(rc.linf_budgets, "linf_budgets"),
             "l2": _floats(rc.l2_budgets, "l2_budgets")}
  reference = float(rc.reference_linf)
  if reference not in budgets["linf"]:
    raise ValueError(f"robustness.reference_linf={reference:g} is not one of "
                     f"linf_budgets {budgets['linf']}; add it there")
  steps = _ints(rc.steps_curve, "steps_curve", 1, 100000)
  _physical_settings(rc)  # before the long part: a typo fails at once
  return budgets, reference, steps


def _run_members(attack, apply_fn, params, images, rows, cfg) -> np.ndarray:
  """`budget_curve` over rows of (name, budget, mask, l2, steps or None
  for cfg's, key)."""
  _, budgets, masks, l2, steps, keys = zip(*rows)
  steps = [getattr(cfg, "steps", 1) if s is None else s for s in steps]
  return budget_curve(attack, apply_fn, params, images, jnp.stack(masks),
                      jnp.stack(keys), budgets, cfg, l2=l2, steps=steps)


def measure(apply_fn, params, images, mask, key, rc, *,
            sticker: np.ndarray | None = None, desc: str = ""
            ) -> dict[str, Any]:
  """Every per-victim measurement of the checklist on one model and key.

  Returns {'gradients': the gradient check, 'outcomes': a tree of arrays
  whose last axis is the victims (1.0 = not classified as stop; under EOT
  the share of transforms), '_adversarial': the images that the transfer
  matrix shows to other models}. `pool_members` turns the outcomes of one or
  more members (seeds, attack keys) into figures with intervals.
  """
  images = np.asarray(images, np.float32)
  budgets, reference, steps = _settings(rc)
  cfgs = attack_configs(rc)
  x = jnp.asarray(images)
  gradients = gradient_check(apply_fn, params, images)

  # One program per attack: PGD over every budget of both norms inside the
  # mask, the unbounded budget on the whole image, and the steps curve's
  # runs up to the budget curves' step count (PGD at the reference budget
  # inside the mask); Square over every budget of both norms. Each member
  # keeps the key it had as a program of its own.
  keys = list(jax.random.split(key, 16))
  key_of = dict(zip(cfgs, keys))  # pgd_linf, square_linf, pgd_l2, square_l2
  later = iter(keys[len(cfgs):])
  sticker_key, eot_key = next(later), next(later)
  pgd_steps = int(rc.pgd_steps)
  mask = jnp.asarray(mask, jnp.float32)
  whole = jnp.ones_like(mask)
  steps_rows = [("steps", reference, mask, False, s, next(later))
                for s in steps if s != pgd_steps]
  made, steps_made = {}, {}
  for attack in ATTACKS:
    rows = []  # (name, budget, mask, l2, steps, key)
    for norm in NORMS:
      name = f"{attack}_{norm}"
      rows += [(name, b, mask, norm == "l2", None, key_of[name])
               for b in budgets[norm]]
      if attack == "pgd":
        rows.append((name, UNBOUNDED[norm], whole, norm == "l2", None,
                     key_of[name]))
    if desc:
      print(f"  {desc}: {attack}, budgets linf "
            f"{', '.join(f'{b:g}' for b in budgets['linf'])} and l2 "
            f"{', '.join(f'{b:g}' for b in budgets['l2'])} in the mask"
            + (" (and unbounded on the whole image)" if attack == "pgd"
               else ""), flush=True)
    if attack == "pgd":
      rows += [r for r in steps_rows if r[4] < pgd_steps]
    cfg = dataclasses.replace(cfgs[f"{attack}_linf"], norm="linf")
    adv = _run_members(attack, apply_fn, params, x, rows, cfg)
    steps_made.update((r[4], a) for r, a in zip(rows, adv)
                      if r[0] == "steps")
    for name in (f"{attack}_{norm}" for norm in NORMS):
      made[name] = jnp.asarray(adv[[r[0] == name for r in rows]])
  made = {name: made[name] for name in cfgs}  # the order the EOT keys meet
  if sticker is None:
    cfg = rp2.RP2Config(steps=int(rc.rp2_steps),
                        num_transforms=int(rc.rp2_transforms),
                        transforms=transforms.TransformConfig.physical())
    # Toward RP2's default target, the authors' (12, speedLimit45).
    res = grid.attack_targets(
        apply_fn, params, images, np.asarray(mask), [cfg.target], sticker_key,
        cfg=cfg, desc=f"{desc} physical RP2" if desc else None)
    sticker = res["adversarial"][0]
  sticker = np.asarray(sticker, np.float32)
  # One program measures every set as it is and under EOT: the clean
  # victims first, the sticker last.
  plain, moved = (np.asarray(v, np.float64) for v in _misclassified(
      apply_fn, params,
      jnp.concatenate([x[None], *made.values(), jnp.asarray(sticker)[None]]),
      eot_key, int(rc.eot_samples)))
  out: dict[str, Any] = {"clean": plain[0], "clean_eot": moved[0],
                         "sticker": plain[-1], "sticker_eot": moved[-1],
                         "budgets": {}, "unbounded": {}}
  start = 1
  for name, adv in made.items():
    attack, norm = name.split("_")
    e = len(budgets[norm])
    out["budgets"][name] = {"success": plain[start:start + e],
                            "eot_success": moved[start:start + e]}
    if attack == "pgd":
      out["unbounded"][norm] = plain[start + e]
    start += len(adv)

  # The steps curve: the runs longer than the budget curves' go in one more
  # program (of the longest count); at the budget curves' own step count it
  # is that curve's run, not a second one.
  ref_adv = np.asarray(made["pgd_linf"][budgets["linf"].index(reference)])
  longer = [r for r in steps_rows if r[4] > pgd_steps]
  if longer:
    steps_made.update(zip((r[4] for r in longer), _run_members(
        "pgd", apply_fn, params, x, longer,
        pgd.PGDConfig(steps=max(r[4] for r in longer)))))
  out["steps"] = np.stack([
      not_stop(apply_fn, params, ref_adv if s == pgd_steps else steps_made[s])
      for s in steps])
  out["physical"] = physical_outcomes(apply_fn, params, images, sticker, rc)
  return {"gradients": gradients, "outcomes": out,
          "_adversarial": {"pgd_linf": ref_adv, "rp2": sticker}}


def _rate(stack: np.ndarray) -> tuple[list, list, list]:
  """(members, ..., victims) outcomes -> the mean and 95% interval of each
  index of the middle axes (`stats.interval`: Wilson for one member of
  0/1 outcomes, else the two-way t over members and victims)."""
  x = np.asarray(stack, np.float64)
  flat = x.reshape(x.shape[0], -1, x.shape[-1])
  cis = [stats.interval(flat[:, i]) for i in range(flat.shape[1])]
  shape = x.shape[1:-1]
  out = tuple(np.asarray([c[k] for c in cis]).reshape(shape).round(6).tolist()
              for k in ("mean", "ci_low", "ci_high"))
  return out  # scalars when there are no middle axes


def pool_members(measured: list[dict[str, Any]], rc) -> dict[str, Any]:
  """The checklist's figures of one model from its members' `measure`
  results (seeds of a trained variant, or attack keys on one model): each
  rate the mean over members and victims with 'ci_low'/'ci_high' beside
  it; the gradient check the worst member's."""
  budgets, reference, steps = _settings(rc)
  angles, distances = _physical_settings(rc)
  trees = [m["outcomes"] for m in measured]
  stack = lambda get: np.stack([get(t) for t in trees])
  g = [m["gradients"] for m in measured]
  out: dict[str, Any] = {
      "victims": int(trees[0]["clean"].shape[-1]), "members": len(trees),
      "gradients": {"finite": min(v["finite"] for v in g),
                    "nonzero": min(v["nonzero"] for v in g),
                    "median_norm": float(np.median(
                        [v["median_norm"] for v in g]))}}
  for name in ("clean", "clean_eot", "sticker", "sticker_eot"):
    mean, low, high = _rate(stack(lambda t, n=name: t[n]))
    out |= {name: mean, f"{name}_ci_low": low, f"{name}_ci_high": high}
  out["budgets"], out["unbounded"] = {}, {}
  for name in trees[0]["budgets"]:
    norm = name.split("_")[1]
    c = {"budgets": budgets[norm]}
    for field in ("success", "eot_success"):
      mean, low, high = _rate(stack(lambda t, n=name, f=field:
                                    t["budgets"][n][f]))
      prefix = "" if field == "success" else "eot_"
      c |= {field: mean, f"{prefix}ci_low": low, f"{prefix}ci_high": high}
    out["budgets"][name] = c
  for norm in trees[0]["unbounded"]:
    mean, low, high = _rate(stack(lambda t, n=norm: t["unbounded"][n]))
    out["unbounded"][norm] = {"budget": UNBOUNDED[norm], "success": mean,
                              "ci_low": low, "ci_high": high}
  mean, low, high = _rate(stack(lambda t: t["steps"]))
  out["steps"] = {"norm": "linf", "budget": reference, "steps": steps,
                  "success": mean, "ci_low": low, "ci_high": high}
  out["physical"] = {"angles": angles, "distances": distances}
  for name in trees[0]["physical"]:
    mean, low, high = _rate(stack(lambda t, n=name: t["physical"][n]))
    out["physical"] |= {name: mean, f"{name}_ci_low": low,
                        f"{name}_ci_high": high}
  return out


def evaluate_members(apply_fn, members, images, mask, key, rc, *,
                     sticker: np.ndarray | None = None, desc: str = ""
                     ) -> dict[str, Any]:
  """The checklist on one model: `measure` on each member (params of one
  seed; the same params repeated for attack keys only), member j with the
  key `fold_in(key, j)`, so member j of every model meets the same attack
  randomness, then `pool_members`. The images of member 0 go to the transfer
  matrix ('_adversarial', not for JSON)."""
  measured = []
  for j, params in enumerate(members):
    label = f"{desc} [{j + 1}/{len(members)}]" if desc and len(members) > 1 \
        else desc
    measured.append(measure(apply_fn, params, images, mask,
                            jax.random.fold_in(key, j), rc, sticker=sticker,
                            desc=label))
  out = pool_members(measured, rc)
  out["_adversarial"] = measured[0]["_adversarial"]
  return out


def evaluate_model(apply_fn, params, images, mask, key, rc, *,
                   sticker: np.ndarray | None = None,
                   desc: str = "") -> dict[str, Any]:
  """The checklist on one model and one key (`evaluate_members` of one).

  Args:
    apply_fn, params: the classifier.
    images: (N, 32, 32, 3) stop-sign victims.
    mask: the sticker region (32, 32, 1|3) of the budget attacks and RP2.
    key: PRNG key.
    rc: the robustness config block (configs/robustness.py).
    sticker: optional (N, 32, 32, 3) victims already wearing a physical
      perturbation (the authors' own, for the real RP2 data); otherwise an
      RP2 sticker is made on this model.
    desc: label of the progress lines.

  Returns:
    A JSON-ready dict: 'clean', 'gradients', 'unbounded', 'budgets',
    'steps', 'physical' (each rate with its 95% interval) and, under
    '_adversarial' (not for JSON), the images that the transfer matrix
    shows to other models.
  """
  return evaluate_members(apply_fn, [params], images, mask, key, rc,
                          sticker=sticker, desc=desc)


def _physical_settings(rc) -> tuple[list[float], list[int]]:
  angles = _floats(rc.angles, "angles")
  if any(a >= 90 for a in angles):
    raise ValueError(f"robustness.angles={rc.angles!r} must be below 90")
  return angles, _ints(rc.distances, "distances", 1, IMAGE_SHAPE[0])


def physical_outcomes(apply_fn, params, clean, perturbed, rc
                      ) -> dict[str, np.ndarray]:
  """Per victim, not stop (1.0) for the clean and the perturbed victims
  seen from each viewing angle (yaw) and at each distance (sign width in
  pixels): 'clean_angle', 'perturbed_angle' (angles, N), 'clean_distance',
  'perturbed_distance' (distances, N)."""
  angles, distances = _physical_settings(rc)
  out = {}
  for name, images in (("clean", clean), ("perturbed", perturbed)):
    out[f"{name}_angle"] = np.stack([not_stop(
        apply_fn, params, transforms.view(images, yaw_deg=a))
        for a in angles])
    out[f"{name}_distance"] = np.stack([not_stop(
        apply_fn, params, transforms.at_distance(images, d))
        for d in distances])
  return out


# --------------------------------------------------------------- checks --


def transfer_matrix(named_models, adversarial: dict[str, np.ndarray]
                    ) -> list[list[float]]:
  """M[i][j]: not-stop rate of the images made on model i, shown to j."""
  return [[misclassified(f, p, adversarial[src]) for _, f, p in named_models]
          for src, _, _ in named_models]


def _drops(values: list[float]) -> float:
  """The largest fall from one point of a curve to any later point."""
  worst = 0.0
  for i, v in enumerate(values):
    for later in values[i + 1:]:
      worst = max(worst, v - later)
  return worst


def checks(result: dict[str, Any], slack: float) -> list[dict[str, Any]]:
  """The checklist on one model's `evaluate_model` result.

  Returns one row per check: 'check', 'passed' (bool), 'detail' (the
  numbers behind it). `slack` is the tolerated difference (one victim).
  """
  rows = []
  g = result["gradients"]
  rows.append({"check": "gradients finite and non-zero",
               "passed": g["finite"] == 1.0 and g["nonzero"] == 1.0,
               "detail": f"finite {g['finite']:.0%}, non-zero "
                         f"{g['nonzero']:.0%} of victims, median norm "
                         f"{g['median_norm']:.3g}"})
  u = result["unbounded"]
  rows.append({"check": "unbounded attacks reach 100%",
               "passed": all(v["success"] == 1.0 for v in u.values()),
               "detail": ", ".join(f"PGD {n} eps {v['budget']:.3g}: "
                                   f"{v['success']:.0%}"
                                   for n, v in u.items())})
  for name, c in result["budgets"].items():
    drop = _drops(c["success"])
    rows.append({"check": f"{name} success grows with the budget",
                 "passed": drop <= slack + 1e-9,
                 "detail": f"largest fall {drop:.1%}; " + ", ".join(
                     f"{b:g}: {s:.0%}" for b, s in zip(c["budgets"],
                                                       c["success"]))})
  s = result["steps"]
  drop = _drops(s["success"])
  rows.append({"check": "PGD success grows with the steps",
               "passed": drop <= slack + 1e-9,
               "detail": f"largest fall {drop:.1%}; " + ", ".join(
                   f"{n}: {v:.0%}" for n, v in zip(s["steps"],
                                                   s["success"]))})
  for norm in NORMS:
    p, q = result["budgets"][f"pgd_{norm}"], result["budgets"][f"square_{norm}"]
    over = [(b, qs - ps) for b, ps, qs in zip(p["budgets"], p["success"],
                                              q["success"])]
    worst_b, worst = max(over, key=lambda t: t[1])
    rows.append({"check": f"gradient-free <= gradient-based ({norm})",
                 "passed": worst <= slack + 1e-9,
                 "detail": f"Square - PGD at most {worst:+.1%} (budget "
                           f"{worst_b:g})"})
  if "transfer" in result:
    for kind, t in result["transfer"].items():
      gap = t["best_transfer"] - t["white_box"]
      rows.append({"check": f"white-box >= transfer ({kind})",
                   "passed": gap <= slack + 1e-9,
                   "detail": f"white-box {t['white_box']:.0%}, best "
                             f"transfer {t['best_transfer']:.0%} (from "
                             f"{t['best_source']})"})
  return rows


# ------------------------------------------------------------------ run --


def evaluate_all(models_: list[tuple[str, Any, Any]], images, mask, key, rc,
                 *, real: RP2Data | None = None) -> dict[str, Any]:
  """`evaluate_members` on every (name, apply_fn, members) (members: the
  params of each seed), the transfer matrices between their first
  members, and the checks; plus the RP2 model on its real victims when
  `real` (`zoo.rp2_data`) is given, with as many attack keys as the
  largest model has members."""
  results: dict[str, Any] = {"models": {}}
  adversarial = {}
  for i, (name, f, members) in enumerate(models_):
    print(f"robustness: {name} ({i + 1}/{len(models_)}, "
          f"{len(members)} member(s))", flush=True)
    r = evaluate_members(f, members, images, mask, key, rc, desc=name)
    adversarial[name] = r.pop("_adversarial")
    results["models"][name] = r
  names = [n for n, _, _ in models_]
  firsts = [(n, f, members[0]) for n, f, members in models_]
  n = len(images)
  results["transfer"] = {}
  for kind in ("pgd_linf", "rp2"):
    matrix = transfer_matrix(firsts, {n: adversarial[n][kind] for n in names})
    cis = [[stats.wilson_interval(int(round(v * n)), n) for v in row]
           for row in matrix]
    results["transfer"][kind] = {
        "sources": names, "matrix": matrix,
        "ci_low": [[c[0] for c in row] for row in cis],
        "ci_high": [[c[1] for c in row] for row in cis]}
    if len(names) > 1:
      for j, name in enumerate(names):
        others = [(matrix[i][j], names[i]) for i in range(len(names))
                  if i != j]
        best, source = max(others)
        results["models"][name].setdefault("transfer", {})[kind] = {
            "white_box": matrix[j][j], "best_transfer": best,
            "best_source": source}
  if real is not None:
    print("robustness: RP2 model on the real victims", flush=True)
    keys = max([len(m) for _, _, m in models_], default=1)
    r = evaluate_members(real.apply_fn, [real.params] * keys, real.images,
                         real.mask, jax.random.fold_in(key, 1 << 20), rc,
                         sticker=real.adversarial, desc="rp2")
    r.pop("_adversarial")
    r["data"] = "rp2"
    results["models"]["rp2"] = r
  for name, r in results["models"].items():
    r.setdefault("data", "synthetic")
    r["checks"] = checks(r, slack=1.0 / r["victims"])
    r["flags"] = [c["check"] for c in r["checks"] if not c["passed"]]
  return results


def evaluate_trained(config, trained: dict[str, TrainedModel], key,
                     real: RP2Data | None = None) -> dict[str, Any]:
  """`evaluate_all` on the models of `zoo.train_models` (synthetic victims,
  the config's mask; the first `robustness.members` seeds of each) and, if
  given, the RP2 model on its real victims."""
  rc = config.robustness
  count = int(rc.members)
  if count < 1:
    raise ValueError(f"robustness.members={rc.members!r} must be >= 1 (the "
                     "seeds of each model the checklist runs on)")
  images = synthetic.synthetic_victims(int(rc.victims), seed=0)
  mask = masks_lib.get_mask(rc.mask)
  named = [(n, m.apply_fn, m.members[:count]) for n, m in trained.items()]
  return evaluate_all(named, images, mask, key, rc, real=real)


def run(config, workdir: epath.PathLike) -> dict[str, Any]:
  """Trains (or reuses) the models of `config`, runs the checklist, writes
  robustness.json, figures/robustness_*.png and robustness_report/."""
  from blurnet_jax.study import report  # pylint: disable=g-import-not-at-top
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  stage = Stages(("train", "robustness", "report"))
  real = zoo.rp2_data(config.rp2_dir)
  with stage("train"):
    trained = zoo.train_models(config.models, workdir / "models")
  with stage("robustness"):
    results = evaluate_trained(config, trained, jax.random.key(config.seed),
                               real)
    print(report.robustness_text(results))
  with stage("report"):
    figures = plots.robustness_figures(results, workdir / "figures")
    results["stage_seconds"] = dict(stage.seconds)
    write_json(workdir / "robustness.json", results)
    md = report.write_robustness_report(workdir, config, results, figures)
  print(f"\nrobustness.json and {md.parent / 'index.html'}")
  return results
