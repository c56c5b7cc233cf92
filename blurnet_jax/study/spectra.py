"""The spectral stage: high-frequency shares per layer, natural against
perturbed, and the slides' spectrum figures."""

from __future__ import annotations

from typing import Any

from etils import epath

from blurnet_jax import plots
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


def spectral_figures(model, params, filtered_model, filtered_params, natural,
                     perturbed, figdir: epath.Path, prefix: str,
                     label: str) -> list[tuple[str, str]]:
  """The slides' spectrum figures: input, L1, L1 after a filter, L2."""
  out = []
  spectra = spectral.mean_log_spectra(model, params, natural, perturbed)
  filt = spectral.mean_log_spectra(filtered_model, filtered_params, natural,
                                   perturbed)
  for layer, source, what in (
      ("input", spectra, "RGB input channels"),
      ("l1", spectra, "first-layer feature maps (first 8)"),
      ("l1_filtered", filt, "first-layer maps after a 5x5 box filter"),
      ("l2", spectra, "second-layer feature maps (first 8)")):
    path = figdir / f"{prefix}_spectrum_{layer}.png"
    plots.plot_spectra(source[layer], path,
                       title=f"{label}: {what}, natural vs perturbed")
    out.append((str(path), f"{label}: log-shifted, normalised FFT magnitude "
                           f"of the {what}; centre = low frequencies."))
  return out
