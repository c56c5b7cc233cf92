"""The BlurNet study end to end: Tables 1 and 2, spectra, sweeps, a report.

The library side of `launch/reproduce.py` (see configs/reproduce.py):

  config = configs.reproduce.get_config("quick")
  results = run(config, "/tmp/blurnet_quick")

Stages, each timed and reported: data, train (every Table 2 variant, reused
or resumed from WORKDIR/models), table1 (black-box transfer of a camouflage
perturbation to fixed filters inserted in the undefended model), table2
(the white-box RP2 grid on every trained variant), spectral, sweep (vmapped
alpha populations, each member attacked), robustness (the checklist of
`blurnet_jax.robustness` on every variant), report.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import Any, Iterator

from etils import epath
import flax
import jax
import ml_collections
import numpy as np
import optax

from blurnet_jax import models
from blurnet_jax import report as report_lib
from blurnet_jax import robustness
from blurnet_jax import spectral
from blurnet_jax import sweep as sweep_lib
from blurnet_jax import train
from blurnet_jax.attacks import rp2
from blurnet_jax.attacks import run as attack_run
from blurnet_jax.attacks.transforms import TransformConfig
from blurnet_jax.classes import CLASS_NAMES, NUM_CLASSES, STOP
from blurnet_jax.data import datasets
from blurnet_jax.data import masks as masks_lib
from blurnet_jax.data import synthetic
from blurnet_jax.data import victims as victims_lib
from blurnet_jax.progress import format_seconds

#: Table 1 of the slides: accuracy on the 40 victims, attack success rate.
SLIDES_TABLE1 = {
    "baseline": (1.0, 0.90),
    "input_3x3": (1.0, 0.875),
    "input_5x5": (1.0, 0.675),
    "l1_3x3": (1.0, 0.65),
    "l1_5x5": (0.875, 0.175),
}
#: Table 2 of the slides: alpha, legit. acc., avg and worst success, L2.
SLIDES_TABLE2 = {
    "baseline": (0.0, 0.91, 0.4918, 0.90, 0.207),
    "linf_3x3": (1e-5, 0.863, 0.30, 0.55, 0.201),
    "linf_5x5": (0.1, 0.863, 0.2411, 0.475, 0.189),
    "linf_7x7": (0.1, 0.87, 0.1161, 0.30, 0.203),
    "tv_1e-4": (1e-4, 0.856, 0.0792, 0.175, 0.224),
    "tv_1e-5": (1e-5, 0.823, 0.0847, 0.30, 0.199),
}
STAGES = ("data", "train", "table1", "table2", "spectral", "sweep",
          "robustness", "report")
_RP2_NOISE = "noise_rectangles_camouflage"
_RP2_MASK = "masks/mask_l1loss_uniform_rectangles.png"
_TARGET = 12  # speedLimit45, the authors' target


# ---------------------------------------------------------------- stages --


class Stages:
  """Prints a header per stage and records its wall seconds."""

  def __init__(self, names: tuple[str, ...] = STAGES):
    self.names = names
    self.seconds: dict[str, float] = {}
    self.t0 = time.perf_counter()

  @contextlib.contextmanager
  def __call__(self, name: str) -> Iterator[None]:
    i = self.names.index(name) + 1
    print(f"\n== stage {i}/{len(self.names)}: {name} "
          f"(elapsed {format_seconds(time.perf_counter() - self.t0)}) ==",
          flush=True)
    t0 = time.perf_counter()
    yield
    self.seconds[name] = round(time.perf_counter() - t0, 1)
    print(f"== {name} done in {format_seconds(self.seconds[name])} ==",
          flush=True)


def _targets(spec: str) -> list[int]:
  return attack_run.parse_targets(_TARGET, spec)


# -------------------------------------------------------------- training --


def _data_block(config) -> ml_collections.ConfigDict:
  data = ml_collections.ConfigDict(config.data.to_dict())
  if config.lisa_dir:
    data.source, data.lisa_dir = "lisa", config.lisa_dir
  return data


def model_config(config, base: ml_collections.ConfigDict, *,
                 steps: int | None = None) -> ml_collections.ConfigDict:
  """A train (or sweep) config with the study's shared settings applied."""
  c = ml_collections.ConfigDict(base.to_dict())
  c.data = _data_block(config)
  c.seed = config.seed
  c.num_train_steps = steps or config.num_train_steps
  c.warmup_steps = min(config.warmup_steps, c.num_train_steps // 2)
  c.batch_size = config.batch_size
  c.learning_rate = config.learning_rate
  c.eval_every = c.checkpoint_every = max(1, c.num_train_steps // 2)
  c.log_every = max(1, min(50, c.num_train_steps // 10))
  c.victims_dir = (str(epath.Path(config.rp2_dir) / "victim-set")
                   if config.rp2_dir else "")
  return c


def train_models(config, workdir: epath.Path) -> dict[str, dict[str, Any]]:
  """Trains (or reuses, or resumes) every Table 2 variant."""
  out = {}
  for name, base in config.models.items():
    cfg = model_config(config, base)
    state, results = train.train_and_evaluate(cfg, workdir / "models" / name)
    model = models.model_from_config(cfg.model)
    out[name] = {"model": model, "apply_fn": models.apply_fn_for(model),
                 "params": jax.device_get(state.params),
                 "alpha": float(cfg.penalty.alpha),
                 "test_accuracy": results["test"]["accuracy"],
                 "results": results}
  return out


# --------------------------------------------------------------- table 1 --


def filter_variants(config) -> list[tuple[str, str, dict[str, Any]]]:
  """(name, slides row, LisaCNN fields) of the baseline and every fixed
  filter of Table 1: on the input and on the L1 maps, each size and kernel."""
  t = config.table1
  out = [("baseline", "baseline", {})]
  for where in ("input", "l1"):
    for size in (int(s) for s in t.sizes.split(",")):
      for kernel in t.kernels.split(","):
        fields = dict(filter_where=where, filter_kernel=kernel,
                      filter_size=size, filter_padding=t.padding)
        if where == "l1":
          fields["filter_position"] = t.position
        out.append((f"{where}_{size}x{size}_{kernel}",
                    f"{where}_{size}x{size}", fields))
  return out


def transfer_rows(params, images, adversarial, variants, *,
                  dataset: str) -> list[dict[str, Any]]:
  """Table 1: the perturbed victims shown to each inserted filter.

  `attack_success_rate` is the slides' formula (prediction changed against
  the clean one); `misclassification_rate` counts perturbed victims not
  classified as stop (their true class).
  """
  rows = []
  for name, slides_row, fields in variants:
    model, p = models.insert_filter(params, **fields)
    f = models.apply_fn_for(model)
    clean = attack_run.predict(f, p, images)
    adv = attack_run.predict(f, p, adversarial)
    row = {"dataset": dataset, "variant": name,
           "accuracy": float(np.mean(clean == STOP)),
           "attack_success_rate": float(np.mean(clean != adv)),
           "misclassification_rate": float(np.mean(adv != STOP))}
    if slides_row in SLIDES_TABLE1:
      acc, success = SLIDES_TABLE1[slides_row]
      row |= {"slides_variant": slides_row, "slides_accuracy": acc,
              "slides_attack_success_rate": success}
    rows.append(row)
  return rows


def slides_reading(rows: list[dict[str, Any]]) -> dict[str, Any]:
  """Which success reading the slides' Table 1 follows, on these rows.

  For each reading, the largest distance (points) between a row with a
  slides value and that value, taking per slides row the closer of the
  box and Gaussian kernels. Also: whether every cell is within 5 points.
  """
  readings = {"attack_success_rate": "prediction changed vs clean",
              "misclassification_rate": "perturbed victim not classified "
                                        "as stop"}
  worst = {}
  best_rows: dict[str, dict[str, Any]] = {}
  for key in readings:
    per_slide: dict[str, float] = {}
    for r in rows:
      if "slides_variant" not in r:
        continue
      d = max(abs(r["accuracy"] - r["slides_accuracy"]),
              abs(r[key] - r["slides_attack_success_rate"]))
      if d < per_slide.get(r["slides_variant"], np.inf):
        per_slide[r["slides_variant"]] = d
        if key == "misclassification_rate":
          best_rows[r["slides_variant"]] = r
    worst[key] = max(per_slide.values()) * 100 if per_slide else float("nan")
  follows = min(worst, key=worst.get)
  beyond = [r["variant"] for r in rows if "slides_variant" in r and max(
      abs(r["accuracy"] - r["slides_accuracy"]),
      abs(r[follows] - r["slides_attack_success_rate"])) > 0.05 + 1e-9]
  return {"follows": follows, "follows_text": readings[follows],
          "max_distance_points": {k: round(v, 2) for k, v in worst.items()},
          "within_5_points": bool(worst[follows] <= 5.0 + 1e-9),
          "kernels_beyond_5_points": beyond}


def synthetic_transfer_perturbation(config, baseline, key) -> dict[str, Any]:
  """The project's camouflage RP2 on the synthetic baseline (target 12)."""
  images = synthetic.synthetic_victims(40, seed=0)
  mask = masks_lib.get_mask("camouflage")
  cfg = rp2.RP2Config(steps=config.table1.attack_steps, target=_TARGET)
  out = attack_run.attack_targets(
      baseline["apply_fn"], baseline["params"], images, mask, [_TARGET], key,
      cfg=cfg, desc="camouflage RP2 on the synthetic baseline")
  return {"images": images, "adversarial": out["adversarial"][0],
          "noise": out["noise"][0], "mask": mask}


def rp2_assets(rp2_dir: str) -> dict[str, Any]:
  """The RP2 model, victims, mask and the authors' camouflage perturbation."""
  root = epath.Path(rp2_dir)
  npz = root / "rp2_lisa_cnn.npz"
  if not npz.exists():
    raise FileNotFoundError(
        f"rp2_dir={rp2_dir!r} has no rp2_lisa_cnn.npz; give a folder laid "
        "out like ../shared/rp2 or leave rp2_dir empty")
  params = models.params_from_rp2(npz)
  images = victims_lib.load_victims(root / "victim-set")
  mask = masks_lib.load_mask(root / _RP2_MASK)
  noise = models.load_rp2_noise(npz, _RP2_NOISE)
  adversarial = np.asarray(rp2.apply_perturbation(images, mask, noise,
                                                  rp2.RP2Config()))
  model = models.LisaCNN()
  return {"params": params, "model": model,
          "apply_fn": models.apply_fn_for(model), "images": images,
          "mask": mask, "noise": np.asarray(noise),
          "adversarial": adversarial}


# --------------------------------------------------------------- table 2 --


def whitebox(apply_fn, params, images, mask, key, *, targets: list[int],
             steps: int, num_transforms: int, eval_transforms: int,
             chunk: int = -1, desc: str = "white-box grid") -> dict[str, Any]:
  """The white-box RP2 grid (camouflage settings, physical EOT) on a model.

  Returns the slides' Table 2 columns (`avg_success`, `worst_success`: the
  prediction-changed rate averaged / maximised over targets, `l2_distortion`)
  plus targeted and under-transform figures and the per-target rows.
  """
  cfg = rp2.RP2Config(steps=steps, num_transforms=num_transforms,
                      transforms=TransformConfig.physical(), target=_TARGET)
  attack_key, eval_key = jax.random.split(key)
  out = attack_run.attack_targets(apply_fn, params, images, mask, targets,
                                  attack_key, cfg=cfg, chunk=chunk, desc=desc)
  rows, _ = attack_run.evaluate_targets(apply_fn, params, images,
                                        out["adversarial"], targets, eval_key,
                                        eval_transforms=eval_transforms)
  s = attack_run.summarize(rows)
  return {"avg_success": s["average_success"],
          "worst_success": s["worst_success"],
          "l2_distortion": s["average_l2"],
          "avg_targeted_success": s["average_targeted_success"],
          "worst_targeted_success": s["worst_targeted_success"],
          "avg_transform_success": s["average_transform_success"],
          "per_target": rows, "noise": out["noise"],
          "adversarial": out["adversarial"]}


def _grid_kwargs(config) -> dict[str, Any]:
  g = config.grid
  return dict(targets=_targets(g.targets), steps=g.steps,
              num_transforms=g.num_transforms,
              eval_transforms=g.eval_transforms, chunk=g.chunk)


def table2_rows(config, trained, key, rp2_data=None) -> list[dict[str, Any]]:
  """Table 2: every trained variant (and the RP2 model) attacked white-box."""
  rows = []
  if rp2_data is not None:  # first: the row that compares digit for digit
    result = whitebox(rp2_data["apply_fn"], rp2_data["params"],
                      rp2_data["images"], rp2_data["mask"],
                      jax.random.fold_in(key, len(trained)),
                      desc="grid RP2 model", **_grid_kwargs(config))
    clean = attack_run.predict(rp2_data["apply_fn"], rp2_data["params"],
                    rp2_data["images"])
    rows.append(_table2_row("baseline", "rp2", 0.0,
                            float(np.mean(clean == STOP)), result))
  images = synthetic.synthetic_victims(config.grid.victims, seed=0)
  mask = masks_lib.get_mask("camouflage")
  for i, (name, m) in enumerate(trained.items()):
    result = whitebox(m["apply_fn"], m["params"], images, mask,
                      jax.random.fold_in(key, i), desc=f"grid {name}",
                      **_grid_kwargs(config))
    rows.append(_table2_row(name, "synthetic", m["alpha"],
                            m["test_accuracy"], result))
  return rows


def _table2_row(name, dataset, alpha, legit_acc, result) -> dict[str, Any]:
  row = {"dataset": dataset, "variant": name, "alpha": alpha,
         "legit_acc": legit_acc,
         **{k: v for k, v in result.items()
            if k not in ("noise", "adversarial")}}
  if name in SLIDES_TABLE2:
    keys = ("alpha", "legit_acc", "avg_success", "worst_success",
            "l2_distortion")
    row |= {f"slides_{k}": v for k, v in zip(keys, SLIDES_TABLE2[name])}
  return row


# -------------------------------------------------------------- spectral --


def spectral_rows(models_and_params, natural, perturbed, *, radius: float,
                  dataset: str) -> list[dict[str, Any]]:
  """One row per model: high-frequency shares, natural vs perturbed."""
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
    spectral.plot_spectra(source[layer], path,
                          title=f"{label}: {what}, natural vs perturbed")
    out.append((str(path), f"{label}: log-shifted, normalised FFT magnitude "
                           f"of the {what}; centre = low frequencies."))
  return out


# ----------------------------------------------------------------- sweep --


def run_sweeps(config, workdir: epath.Path, key) -> list[dict[str, Any]]:
  """Each penalty's alpha population, trained vmapped, each member attacked."""
  s = config.sweep
  images = synthetic.synthetic_victims(config.grid.victims, seed=0)
  mask = masks_lib.get_mask("camouflage")
  rows = []
  for penalty, base in config.sweeps.items():
    cfg = model_config(config, base, steps=s.num_train_steps)
    model = models.model_from_config(cfg.model)
    f = models.apply_fn_for(model)
    member_keys = (jax.random.fold_in(key, i) for i in itertools.count())

    def on_member(params, f=f):
      result = whitebox(f, params, images, mask,
                        next(member_keys),
                        targets=_targets(s.targets), steps=s.steps,
                        num_transforms=s.num_transforms,
                        eval_transforms=config.grid.eval_transforms,
                        chunk=config.grid.chunk, desc="member grid")
      return {k: v for k, v in result.items()
              if k not in ("per_target", "noise", "adversarial")}

    members = sweep_lib.run_sweep(cfg, workdir / "sweeps" / penalty,
                                  on_member=on_member)
    rows += [{"variant": f"sweep_{penalty}", **m} for m in members]
  return rows


# ---------------------------------------------------------------- report --


def _pct(x):
  return None if x is None else 100.0 * x


def _table1_block(rows, caption) -> report_lib.Table:
  columns = ["variant", "accuracy", "slides accuracy", "diff acc.",
             "success (changed)", "success (not stop)",
             "slides success", "diff (changed)", "diff (not stop)"]
  out = []
  for r in rows:
    s_acc, s_succ = r.get("slides_accuracy"), r.get("slides_attack_success_rate")
    out.append([r["variant"], _pct(r["accuracy"]), _pct(s_acc),
                None if s_acc is None else _pct(r["accuracy"] - s_acc),
                _pct(r["attack_success_rate"]),
                _pct(r["misclassification_rate"]), _pct(s_succ),
                None if s_succ is None else
                _pct(r["attack_success_rate"] - s_succ),
                None if s_succ is None else
                _pct(r["misclassification_rate"] - s_succ)])
  fmt = {c: ".1f" for c in columns[1:]}
  return report_lib.Table(columns, out, caption=caption, formats=fmt)


def _diff(ours, slides):
  return None if ours is None or slides is None else ours - slides


def _table2_block(rows, caption) -> report_lib.Table:
  columns = ["variant", "data", "alpha"]
  for name in ("acc.", "avg success", "worst success", "L2"):
    columns += [name, f"slides {name}", f"diff {name}"]
  columns += ["avg targeted", "avg under transforms"]
  out = []
  for r in rows:
    line = [r["variant"], r["dataset"], r["alpha"]]
    for key, scale in (("legit_acc", 100.0), ("avg_success", 100.0),
                       ("worst_success", 100.0), ("l2_distortion", 1.0)):
      ours, slides = r[key], r.get(f"slides_{key}")
      line += [None if ours is None else scale * ours,
               None if slides is None else scale * slides,
               None if _diff(ours, slides) is None
               else scale * _diff(ours, slides)]
    line += [_pct(r["avg_targeted_success"]), _pct(r["avg_transform_success"])]
    out.append(line)
  fmt = {c: ".1f" for c in columns[3:]} | {
      "alpha": "g", "L2": ".3f", "slides L2": ".3f", "diff L2": "+.3f"}
  return report_lib.Table(columns, out, caption=caption, formats=fmt)


def _spectral_block(rows, caption) -> report_lib.Table:
  columns = ["data", "variant"] + [
      f"{layer} {kind}" for layer in ("input", "l1", "l1_filtered", "l2")
      for kind in ("natural", "perturbed")]
  out = [[r["dataset"], r["variant"]] + [
      r[f"{layer}_{kind}"] for layer in ("input", "l1", "l1_filtered", "l2")
      for kind in ("natural", "perturbed")] for r in rows]
  return report_lib.Table(columns, out, caption=caption,
                          formats={c: ".4f" for c in columns[2:]})


def _sweep_block(rows) -> report_lib.Table:
  columns = ["penalty", "alpha", "test accuracy", "avg success",
             "worst success", "L2"]
  out = [[r["penalty"], r["alpha"], _pct(r["test_accuracy"]),
          _pct(r["avg_success"]), _pct(r["worst_success"]),
          r["l2_distortion"]] for r in rows]
  return report_lib.Table(columns, out, caption="Alpha sweeps",
                          formats={"alpha": "g", "test accuracy": ".1f",
                                   "avg success": ".1f",
                                   "worst success": ".1f", "L2": ".3f"})


def reductions(config) -> list[str]:
  """What the run leaves out of the slides' full protocol, in words."""
  out = []
  g = config.grid
  if config.name == "quick" or len(_targets(g.targets)) < NUM_CLASSES - 1:
    out.append(f"white-box grid: targets {g.targets} "
               f"({', '.join(CLASS_NAMES[t] for t in _targets(g.targets))}), "
               f"{g.victims} victims, {g.num_transforms} transforms, "
               f"{g.steps} steps, {g.eval_transforms} evaluation draws")
  missing = [v for v in SLIDES_TABLE2 if v not in config.models]
  if missing:
    out.append(f"Table 2 variants not trained: {', '.join(missing)}")
  out.append(f"training: {config.num_train_steps} steps of "
             f"{config.batch_size}; data {config.data.train_per_class} train "
             f"+ {config.data.test_per_class} test images per class "
             f"({'LISA' if config.lisa_dir else 'synthetic'})")
  out.append(f"sweeps: {config.sweep.num_train_steps} training steps per "
             f"member; member grid targets {config.sweep.targets}, "
             f"{config.sweep.steps} steps, {config.sweep.num_transforms} "
             "transforms")
  out.append(f"Table 1 synthetic perturbation: {config.table1.attack_steps} "
             "RP2 steps")
  rc = config.robustness
  out.append(f"robustness checklist: {rc.victims} synthetic victims, PGD "
             f"{rc.pgd_steps} steps, Square {rc.square_queries} queries, "
             f"linf budgets {rc.linf_budgets}, L2 budgets {rc.l2_budgets}, "
             f"physical sticker {rc.rp2_steps} RP2 steps x "
             f"{rc.rp2_transforms} transforms")
  return out


def write_report(config, workdir: epath.Path, results: dict[str, Any],
                 figures: dict[str, list[tuple[str, str]]]) -> epath.Path:
  """report/index.html and report/report.md from the stage results."""
  R = report_lib
  blocks: list[Any] = [
      R.Paragraph(f"Run `{config.name}` of `launch.reproduce`, seed "
                  f"{config.seed}; jax {jax.__version__}, flax "
                  f"{flax.__version__}, optax {optax.__version__}, backend "
                  f"{jax.default_backend()} "
                  f"({jax.devices()[0].device_kind}). Real RP2 data: "
                  f"{'yes, ' + config.rp2_dir if config.rp2_dir else 'no'}."),
      R.Heading("Settings that differ from the slides"),
      R.Bullets(reductions(config)),
      R.Heading("Table 1: black-box transfer"),
      R.Paragraph(
          "The camouflage perturbation made on the undefended model, shown "
          "to fixed blur filters inserted into that model without "
          "retraining. Accuracy: victims classified as stop. Success is "
          "given in both readings: prediction changed against the clean "
          "prediction (the slides' formula) and perturbed victim not "
          "classified as stop. Percent; diff = ours - slides."),
  ]
  t1 = results["table1"]
  for dataset, caption in (("rp2", "RP2 model, the authors' camouflage "
                            "perturbation, 40 real victims"),
                           ("synthetic", "synthetic baseline, camouflage "
                            "perturbation made by the project's RP2, 40 "
                            "synthetic victims")):
    rows = [r for r in t1["rows"] if r["dataset"] == dataset]
    if rows:
      blocks.append(_table1_block(rows, caption))
  if "reading" in t1:
    rd = t1["reading"]
    blocks.append(R.Paragraph(
        f"On the real data the slides' numbers follow the reading "
        f"'{rd['follows_text']}' (largest distance to a slides cell, per "
        f"reading: {rd['max_distance_points']} points). Every cell within 5 "
        f"points: {'yes' if rd['within_5_points'] else 'no'} (filters: "
        f"{config.table1.padding} padding, {config.table1.position}; the "
        "closer of box and Gaussian per slides row)." + (
            f" Rows more than 5 points from the slides in that reading: "
            f"{', '.join(rd['kernels_beyond_5_points'])}. A Gaussian of the "
            "same width (sigma = 0.3((k-1)/2-1)+0.8, OpenCV's default) "
            "blurs less than a box, so the slides' filters behave as box "
            "(mean) filters; padding (zeros vs reflect) and placement "
            "(before/after the ReLU) move the box rows by at most 5 points."
            if rd["kernels_beyond_5_points"] else "")))
  blocks += [R.Figure(p, c) for p, c in figures.get("table1", [])]
  blocks += [
      R.Heading("Table 2: white-box RP2"),
      R.Paragraph(
          "One RP2 attack per target class (camouflage settings, physical "
          "transforms as EOT); success = prediction changed, average and "
          "worst over targets; L2 = dissimilarity. Percent. The synthetic "
          "rows compare by trend with the slides' LISA-trained models "
          "(accuracy: synthetic test split)." + (
              " The rp2 row (the RP2 model and the real victims) compares "
              "digit for digit with the slides' baseline; its accuracy is "
              "on the 40 real victims (on the synthetic test split it is "
              f"{_fmt_pct(results.get('rp2_synthetic_accuracy')).strip()}: "
              "the LISA-trained model does not read the synthetic renders "
              "well)." if "rp2_synthetic_accuracy" in results else "")),
      _table2_block(results["table2"], "White-box grid per variant"),
  ]
  blocks += [R.Figure(p, c) for p, c in figures.get("table2", [])]
  blocks += [
      R.Heading("Spectral analysis"),
      R.Paragraph(f"Share of spectral power above radius "
                  f"{config.spectral_radius} (x Nyquist) of each "
                  "representation, mean over images and maps (means "
                  "removed), natural vs perturbed victims (the Table 1 "
                  "perturbation); l1_filtered is what conv2 sees."),
      _spectral_block(results["spectral"], "High-frequency share"),
  ]
  blocks += [R.Figure(p, c) for p, c in figures.get("spectral", [])]
  blocks += [R.Heading("Alpha sweeps"), _sweep_block(results["sweep"])]
  blocks += [R.Figure(p, c) for p, c in figures.get("sweep", [])]
  if "robustness" in results:
    blocks += [R.Heading("Robustness checks (beyond the slides)")]
    blocks += robustness.report_blocks(results["robustness"],
                                       figures.get("robustness", []),
                                       config.robustness)
  blocks += [
      R.Heading("Wall time per stage"),
      R.Table(["stage", "seconds"],
              [[k, v] for k, v in results["stage_seconds"].items()],
              formats={"seconds": ".1f"}),
      R.Heading("Config"),
      R.Code(config.to_json_best_effort(indent=2), "json"),
  ]
  md, _ = R.write_report(workdir / "report", "BlurNet reproduction", blocks)
  return md


def _plot_sweep_figures(rows, figdir) -> list[tuple[str, str]]:
  out = []
  for penalty in ("linf", "tv"):
    members = [r for r in rows if r["penalty"] == penalty]
    if not members:
      continue
    for key, label in (("test_accuracy", "test accuracy"),
                       ("avg_success", "white-box avg success")):
      path = figdir / f"sweep_{penalty}_{key}.png"
      sweep_lib.plot_sweep(members, path, key=key, ylabel=label,
                           title=f"{penalty} penalty: {label} against alpha")
      out.append((str(path), f"{penalty} sweep: {label} against alpha"))
  return out


# -------------------------------------------------------------------- run --


def run(config: ml_collections.ConfigDict,
        workdir: epath.PathLike) -> dict[str, Any]:
  """Runs every stage and writes the JSON tables and the report."""
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  figdir = workdir / "figures"
  figdir.mkdir(exist_ok=True)
  if "baseline" not in config.models:
    raise ValueError("config.models needs a 'baseline' entry: Table 1 and the "
                     "spectra are measured on the undefended model")
  key = jax.random.key(config.seed)
  stage = Stages()
  results: dict[str, Any] = {}
  figures: dict[str, list[tuple[str, str]]] = {}
  rp2_data = rp2_assets(config.rp2_dir) if config.rp2_dir else None

  with stage("data"):
    builder = datasets.prepare(_data_block(config))
    print(f"data: {builder.info.full_name} at {builder.data_dir}")
  with stage("train"):
    trained = train_models(config, workdir)
    for name, m in trained.items():
      print(f"  {name:10s} test accuracy {m['test_accuracy']:.2%}")
  baseline = trained["baseline"]

  with stage("table1"):
    variants = filter_variants(config)
    synth = synthetic_transfer_perturbation(config, baseline,
                                            jax.random.fold_in(key, 1))
    rows = transfer_rows(baseline["params"], synth["images"],
                         synth["adversarial"], variants, dataset="synthetic")
    table1 = {"rows": rows}
    if rp2_data is not None:
      real = transfer_rows(rp2_data["params"], rp2_data["images"],
                           rp2_data["adversarial"], variants, dataset="rp2")
      table1 = {"rows": real + rows, "reading": slides_reading(real)}
      test_images, test_labels = datasets.load_split(builder, "test")
      pred = attack_run.predict(rp2_data["apply_fn"], rp2_data["params"],
                                test_images)
      results["rp2_synthetic_accuracy"] = float(np.mean(pred == test_labels))
    results["table1"] = table1
    path = figdir / "table1_synthetic_victims.png"
    _victims_figure(baseline, synth, path)
    figures["table1"] = [(str(path), "Synthetic victims before (top) and "
                          "after (bottom) the project's camouflage "
                          "perturbation, with the baseline's labels.")]
    print(_text_table1(table1["rows"]))
  with stage("table2"):
    results["table2"] = table2_rows(config, trained,
                                    jax.random.fold_in(key, 2), rp2_data)
    for r in results["table2"]:
      print(f"  {r['dataset']:9s} {r['variant']:10s} acc "
            f"{_fmt_pct(r['legit_acc'])} avg {r['avg_success']:.1%} worst "
            f"{r['worst_success']:.1%} L2 {r['l2_distortion']:.3f}")
  with stage("spectral"):
    filt_model, filt_params = models.insert_filter(
        baseline["params"], filter_where="l1", filter_kernel="box",
        filter_size=5, filter_padding=config.table1.padding)
    candidates = [("baseline + l1 5x5 box (inserted)", filt_model,
                   filt_params)] + [(n, m["model"], m["params"])
                                    for n, m in trained.items()]
    rows = spectral_rows(candidates, synth["images"], synth["adversarial"],
                         radius=config.spectral_radius, dataset="synthetic")
    figures["spectral"] = spectral_figures(
        baseline["model"], baseline["params"], filt_model, filt_params,
        synth["images"], synth["adversarial"], figdir, "synthetic",
        "synthetic victims")
    if rp2_data is not None:
      rm, rp = models.insert_filter(rp2_data["params"], filter_where="l1",
                                    filter_kernel="box", filter_size=5,
                                    filter_padding=config.table1.padding)
      rows = spectral_rows(
          [("RP2 model", rp2_data["model"], rp2_data["params"]),
           ("RP2 + l1 5x5 box (inserted)", rm, rp)],
          rp2_data["images"], rp2_data["adversarial"],
          radius=config.spectral_radius, dataset="rp2") + rows
      figures["spectral"] = spectral_figures(
          rp2_data["model"], rp2_data["params"], rm, rp, rp2_data["images"],
          rp2_data["adversarial"], figdir, "rp2",
          "RP2 model, real victims") + figures["spectral"]
    results["spectral"] = rows
  with stage("sweep"):
    results["sweep"] = run_sweeps(config, workdir, jax.random.fold_in(key, 3))
    figures["sweep"] = _plot_sweep_figures(results["sweep"], figdir)
  with stage("robustness"):
    results["robustness"] = robustness.evaluate_trained(
        config, trained, jax.random.fold_in(key, 4), rp2_data)
    figures["robustness"] = robustness.write_figures(results["robustness"],
                                                     figdir)
    print(robustness.text_summary(results["robustness"]))
  with stage("report"):
    for name in ("table1", "table2", "spectral", "sweep"):
      rows = results[name]["rows"] if name == "table1" else results[name]
      train.write_json(workdir / f"{name}.json", train.jsonable(rows),
                       sort_keys=False)
    train.write_json(workdir / "robustness.json",
                     train.jsonable(results["robustness"]),
                     sort_keys=False)
    results["stage_seconds"] = dict(stage.seconds)
    md = write_report(config, workdir, results, figures)
  results["stage_seconds"] = dict(stage.seconds)
  train.write_json(workdir / "stages.json", results["stage_seconds"])
  print(f"\nreport: {md.parent / 'index.html'} and {md}")
  return results


def _fmt_pct(x) -> str:
  return "  n/a" if x is None else f"{x:.1%}"


def _text_table1(rows) -> str:
  lines = [f"  {'data':9s} {'variant':22s} {'acc':>6s} {'changed':>8s} "
           f"{'not stop':>8s} {'slides':>13s}"]
  for r in rows:
    slides = (f"{r['slides_accuracy']:.0%}/{r['slides_attack_success_rate']:.1%}"
              if "slides_accuracy" in r else "")
    lines.append(f"  {r['dataset']:9s} {r['variant']:22s} "
                 f"{r['accuracy']:6.1%} {r['attack_success_rate']:8.1%} "
                 f"{r['misclassification_rate']:8.1%} {slides:>13s}")
  return "\n".join(lines)


def _victims_figure(baseline, synth, path) -> None:
  from blurnet_jax import viz  # pylint: disable=g-import-not-at-top
  n = 10
  f = baseline["apply_fn"]
  clean = attack_run.predict(f, baseline["params"], synth["images"][:n])
  adv = attack_run.predict(f, baseline["params"], synth["adversarial"][:n])
  viz.image_grid([synth["images"][:n], synth["adversarial"][:n]],
                 ["natural", "perturbed"],
                 [[CLASS_NAMES[c] for c in clean],
                  [CLASS_NAMES[c] for c in adv]], path)


__all__ = ["SLIDES_TABLE1", "SLIDES_TABLE2", "filter_variants", "run",
           "slides_reading", "transfer_rows", "whitebox"]
