"""The study's reports, rendered from the saved results of a run.

  render_synthetic(workdir)  # WORKDIR/report/index.html and report.md
  render_real(workdir)       # the same, of Table 2 on real photographs

A study ends by rendering its report (`studies.run`); `launch.report`
renders it alone (`studies.render` picks the study's renderer),
in seconds, on any finished (or partly finished) run: no model is loaded
and nothing is trained or attacked. A run's results are its `config.json`,
`study.json` (the environment, where the data come from), `stages.json`
(seconds per stage) and the results of each stage (`RESULTS`: NAME.json,
or NAME.npz for the arrays the figures are drawn from, by `figures.draw`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from etils import epath
import ml_collections

from blurnet_jax import distributed
from blurnet_jax import document as R
from blurnet_jax.attacks import grid
from blurnet_jax.classes import CLASS_NAMES
from blurnet_jax.jsonio import read_json
from blurnet_jax.study.blocks import ci as _ci
from blurnet_jax.study.blocks import figures_of, findings_blocks, fmt_pct
from blurnet_jax.study.blocks import not_run_stage
from blurnet_jax.study.blocks import pct as _pct
from blurnet_jax.study.blocks import table2_block
from blurnet_jax.study.real import report as real_report
from blurnet_jax.study.synthetic.proxy_report import oracle_blocks, proxy_blocks
from blurnet_jax.study.robustness.report import robustness_blocks
from blurnet_jax.study.claims import slides
from blurnet_jax.study import stages
from blurnet_jax.study.figures import draw as draw_figures
from blurnet_jax.study.synthetic import table1

#: The results a study report reads (WORKDIR/NAME.json, or NAME.npz for the
#: arrays of the figures), and those it needs, per study; a report of a
#: partly finished run says which sections have not run.
RESULTS = ("data", "training", "oracle", "victims", "victims_preview",
           "table1", "table1_victims", "table2", "lisa", "proxy",
           "proxy_table2", "spectral", "spectral_claim", "spectral_maps",
           "sweep", "robustness", "findings", "plan", "stages", "study")
REQUIRED = {"synthetic": ("table1", "table2", "stages", "study"),
            "real": ("data", "table2", "stages", "study")}


def _csv(values) -> str:
  return ",".join(f"{v:g}" if isinstance(v, float) else str(v)
                  for v in values)


def _table1_block(rows, caption) -> R.Table:
  columns = ["variant", "accuracy", "95% CI", "slides accuracy",
             "success (changed)", "95% CI ", "success (not stop)",
             "95% CI  ", "slides success", "diff (changed)",
             "diff (not stop)"]
  out = []
  for r in rows:
    s_acc, s_succ = r.get("slides_accuracy"), r.get("slides_attack_success_rate")
    out.append([r["variant"], _pct(r["accuracy"]), _ci(r, "accuracy"),
                _pct(s_acc), _pct(r["attack_success_rate"]),
                _ci(r, "attack_success_rate"),
                _pct(r["misclassification_rate"]),
                _ci(r, "misclassification_rate"), _pct(s_succ),
                None if s_succ is None else
                _pct(r["attack_success_rate"] - s_succ),
                None if s_succ is None else
                _pct(r["misclassification_rate"] - s_succ)])
  fmt = {c: ".1f" for c in columns[1:] if not c.startswith("95%")}
  return R.Table(columns, out, caption=caption, formats=fmt)


def _spectral_block(rows, caption) -> R.Table:
  columns = ["data", "variant"] + [
      f"{layer} {kind}" for layer in ("input", "l1", "l1_filtered", "l2")
      for kind in ("natural", "perturbed")]
  out = [[r["dataset"], r["variant"]] + [
      r[f"{layer}_{kind}"] for layer in ("input", "l1", "l1_filtered", "l2")
      for kind in ("natural", "perturbed")] for r in rows]
  return R.Table(columns, out, caption=caption,
                          formats={c: ".4f" for c in columns[2:]})


def _sweep_block(rows) -> R.Table:
  """One row per (penalty, alpha): the mean over its seeds (rows with seed
  'all'); a sweep.json without them shows its members."""
  pooled = [r for r in rows if r.get("seed") == "all"] or rows
  columns = ["penalty", "alpha", "seeds", "test accuracy", "95% CI",
             "avg success", "95% CI ", "worst success", "L2"]
  out = [[r["penalty"], r["alpha"],
          len(r["seeds"]) if "seeds" in r else r.get("seed", 0),
          _pct(r["test_accuracy"]), _ci(r, "test_accuracy"),
          _pct(r["avg_success"]), _ci(r, "avg_success"),
          _pct(r["worst_success"]), r["l2_distortion"]] for r in pooled]
  return R.Table(columns, out, caption="Alpha sweeps (mean over seeds; "
                 "intervals over seeds and victims, or test examples)",
                          formats={"alpha": "g", "test accuracy": ".1f",
                                   "avg success": ".1f",
                                   "worst success": ".1f", "L2": ".3f"})


def reductions(config) -> list[str]:
  """What the run leaves out of the slides' full protocol, in words."""
  out = []
  if len(config.seeds) < 3:
    out.append(f"seeds: {len(config.seeds)} per Table 2 variant (and attack "
               "keys on the RP2 model), fewer than 3: the intervals are wide "
               "and the verdicts rest on few seeds")
  if any(len(s.sweep.seeds) < 3 for s in config.sweeps.values()):
    out.append("sweeps: one seed per member, intervals over victims only")
  out.append("robustness transfer matrices: the first seed's models, "
             "Wilson intervals over victims only")
  if int(config.robustness.members) < 3:
    out.append(f"robustness checklist: the first "
               f"{int(config.robustness.members)} seed(s) of each model and "
               "as many attack keys, fewer than 3 (one: Wilson intervals "
               "over victims only)")
  g = config.grid
  targets = grid.parse_targets(g.targets)
  if config.name == "quick" or len(targets) < len(grid.ALL_TARGETS):
    out.append(f"white-box grid: targets {', '.join(map(str, targets))} "
               f"({', '.join(CLASS_NAMES[t] for t in targets)}), "
               f"{g.victims} victims, {g.num_transforms} transforms, "
               f"{g.steps} steps, {g.eval_transforms} evaluation draws")
  missing = [v for v in slides.TABLE2 if v not in config.models]
  if missing:
    out.append(f"Table 2 variants not trained: {', '.join(missing)}")
  out.append(f"training: {config.num_train_steps} steps of "
             f"{config.batch_size}; data {config.data.train_per_class} train "
             f"+ {config.data.test_per_class} test images per class "
             f"({config.data.source})")
  out.append(f"sweeps: {config.sweep.num_train_steps} training steps per "
             f"member; member grid targets "
             f"{', '.join(map(str, config.sweep.targets))}, "
             f"{config.sweep.steps} steps, {config.sweep.num_transforms} "
             "transforms")
  out.append(f"Table 1 synthetic perturbation: {config.table1.attack_steps} "
             "RP2 steps")
  rc = config.robustness
  return out + _arm_reductions(config) + [
      f"robustness checklist: {rc.victims} synthetic victims, PGD "
      f"{rc.pgd_steps} steps, Square {rc.square_queries} queries, "
      f"linf budgets {_csv(rc.linf_budgets)}, L2 budgets "
      f"{_csv(rc.l2_budgets)}, physical sticker {rc.rp2_steps} RP2 steps x "
      f"{rc.rp2_transforms} transforms"]


def _arm_reductions(config) -> list[str]:
  """The proxy ablation's and the LISA-initialised arm's sizes, in words."""
  out = []
  if "proxy" in config:
    p, g = config.proxy, config.proxy.grid
    out.append(f"proxy ablation: settings {', '.join(config.proxy_models)}; "
               f"{p.num_train_steps} training steps (x3 for 'long'), "
               f"{len(p.seeds)} seed(s); grid targets "
               f"{', '.join(map(str, g.targets))}, {g.steps} steps, "
               f"{g.num_transforms} transforms" + (
                   "; Table 2's variants not trained again at a proxy "
                   "setting" if not p.get("table2") else ""))
  if "lisa" in config:
    L = config.lisa
    missing = [f for f in ("full", "frozen") if f not in L.forms]
    out.append(f"LISA-initialised arm: variants {', '.join(L.variants)}; "
               f"{L.num_train_steps} fine-tuning steps; grid targets "
               f"{', '.join(map(str, L.grid.targets))}, {L.grid.steps} "
               f"steps, {L.grid.num_transforms} transforms" + (
                   f"; form(s) not run: {', '.join(missing)}" if missing
                   else ""))
  return out


def study_blocks(config, results: dict[str, Any]) -> list[Any]:
  """The blocks of the study's report, from its JSON results (see
  `load_results`): one section after another."""
  figures = results["study"]["figures"]
  return (_intro_blocks(config, results) + _table1_blocks(config, results)
          + _table2_blocks(results) + _lisa_blocks(config, results)
          + _spectral_blocks(config, results)
          + [R.Heading("Alpha sweeps")]
          + ([_sweep_block(results["sweep"])] + figures_of(figures, "sweep")
             if "sweep" in results else [not_run_stage("sweep")])
          + _robustness_section(config, results)
          + [R.Heading("Wall time per stage"),
             R.Table(["stage", "seconds"],
                     [[k, v] for k, v in results["stages"].items()],
                     formats={"seconds": ".1f"}),
             R.Heading("Config"),
             R.Code(json.dumps(config.to_dict(), indent=2), "json")])


def _intro_blocks(config, results: dict[str, Any]) -> list[Any]:
  """The run, the findings, the settings that differ from the slides."""
  meta = results["study"]
  env = meta["environment"]
  return [
      R.Paragraph(f"Run `{config.name}` of `launch.reproduce`, seed "
                  f"{config.seed}; jax {env['jax']}, flax {env['flax']}, "
                  f"optax {env['optax']}, backend {env['backend']} "
                  f"({env['device_kind']}). Real RP2 data: "
                  f"{meta['rp2_dir']}."),
      R.Heading("Findings"),
      *findings_blocks(results.get("findings")),
      R.Heading("Settings that differ from the slides"),
      R.Bullets(reductions(config)),
  ]


def _table1_blocks(config, results: dict[str, Any]) -> list[Any]:
  """Table 1 per data set, the reading the slides follow, its figures."""
  figures = results["study"]["figures"]
  blocks: list[Any] = [
      R.Heading("Table 1: black-box transfer"),
      R.Paragraph(
          "The camouflage perturbation made on the undefended model, shown "
          "to fixed blur filters inserted into that model without "
          "retraining. Accuracy: victims classified as stop. Success is "
          "given in both readings: prediction changed against the clean "
          "prediction (the slides' formula) and perturbed victim not "
          "classified as stop. Percent; diff = ours - slides."),
  ]
  t1 = {"rows": results["table1"]}
  real = [r for r in t1["rows"] if r["dataset"] == "rp2"]
  if real:
    t1["reading"] = table1.slides_reading(real)
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
  blocks += figures_of(figures, "table1")
  return blocks


def _table2_blocks(results: dict[str, Any]) -> list[Any]:
  """Table 2, the proxy's reading by the RP2 model, Table 2 at the proxy."""
  figures = results["study"]["figures"]
  oracle_accuracy = results.get("oracle", {}).get("accuracy")
  blocks: list[Any] = []
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
              f"{fmt_pct(oracle_accuracy).strip()} over classes 1-17: see "
              "'The synthetic proxy against the LISA model' below)."
              if oracle_accuracy is not None else "")),
      table2_block(results["table2"], "White-box grid per variant"),
  ]
  blocks += oracle_blocks(results.get("oracle"), figures)
  blocks += proxy_blocks(results.get("proxy"), figures)
  if results.get("proxy_table2"):
    rows = results["proxy_table2"]
    blocks += [R.Paragraph(
        f"Table 2's variants trained again at the proxy setting "
        f"'{rows[0]['dataset']}' (its data and augmentation, Table 2's "
        "length, seeds and attack keys), beside the rows above at the "
        "default: how much the proxy moves the answer."),
        table2_block(results["table2"] + rows,
                      "Table 2 at the default and at the proxy setting")]
  blocks += figures_of(figures, "table2")
  return blocks


def _lisa_blocks(config, results: dict[str, Any]) -> list[Any]:
  """The LISA-initialised arm."""
  blocks: list[Any] = [R.Heading("Table 2, LISA-initialised arm")]
  if "lisa" in results:
    L = config.lisa
    blocks += [R.Paragraph(
        "Each variant fine-tuned from the RP2 authors' LISA-trained weights "
        "(the filter inserted; a learned kernel starting as the box of its "
        f"size) on the synthetic set, {L.num_train_steps} steps at lr "
        f"{L.learning_rate:g}, one member per seed, attacked with the "
        "white-box grid on the 40 real victims (targets "
        f"{', '.join(map(str, L.grid.targets))}, {L.grid.steps} steps, "
        f"{L.grid.num_transforms} transforms). lisa-full: every layer "
        "trains; its control is the baseline fine-tuned the same way. "
        "lisa-frozen: only what the variant adds trains (the learned kernel; "
        "for TV the first layer); its control is the RP2 model itself. "
        "Accuracy: real victims classified as stop. Paired differences "
        "against each form's control, seed by seed on the same keys."),
        table2_block(results["lisa"], "LISA-initialised arm")]
  else:
    blocks.append(not_run_stage("lisa"))
  return blocks


def _spectral_blocks(config, results: dict[str, Any]) -> list[Any]:
  """High-frequency shares per layer and the spectra."""
  figures = results["study"]["figures"]
  blocks: list[Any] = [R.Heading("Spectral analysis")]
  if "spectral" in results:
    blocks += [
        R.Paragraph(f"Share of spectral power above radius "
                    f"{config.spectral_radius} (x Nyquist) of each "
                    "representation, mean over images and maps (means "
                    "removed), natural vs perturbed victims (the Table 1 "
                    "perturbation); l1_filtered is what conv2 sees."),
        _spectral_block(results["spectral"], "High-frequency share"),
    ] + figures_of(figures, "spectral")
  else:
    blocks.append(not_run_stage("spectral"))
  return blocks


def _robustness_section(config, results: dict[str, Any]) -> list[Any]:
  """The checklist, or a line saying it did not run."""
  figures = results["study"]["figures"]
  blocks: list[Any] = [R.Heading("Robustness checks (beyond the slides)")]
  if "robustness" in results:
    blocks += robustness_blocks(results["robustness"],
                                figures_of(figures, "robustness"),
                                config.robustness)
  else:
    blocks.append(not_run_stage("robustness"))
  return blocks


def table1_text(rows) -> str:
  lines = [f"  {'data':9s} {'variant':22s} {'acc':>6s} {'changed':>8s} "
           f"{'not stop':>8s} {'slides':>13s}"]
  for r in rows:
    slides = (f"{r['slides_accuracy']:.0%}/{r['slides_attack_success_rate']:.1%}"
              if "slides_accuracy" in r else "")
    lines.append(f"  {r['dataset']:9s} {r['variant']:22s} "
                 f"{r['accuracy']:6.1%} {r['attack_success_rate']:8.1%} "
                 f"{r['misclassification_rate']:8.1%} {slides:>13s}")
  return "\n".join(lines)


def table2_text(rows) -> str:
  return "\n".join(
      f"  {r['dataset']:9s} {r['variant']:10s} acc "
      f"{fmt_pct(r['legit_acc'])} avg {r['avg_success']:.1%} worst "
      f"{r['worst_success']:.1%} L2 {r['l2_distortion']:.3f}" for r in rows)


def load_results(workdir: epath.PathLike, required: tuple[str, ...], *,
                 real: bool) -> tuple[ml_collections.ConfigDict,
                                      dict[str, Any]]:
  """The config and every saved result of a study run (`required` must be
  there), with the figures drawn from them (`figures.draw`) in
  `results['study']['figures']`."""
  workdir = Path(workdir)
  config = ml_collections.ConfigDict(read_json(workdir / "config.json",
                                               "study config"))
  results = {name: stages.load_result(workdir, name) for name in RESULTS}
  for name in required:
    if results[name] is None:  # the one-line error of a missing file
      read_json(workdir / f"{name}.json", f"{name} results")
  results = {k: v for k, v in results.items() if v is not None}
  results["study"]["figures"] = draw_figures(workdir, results, real=real)
  return config, results


def _write(workdir: epath.PathLike, title: Callable[[Any], str], blocks_of,
           required: tuple[str, ...], *, real: bool) -> Path:
  """WORKDIR/report/ titled `title(config)` with the blocks
  `blocks_of(config, results)` (process 0 only: the others return the path
  at once and wait at the stage's barrier)."""
  if not distributed.is_writer():
    return Path(workdir) / "report" / "report.md"
  config, results = load_results(workdir, required, real=real)
  md, _ = R.write_report(Path(workdir) / "report", title(config),
                         blocks_of(config, results))
  return md


def render_synthetic(workdir: epath.PathLike) -> Path:
  """The synthetic study's WORKDIR/report/index.html and report.md."""
  return _write(workdir, lambda c: "BlurNet reproduction", study_blocks,
                REQUIRED["synthetic"], real=False)


def render_real(workdir: epath.PathLike) -> Path:
  """The real-photograph study's WORKDIR/report/ (Table 2 on a real
  source)."""
  return _write(
      workdir, lambda c: ("BlurNet Table 2 on real photographs "
                          f"({c.data.source})"),
      real_report.blocks, REQUIRED["real"], real=True)
