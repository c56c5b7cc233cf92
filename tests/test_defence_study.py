"""The defence study (configs/robustness.py:defences): the defences it
builds from the config, the checklist's flags, the reading, and the study
end to end on fabricated crops."""

import json
import math
import os

import jax
import numpy as np
import pytest

from blurnet_jax import models
from blurnet_jax.jsonio import write_json
from blurnet_jax.classes import LISA
from blurnet_jax.study.defences import evaluate as defence_eval
from blurnet_jax.study.defences import report as defence_report
from blurnet_jax.study.defences import stages as defence_stages
from blurnet_jax.study import studies
from blurnet_jax.study.claims import checks
from blurnet_jax.study.evaluation import Population
from configs import robustness as robustness_configs
from tests.helpers import fabricated_lisa_crops


def _config(arg="defences,quick"):
  c = robustness_configs.get_config(arg)
  c.data.source = "lisa_crops"
  return c


def _trained(name, model, seconds, config=None):
  params = model.init(jax.random.key(0), np.zeros((1, 32, 32,
                                                   model.input_channels)))
  kind = models.defence_kind(config.real_models[name]) if config else "none"
  return Population(name=name, apply_fn=models.apply_fn_for(model),
                    members=(params,), seeds=(0,), model=model, alpha=0.0,
                    defence_kind=kind,
                    band=int(config.real_models[name].defence.band)
                    if kind == "smoothing" else 0,
                    results=({"test_accuracy": 0.5},), train_seconds=seconds)


def test_the_config_builds_every_defence_the_issue_names():
  c = _config()
  assert c.study == "defences"
  kinds = {n: c.real_models[n].defence.kind for n in c.real.variants}
  assert kinds == {"baseline": "none", "linf_5x5": "none", "tv_1e-4": "none",
                   "pgd_at": "pgd_mask", "doa": "doa",
                   "doa_linf_5x5": "doa", "smoothing": "smoothing"}
  assert c.real_models.doa_linf_5x5.model.filter_kernel == "learned"
  trained = {n: _trained(n, models.model_for(c.real_models[n]), 10.0 + i, c)
             for i, n in enumerate(c.real.variants)}
  built = defence_stages.defences(c, trained, LISA)
  names = [d.name for d in built]
  assert names == ["baseline"] + [n for n in c.real.variants
                                  if n != "baseline"] + list(
                                      c.defences.transforms)
  by = {d.name: d for d in built}
  assert by["smoothing"].certify is not None
  assert by["smoothing"].naive_attack_fn is not None
  assert by["median_3x3"].naive_attack_fn is not None
  assert by["linf_5x5"].naive_attack_fn is None
  # A transform wraps the baseline's members; its cost is the baseline's.
  assert by["jpeg_75"].members == trained["baseline"].members
  assert defence_stages.training_cost(trained, "jpeg_75") == {
      "trained_as": "baseline", "kind": "input transform", "seconds": 10.0,
      "cost": 1.0}
  assert defence_stages.training_cost(trained, "doa")["cost"] == (
      pytest.approx(14.0 / 10.0))


def test_a_missing_reference_or_a_synthetic_source_is_one_line():
  c = _config()
  c.defences.reference = "linf_3x3"
  with pytest.raises(ValueError, match="lacks 'linf_3x3'"):
    defence_stages.check(c)
  c = _config()
  c.real.folds = 5
  with pytest.raises(ValueError, match="not a grouped k-fold yet"):
    defence_stages.check(c)
  c = robustness_configs.get_config("defences,quick")
  with pytest.raises(ValueError, match="data.source=lisa_crops"):
    defence_stages.check(c)
  c.study = "nonsense"
  with pytest.raises(ValueError, match="'nonsense' .* is no study") as e:
    studies.run(c, "/nonexistent")
  assert "\n" not in str(e.value)
  assert not os.path.exists("/nonexistent")


def _interval(mean):
  return {"mean": mean, "ci_low": max(0.0, mean - 0.1),
          "ci_high": min(1.0, mean + 0.1)}


def _row(name, rp2, square, pgd, cut_high, *, adaptive_raises=None,
         false_stop=0.01):
  row = {"defence": name, "victims": 20, "seeds": [0, 1],
         "victims_recognised": [20, 20],
         "clean_accuracy": _interval(0.9), "rp2_success": _interval(rp2),
         "false_stop": _interval(false_stop),
         "pgd_success": _interval(pgd), "square_success": _interval(square),
         "roa_success": _interval(0.2),
         "any_success": _interval(max(rp2, square, pgd, 0.2)),
         "transfer_success": _interval(rp2 / 2),
         "adaptive_raises": adaptive_raises, "worst_attack": "rp2",
         "train": {"trained_as": name, "kind": "none", "seconds": 1.0,
                   "cost": 1.0},
         "vs_baseline": {"rp2_success": {"difference": cut_high - 0.1,
                                         "ci_low": cut_high - 0.2,
                                         "ci_high": cut_high},
                         "any_success": {"difference": cut_high - 0.1,
                                         "ci_low": cut_high - 0.2,
                                         "ci_high": cut_high},
                         "clean_accuracy": {"difference": -0.01,
                                            "ci_low": -0.03,
                                            "ci_high": 0.01}}}
  row["vs_reference"] = dict(row["vs_baseline"])
  if adaptive_raises is not None:
    row["adaptive_vs_naive"] = {"difference": 0.3, "ci_low": 0.1,
                                "ci_high": 0.5}
  return row


def test_the_checklist_flags_adaptive_gains_masking_and_weak_attacks():
  base = _row("baseline", 0.2, 0.1, 0.3, 0.0, false_stop=0.03)
  row = _row("jpeg", rp2=0.2, square=0.5, pgd=0.3, cut_high=-0.01,
             adaptive_raises=True, false_stop=0.07)
  row["clean_accuracy"] = _interval(0.89)
  row["transfer_success"] = _interval(0.4)
  failed = [c["check"] for c in checks.defence_checks(row, base)
            if not c["passed"]]
  assert failed == ["clean accuracy at least 90%", "no stop bias",
                    "adaptive attack no stronger than naive",
                    "Square no stronger than PGD",
                    "transfer no stronger than white-box"]
  # One victim of slack (1/20): Square 5 points above PGD passes; 5.9%
  # read as stop is below twice the baseline's 3%.
  row = _row("x", rp2=0.2, square=0.35, pgd=0.3, cut_high=0.1,
             adaptive_raises=False, false_stop=0.059)
  assert all(c["passed"] for c in checks.defence_checks(row, base))


def test_the_reading_picks_the_lowest_worst_case_among_significant_cuts():
  base = _row("baseline", 0.6, 0.1, 0.5, 0.0)
  rows = [base, _row("linf_5x5", 0.55, 0.1, 0.5, 0.05),
          _row("doa", 0.2, 0.1, 0.3, -0.2), _row("pgd_at", 0.3, 0.1, 0.3, -0.1)]
  for r in rows:
    r["flags"] = []
  text = defence_report.reading({"source": "lisa_crops", "rows": rows,
                                 "reference": "linf_5x5"})
  assert "The lowest is doa's" in text and "doa, pgd_at" in text
  assert "BlurNet (linf_5x5)" in text
  for r in rows[2:]:
    r["vs_baseline"]["any_success"]["ci_high"] = 0.01
  text = defence_report.reading({"source": "lisa_crops", "rows": rows,
                                 "reference": "linf_5x5"})
  assert "inconclusive" in text and "doa's" in text


def test_the_report_renders_the_table_scatter_and_reading(tmp_path):
  rows = [_row("baseline", 0.6, 0.1, 0.5, 0.0),
          _row("doa", 0.2, 0.1, 0.3, -0.2, adaptive_raises=False)]
  for r in rows:
    r["per_seed"] = {k: [r[k], r[k]] for k in ("clean_accuracy",
                                              "rp2_success", "any_success")}
    r["checks"] = checks.defence_checks(r, rows[0])
    r["flags"] = [c["check"] for c in r["checks"] if not c["passed"]]
    r["targets"] = [12]
  rows[0].pop("vs_baseline")
  # A defence that reads no victim as stop: its rates are NaN, null once
  # the results are written as JSON and read back.
  nothing = {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan}
  blind = _row("smoothing", 0.0, 0.0, 0.0, 0.0)
  blind.update({k: dict(nothing) for k in (
      "rp2_success", "pgd_success", "square_success", "roa_success",
      "any_success")}, victims_recognised=[0, 0], flags=[], checks=[])
  blind["vs_baseline"]["any_success"] = {"difference": math.nan,
                                         "ci_low": math.nan,
                                         "ci_high": math.nan,
                                         "p_value": 1.0}
  blind["per_seed"] = {k: [blind[k]] * 2 for k in (
      "clean_accuracy", "rp2_success", "any_success")}
  c = _config()
  results = {"defences": {"source": "lisa_crops", "rows": rows + [blind],
                          "reference": "baseline", "victims": {
                              "description": "held-out stops",
                              "victims": 20, "candidates": 30}},
             "training": {"baseline": {"seeds": [0, 1],
                                       "train_seconds": 3.0}}}
  for name, value in (("config", c.to_dict()), *results.items()):
    write_json(tmp_path / f"{name}.json", value)
  # launch.report's path: the report drawn again from the saved files.
  md = studies.render(tmp_path).read_text()
  assert "The lowest is doa's" in md
  assert "smoothing reads none of the victims as stop" in md
  assert r"| doa | doa | 90.0 \[80.0, 100.0\] | 1.0 \[0.0, 11.0\] | 20.0" in md
  assert (tmp_path / "figures" / "defences_scatter.png").stat().st_size > 0


@pytest.mark.slow
def test_the_defence_study_end_to_end_on_fabricated_crops(tmp_path):
  fabricated_lisa_crops(tmp_path / "lisa")
  c = robustness_configs.get_config(
      'defences,quick,variants=("baseline",)')
  c.data.source = "lisa_crops"
  c.data.manual_dir = str(tmp_path / "lisa")
  c.data.data_dir = str(tmp_path / "tfds")
  c.real.variants = ("baseline", "linf_5x5")
  from configs import common  # pylint: disable=g-import-not-at-top
  common.link_real(c)
  c.real.num_train_steps.lisa = 10
  c.real.victims = 3
  c.defences.victim_set.lisa = "held_out"
  c.defences.transforms = {"median_3x3": c.defences.transforms.median_3x3}
  c.defences.steps = 2
  c.defences.pgd_steps = 2
  c.defences.square_queries = 4
  c.defences.roa.pgd_steps = 1
  c.defences.roa.stride = 8
  workdir = tmp_path / "run"
  studies.run(c, workdir)
  out = json.loads((workdir / "defences.json").read_text())
  assert [r["defence"] for r in out["rows"]] == ["baseline", "linf_5x5",
                                                 "median_3x3"]
  for r in out["rows"]:
    assert len(r["per_seed"]["rp2_success"]) == 2  # two seeds, a point each
    assert not any(k.startswith("_") for k in r)  # arrays stay in memory
  base, ref, median = out["rows"]
  assert "vs_baseline" not in base and "vs_reference" in base
  assert median["train"]["cost"] == 1.0
  assert median["naive_rp2_success"]["n_seeds"] == 2
  assert ref["train"]["seconds"] > 0
  md = (workdir / "report" / "report.md").read_text()
  assert "Robustness per defence" in md and (
      "The lowest is" in md or "inconclusive" in md)
  assert (workdir / "figures" / "defences_scatter.png").stat().st_size > 0


def test_any_success_is_the_per_victim_worst_case_over_the_attacks():
  nan = np.nan
  row = {  # one seed, three victims (the third not counted), two targets
      "_rp2_success": np.array([[[0.0, 1.0], [0.0, 0.0], [nan, nan]]]),
      "_pgd_success": np.array([[0.0, 0.0, nan]]),
      "_square_success": np.array([[0.0, 0.0, nan]]),
      "_roa_success": np.array([[0.0, 1.0, nan]])}
  np.testing.assert_array_equal(defence_eval.any_success(row),
                                [[1.0, 1.0, nan]])
  row["_roa_success"] = np.array([[0.0, 0.0, nan]])
  np.testing.assert_array_equal(defence_eval.any_success(row),
                                [[1.0, 0.0, nan]])


def test_the_certificate_reach_of_the_camouflage_sticker():
  from blurnet_jax.data import masks  # pylint: disable=g-import-not-at-top
  reach = defence_stages.certificate_reach(masks.get_mask("camouflage"), 4)
  # 15 columns + 4 - 1 = 18 of 32 bands: a lead of 36 votes is needed.
  assert reach == {"band": 4, "patch_width": 15, "bands_met": 18,
                   "votes": 32, "certifiable": False}
  narrow = np.zeros((2, 32, 32, 1), np.float32)
  narrow[0, :, 10:13] = 1
  narrow[1, :, 20:25] = 1  # the widest, 5 columns, decides
  assert defence_stages.certificate_reach(narrow, 4)["bands_met"] == 8
  assert defence_stages.certificate_reach(narrow, 4)["certifiable"]
