"""A train config's defence: the step, evaluation and classifier that
`train.train_and_evaluate` and `sweep.train_population` run for it.

  training = training_for(config)   # from config.defence
  state, metrics = training.step(state, batch, rng)
  training.evaluate(state, test_images, test_labels)

`config.defence.kind` picks one of `DEFENCE_KINDS`:

* 'none': `train.plain_training`, `train_step` itself;
* 'pgd_mask': `adversarial.adversarial_train_step` with PGD inside the
  sticker mask `defence.mask` (`blurnet_jax.data.masks.get_mask`);
* 'doa': `adversarial.adversarial_train_step` on the rectangular occlusion
  attack (DOA, Wu et al. ICLR 2020);
* 'smoothing': `smoothing_train_step`, the base classifier of column
  smoothing (Levine & Feizi 2020, `models.model_for` gives it 6 input
  channels) trained on images ablated to a random band of `defence.band`
  columns. Its test accuracy is the smoothed classifier's, the vote over
  all 32 band positions (`smoothed_eval_step`), and the victims are
  classified by that vote.

Every step is jitted with its settings static and vmaps over a population
of states as `train_step` does, so a defended variant's seeds train as one
program (`sweep.population_step`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax

from blurnet_jax import models
from blurnet_jax import train
from blurnet_jax.classes import IMAGE_SHAPE
from blurnet_jax.data import masks
from blurnet_jax.data import pipeline
from blurnet_jax.defences import adversarial
from blurnet_jax.defences import occlusion
from blurnet_jax.defences import smoothing

#: The training defences, read by `models.defence_kind` (the one reader
#: of `config.defence.kind`).
DEFENCE_KINDS = models.DEFENCE_KINDS
defence_kind = models.defence_kind


def adversarial_config(defence: ml_collections.ConfigDict
                       ) -> adversarial.AdversarialConfig:
  """The `AdversarialConfig` of a 'pgd_mask' or 'doa' defence block.

  The block's fields carry the names of `AdversarialConfig`'s and
  `RoaConfig`'s, so their one-line errors, given as `defence.FIELD`, name
  the field to fix.
  """
  try:
    if defence.kind == "pgd_mask":
      return adversarial.AdversarialConfig(
          kind="pgd_mask", epsilon=defence.epsilon, steps=defence.steps,
          fraction=defence.fraction)
    return adversarial.AdversarialConfig(
        kind="roa", fraction=defence.fraction, roa=occlusion.RoaConfig(
            height=defence.height, width=defence.width,
            stride=defence.stride, search=defence.search,
            candidates=defence.candidates, pgd_steps=defence.pgd_steps))
  except ValueError as e:
    raise ValueError(str(e).replace("AdversarialConfig.", "defence.")
                     .replace("RoaConfig.", "defence.")) from None


def sticker_mask(defence: ml_collections.ConfigDict) -> jax.Array:
  """The (32, 32, 1) mask of a 'pgd_mask' defence block."""
  try:
    return jnp.asarray(masks.get_mask(defence.mask))
  except (ValueError, FileNotFoundError) as e:
    raise type(e)(f"defence.mask={defence.mask!r}: {e}") from None


def smoothing_band(config: ml_collections.ConfigDict) -> int:
  """`defence.band` of a 'smoothing' config, checked, with the settings the
  6-channel base classifier rules out."""
  band, width = config.defence.band, IMAGE_SHAPE[1]
  if isinstance(band, bool) or not isinstance(band, int) or not (
      1 <= band <= width):
    raise ValueError(f"defence.band={band!r} must be an int in 1..{width} "
                     "(kept columns; --config.defence.band=4)")
  if config.get("init", "scratch") != "scratch":
    raise ValueError("defence.kind='smoothing' trains a 6-channel base "
                     "classifier that no pretrained weights fit; use "
                     "init='scratch'")
  return band


@functools.partial(jax.jit,
                   static_argnames=("band", "penalty_kind", "augment"),
                   donate_argnums=(0,))
def smoothing_train_step(state: train.TrainState,
                         batch: tuple[jax.Array, jax.Array], rng: jax.Array,
                         *, band: int, penalty_kind: str = "none",
                         augment: bool = True
                         ) -> tuple[train.TrainState, dict[str, jax.Array]]:
  """`train.train_step` of a column-smoothing base classifier: after the
  augmentation every image is ablated to a band of `band` columns at a
  uniform random position (`smoothing.random_ablation`, key
  `fold_in(rng, 1)`), then `train.gradient_step` on the (B, 32, 32, 6)
  encoding. The metrics are `train_step`'s, on the ablated batch."""
  images, labels = batch
  if augment:
    images = pipeline.augment(rng, images)
  images = smoothing.random_ablation(jax.random.fold_in(rng, 1), images, band)
  return train.gradient_step(state, images, labels, penalty_kind=penalty_kind)


@functools.partial(jax.jit, static_argnames=("band", "num_classes"))
def smoothed_eval_step(state: train.TrainState, batch, *, band: int,
                       num_classes: int) -> dict[str, jax.Array]:
  """`train.eval_step`'s sums for a column-smoothing base classifier.

  'correct' counts the smoothed classifier's right answers: the base
  classifier votes at every band position (`smoothing.column_votes`' rule)
  and the class with the most votes wins (`smoothing.smoothed_predict`).
  'loss' sums the base classifier's cross-entropy averaged over the
  positions, the held-out value of what training minimises. Costs a
  forward pass of the batch per column position.
  """
  images, labels, mask = batch
  n, width = images.shape[0], images.shape[2]

  def position(sums, start):
    votes, loss = sums
    logits = state.apply_fn({"params": state.params},
                            smoothing.ablate_columns(images, start, band))
    votes += jax.nn.one_hot(jnp.argmax(logits, -1), num_classes,
                            dtype=jnp.int32)
    loss += optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return (votes, loss), None

  (votes, loss), _ = jax.lax.scan(
      position, (jnp.zeros((n, num_classes), jnp.int32),
                 jnp.zeros((n,), jnp.float32)), jnp.arange(width))
  correct = smoothing.smoothed_predict(votes) == labels
  return {"correct": jnp.sum(correct * mask),
          "loss": jnp.sum(loss / width * mask), "count": jnp.sum(mask)}


def training_for(config: ml_collections.ConfigDict) -> train.Training:
  """The step, evaluation and classifier of `config.defence` (see the
  module docstring), with the config's penalty and augmentation.

  Raises:
    ValueError: an unknown kind or a bad value of its settings (one line
      naming the `defence.` field); FileNotFoundError: a mask path that
      does not exist.
  """
  kind = defence_kind(config)
  if kind == "none":
    return train.plain_training(config)
  model = models.model_for(config)
  common = dict(penalty_kind=config.penalty.kind, augment=config.augment)
  if kind == "smoothing":
    band = smoothing_band(config)
    return train.Training(
        step=functools.partial(smoothing_train_step, band=band, **common),
        evaluate=functools.partial(train.evaluate, step=functools.partial(
            smoothed_eval_step, band=band, num_classes=model.num_classes)),
        classifier=smoothing.smoothed_apply_fn(
            models.apply_fn_for(model), band, model.num_classes))
  defence = config.defence
  return train.Training(
      step=functools.partial(
          adversarial.adversarial_train_step,
          cfg=adversarial_config(defence),
          mask=sticker_mask(defence) if kind == "pgd_mask" else None,
          **common),
      evaluate=train.evaluate,
      classifier=models.apply_fn_for(model))
