"""Did a defence act? The treatment checks behind every Table 2 verdict.

A verdict on a defence is only read when the defence did what it is meant
to do to the first layer's maps (what conv2 sees, `l1_filtered`), measured
on held-out images against the baseline of the same seed:

* the TV penalty: the total variation of the maps falls (ratio below
  1 - MIN_FALL, the whole interval);
* a filter on L1 (learned or fixed): its gain, the share of spectral
  power above half Nyquist in what it passes over that share in what it
  is given, is below 1 (the baseline passes its maps unchanged, gain 1);
  a filter on the input: the L1 maps' share falls against the
  baseline's (gain < 1);

each as a geometric mean over (seed, image) pairs with its 95% interval
(two-way t on the log ratios), and the defended model's clean accuracy
within `ACCURACY_POINTS` of the baseline's (checked by `table2.compare`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from blurnet_jax import models
from blurnet_jax import spectral
from blurnet_jax import stats

#: How far below the baseline's a defended model's clean accuracy may be
#: for its verdict to be read (2 points).
ACCURACY_POINTS = 0.02
#: How much a checked ratio must fall for the treatment to count as acting:
#: the upper end of its interval below 1 - MIN_FALL. A change of a few
#: percent in the maps is measurable on 256 images (a fine-tune nudged the
#: TV to 0.999x with an interval 0.001 wide) but cannot stand behind the
#: slides' cut of success by half or more.
MIN_FALL = 0.10
#: How many held-out images the maps are measured on.
PROBE_IMAGES = 256
_EPS = 1e-12


@functools.partial(jax.jit, static_argnums=(0, 3))
def _map_measures(model: models.LisaCNN, params: Any, images: jax.Array,
                  radius: float) -> tuple[jax.Array, jax.Array]:
  """Per image: the total variation of the maps conv2 sees (per map), and
  the pooled high-frequency share of those maps and of conv1's output
  before any L1 filter."""
  _, features = model.apply({"params": params}, images, return_features=True)
  maps = features["l1_filtered"]
  tv = (jnp.sum(jnp.abs(jnp.diff(maps, axis=1)), axis=(1, 2, 3))
        + jnp.sum(jnp.abs(jnp.diff(maps, axis=2)), axis=(1, 2, 3)))
  tv = tv / maps.shape[-1]
  return (tv, spectral.pooled_high_frequency_share(maps, radius=radius),
          spectral.pooled_high_frequency_share(features["l1"],
                                               radius=radius))


def _ratio(log_ratios: np.ndarray) -> dict[str, float]:
  ci = stats.mean_interval(log_ratios)
  return {"ratio": math.exp(ci["mean"]), "ci_low": math.exp(ci["ci_low"]),
          "ci_high": math.exp(ci["ci_high"])}


def treatment(base_model: models.LisaCNN, base_members, model: models.LisaCNN,
              members, images, *, penalty_kind: str,
              radius: float = 0.5) -> dict[str, Any]:
  """The map checks of one defended variant against its baseline.

  Args:
    base_model, base_members: the baseline's module and per-seed params
      (one member stands for every seed when the control is one model,
      e.g. the RP2 model).
    model, members: the defended variant's, seed by seed.
    images: float [0, 1] (N, 32, 32, 3) held-out images.
    penalty_kind: the variant's penalty ('tv' is checked on the TV).

  Returns:
    'tv' (x the baseline's) and 'hf_gain' (an L1 filter's own gain; else
    the L1 maps' share x the baseline's), each a geometric mean 'ratio'
    with 'ci_low', 'ci_high'; 'checked'
    (the measures that decide: 'tv' for a TV penalty, 'hf_gain' for a
    filter), 'acted' (every checked ratio's interval below 1 - MIN_FALL)
    and 'reason'.
  """
  images = jnp.asarray(images, jnp.float32)
  log = lambda a, b: np.log((np.asarray(a) + _EPS) / (np.asarray(b) + _EPS))
  log_tv, log_hf = [], []
  for i, p in enumerate(members):
    tv_b, hf_b, _ = _map_measures(
        base_model, base_members[i % len(base_members)], images, radius)
    tv_v, hf_v, hf_in = _map_measures(model, p, images, radius)
    log_tv.append(log(tv_v, tv_b))
    # An L1 filter's own gain; otherwise the maps against the baseline's.
    log_hf.append(log(hf_v, hf_in if model.filter_where == "l1" else hf_b))
  out = {"tv": _ratio(np.stack(log_tv)), "hf_gain": _ratio(np.stack(log_hf)),
         "n_images": int(images.shape[0])}
  checked = []
  if penalty_kind == "tv":
    checked.append("tv")
  if model.filter_where != "none":
    checked.append("hf_gain")
  out["checked"] = checked
  failed = [k for k in checked if out[k]["ci_high"] >= 1.0 - MIN_FALL]
  out["acted"] = not failed
  words = {"tv": "total variation of its L1 maps",
           "hf_gain": "high-frequency gain of its filter"}
  if failed:
    k = failed[0]
    out["reason"] = (f"the {words[k]} is {out[k]['ratio']:.3g}x the "
                     f"baseline's [{out[k]['ci_low']:.3g}, "
                     f"{out[k]['ci_high']:.3g}]: not lowered by "
                     f"{MIN_FALL:.0%} or more")
  else:
    out["reason"] = "; ".join(
        f"{words[k]} {out[k]['ratio']:.2f}x the baseline's "
        f"[{out[k]['ci_low']:.2f}, {out[k]['ci_high']:.2f}]"
        for k in checked) or "nothing to check"
  return out
