"""RP2 (Robust Physical Perturbations, Eykholt et al., CVPR 2018) in JAX.

The attack solves

  argmin_delta  lambda * ||M . delta||_p
                + E_{x ~ victims, T ~ transforms} CE(f(T(x_adv)), y*)
                + w_nps * NPS(printed colours of delta on M),
  x_adv = clip(x + M . clip(delta, -20, 20), 0, 1),

with Adam on the perturbation `delta` (one (32, 32, 3) array shared by all
victim images), `delta` clipped to [-20, 20] after every update, as in the
authors' TensorFlow graph. Every function here is pure and jittable; the
attack loop is one `lax.scan`, so `jax.vmap` runs one attack per target
class (the white-box grid) or per model of a stacked params tree.

`apply_fn(params, images) -> logits` is any classifier, e.g.

  model = LisaCNN()
  apply_fn = lambda params, x: model.apply({"params": params}, x)
  out = rp2_attack(apply_fn, params, victims, mask, 12, key, cfg=RP2Config())
  targeted_success(predict(out["adversarial"]), 12)

Define `apply_fn` once and reuse it: it is a static argument of the jitted
attack, so a new lambda per call compiles again.

One module per role: `config` (`RP2Config`), `printability` (the palette
and the NPS), `objective` (the perturbed image and the loss), `optimise`
(the Adam loop) and `metrics` (how well a perturbation works).
"""

from blurnet_jax.attacks.rp2.config import RP2Config
from blurnet_jax.attacks.rp2.metrics import (attack_success_rate,
                                             l2_dissimilarity,
                                             predictions_under_transforms,
                                             success_under_transforms,
                                             targeted_success)
from blurnet_jax.attacks.rp2.objective import apply_perturbation, rp2_loss
from blurnet_jax.attacks.rp2.optimise import init_noise, rp2_attack
from blurnet_jax.attacks.rp2.printability import DEFAULT_PRINTABLE_COLORS, nps

__all__ = [
    "DEFAULT_PRINTABLE_COLORS",
    "RP2Config",
    "apply_perturbation",
    "attack_success_rate",
    "init_noise",
    "l2_dissimilarity",
    "nps",
    "predictions_under_transforms",
    "rp2_attack",
    "rp2_loss",
    "success_under_transforms",
    "targeted_success",
]
