"""The study's report renders from JSON results alone: no model anywhere."""

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from blurnet_jax.jsonio import write_json
from blurnet_jax.study import studies
from configs import reproduce as reproduce_configs

REPO = Path(__file__).resolve().parents[1]


def _results(workdir: Path, *, robustness: bool = True) -> None:
  """A hand-made finished run: two Table 1 rows, one Table 2 row, and so on."""
  config = reproduce_configs.get_config("quick")
  write_json(workdir / "config.json", config.to_dict())
  write_json(workdir / "study.json", {
      "rp2_dir": "packaged",
      "environment": {"jax": "0", "flax": "0", "optax": "0",
                      "backend": "cpu", "device_kind": "cpu"}})
  write_json(workdir / "oracle.json", {
      "accuracy": 0.291, "images": 900,
      "per_class": {"stop": 0.8, "school": 0.04},
      "confusion": np.eye(18).tolist(),
      "front_on": {"stop": {"correct": 4, "templates": 4,
                            "read_as": ["stop"] * 4},
                   "school": {"correct": 0, "templates": 2,
                              "read_as": ["other", "yield"]}}})
  write_json(workdir / "stages.json", {"train": 12.5, "table1": 3.0})
  row1 = {"dataset": "rp2", "variant": "baseline", "accuracy": 1.0,
          "attack_success_rate": 0.9, "misclassification_rate": 0.9,
          "slides_variant": "baseline", "slides_accuracy": 1.0,
          "slides_attack_success_rate": 0.9}
  write_json(workdir / "table1.json", [row1, dict(row1, dataset="synthetic",
                                                  attack_success_rate=0.25)])
  write_json(workdir / "table2.json", [{
      "dataset": "rp2", "variant": "baseline", "alpha": 0.0,
      "legit_acc": 1.0, "avg_success": 0.519, "worst_success": 0.9,
      "l2_distortion": 0.232, "avg_targeted_success": 0.2,
      "worst_targeted_success": 0.5, "avg_transform_success": 0.5,
      "per_target": [], "slides_alpha": 0.0, "slides_legit_acc": 0.91,
      "slides_avg_success": 0.4918, "slides_worst_success": 0.9,
      "slides_l2_distortion": 0.207}])
  shares = {f"{l}_{k}": 0.1 for l in ("input", "l1", "l1_filtered", "l2")
            for k in ("natural", "perturbed", "ratio")}
  write_json(workdir / "spectral.json", [{"dataset": "rp2",
                                          "variant": "RP2 model", **shares}])
  write_json(workdir / "sweep.json", [{
      "penalty": "linf", "alpha": 0.1, "test_accuracy": 0.8,
      "avg_success": 0.3, "worst_success": 0.4, "l2_distortion": 0.27}])
  if robustness:
    curve = {"budgets": [0.25, 1.0], "success": [0.5, 0.75],
             "eot_success": [0.25, 0.5]}
    model = {
        "victims": 20, "data": "rp2", "clean": 0.0, "sticker": 0.9,
        "sticker_eot": 0.6,
        "budgets": {k: curve for k in ("pgd_linf", "square_linf",
                                       "pgd_l2", "square_l2")},
        "physical": {"angles": [0, 60], "distances": [32, 4],
                     "clean_angle": [0, 0.35], "perturbed_angle": [0.9, 0.78],
                     "clean_distance": [0, 0.95],
                     "perturbed_distance": [0.9, 1.0]},
        "steps": {"steps": [10, 30], "success": [0.5, 0.75], "budget": 1.0},
        "checks": [{"check": "gradients finite and non-zero", "passed": True,
                    "detail": "finite 100%"}],
        "flags": []}
    write_json(workdir / "robustness.json", {
        "models": {"rp2": model},
        "transfer": {"pgd_linf": {"sources": ["rp2"], "matrix": [[0.5]]}}})


def test_report_renders_from_json_alone(tmp_path):
  _results(tmp_path)
  md = studies.render(tmp_path)
  text = md.read_text()
  html = (tmp_path / "report" / "index.html").read_text()
  assert "Table 1: black-box transfer" in text
  # The values written are the values shown: 51.9 beside the slides' 49.2.
  assert "51.9" in text and "49.2" in text
  assert "29.1%" in text  # the oracle accuracy from oracle.json
  # Its section: per class, and what the front-on drawings are read as.
  assert "The synthetic proxy against the LISA model" in text
  school = next(l for l in text.splitlines() if l.startswith("| school"))
  assert "| 4 " in school and "0/2" in school and "other/yield" in school
  # The figures are drawn from the results: the oracle's confusion, the
  # linf sweep's two, the robustness checklist's.
  drawn = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
  assert {"oracle_confusion.png", "sweep_linf_test_accuracy.png",
          "sweep_linf_avg_success.png"} <= set(drawn)
  assert "linf sweep: test accuracy against alpha" in text
  assert html.count("data:image/png;base64,") == len(drawn)
  assert "The checklist, per model" in text
  assert "train" in text and "12.5" in text  # the stage seconds


def test_a_run_without_its_last_stages_renders_and_says_so(tmp_path):
  _results(tmp_path, robustness=False)
  text = studies.render(tmp_path).read_text()
  assert "robustness.json is missing" in text


def test_launch_report_is_one_line_on_a_folder_without_results(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "launch.report", f"--workdir={tmp_path}",
       "--compilation_cache=off"],
      cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 2
  assert "error: study config file" in proc.stderr
  assert "config.json" in proc.stderr and "Traceback" not in proc.stderr


def test_a_corrupt_result_file_is_one_clear_error(tmp_path):
  _results(tmp_path)
  (tmp_path / "table2.json").write_text("{not json")
  with pytest.raises(ValueError, match="table2 results file .* is not valid "
                     "JSON"):
    studies.render(tmp_path)
  assert json.loads((tmp_path / "table1.json").read_text())  # untouched
