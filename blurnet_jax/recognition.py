"""The stop-sign victims every training run reports on, and how many of them
a model reads as stop: a first look at what the attacks will start from,
written beside each run's test accuracy (`results.json`, a population's
member rows). The attacks' own victim sets are the study's
(`study.evaluation.Victims`).
"""

from __future__ import annotations

import numpy as np

from blurnet_jax import models
from blurnet_jax.classes import STOP
from blurnet_jax.data import rp2_assets
from blurnet_jax.data import synthetic
from blurnet_jax.data import victims as victims_lib


def victim_sets(rp2_dir: str = "") -> dict[str, np.ndarray]:
  """40 synthetic stop signs and the real RP2 victims of `rp2_dir` (''
  = the packaged assets), by the name each run reports them under."""
  return {"synthetic_victims": synthetic.synthetic_victims(40, seed=0),
          "victims": victims_lib.load_victims(
              rp2_assets.rp2_dir(rp2_dir) / "victim-set")}


def read_as_stop(apply_fn, params, sets: dict[str, np.ndarray]) -> dict:
  """Victims of each set (`victim_sets`) classified as stop: count, stop
  count and share."""
  out = {}
  for name, images in sets.items():
    pred = models.predict(apply_fn, params, images)
    out[name] = {"n": int(len(pred)), "stop": int((pred == STOP).sum()),
                 "stop_rate": float((pred == STOP).mean())}
  return out
