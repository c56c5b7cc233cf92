"""One RP2 run from a config: one target or the white-box grid, with
pictures (the application behind `launch.attack`, see configs/rp2.py).

  config = configs.rp2.get_config("poster")
  results = run_attack(config, "/tmp/poster")

`run_attack` loads a model (`zoo.load_model`), the victims and the mask,
runs `attacks.grid.attack_targets` over the target classes in chunks of
`config.chunk` targets per compiled program, measures every target, and
writes `attack.json`, `perturbation.npy`, `perturbation.png` and
`victims.png` into the workdir.
"""

from __future__ import annotations

import time
from typing import Any

from etils import epath
import jax
import ml_collections
import numpy as np

from blurnet_jax import distributed
from blurnet_jax import workdirs
from blurnet_jax import models
from blurnet_jax import plots
from blurnet_jax.attacks import grid
from blurnet_jax.attacks import rp2
from blurnet_jax.attacks.transforms import TransformConfig
from blurnet_jax.classes import STOP
from blurnet_jax.data import masks as masks_lib
from blurnet_jax.data import rp2_assets
from blurnet_jax.data import synthetic
from blurnet_jax.data import victims as victims_lib
from blurnet_jax.jsonio import jsonable, write_json
from blurnet_jax.study.claims import slides
from blurnet_jax.study import zoo

TRANSFORMS = ("none", "physical")
#: The authors' masks of the RP2 assets, by `config.mask` name.
RP2_MASKS = {"rp2_camouflage": "masks/mask_l1loss_uniform_rectangles.png",
             "rp2_octagon": "masks/octagon.png"}


def victim_set(spec: str, rp2_dir: str = "") -> tuple[np.ndarray, str]:
  """(images float32 (N, 32, 32, 3), description) of `config.victims`:
  'rp2' (the assets' 40 real victims), 'synthetic' (40 synthetic stop
  signs) or a folder of PNGs."""
  if spec == "synthetic":
    return synthetic.synthetic_victims(40, seed=0), "40 synthetic stop signs"
  if not spec:
    raise ValueError("victims='' is not a victim set; use 'rp2', "
                     "'synthetic' or a folder of 32x32 PNGs")
  folder = (rp2_assets.rp2_dir(rp2_dir) / "victim-set" if spec == "rp2"
            else spec)
  images = victims_lib.load_victims(folder)
  return images, f"{len(images)} victims from {folder}"


def attack_mask(spec: str, rp2_dir: str = "") -> np.ndarray:
  """The mask of `config.mask`: an RP2 mask name, a built-in one or a PNG."""
  if spec in RP2_MASKS:
    return masks_lib.load_mask(rp2_assets.rp2_dir(rp2_dir) / RP2_MASKS[spec])
  return masks_lib.get_mask(spec)


def run_targets(config) -> list[int]:
  """The targets of a run config: `targets`, or () for just `target`."""
  return grid.parse_targets(tuple(config.targets) or (config.target,))


def rp2_config(config: ml_collections.ConfigDict) -> rp2.RP2Config:
  """The `RP2Config` of a run config (see configs/rp2.py)."""
  if config.transforms not in TRANSFORMS:
    raise ValueError(f"transforms={config.transforms!r}; use one of "
                     f"{TRANSFORMS}")
  if not config.noise_clip > 0:
    raise ValueError(f"noise_clip={config.noise_clip!r} must be > 0 (the "
                     "noise is clipped to [-noise_clip, noise_clip])")
  transforms = (TransformConfig.physical() if config.transforms == "physical"
                else TransformConfig.none())
  return rp2.RP2Config(
      learning_rate=float(config.lr), lambda_norm=float(config.lam),
      norm_p=float(config.norm_p),
      noise_clip=(-float(config.noise_clip), float(config.noise_clip)),
      steps=int(config.steps), nps_weight=float(config.nps_weight),
      num_transforms=int(config.num_transforms), transforms=transforms)


def format_table(results: dict[str, Any]) -> str:
  """The per-target table, plus average/worst and the slides' baseline."""
  header = (f"{'target':<22}{'success':>9}{'targeted':>10}{'transf.':>9}"
            f"{'transf.tgt':>11}{'L2':>8}")
  lines = [header]
  for r in results["targets"]:
    lines.append(
        f"{r['target']:>2} {r['target_name']:<19}{r['success']:>9.1%}"
        f"{r['targeted_success']:>10.1%}{r['transform_success']:>9.1%}"
        f"{r['transform_targeted_success']:>11.1%}{r['l2']:>8.3f}")
  if len(results["targets"]) > 1:
    s, b = results["summary"], results["slides_baseline"]
    lines += [
        "",
        f"{'':<22}{'avg succ.':>10}{'worst succ.':>13}{'L2':>8}",
        f"{'ours':<22}{s['average_success']:>10.2%}"
        f"{s['worst_success']:>13.1%}{s['average_l2']:>8.3f}",
        f"{'slides baseline':<22}{b['avg_success']:>10.2%}"
        f"{b['worst_success']:>13.1%}{b['l2_distortion']:>8.3f}",
    ]
  return "\n".join(lines)


def run_attack(config: ml_collections.ConfigDict,
               workdir: epath.PathLike) -> dict[str, Any]:
  """Runs the RP2 attack(s) of `config` and writes the reports to `workdir`.

  Writes `attack.json` (settings, model, per-target rows, average/worst,
  seconds, steps/s), `perturbation.npy` (float32 (32, 32, 3), or (T, 32, 32,
  3) for several targets: the final noise, clipped to +-noise_clip, before
  the mask), `perturbation.png` and `victims.png`.

  Returns:
    The contents of attack.json.
  """
  workdir = epath.Path(workdir)
  cfg = rp2_config(config)
  targets = run_targets(config)
  if not (isinstance(config.eval_transforms, int)
          and config.eval_transforms >= 1):
    raise ValueError(f"eval_transforms={config.eval_transforms!r} must be an "
                     "int >= 1")
  model = zoo.load_model(config.model, config.rp2_dir,
                         member=config.get("member", 0))
  images, victims_description = victim_set(config.victims, config.rp2_dir)
  mask = attack_mask(config.mask, config.rp2_dir)
  with workdirs.lock(workdir):  # checked and loaded: only now a file
    return _attack_and_write(config, workdir, cfg, targets, model,
                             (images, victims_description), mask)


def _attack_and_write(config, workdir: epath.Path, cfg, targets, model,
                      victims, mask) -> dict[str, Any]:
  """`run_attack` inside its workdir's lock."""
  apply_fn, params, model_description = model
  images, victims_description = victims
  workdir.mkdir(parents=True, exist_ok=True)

  attack_key, eval_key = jax.random.split(jax.random.key(config.seed))
  timings = {}
  t0 = time.perf_counter()
  out = grid.attack_targets(apply_fn, params, images, mask, targets, attack_key,
                       cfg=cfg, chunk=config.chunk, desc="rp2",
                       timings=timings)
  seconds = time.perf_counter() - t0
  rows, adv_pred = grid.evaluate_targets(apply_fn, params, images,
                                    out["adversarial"], targets, eval_key,
                                    eval_transforms=config.eval_transforms)
  clean = models.predict(apply_fn, params, images)
  results = {
      "settings": config.to_dict(),
      "model": model_description,
      "victims": victims_description,
      "mask": f"{config.mask} ({float(mask.mean()):.1%} of pixels)",
      "clean_stop_rate": round(float(np.mean(clean == STOP)), 6),
      "targets": rows,
      "summary": grid.average_and_worst(rows),
      "slides_baseline": {k: slides.table2_row("baseline")[k] for k in (
          "avg_success", "worst_success", "l2_distortion")},
      "seconds": round(seconds, 2),
      "compile_seconds": round(timings["compile_s"], 2),
      "steps_per_s": round(len(targets) * cfg.steps / seconds, 2),
  }
  results = jsonable(results)  # as attack.json holds it
  write_json(workdir / "attack.json", results)
  noise = out["noise"].astype(np.float32)
  if distributed.is_writer():
    with (workdir / "perturbation.npy").open("wb") as f:
      np.save(f, noise if len(targets) > 1 else noise[0], allow_pickle=False)
  plots.attack_pictures(workdir, images, mask, targets, out, clean, adv_pred,
                        float(config.noise_clip))
  return results
