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

This module runs the checklist on every model (`evaluate_trained`, each
population through `evaluation.evaluate` with the `Checklist`
measurement; the study that writes its files is `robustness.stages`); the
settings are read in `settings`, the compiled attacks live in `attacks`,
one member's measurements in `measure`, their pooling over members in
`pool` and the checks in `claims.checks`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from blurnet_jax import stats
from blurnet_jax.data import masks as masks_lib
from blurnet_jax.data import synthetic
from blurnet_jax.study.robustness.attacks import transfer_matrix
from blurnet_jax.study.claims.checks import checklist_checks, flags, transfer_gaps
from blurnet_jax.study.robustness.measure import measure
from blurnet_jax.study.robustness.pool import pool_members
from blurnet_jax.study import evaluation
from blurnet_jax.study.evaluation import Population, Victims
from blurnet_jax.study.zoo import RP2Data

#: The RP2 model's checklist key: fold_in(key, RP2_KEY), apart from every
#: trained member's.
RP2_KEY = 1 << 20


@dataclasses.dataclass(frozen=True, eq=False)
class Checklist:
  """The checklist's measurement (`evaluation.evaluate`): `measure` on each
  member (the victims' own sticker where they wear one, else an RP2
  sticker made on the member), pooled by `pool_members`; the images of the
  first member go to the transfer matrix ('_adversarial', not for JSON).

  Attributes:
    rc: the robustness config block (configs/robustness.py), checked when
      measured.
  """

  rc: Any

  def member(self, population, victims, params, key, index, count):
    return measure(population.apply_fn, params, victims.images, victims.mask,
                   key, self.rc, sticker=victims.sticker,
                   desc=evaluation.label(population, index, count))

  def pool(self, population, victims, measured):
    out = pool_members(measured, self.rc)
    out["_adversarial"] = measured[0]["_adversarial"]
    return out


def evaluate_all(populations: list[Population], victims: Victims, key, rc,
                 *, real: RP2Data | None = None) -> dict[str, Any]:
  """The checklist (`Checklist`) on every population, the transfer matrices
  between their first members, and the checks; plus the RP2 model on its
  real victims when `real` (`zoo.rp2_data`) is given, under as many ids as
  the largest population has members (and a key of its own)."""
  results: dict[str, Any] = {"models": {}}
  adversarial = {}
  for i, m in enumerate(populations):
    print(f"robustness: {m.name} ({i + 1}/{len(populations)}, "
          f"{len(m.members)} member(s))", flush=True)
    r = evaluation.evaluate(m, victims, key, Checklist(rc))
    adversarial[m.name] = r.pop("_adversarial")
    results["models"][m.name] = r
  names = [m.name for m in populations]
  firsts = [(m.name, m.apply_fn, m.params) for m in populations]
  n = len(victims.images)
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
    keys = max([len(m.members) for m in populations], default=1)
    r = evaluation.evaluate(real.population, real.victims,
                            jax.random.fold_in(key, RP2_KEY), Checklist(rc),
                            ids=range(keys))
    r.pop("_adversarial")
    r["data"] = "rp2"
    results["models"]["rp2"] = r
  for name, r in results["models"].items():
    r.setdefault("data", "synthetic")
    r["checks"] = checklist_checks(r, slack=1.0 / r["victims"])
    r["flags"] = flags(r["checks"])
  return results


def evaluate_trained(config, trained: dict[str, Population], key,
                     real: RP2Data | None = None) -> dict[str, Any]:
  """`evaluate_all` on the models of `zoo.train_models` (synthetic victims,
  the config's mask; the first `robustness.members` members of each) and,
  if given, the RP2 model on its real victims."""
  rc = config.robustness
  count = int(rc.members)
  if count < 1:
    raise ValueError(f"robustness.members={rc.members!r} must be >= 1 (the "
                     "seeds of each model the checklist runs on)")
  victims = Victims("synthetic",
                    synthetic.synthetic_victims(int(rc.victims), seed=0),
                    masks_lib.get_mask(rc.mask))
  return evaluate_all([m.first(count) for m in trained.values()], victims,
                      key, rc, real=real)
