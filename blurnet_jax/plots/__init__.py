"""Every figure of the project: image sheets, spectra, sweeps, robustness.

Figures are drawn from host arrays and result dicts (the same dicts the
JSON results hold), never from models, so a report can be drawn again from
a finished run. matplotlib runs with the Agg backend (no display). In a
multi-process run only process 0 writes the files.

  from blurnet_jax import plots
  plots.image_grid(rows, row_titles, captions, workdir / "grid.png")

One module per kind of figure: `images` (PIL sheets of 32 px crops),
`charts` (confusion matrix, proxy bars, alpha sweeps, the defences'
scatter), `spectra`,
`robustness`; `canvas` holds what they share.
"""

from blurnet_jax.plots.charts import (confusion_figure, defence_scatter,
                                      forest_plot, plot_sweep, proxy_bars)
from blurnet_jax.plots.images import attack_pictures, contact_sheet, image_grid
from blurnet_jax.plots.robustness import (plot_budgets, plot_physical,
                                          plot_steps, plot_transfer,
                                          robustness_figures)
from blurnet_jax.plots.spectra import plot_spectra

__all__ = [
    "attack_pictures",
    "confusion_figure",
    "contact_sheet",
    "defence_scatter",
    "forest_plot",
    "image_grid",
    "plot_budgets",
    "plot_physical",
    "plot_spectra",
    "plot_steps",
    "plot_sweep",
    "plot_transfer",
    "proxy_bars",
    "robustness_figures",
]
