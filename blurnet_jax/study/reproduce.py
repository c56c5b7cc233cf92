"""The BlurNet study end to end (the application behind `launch.reproduce`,
see configs/reproduce.py):

  config = configs.reproduce.get_config("quick")
  run(config, "/tmp/blurnet_quick")

Stages, each timed: data, train (every Table 2 variant, reused or resumed
from WORKDIR/models), table1 (black-box transfer of a camouflage
perturbation to fixed filters inserted in the undefended model), table2
(the white-box RP2 grid on every trained variant and on the RP2 model),
spectral, sweep (vmapped alpha populations, each member attacked),
robustness (the checklist on every variant), report (rendered from the
JSON results the stages wrote, by `report.render`).
"""

from __future__ import annotations

from typing import Any

from etils import epath
import flax
import jax
import ml_collections
import numpy as np
import optax

from blurnet_jax import models
from blurnet_jax import plots
from blurnet_jax import train
from blurnet_jax.classes import CLASS_NAMES, REAL_SOURCES, label_space
from blurnet_jax.data import datasets
from blurnet_jax.study import oracle
from blurnet_jax.data import rp2_assets
from blurnet_jax.jsonio import write_json
from blurnet_jax.study import findings
from blurnet_jax.study import proxy
from blurnet_jax.study import real as real_study
from blurnet_jax.study import report
from blurnet_jax.study import robustness
from blurnet_jax.study import spectra
from blurnet_jax.study import sweeps
from blurnet_jax.study import table1
from blurnet_jax.study import table2
from blurnet_jax.study import zoo
from blurnet_jax.study.stages import Stages

STAGES = ("data", "train", "table1", "table2", "lisa", "proxy", "spectral",
          "sweep", "robustness", "report")
#: The study on a real data source (`blurnet_jax.study.real`).
REAL_STAGES = ("data", "victims", "train", "oracle", "table2", "report")


def environment() -> dict[str, str]:
  """Versions and the device the run used."""
  return {"jax": jax.__version__, "flax": flax.__version__,
          "optax": optax.__version__, "backend": jax.default_backend(),
          "device_kind": jax.devices()[0].device_kind}


def _victims_figure(baseline: zoo.TrainedModel, synth, path) -> None:
  n = 10
  clean = models.predict(baseline.apply_fn, baseline.params,
                         synth["images"][:n])
  adv = models.predict(baseline.apply_fn, baseline.params,
                       synth["adversarial"][:n])
  plots.image_grid([synth["images"][:n], synth["adversarial"][:n]],
                   ["natural", "perturbed"],
                   [[CLASS_NAMES[c] for c in clean],
                    [CLASS_NAMES[c] for c in adv]], path)


def run(config: ml_collections.ConfigDict,
        workdir: epath.PathLike) -> dict[str, Any]:
  """Runs every stage, writes the JSON results and renders the report
  (on a real data source, `run_real`)."""
  if config.data.source in REAL_SOURCES:
    return run_real(config, workdir)
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  figdir = workdir / "figures"
  figdir.mkdir(exist_ok=True)
  if "baseline" not in config.models:
    raise ValueError("config.models needs a 'baseline' entry: Table 1 and the "
                     "spectra are measured on the undefended model")
  write_json(workdir / "config.json", config.to_dict())
  key = jax.random.key(config.seed)
  stage = Stages(STAGES)
  results: dict[str, Any] = {}
  figures: dict[str, list[tuple[str, str]]] = {}
  real = zoo.rp2_data(config.rp2_dir)
  packaged = real.assets.root == rp2_assets.PACKAGED_DIR
  study = {"rp2_dir": ("the assets shipped with the package" if packaged
                       else str(real.assets.root)),
           "environment": environment(),
           "figures": figures, "rp2_synthetic_accuracy": None}

  with stage("data"):
    builder = train.prepare_data(config.data)  # process 0 first
    print(f"data: {builder.info.full_name} at {builder.data_dir}")
  with stage("train"):
    trained = zoo.train_models(config.models, workdir / "models")
    for name, m in trained.items():
      print(f"  {name:10s} test accuracy {m.test_accuracy:.2%}")
  baseline = trained["baseline"]

  with stage("table1"):
    variants = table1.filter_variants(config.table1)
    # Seed i's baseline with its own perturbation (key i), pooled; the
    # first seed's stands for the figures and the spectra.
    synths = [table1.synthetic_transfer_perturbation(
        config.table1.attack_steps, baseline.apply_fn, p,
        jax.random.fold_in(jax.random.fold_in(key, 1), i),
        desc=f", seed {seed}")
              for i, (seed, p) in enumerate(zip(baseline.seeds,
                                                baseline.members))]
    synth = synths[0]
    rows = table1.pool([table1.transfer_rows(p, s["images"],
                                             s["adversarial"], variants,
                                             dataset="synthetic")
                        for p, s in zip(baseline.members, synths)])
    real_rows = table1.transfer_rows(real.params, real.images,
                                     real.adversarial, variants,
                                     dataset="rp2")
    results["table1"] = real_rows + rows
    test_images, test_labels = datasets.load_split(builder, "test")
    # The RP2 (LISA) model on the test split: classes 1-17 equally weighted.
    rp2_oracle = oracle.oracle_report(test_images, test_labels,
                                      params=real.params)
    rp2_oracle["front_on"] = oracle.front_on_report(params=real.params)
    study["rp2_oracle"] = rp2_oracle
    study["rp2_synthetic_accuracy"] = rp2_oracle["accuracy"]
    path = figdir / "oracle_confusion.png"
    plots.confusion_figure(np.asarray(rp2_oracle["confusion"]), path,
                           title=oracle.figure_title(rp2_oracle))
    figures["oracle"] = [(str(path), "The RP2 (LISA-trained) model on the "
                          "synthetic test split: rows the true class, "
                          "columns its prediction, percent of each row.")]
    print(oracle.format_oracle(rp2_oracle))
    path = figdir / "table1_synthetic_victims.png"
    _victims_figure(baseline, synth, path)
    figures["table1"] = [(str(path), "Synthetic victims before (top) and "
                          "after (bottom) the project's camouflage "
                          "perturbation, with the baseline's labels.")]
    print(report.table1_text(results["table1"]))
  with stage("table2"):
    results["table2"] = table2.table2_rows(config, trained,
                                           jax.random.fold_in(key, 2), real,
                                           (test_images, test_labels))
    print(report.table2_text(results["table2"]))
  with stage("lisa"):
    lisa_models = zoo.train_models(config.lisa_models, workdir / "lisa")
    results["lisa"] = table2.lisa_rows(config, lisa_models,
                                       jax.random.fold_in(key, 5), real)
    print(report.table2_text(results["lisa"]))
  with stage("proxy"):
    proxy_models = zoo.train_models(config.proxy_models, workdir / "proxy")
    results["proxy"] = proxy.proxy_rows(config, proxy_models,
                                        jax.random.fold_in(key, 6), real)
    path = figdir / "proxy_success.png"
    plots.proxy_bars(results["proxy"], path, gap_points=proxy.GAP_POINTS)
    figures["proxy"] = [(str(path), "Average white-box success on the 40 "
                         "real victims (95% intervals): the RP2 model (red, "
                         f"its level a line, the band {proxy.GAP_POINTS:g} "
                         "points below it shaded) and a synthetic-trained "
                         "baseline per setting, with its test accuracy and "
                         "the RP2 model's accuracy on its test split.")]
    print(report.proxy_text(results["proxy"]))
    # Table 2's variants again at the setting closest to the RP2 model,
    # attacked with Table 2's keys: how much the proxy moves the answer.
    setting = proxy.table2_setting(config, results["proxy"])
    if setting is not None:
      block = proxy.variant_configs(config, setting)
      at = zoo.train_models(block, workdir / "proxy_table2" / setting)
      split = datasets.load_split(datasets.prepare(block.baseline.data),
                                  "test")
      rows = table2.synthetic_rows(config, at, jax.random.fold_in(key, 2),
                                   split, dataset=f"synthetic ({setting})")
      table2.compare(rows, rows[0]["dataset"])
      results["proxy_table2"] = rows
      print(report.table2_text(rows))
  with stage("spectral"):
    padding = config.table1.padding
    filt_model, filt_params = models.insert_filter(
        baseline.params, filter_where="l1", filter_kernel="box",
        filter_size=5, filter_padding=padding)
    rm, rp = models.insert_filter(real.params, filter_where="l1",
                                  filter_kernel="box", filter_size=5,
                                  filter_padding=padding)
    candidates = [("baseline + l1 5x5 box (inserted)", filt_model,
                   filt_params)] + [(n, m.model, m.params)
                                    for n, m in trained.items()]
    results["spectral"] = spectra.spectral_rows(
        [("RP2 model", real.model, real.params),
         ("RP2 + l1 5x5 box (inserted)", rm, rp)],
        real.images, real.adversarial, radius=config.spectral_radius,
        dataset="rp2") + spectra.spectral_rows(
            candidates, synth["images"], synth["adversarial"],
            radius=config.spectral_radius, dataset="synthetic")
    claim = findings.spectral_claim(real.model, real.params, rm, rp,
                                    real.images, real.adversarial,
                                    radius=config.spectral_radius)
    figures["spectral"] = spectra.spectral_figures(
        real.model, real.params, rm, rp, real.images, real.adversarial,
        figdir, "rp2", "RP2 model, real victims") + spectra.spectral_figures(
            baseline.model, baseline.params, filt_model, filt_params,
            synth["images"], synth["adversarial"], figdir, "synthetic",
            "synthetic victims")
  with stage("sweep"):
    results["sweep"] = sweeps.run_sweeps(config, workdir,
                                         jax.random.fold_in(key, 3),
                                         (test_images, test_labels))
    figures["sweep"] = sweeps.sweep_figures(results["sweep"], figdir)
  with stage("robustness"):
    results["robustness"] = robustness.evaluate_trained(
        config, trained, jax.random.fold_in(key, 4), real)
    figures["robustness"] = plots.robustness_figures(results["robustness"],
                                                     figdir)
    print(report.robustness_text(results["robustness"]))
  with stage("report"):
    results["findings"] = findings.findings(
        results["table1"], results["table2"] + results["lisa"], claim)
    for name, value in results.items():
      write_json(workdir / report.RESULT_FILES[name], value)
    study["figures"] = {
        section: [(str(epath.Path(p).relative_to(workdir)), c)
                  for p, c in items] for section, items in figures.items()}
    write_json(workdir / "study.json", study)
    write_json(workdir / "stages.json", stage.seconds)
    md = report.render(workdir)
  write_json(workdir / "stages.json", stage.seconds)  # with the report's
  print(f"\nreport: {md.parent / 'index.html'} and {md}")
  return results


def real_model_configs(config: ml_collections.ConfigDict, labels
                       ) -> ml_collections.ConfigDict:
  """`config.real_models` with the training length of the data set's label
  space (`config.real.num_train_steps[labels.name]`) and the seeds of
  `config.real.seeds`, detached values."""
  steps = int(config.real.num_train_steps[labels.name])
  out = {}
  for name, m in config.real_models.items():
    v = ml_collections.ConfigDict(m.to_dict())
    v.num_train_steps = steps
    v.warmup_steps = steps // 10
    v.eval_every = v.checkpoint_every = max(1, steps // 2)
    v.log_every = max(1, steps // 10)
    v.sweep.seeds = tuple(config.real.seeds)
    out[name] = v
  return ml_collections.ConfigDict(out)


def run_real(config: ml_collections.ConfigDict,
             workdir: epath.PathLike) -> dict[str, Any]:
  """Table 2 on a real data source (`blurnet_jax.study.real`): every stage
  writes its JSON result; models are reused or resumed from WORKDIR/models;
  the report is rendered from the JSON files alone."""
  workdir = epath.Path(workdir)
  (workdir / "figures").mkdir(parents=True, exist_ok=True)
  if "baseline" not in config.real_models:
    raise ValueError("config.real.variants needs 'baseline': every defence "
                     "is paired against it")
  labels = label_space(config.data.source)
  write_json(workdir / "config.json", config.to_dict())
  key = jax.random.key(config.seed)
  stage = Stages(REAL_STAGES)
  real = zoo.rp2_data(config.rp2_dir)
  figures: dict[str, list[tuple[str, str]]] = {}
  study = {"source": config.data.source, "labels": labels.name,
           "class_names": list(labels.class_names),
           "rests_on": real_study.SOURCES[config.data.source],
           "environment": environment(), "figures": figures,
           "rp2_dir": ("the assets shipped with the package"
                       if real.assets.root == rp2_assets.PACKAGED_DIR
                       else str(real.assets.root))}
  results: dict[str, Any] = {}
  with stage("data"):
    builder = train.prepare_data(config.data)  # process 0 first
    summary = datasets.count_examples(builder)
    study["data"] = {k: summary[k] for k in ("name", "config", "path")} | {
        split: v["examples"] for split, v in summary["splits"].items()}
    print(f"data: {builder.info.full_name} at {builder.data_dir}: "
          + ", ".join(f"{k} {v['examples']}"
                      for k, v in summary["splits"].items()))
  with stage("victims"):
    sets = real_study.victim_sets(config, builder, labels, real)
    results["victims"] = {v.name: v.info for v in sets}
    write_json(workdir / report.RESULT_FILES["victims"], results["victims"])
    for v in sets:
      print(f"  {v.name}: {v.info['victims']} victims of "
            f"{v.info['candidates']} ({v.info['excluded_near_duplicates']} "
            "near-duplicates excluded)")
    path = workdir / "figures" / "victims.png"
    plots.image_grid([v.images[:10] for v in sets],
                     [v.name for v in sets],
                     [[f"#{i}" for i in range(len(v.images[:10]))]
                      for v in sets], path)
    figures["victims"] = [(str(path), "The first victims of each set.")]
  with stage("train"):
    trained = zoo.train_models(real_model_configs(config, labels),
                               workdir / "models")
    for name, m in trained.items():
      print(f"  {name:10s} held-out accuracy {m.test_accuracy:.2%}")
  with stage("oracle"):
    if labels.name == "lisa":
      results["oracle"] = real_study.oracle(builder)
      path = workdir / "figures" / "oracle_confusion.png"
      plots.confusion_figure(np.asarray(results["oracle"]["confusion"]),
                             path, title=(
                                 "RP2 (LISA) model on every real LISA crop: "
                                 f"{100 * results['oracle']['accuracy']:.1f}%"
                                 " over classes 1-17"))
      figures["oracle"] = [(str(path), "The RP2 model on every crop of the "
                            "source (train and test): rows the true class, "
                            "columns its prediction, percent of each row.")]
      print(oracle.format_oracle(results["oracle"]))
  with stage("table2"):
    results["table2"] = real_study.table2_rows(
        config, trained, jax.random.fold_in(key, 2), sets,
        datasets.load_split(builder, "test"), labels)
    print(report.table2_text(results["table2"]))
  with stage("report"):
    results["findings"] = findings.findings([], results["table2"], None)
    for name, value in results.items():
      write_json(workdir / report.RESULT_FILES[name], value)
    study["figures"] = {
        section: [(str(epath.Path(p).relative_to(workdir)), c)
                  for p, c in items] for section, items in figures.items()}
    write_json(workdir / "study.json", study)
    write_json(workdir / "stages.json", stage.seconds)
    md = report.render(workdir)
  write_json(workdir / "stages.json", stage.seconds)
  print(f"\nreport: {md.parent / 'index.html'} and {md}")
  return results
