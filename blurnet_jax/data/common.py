"""What every dataset of the project stores, and how it becomes model input."""

import numpy as np
import tensorflow_datasets as tfds

from blurnet_jax.classes import IMAGE_SHAPE


def features() -> tfds.features.FeaturesDict:
  """The feature spec shared by every builder.

  Plain `Tensor` features (no `tfds.features.Image`) so that preparing and
  reading an `array_record` data set needs no TensorFlow.
  """
  return tfds.features.FeaturesDict({
      "image": tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8),
      "label": tfds.features.Tensor(shape=(), dtype=np.int64),
  })


def to_float(images: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] images -> float32 [0, 1], the input range of every model."""
  return np.asarray(images, np.float32) * np.float32(1.0 / 255.0)
