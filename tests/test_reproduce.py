"""launch.reproduce: Table 1 on the real RP2 data, the readings, a tiny run."""

import json
import types

import ml_collections
import numpy as np
import pytest

from blurnet_jax.study import studies
from blurnet_jax.study.claims import slides
from blurnet_jax.study import stages
from blurnet_jax.study.synthetic import table1
from blurnet_jax.study import zoo
from configs import reproduce as reproduce_configs
from tests.helpers import (browser, browser_image_counts, tiny_data,
                           tiny_robustness)


def test_filter_variants_cover_the_slides_rows():
  config = reproduce_configs.get_config("quick")
  variants = table1.filter_variants(config.table1)
  names = [v[0] for v in variants]
  assert len(names) == 1 + 2 * 3 * 2  # baseline + where x size x kernel
  assert {v[1] for v in variants} >= set(slides.TABLE1)
  fields = dict((v[0], v[2]) for v in variants)
  assert fields["l1_5x5_box"] == dict(
      filter_where="l1", filter_kernel="box", filter_size=5,
      filter_padding="zeros", filter_position="after_relu")


def test_table1_on_the_rp2_data_lands_within_5_points_of_the_slides(rp2_dir):
  real = zoo.rp2_data(str(rp2_dir))
  config = reproduce_configs.get_config("quick")
  rows = table1.transfer_rows(
      real.params, real.images, real.adversarial,
      table1.filter_variants(config.table1), dataset="rp2")
  by_name = {r["variant"]: r for r in rows}
  # The RP2 facts: 40/40 stop, the camouflage noise moves 36 of them.
  assert by_name["baseline"]["accuracy"] == 1.0
  assert by_name["baseline"]["attack_success_rate"] == 0.9
  # The box filters reproduce every cell of the slides' Table 1 within 5
  # points in the not-stop reading (the slides' own reading).
  for r in rows:
    if r["variant"].endswith("_box") and "slides_accuracy" in r:
      assert abs(r["accuracy"] - r["slides_accuracy"]) <= 0.05, r
      assert abs(r["misclassification_rate"]
                 - r["slides_attack_success_rate"]) <= 0.05, r
  # A 5x5 blur on L1 moves 6 clean victims off stop: the changed-prediction
  # reading counts the perturbation as failing there, unlike the slides.
  l1_5 = by_name["l1_5x5_box"]
  assert l1_5["attack_success_rate"] < l1_5["misclassification_rate"]
  reading = table1.slides_reading(rows)
  assert reading["follows"] == "misclassification_rate"
  assert reading["within_5_points"]
  assert reading["kernels_beyond_5_points"]  # some Gaussian rows, no box
  assert all(v.endswith("_gaussian")
             for v in reading["kernels_beyond_5_points"])


def test_slides_reading_picks_the_closer_reading_per_row():
  rows = [
      {"variant": "a_box", "slides_variant": "a", "accuracy": 1.0,
       "slides_accuracy": 1.0, "slides_attack_success_rate": 0.5,
       "attack_success_rate": 0.5, "misclassification_rate": 0.9},
      {"variant": "a_gaussian", "slides_variant": "a", "accuracy": 1.0,
       "slides_accuracy": 1.0, "slides_attack_success_rate": 0.5,
       "attack_success_rate": 0.2, "misclassification_rate": 0.45},
  ]
  reading = table1.slides_reading(rows)
  assert reading["follows"] == "attack_success_rate"
  assert reading["max_distance_points"] == {
      "attack_success_rate": 0.0, "misclassification_rate": 5.0}


def _tiny_config(data_dir):
  config = reproduce_configs.get_config("quick")
  tiny_data(config.data, data_dir)
  del config.models["linf_5x5"]
  del config.sweeps["linf"]
  config.num_train_steps = 6
  config.warmup_steps = 2
  config.batch_size = 16
  config.table1.sizes = (5,)
  config.table1.attack_steps = 3
  config.grid.targets = (12, 17)
  config.grid.victims = 4
  config.grid.num_transforms = 1
  config.grid.steps = 2
  config.grid.eval_transforms = 1
  config.sweep.num_train_steps = 4
  config.sweep.steps = 2
  config.lisa.forms = ("full", "frozen")  # the quick arm in both forms
  reproduce_configs.link_lisa(config)
  config.lisa.variants = ("tv_1e-4",)
  del config.lisa_models["full_linf_5x5"]
  del config.lisa_models["frozen_linf_5x5"]
  config.lisa.num_train_steps = 4
  config.lisa.grid.steps = 2
  config.lisa.grid.num_transforms = 1
  config.lisa.grid.eval_transforms = 1
  config.proxy.num_train_steps = 4
  config.proxy.grid.steps = 2
  config.proxy.grid.num_transforms = 1
  config.proxy.grid.eval_transforms = 1
  config.proxy.table2 = "clean"  # Table 2's variants again at a setting
  tiny_robustness(config.robustness)
  return config


def test_tiny_run_writes_every_table_and_reuses_its_models(tiny_data_dir,
                                                          tmp_path):
  config = _tiny_config(tiny_data_dir)
  studies.run(config, tmp_path)
  tables = {n: json.loads((tmp_path / f"{n}.json").read_text())
            for n in ("table1", "table2", "spectral", "sweep")}
  variants = ["baseline", "input_5x5_box", "input_5x5_gaussian",
              "l1_5x5_box", "l1_5x5_gaussian"]
  for dataset in ("rp2", "synthetic"):
    assert [r["variant"] for r in tables["table1"]
            if r["dataset"] == dataset] == variants
  assert {"accuracy", "attack_success_rate", "misclassification_rate"} <= set(
      tables["table1"][0])
  t2 = {r["variant"]: r for r in tables["table2"]}
  assert set(t2) == {"baseline", "tv_1e-4"}
  assert t2["tv_1e-4"]["slides_avg_success"] == 0.0792
  for r in tables["table2"]:
    assert r["n_seeds"] == len(config.seeds) == 2  # seeds, or RP2 keys
    for per_seed in r["per_target"]:
      assert [p["target"] for p in per_seed] == [12, 17]
    assert 0 <= r["avg_success"] <= r["worst_success"] <= 1
    for key in ("legit_acc", "avg_success", "worst_success"):
      assert r[f"{key}_ci_low"] <= r[key] <= r[f"{key}_ci_high"], key
    outcomes = np.asarray(r["outcomes"])  # (seeds, targets, victims)
    assert outcomes.shape[:2] == (2, 2)
    assert r["avg_success"] == pytest.approx(outcomes.mean())
  # Defended rows: paired against the baseline, with a verdict; these tiny
  # models are far below 90% test accuracy, so the verdict says so.
  tv = t2["tv_1e-4"]
  assert {"difference", "ci_low", "ci_high", "p_value"} <= set(
      tv["vs_baseline"])
  assert tv["vs_baseline"]["difference"] == pytest.approx(
      tv["avg_success"] - t2["baseline"]["avg_success"])
  assert tv["verdict"]["verdict"] == "undertrained"
  # The LISA-initialised arm: each form beside its control, on the 40 real
  # victims, the defended row paired against the control.
  lisa = {(r["dataset"], r["variant"]): r for r in json.loads(
      (tmp_path / "lisa.json").read_text())}
  assert set(lisa) == {("lisa-full", "baseline"), ("lisa-full", "tv_1e-4"),
                       ("lisa-frozen", "baseline"), ("lisa-frozen", "tv_1e-4")}
  for (dataset, variant), r in lisa.items():
    assert np.asarray(r["outcomes"]).shape == (2, 1, 40), (dataset, variant)
    assert ("verdict" in r) == (variant != "baseline")
  # The proxy ablation: the RP2 model, then each setting's baseline on the
  # same victims and keys, paired against it, with its knobs and accuracies.
  prox = json.loads((tmp_path / "proxy.json").read_text())
  assert [r["setting"] for r in prox] == ["RP2 model (LISA)", "default",
                                          "clean"]
  assert prox[0]["legit_acc"] == 1.0  # the RP2 model reads every victim
  assert prox[1]["knobs"]["corruption"] == 1.0
  assert prox[2]["knobs"] == {"corruption": 0.0, "balance": "uniform",
                              "train_per_class": 4, "augment": True,
                              "steps": 4}
  for r in prox:
    assert np.asarray(r["outcomes"]).shape == (1, 1, 40)
  for r in prox[1:]:
    assert r["vs_rp2"]["difference"] == pytest.approx(
        r["avg_success"] - prox[0]["avg_success"])
    assert r["closes_gap"] == (
        100 * (prox[0]["avg_success"] - r["avg_success"]) <= 10)
    assert 0 <= r["test_accuracy"] <= 1 and 0 <= r["oracle_accuracy"] <= 1
  assert (tiny_data_dir / "synthetic_signs" /
          "train4_test2_seed0_corruption0").is_dir()
  # Table 2 again at that setting: the same variants, seeds and keys, on
  # the clean data, the defended row paired against its own baseline.
  at_clean = {r["variant"]: r for r in json.loads(
      (tmp_path / "proxy_table2.json").read_text())}
  assert set(at_clean) == {"baseline", "tv_1e-4"}
  assert {r["dataset"] for r in at_clean.values()} == {"synthetic (clean)"}
  assert at_clean["tv_1e-4"]["vs_baseline"]["difference"] == pytest.approx(
      at_clean["tv_1e-4"]["avg_success"]
      - at_clean["baseline"]["avg_success"])
  saved = json.loads((tmp_path / "proxy_table2" / "clean" / "tv_1e-4" /
                      "config.json").read_text())
  assert saved["data"]["corruption"] == 0.0 and saved["penalty"]["kind"] == (
      "tv")
  claims = json.loads((tmp_path / "findings.json").read_text())
  assert [c["claim"] for c in claims][-1].startswith("spectral")
  assert {c["verdict"] for c in claims} <= {"supported", "contradicted",
                                            "inconclusive", "undertrained",
                                            "not in effect"}
  assert any(c["claim"] == "Table 1: l1_5x5 box filter"
             and c["verdict"] == "supported" for c in claims)
  # The members (one seed each here), then one row per alpha over its
  # seeds, whose figures are then the member's own.
  assert [(r["alpha"], r["seed"]) for r in tables["sweep"]] == [
      (0.0, 0), (1e-4, 0), (0.0, "all"), (1e-4, "all")]
  member, pooled = tables["sweep"][0], tables["sweep"][2]
  assert pooled["seeds"] == [0]
  for k in ("avg_success", "test_accuracy"):
    assert pooled[k] == pytest.approx(member[k], abs=1e-6)
    assert pooled[f"{k}_ci_low"] <= pooled[k] <= pooled[f"{k}_ci_high"]
  html = (tmp_path / "report" / "index.html").read_text()
  figures = len(list((tmp_path / "figures").glob("*.png")))
  # victims, oracle confusion, proxy bars, 4 spectra each of the RP2 and
  # the synthetic victims, tv accuracy + success, 5 robustness figures
  # (physical: both victim sets), Table 2's forest plot
  assert figures == 1 + 1 + 1 + 8 + 2 + 5 + 1
  assert html.count("data:image/png;base64,") == figures
  assert "Table 1: black-box transfer" in html
  assert html.index("Findings") < html.index("Table 1: black-box transfer")
  assert "Robustness checks (beyond the slides)" in html
  rob = json.loads((tmp_path / "robustness.json").read_text())
  assert set(rob["models"]) == {"baseline", "tv_1e-4", "rp2"}
  assert np.array(rob["transfer"]["pgd_linf"]["matrix"]).shape == (2, 2)
  # Real data by default: the RP2 rows of Tables 1 and 2.
  assert [r["dataset"] for r in tables["table2"]][0] == "rp2"
  assert tables["table1"][0]["dataset"] == "rp2"
  assert tables["table1"][0]["attack_success_rate"] == 0.9  # the RP2 fact
  for r in rob["models"].values():
    assert r["flags"] == [c["check"] for c in r["checks"] if not c["passed"]]
  # The config saved is the one every model was trained with.
  saved = json.loads((tmp_path / "config.json").read_text())
  model_cfg = json.loads((tmp_path / "models" / "baseline" /
                          "config.json").read_text())
  assert model_cfg == json.loads(json.dumps(saved["models"]["baseline"],
                                            sort_keys=True))
  assert model_cfg["num_train_steps"] == 6
  # A second run reads every finished stage back: nothing runs again.
  stages = json.loads((tmp_path / "stages.json").read_text())
  read_back = studies.run(config, tmp_path)
  again = json.loads((tmp_path / "stages.json").read_text())
  assert {k: v for k, v in again.items() if k != "report"} == {
      k: v for k, v in stages.items() if k != "report"}
  assert read_back["table2"] == tables["table2"]
  # Run again without resume, it reuses the trained models and recomputes
  # every stage to the same numbers.
  studies.run(config, tmp_path, resume=False)
  again = json.loads((tmp_path / "stages.json").read_text())
  assert again["train"] < stages["train"]
  for name in ("table1", "table2", "spectral", "sweep", "robustness",
               "proxy"):
    assert json.loads((tmp_path / f"{name}.json").read_text()) == (
        tables.get(name) or (prox if name == "proxy" else rob)), name
  assert {r["variant"]: r for r in json.loads(
      (tmp_path / "proxy_table2.json").read_text())} == at_clean
  # The report renders again from the JSON alone (launch.report's path).
  (tmp_path / "report" / "index.html").unlink()
  studies.render(tmp_path)
  assert (tmp_path / "report" / "index.html").read_text().count(
      "data:image/png;base64,") == figures


def test_a_missing_rp2_dir_is_one_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="has no rp2_lisa_cnn.npz"):
    zoo.rp2_data(str(tmp_path))


@pytest.mark.slow
def test_the_report_renders_in_a_headless_browser(tiny_data_dir, tmp_path):
  """The reproduce report opened alone in Chromium: every image loads."""
  chromium = browser()  # skips without one
  studies.run(_tiny_config(tiny_data_dir), tmp_path / "run")
  alone = tmp_path / "alone"
  alone.mkdir()
  page = alone / "index.html"
  page.write_text((tmp_path / "run" / "report" / "index.html").read_text())
  figures = len(list((tmp_path / "run" / "figures").glob("*.png")))
  counts = browser_image_counts(chromium, page, tmp_path)
  assert counts == (figures, 0)


def test_each_model_config_links_to_the_study_fields_it_shares():
  """The study's fields reach every model, and the LISA arm's own learning
  rate and steps leave the study's untouched (a FieldReference assigned
  through would change the value for everyone)."""
  config = reproduce_configs.get_config("quick")
  assert config.learning_rate == 1e-3 and config.warmup_steps == 24
  for name, m in config.models.items():
    assert (m.learning_rate, m.warmup_steps, m.num_train_steps) == (
        1e-3, 24, 240), name
    assert tuple(m.sweep.seeds) == config.seeds
  for name, m in config.lisa_models.items():
    assert m.learning_rate == config.lisa.learning_rate == 1e-4, name
    assert m.num_train_steps == config.lisa.num_train_steps, name
    assert m.init == "rp2"
  config.num_train_steps, config.lisa.learning_rate = 1000, 3e-5
  config.seeds = (0, 1, 2)
  assert config.models.linf_5x5.num_train_steps == 1000
  assert config.models.linf_5x5.eval_every == 500
  assert config.models.linf_5x5.learning_rate == 1e-3
  assert config.lisa_models.full_baseline.learning_rate == 3e-5
  assert tuple(config.models.baseline.sweep.seeds) == (0, 1, 2)
  assert tuple(config.sweeps.linf.sweep.seeds) == (0,)  # quick: one seed


def test_proxy_settings_change_only_their_knobs():
  """Each proxy baseline is the study's baseline with its setting's knobs:
  its data block follows the study's except for them, so prepared sets
  differ by config name only where the data differ."""
  from blurnet_jax.data import datasets  # pylint: disable=g-import-not-at-top
  config = reproduce_configs.get_config()
  assert list(config.proxy_models) == sorted(reproduce_configs.PROXY_SETTINGS)
  config.data.train_per_class, config.seeds = 123, (0, 1, 2, 3)
  config.num_train_steps = 1000
  names = set()
  for name, m in config.proxy_models.items():
    knobs = reproduce_configs.PROXY_SETTINGS[name]
    assert m.data.train_per_class == 123, name
    assert m.data.corruption == knobs.get("corruption", 1.0), name
    assert m.data.balance == knobs.get("balance", "uniform"), name
    assert m.augment == knobs.get("augment", True), name
    assert m.num_train_steps == 1000 * knobs.get("steps_factor", 1), name
    assert tuple(m.sweep.seeds) == (0, 1, 2, 3), name
    assert m.penalty.kind == "none" and m.model.filter_where == "none"
    names.add(datasets.config_name(m.data.train_per_class,
                                   m.data.test_per_class, m.data.seed,
                                   m.data.corruption, m.data.balance))
  # default, no_augment and long share one set; clean (+no_augment) and
  # lisa_balance each have their own.
  assert len(names) == 3
  assert config.data.corruption == 1.0 and config.seeds == (0, 1, 2, 3)
  with pytest.raises(ValueError, match="unknown proxy setting 'blurry'"):
    reproduce_configs.proxy_train_config(config, "blurry")


def test_table2_setting_picks_the_closest_or_the_named_one():
  from blurnet_jax.study.synthetic import proxy  # pylint: disable=g-import-not-at-top
  config = reproduce_configs.get_config()
  rows = [{"dataset": "rp2", "avg_success": 0.53},
          {"dataset": "proxy", "setting": "default", "avg_success": 0.25},
          {"dataset": "proxy", "setting": "no_augment", "avg_success": 0.29},
          {"dataset": "proxy", "setting": "clean", "avg_success": 0.26}]
  assert config.proxy.table2 == "closest"
  assert proxy.table2_setting(config, rows) == "no_augment"
  rows[1]["avg_success"] = 0.5  # the default itself is closest: Table 2
  assert proxy.table2_setting(config, rows) is None
  config.proxy.table2 = "clean"
  assert proxy.table2_setting(config, rows) == "clean"
  config.proxy.table2 = "blurry"
  with pytest.raises(ValueError, match="proxy.table2='blurry' is not a "
                     "setting"):
    proxy.table2_setting(config, rows)
  assert reproduce_configs.get_config("quick").proxy.table2 == ""
  # Each variant keeps its own penalty and length, with the setting's data.
  block = proxy.variant_configs(config, "long")
  assert set(block) == set(config.models)
  assert block["tv_1e-4"].penalty.kind == "tv"
  assert block.linf_5x5.num_train_steps == 3 * config.num_train_steps
  assert block.baseline.data.corruption == 1.0
  assert proxy.variant_configs(config, "clean").linf_5x5.data.corruption == 0


def test_a_resumed_run_reads_back_finished_stages_and_refuses_another_config(
    tmp_path):
  """The stage runner on two cheap stages: a resumed run reads the saved
  results back instead of running them; a workdir of another config is
  one clear error that leaves its results as they were."""
  calls = []

  def first(config, inputs):
    calls.append("first")
    return {"a": {"value": config.x}, "b": {"pixels": np.arange(3.0)}}

  def second(config, inputs):
    calls.append("second")
    return {"c": [inputs.results["a"]["value"] + 1]}

  run = (stages.Stage("first", first, ("a", "b")),
         stages.Stage("second", second, ("c",)))
  config = ml_collections.ConfigDict({"x": 1})
  inputs = types.SimpleNamespace(results={})
  stages.run_stages(run, config, inputs, tmp_path)
  assert calls == ["first", "second"] and inputs.results["c"] == [2]
  assert (tmp_path / "b.npz").exists() and (tmp_path / "a.json").exists()
  # Resumed: nothing runs, the arrays come back as arrays.
  inputs = types.SimpleNamespace(results={})
  stages.run_stages(run, config, inputs, tmp_path)
  assert calls == ["first", "second"]
  np.testing.assert_array_equal(inputs.results["b"]["pixels"], np.arange(3.0))
  # A stage whose result file is gone runs again.
  (tmp_path / "c.json").unlink()
  stages.run_stages(run, config, types.SimpleNamespace(results={}), tmp_path)
  assert calls == ["first", "second", "second"]
  # So does one whose optional result it wrote is gone.
  optional = (stages.Stage("first", first, ("a", "b"), optional=("b",)),
              run[1])
  (tmp_path / "b.npz").unlink()
  stages.run_stages(optional, config, types.SimpleNamespace(results={}),
                    tmp_path)
  assert calls == ["first", "second", "second", "first"]
  assert (tmp_path / "b.npz").exists()
  del calls[3:]
  # Another config: one line naming the way out, the results untouched.
  with pytest.raises(ValueError, match="another config.*--noresume"):
    stages.run_stages(run, ml_collections.ConfigDict({"x": 2}),
                      types.SimpleNamespace(results={}), tmp_path)
  assert json.loads((tmp_path / "a.json").read_text()) == {"value": 1}
  # Without resume every stage runs again, over the old results.
  inputs = types.SimpleNamespace(results={})
  stages.run_stages(run, ml_collections.ConfigDict({"x": 2}), inputs,
                    tmp_path, resume=False)
  assert inputs.results["c"] == [3] and len(calls) == 5
