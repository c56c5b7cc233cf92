"""What the spectral stage computes: high-frequency shares per layer, natural against
perturbed, and the arrays of the slides' spectrum figures."""

from __future__ import annotations

from typing import Any

import numpy as np

from blurnet_jax import spectral


def spectral_rows(models_and_params, natural, perturbed, *, radius: float,
                  dataset: str) -> list[dict[str, Any]]:
  """One row per (name, model, params): high-frequency shares per layer."""
  rows = []
  for name, model, params in models_and_params:
    s = spectral.layer_spectra(model, params, natural, perturbed,
                               radius=radius)
    row = {"dataset": dataset, "variant": name, "radius": radius}
    for layer, v in s.items():
      row |= {f"{layer}_natural": v["natural"],
              f"{layer}_perturbed": v["perturbed"], f"{layer}_ratio": v["ratio"]}
    rows.append(row)
  return rows


#: The spectrum figures' victim sets: (prefix, label).
SPECTRAL_SETS = (("rp2", "RP2 model, real victims"),
                 ("synthetic", "synthetic victims"))
#: The spectrum figures: (representation, what it shows).
FIGURES = (("input", "RGB input channels"),
           ("l1", "first-layer feature maps (first 8)"),
           ("l1_filtered", "first-layer maps after a 5x5 box filter"),
           ("l2", "second-layer feature maps (first 8)"))


def spectral_maps(model, params, filtered_model, filtered_params, natural,
                  perturbed, prefix: str) -> dict[str, np.ndarray]:
  """The arrays of the slides' spectrum figures (`spectral.mean_log_spectra`)
  as 'PREFIX.REPRESENTATION.KIND' -> array: input, L1 and L2 of the model,
  L1 after a filter from the filtered model."""
  spectra = spectral.mean_log_spectra(model, params, natural, perturbed)
  filt = spectral.mean_log_spectra(filtered_model, filtered_params, natural,
                                   perturbed)
  return {f"{prefix}.{layer}.{kind}": np.asarray(array)
          for layer, _ in FIGURES
          for kind, array in (filt if layer == "l1_filtered"
                              else spectra)[layer].items()}


def unflatten_maps(maps: dict[str, np.ndarray], prefix: str
                   ) -> dict[str, dict[str, np.ndarray]]:
  """{representation: {kind: array}} of one prefix of `spectral_maps`."""
  out: dict[str, dict[str, np.ndarray]] = {}
  for name, array in maps.items():
    p, layer, kind = name.split(".")
    if p == prefix:
      out.setdefault(layer, {})[kind] = array
  return out
