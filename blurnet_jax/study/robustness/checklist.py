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

This module runs the checklist on every model (`evaluate_trained`; the
study that writes its files is `checklist_stages`); the settings are read
in `robustness_settings`, the compiled attacks live in
`robustness_attacks`, one model's measurements in `robustness_measure`,
their pooling over members in `robustness_pool` and the checks in
`robustness_checks`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from blurnet_jax import stats
from blurnet_jax.data import masks as masks_lib
from blurnet_jax.data import synthetic
from blurnet_jax.study.robustness.attacks import transfer_matrix
from blurnet_jax.study.robustness.checks import checks, transfer_gaps
from blurnet_jax.study.robustness.measure import measure
from blurnet_jax.study.robustness.pool import pool_members
from blurnet_jax.study.zoo import RP2Data, TrainedModel


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
    for name, gap in transfer_gaps(names, matrix).items():
      results["models"][name].setdefault("transfer", {})[kind] = gap
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
