"""Every per-victim measurement of the robustness checklist on one model
and one key (`measure`): the budget and steps curves of PGD and Square, the
physical RP2 sticker, every image set as it is and under EOT, and the
physical bench (viewing angle, distance). Outcomes only: pooling them is
`pool`'s, judging them `claims.checks`'."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from blurnet_jax.attacks import grid
from blurnet_jax.attacks import pgd
from blurnet_jax.attacks import rp2
from blurnet_jax.attacks import transforms
from blurnet_jax.study.robustness.attacks import (gradient_check,
                                                  not_stop,
                                                  not_stop_under_eot,
                                                  run_members)
from blurnet_jax.study.robustness.settings import (ATTACKS, NORMS, UNBOUNDED,
                                                   attack_configs,
                                                   physical_settings,
                                                   settings)


@dataclasses.dataclass(frozen=True)
class _Plan:
  """What `measure` runs on one model: the checked settings, the sticker
  mask and the key of every attack."""
  budgets: dict[str, list[float]]  # by norm
  reference: float  # the linf budget of the steps curve and the transfer
  steps: list[int]  # the steps curve
  pgd_steps: int  # the budget curves' step count
  cfgs: dict[str, Any]  # by 'attack_norm', in the order of their keys
  mask: jax.Array
  keys: dict[str, jax.Array]  # by 'attack_norm'
  sticker_key: jax.Array
  eot_key: jax.Array
  # (name, budget, mask, l2, steps, key) of each steps-curve run other than
  # the budget curves' own step count.
  steps_rows: list[tuple[Any, ...]]


def _plan(rc, mask, key) -> _Plan:
  """The settings of `rc` (checked) and the keys of one model's attacks:
  `key` split in 16, the first to the budget curves (pgd_linf, square_linf,
  pgd_l2, square_l2), then the sticker's, EOT's and one per steps-curve run
  of its own."""
  budgets, reference, steps = settings(rc)
  cfgs = attack_configs(rc)
  keys = list(jax.random.split(key, 16))
  later = iter(keys[len(cfgs):])
  sticker_key, eot_key = next(later), next(later)
  pgd_steps = int(rc.pgd_steps)
  mask = jnp.asarray(mask, jnp.float32)
  steps_rows = [("steps", reference, mask, False, s, next(later))
                for s in steps if s != pgd_steps]
  return _Plan(budgets=budgets, reference=reference, steps=steps,
               pgd_steps=pgd_steps, cfgs=cfgs, mask=mask,
               keys=dict(zip(cfgs, keys)), sticker_key=sticker_key,
               eot_key=eot_key, steps_rows=steps_rows)


def _rows(attack: str, plan: _Plan) -> list[tuple[Any, ...]]:
  """The members of `attack`'s one program, (name, budget, mask, l2, steps
  or None for the config's, key): every budget of both norms inside the
  mask; for PGD also the unbounded budget on the whole image and the steps
  curve's runs shorter than the budget curves' (at the reference budget
  inside the mask). Each member keeps the key it had as a program of its
  own."""
  whole = jnp.ones_like(plan.mask)
  rows = []
  for norm in NORMS:
    name = f"{attack}_{norm}"
    rows += [(name, b, plan.mask, norm == "l2", None, plan.keys[name])
             for b in plan.budgets[norm]]
    if attack == "pgd":
      rows.append((name, UNBOUNDED[norm], whole, norm == "l2", None,
                   plan.keys[name]))
  if attack == "pgd":
    rows += [r for r in plan.steps_rows if r[4] < plan.pgd_steps]
  return rows


def _budget_attacks(apply_fn, params, x, plan: _Plan, desc: str
                    ) -> tuple[dict[str, jax.Array], dict[int, np.ndarray]]:
  """One program per attack (`_rows`). Returns the images of each budget
  curve by 'attack_norm' in the order of `plan.cfgs` (PGD's unbounded run
  after its budgets), and the steps curve's runs by step count."""
  made, steps_made = {}, {}
  for attack in ATTACKS:
    rows = _rows(attack, plan)
    if desc:
      print(f"  {desc}: {attack}, budgets linf "
            f"{', '.join(f'{b:g}' for b in plan.budgets['linf'])} and l2 "
            f"{', '.join(f'{b:g}' for b in plan.budgets['l2'])} in the mask"
            + (" (and unbounded on the whole image)" if attack == "pgd"
               else ""), flush=True)
    cfg = dataclasses.replace(plan.cfgs[f"{attack}_linf"], norm="linf")
    adv = run_members(attack, apply_fn, params, x, rows, cfg)
    steps_made.update((r[4], a) for r, a in zip(rows, adv)
                      if r[0] == "steps")
    for name in (f"{attack}_{norm}" for norm in NORMS):
      made[name] = jnp.asarray(adv[[r[0] == name for r in rows]])
  return {name: made[name] for name in plan.cfgs}, steps_made


def _sticker(apply_fn, params, images, plan: _Plan, rc, desc: str
             ) -> np.ndarray:
  """A physical RP2 sticker made on the model (EOT over physical
  transforms), toward RP2's default target, the authors' (12,
  speedLimit45)."""
  cfg = rp2.RP2Config(steps=int(rc.rp2_steps),
                      num_transforms=int(rc.rp2_transforms),
                      transforms=transforms.TransformConfig.physical())
  res = grid.attack_targets(
      apply_fn, params, images, np.asarray(plan.mask), [cfg.target],
      plan.sticker_key, cfg=cfg,
      desc=f"{desc} physical RP2" if desc else None)
  return res["adversarial"][0]


def _set_outcomes(apply_fn, params, x, made: dict[str, jax.Array],
                  sticker: np.ndarray, plan: _Plan, rc) -> dict[str, Any]:
  """One program measures every set as it is and under EOT: the clean
  victims first, then each budget curve's images (`made`), the sticker
  last. Returns 'clean', 'clean_eot', 'sticker', 'sticker_eot', 'budgets'
  (by 'attack_norm': 'success', 'eot_success') and 'unbounded' (by norm)."""
  plain, moved = (np.asarray(v, np.float64) for v in not_stop_under_eot(
      apply_fn, params,
      jnp.concatenate([x[None], *made.values(), jnp.asarray(sticker)[None]]),
      plan.eot_key, int(rc.eot_samples)))
  out: dict[str, Any] = {"clean": plain[0], "clean_eot": moved[0],
                         "sticker": plain[-1], "sticker_eot": moved[-1],
                         "budgets": {}, "unbounded": {}}
  start = 1
  for name, adv in made.items():
    attack, norm = name.split("_")
    e = len(plan.budgets[norm])
    out["budgets"][name] = {"success": plain[start:start + e],
                            "eot_success": moved[start:start + e]}
    if attack == "pgd":
      out["unbounded"][norm] = plain[start + e]
    start += len(adv)
  return out


def _steps_outcomes(apply_fn, params, x, made: dict[str, jax.Array],
                    steps_made: dict[int, np.ndarray], plan: _Plan
                    ) -> tuple[np.ndarray, np.ndarray]:
  """The steps curve, (steps, victims) outcomes, and the PGD images at the
  reference budget. The runs longer than the budget curves' go in one more
  program (of the longest count); at the budget curves' own step count it
  is that curve's run, not a second one."""
  ref_adv = np.asarray(
      made["pgd_linf"][plan.budgets["linf"].index(plan.reference)])
  longer = [r for r in plan.steps_rows if r[4] > plan.pgd_steps]
  if longer:
    steps_made.update(zip((r[4] for r in longer), run_members(
        "pgd", apply_fn, params, x, longer,
        pgd.PGDConfig(steps=max(r[4] for r in longer)))))
  outcomes = np.stack([
      not_stop(apply_fn, params,
               ref_adv if s == plan.pgd_steps else steps_made[s])
      for s in plan.steps])
  return outcomes, ref_adv


def physical_outcomes(apply_fn, params, clean, perturbed, rc
                      ) -> dict[str, np.ndarray]:
  """Per victim, not stop (1.0) for the clean and the perturbed victims
  seen from each viewing angle (yaw) and at each distance (sign width in
  pixels): 'clean_angle', 'perturbed_angle' (angles, N), 'clean_distance',
  'perturbed_distance' (distances, N)."""
  angles, distances = physical_settings(rc)
  out = {}
  for name, images in (("clean", clean), ("perturbed", perturbed)):
    out[f"{name}_angle"] = np.stack([not_stop(
        apply_fn, params, transforms.view(images, yaw_deg=a))
        for a in angles])
    out[f"{name}_distance"] = np.stack([not_stop(
        apply_fn, params, transforms.at_distance(images, d))
        for d in distances])
  return out


def measure(apply_fn, params, images, mask, key, rc, *,
            sticker: np.ndarray | None = None, desc: str = ""
            ) -> dict[str, Any]:
  """Every per-victim measurement of the checklist on one model and key.

  Returns {'gradients': the gradient check, 'outcomes': a tree of arrays
  whose last axis is the victims (1.0 = not classified as stop; under EOT
  the share of transforms), '_adversarial': the images that the transfer
  matrix shows to other models}. `pool.pool_members` turns the
  outcomes of one or more members (seeds, attack keys) into figures with
  intervals.
  """
  images = np.asarray(images, np.float32)
  plan = _plan(rc, mask, key)
  x = jnp.asarray(images)
  gradients = gradient_check(apply_fn, params, images)
  made, steps_made = _budget_attacks(apply_fn, params, x, plan, desc)
  if sticker is None:
    sticker = _sticker(apply_fn, params, images, plan, rc, desc)
  sticker = np.asarray(sticker, np.float32)
  out = _set_outcomes(apply_fn, params, x, made, sticker, plan, rc)
  out["steps"], ref_adv = _steps_outcomes(apply_fn, params, x, made,
                                          steps_made, plan)
  out["physical"] = physical_outcomes(apply_fn, params, images, sticker, rc)
  return {"gradients": gradients, "outcomes": out,
          "_adversarial": {"pgd_linf": ref_adv, "rp2": sticker}}
