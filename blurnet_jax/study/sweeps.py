"""The sweep stage: each penalty's alpha population, trained as one vmapped
program, each member attacked white-box."""

from __future__ import annotations

import itertools
from typing import Any

from etils import epath
import jax

from blurnet_jax import models
from blurnet_jax import plots
from blurnet_jax import stats
from blurnet_jax import sweep as sweep_lib
from blurnet_jax.classes import NUM_CLASSES
from blurnet_jax.data import masks as masks_lib
from blurnet_jax.data import synthetic
from blurnet_jax.study import table2


def run_sweeps(config, workdir: epath.Path, key) -> list[dict[str, Any]]:
  """Rows of every member of every `config.sweeps` population."""
  s = config.sweep
  images = synthetic.synthetic_victims(config.grid.victims, seed=0)
  mask = masks_lib.get_mask("camouflage")
  rows = []
  for penalty, cfg in config.sweeps.items():
    f = models.apply_fn_for(models.model_from_config(cfg.model))
    member_keys = (jax.random.fold_in(key, i) for i in itertools.count())

    def on_member(params, f=f):
      result = table2.whitebox(
          f, params, images, mask, next(member_keys), targets=s.targets,
          steps=s.steps, num_transforms=s.num_transforms,
          eval_transforms=config.grid.eval_transforms,
          chunk=config.grid.chunk, desc="member grid")
      ci = stats.interval(result["outcomes"].T[None])  # victims vary
      return {k: v for k, v in result.items()
              if k not in ("per_target", "outcomes") and not k.startswith("_")
              } | {"avg_success_ci_low": ci["ci_low"],
                   "avg_success_ci_high": ci["ci_high"]}

    members = sweep_lib.run_sweep(cfg, workdir / "sweeps" / penalty,
                                  on_member=on_member)
    n_test = cfg.data.test_per_class * NUM_CLASSES
    for m in members:
      low, high = stats.wilson_interval(
          int(round(m["test_accuracy"] * n_test)), n_test)
      rows.append({"variant": f"sweep_{penalty}", **m,
                   "test_accuracy_ci_low": low,
                   "test_accuracy_ci_high": high})
  return rows


def sweep_figures(rows, figdir: epath.Path) -> list[tuple[str, str]]:
  """Test accuracy and white-box success against alpha, per penalty."""
  out = []
  for penalty in ("linf", "tv"):
    members = [r for r in rows if r["penalty"] == penalty]
    if not members:
      continue
    for key, label in (("test_accuracy", "test accuracy"),
                       ("avg_success", "white-box avg success")):
      path = figdir / f"sweep_{penalty}_{key}.png"
      plots.plot_sweep(members, path, key=key, ylabel=label,
                       title=f"{penalty} penalty: {label} against alpha")
      out.append((str(path), f"{penalty} sweep: {label} against alpha"))
  return out
