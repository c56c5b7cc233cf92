"""Defences a practitioner would pick instead of BlurNet, as pure functions
in the package's convention (`apply_fn(params, images) -> logits`, images
float32 (N, 32, 32, 3) in [0, 1], explicit keys).

* `transforms`: input transformations (median filter, JPEG), their BPDA
  forms for adaptive attacks, and `defended(apply_fn, transform)`, the
  model seen through one.
* `smoothing`: derandomized column smoothing (Levine & Feizi 2020): column
  ablation, the vote over all band positions, the smoothed class and its
  certificate against patches.
* `occlusion`: the rectangular occlusion attack (ROA) of Wu et al. (ICLR
  2020): the worst rectangle's position, then PGD of any colour inside it.
* `adversarial`: adversarial examples for training (sticker-masked PGD, or
  ROA: DOA) and `adversarial_train_step`, `train.train_step` on a batch
  made adversarial.
* `training`: a train config's defence (`config.defence`) as the step,
  evaluation and classifier that `train.fit` runs (`training_for`), and
  the training step and evaluation of column smoothing's base classifier.

Nothing here draws or runs a training loop (`train.fit` does); only
`training` reads a file: the sticker mask a config names by its path.
"""

from blurnet_jax.defences.adversarial import (ADVERSARIAL_KINDS,
                                              AdversarialConfig,
                                              adversarial_batch,
                                              adversarial_train_step)
from blurnet_jax.defences.occlusion import (ROA_SEARCHES, RoaConfig,
                                            rectangle_masks, roa_attack,
                                            roa_positions)
from blurnet_jax.defences.smoothing import (ablate_columns, certified,
                                            column_votes, patch_width,
                                            random_ablation,
                                            smoothed_apply_fn,
                                            smoothed_predict)
from blurnet_jax.defences.training import (DEFENCE_KINDS,
                                           smoothed_eval_step,
                                           smoothing_train_step,
                                           training_for)
from blurnet_jax.defences.transforms import (TRANSFORM_KINDS, InputTransform,
                                             bpda, defended, jpeg,
                                             median_filter,
                                             quantisation_tables)

__all__ = [
    "ADVERSARIAL_KINDS",
    "AdversarialConfig",
    "DEFENCE_KINDS",
    "InputTransform",
    "ROA_SEARCHES",
    "RoaConfig",
    "TRANSFORM_KINDS",
    "ablate_columns",
    "adversarial_batch",
    "adversarial_train_step",
    "bpda",
    "certified",
    "column_votes",
    "defended",
    "jpeg",
    "median_filter",
    "patch_width",
    "quantisation_tables",
    "random_ablation",
    "rectangle_masks",
    "roa_attack",
    "roa_positions",
    "smoothed_apply_fn",
    "smoothed_eval_step",
    "smoothed_predict",
    "smoothing_train_step",
    "training_for",
]
