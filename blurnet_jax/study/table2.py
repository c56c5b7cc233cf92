"""Table 2: the white-box RP2 grid on every trained variant (and the RP2
model on its real victims)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from blurnet_jax import models
from blurnet_jax.attacks import grid
from blurnet_jax.attacks import rp2
from blurnet_jax.attacks.transforms import TransformConfig
from blurnet_jax.classes import STOP
from blurnet_jax.data import masks as masks_lib
from blurnet_jax.data import synthetic
from blurnet_jax.study import slides
from blurnet_jax.study.zoo import RP2Data, TrainedModel


def whitebox(apply_fn, params, images, mask, key, *, targets, steps: int,
             num_transforms: int, eval_transforms: int, chunk: int = -1,
             desc: str = "white-box grid") -> dict[str, Any]:
  """The white-box RP2 grid (camouflage settings, physical EOT) on a model.

  Returns the slides' Table 2 columns (`avg_success`, `worst_success`: the
  prediction-changed rate averaged / maximised over targets, `l2_distortion`)
  plus targeted and under-transform figures and the per-target rows.
  """
  cfg = rp2.RP2Config(steps=steps, num_transforms=num_transforms,
                      transforms=TransformConfig.physical())
  targets = grid.parse_targets(targets)
  attack_key, eval_key = jax.random.split(key)
  out = grid.attack_targets(apply_fn, params, images, mask, targets,
                            attack_key, cfg=cfg, chunk=chunk, desc=desc)
  rows, _ = grid.evaluate_targets(apply_fn, params, images,
                                  out["adversarial"], targets, eval_key,
                                  eval_transforms=eval_transforms)
  s = grid.summarize(rows)
  return {"avg_success": s["average_success"],
          "worst_success": s["worst_success"],
          "l2_distortion": s["average_l2"],
          "avg_targeted_success": s["average_targeted_success"],
          "worst_targeted_success": s["worst_targeted_success"],
          "avg_transform_success": s["average_transform_success"],
          "per_target": rows, "_noise": out["noise"],
          "_adversarial": out["adversarial"]}


def grid_settings(g) -> dict[str, Any]:
  """The `whitebox` keyword arguments of a `config.grid` block."""
  return dict(targets=g.targets, steps=g.steps,
              num_transforms=g.num_transforms,
              eval_transforms=g.eval_transforms, chunk=g.chunk)


def row(name: str, dataset: str, alpha: float, legit_acc: float,
        result: dict[str, Any]) -> dict[str, Any]:
  """A Table 2 row: the result beside the slides' row of `name`."""
  out = {"dataset": dataset, "variant": name, "alpha": alpha,
         "legit_acc": legit_acc, **result}
  out |= {f"slides_{k}": v for k, v in slides.table2_row(name).items()}
  return out


def table2_rows(config, trained: dict[str, TrainedModel], key,
                real: RP2Data | None = None) -> list[dict[str, Any]]:
  """Table 2: every trained variant (and the RP2 model) attacked white-box."""
  rows = []
  if real is not None:  # first: the row that compares digit for digit
    result = whitebox(real.apply_fn, real.params, real.images, real.mask,
                      jax.random.fold_in(key, len(trained)),
                      desc="grid RP2 model", **grid_settings(config.grid))
    clean = models.predict(real.apply_fn, real.params, real.images)
    rows.append(row("baseline", "rp2", 0.0, float(np.mean(clean == STOP)),
                    result))
  images = synthetic.synthetic_victims(config.grid.victims, seed=0)
  mask = masks_lib.get_mask("camouflage")
  for i, (name, m) in enumerate(trained.items()):
    result = whitebox(m.apply_fn, m.params, images, mask,
                      jax.random.fold_in(key, i), desc=f"grid {name}",
                      **grid_settings(config.grid))
    rows.append(row(name, "synthetic", m.alpha, m.test_accuracy, result))
  return rows
