"""Defences a practitioner would pick instead of BlurNet, as pure functions
in the package's convention (`apply_fn(params, images) -> logits`, images
float32 (N, 32, 32, 3) in [0, 1], explicit keys).

* `transforms`: input transformations (median filter, JPEG), their BPDA
  forms for adaptive attacks, and `defended(apply_fn, transform)`, the
  model seen through one.
* `smoothing`: derandomized column smoothing (Levine & Feizi 2020): column
  ablation, the vote over all band positions, the smoothed class and its
  certificate against patches.

Nothing here trains, reads files or draws.
"""

from blurnet_jax.defences.smoothing import (ablate_columns, certified,
                                            column_votes, patch_width,
                                            random_ablation,
                                            smoothed_apply_fn,
                                            smoothed_predict)
from blurnet_jax.defences.transforms import (TRANSFORM_KINDS, InputTransform,
                                             bpda, defended, jpeg,
                                             median_filter,
                                             quantisation_tables)

__all__ = [
    "InputTransform",
    "TRANSFORM_KINDS",
    "ablate_columns",
    "bpda",
    "certified",
    "column_votes",
    "defended",
    "jpeg",
    "median_filter",
    "patch_width",
    "quantisation_tables",
    "random_ablation",
    "smoothed_apply_fn",
    "smoothed_predict",
]
