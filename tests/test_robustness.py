"""The robustness checklist: each check flags what it should, gradient
masking is caught end to end, the physical bench, launch.robustness."""

import json

import jax
import numpy as np
import pytest

from blurnet_jax.jsonio import jsonable
from blurnet_jax.study.robustness import checklist as robustness
from blurnet_jax.study.robustness import attacks as robustness_attacks
from blurnet_jax.study import evaluation
from blurnet_jax.study.claims import checks as robustness_checks
from blurnet_jax.study.evaluation import Population, Victims
from blurnet_jax.study.robustness import measure as robustness_measure
from blurnet_jax.study.robustness import settings as robustness_settings
from blurnet_jax.study import studies
from blurnet_jax import spectral
from blurnet_jax.attacks import transforms
from blurnet_jax.classes import STOP
from configs import robustness as robustness_configs
from tests.helpers import (images, linear_apply, linear_params,
                           quantised_apply, stripe_mask, tiny_data,
                           tiny_robustness)


def passing_result():
  """A result in which every check passes (10 victims: slack 0.1)."""
  curve = lambda s: {"budgets": [0.1, 0.5, 1.0], "success": s,
                     "eot_success": s}
  return {
      "victims": 10,
      "gradients": {"finite": 1.0, "nonzero": 1.0, "median_norm": 0.3},
      "unbounded": {"linf": {"budget": 1.0, "success": 1.0},
                    "l2": {"budget": 55.4, "success": 1.0}},
      "budgets": {"pgd_linf": curve([0.2, 0.5, 0.9]),
                  "square_linf": curve([0.1, 0.3, 0.9]),
                  "pgd_l2": curve([0.1, 0.4, 0.8]),
                  "square_l2": curve([0.2, 0.3, 0.7])},
      "steps": {"steps": [5, 15, 45], "success": [0.3, 0.4, 0.4]},
      "transfer": {"rp2": {"white_box": 0.5, "best_transfer": 0.6,
                           "best_source": "other"}},
  }


def flags_of(result):
  return [c["check"] for c in robustness_checks.checklist_checks(result, slack=0.1)
          if not c["passed"]]


def test_a_sound_result_raises_no_flag_and_one_victim_is_slack():
  assert flags_of(passing_result()) == []


@pytest.mark.parametrize("edit,flag", [
    (lambda r: r["gradients"].update(nonzero=0.9),
     "gradients finite and non-zero"),
    (lambda r: r["gradients"].update(finite=0.9),
     "gradients finite and non-zero"),
    (lambda r: r["unbounded"]["l2"].update(success=0.9),
     "unbounded attacks reach 100%"),
    (lambda r: r["budgets"]["pgd_linf"].update(success=[0.5, 0.3, 0.9]),
     "pgd_linf success grows with the budget"),
    # A fall to any later budget counts, not only to the next one.
    (lambda r: r["budgets"]["square_l2"].update(success=[0.2, 0.15, 0.05]),
     "square_l2 success grows with the budget"),
    (lambda r: r["steps"].update(success=[0.5, 0.3, 0.6]),
     "PGD success grows with the steps"),
    (lambda r: r["budgets"]["square_linf"].update(success=[0.2, 0.61, 0.9]),
     "gradient-free <= gradient-based (linf)"),
    (lambda r: r["transfer"]["rp2"].update(best_transfer=0.61),
     "white-box >= transfer (rp2)"),
])
def test_each_check_flags_its_failure_and_only_that(edit, flag):
  result = passing_result()
  edit(result)
  assert flags_of(result) == [flag]


def tiny_block():
  rc = robustness_configs.get_config("runlocal").robustness
  rc.victims = 6
  rc.pgd_steps = 8
  rc.square_queries = 120
  rc.rp2_steps = 3
  rc.eot_samples = 2
  return rc


def _checklist(apply_fn, members, x, mask, key, rc, sticker=None):
  """The checklist on the members (seeds 0, 1, ...) through the one
  evaluation call."""
  return evaluation.evaluate(
      Population("m", apply_fn, members, range(len(members))),
      Victims("v", x, mask, sticker=sticker), key, robustness.Checklist(rc))


def test_gradient_masking_is_flagged_end_to_end():
  """A model that rounds its input has zero gradients: PGD stands still,
  the gradient-free search does not, and the checklist says so."""
  params, x, mask = linear_params(scale=0.1), images(6), stripe_mask()
  params["b"] = params["b"].at[STOP].add(3.0)  # every clean image is stop
  rc = tiny_block()
  rc.steps_curve, rc.angles, rc.distances = (4,), (0.0,), (32,)
  # No RP2 sticker to make: the clean signs stand in for it.
  smooth = _checklist(linear_apply, [params], x, mask, jax.random.key(0), rc,
                      sticker=x)
  masked = _checklist(quantised_apply, [params], x, mask, jax.random.key(0),
                      rc, sticker=x)
  for r in (smooth, masked):
    r.pop("_adversarial")
  assert masked["gradients"]["nonzero"] == 0.0
  assert smooth["gradients"] == pytest.approx(
      {"finite": 1.0, "nonzero": 1.0,
       "median_norm": smooth["gradients"]["median_norm"]})
  flags = lambda r: [c["check"] for c in robustness_checks.checklist_checks(
      r, slack=1 / 6) if not c["passed"]]
  assert "gradients finite and non-zero" in flags(masked)
  assert "gradient-free <= gradient-based (linf)" in flags(masked)
  assert "gradients finite and non-zero" not in flags(smooth)
  assert "gradient-free <= gradient-based (linf)" not in flags(smooth)
  assert smooth["unbounded"]["linf"]["success"] == 1.0
  json.dumps(jsonable(masked))  # JSON-ready as it stands


def test_transfer_matrix_diagonal_is_white_box():
  a, b = linear_params(0), linear_params(1)
  x = images(6)
  adv = {"a": x, "b": np.clip(x + 0.3, 0, 1)}
  named = [("a", linear_apply, a), ("b", linear_apply, b)]
  m = robustness_attacks.transfer_matrix(named, adv)
  for i, (src, _, _) in enumerate(named):
    for j, (_, f, p) in enumerate(named):
      expected = np.mean(np.argmax(f(p, adv[src]), -1) != STOP)
      assert m[i][j] == pytest.approx(expected)


def test_view_and_distance_are_the_identity_at_zero_and_full_size():
  x = images(3)
  np.testing.assert_allclose(transforms.view(x), x, atol=1e-6)
  np.testing.assert_array_equal(transforms.at_distance(x, 32), x)


def test_a_turned_sign_is_foreshortened_symmetrically():
  x = np.zeros((1, 32, 32, 3), np.float32)
  x[:, 8:24, 8:24] = 1.0  # a white square on black
  width = lambda img: int(np.sum(np.asarray(img)[0, 16, :, 0] > 0.5))
  assert width(transforms.view(x, yaw_deg=0, padding="zeros")) == 16
  left = transforms.view(x, yaw_deg=60, padding="zeros")
  right = transforms.view(x, yaw_deg=-60, padding="zeros")
  # cos(60) = 0.5 of the width, give or take the perspective's near side.
  assert 7 <= width(left) <= 11
  np.testing.assert_allclose(np.asarray(left)[:, :, ::-1],
                             np.asarray(right), atol=1e-5)


def test_a_far_sign_loses_its_fine_detail():
  x = images(4)
  radial = lambda im: np.mean(spectral.high_frequency_share(im, radius=0.5))
  shares = [float(radial(transforms.at_distance(x, d))) for d in (32, 16, 8)]
  assert shares[0] > shares[1] > shares[2]
  assert shares[2] < 0.2 * shares[0]


@pytest.mark.parametrize("call,match", [
    (lambda x: transforms.view(x, yaw_deg=90), "inside \\(-90, 90\\)"),
    (lambda x: transforms.view(x, scale=0.0), "scale > 0"),
    (lambda x: transforms.at_distance(x, 0), "pixels=0 must be an int"),
    (lambda x: transforms.at_distance(x, 40), "pixels=40"),
])
def test_bad_viewpoints_are_one_clear_error(call, match):
  with pytest.raises(ValueError, match=match):
    call(images(1))


def test_physical_curves_start_from_the_images_as_they_are():
  params, x = linear_params(), images(6)
  rc = tiny_block()
  stickered = np.clip(x + 0.2 * stripe_mask(), 0, 1)
  outcomes = robustness_measure.physical_outcomes(linear_apply, params, x,
                                                  stickered, rc)
  angles, distances = robustness_settings.physical_settings(rc)
  fooled = lambda im: float(np.mean(np.argmax(linear_apply(params, im), -1)
                                    != STOP))
  assert angles[0] == 0 and distances[0] == 32
  assert outcomes["clean_angle"].shape == (len(angles), 6)
  assert outcomes["clean_angle"][0].mean() == pytest.approx(fooled(x))
  assert outcomes["perturbed_distance"][0].mean() == pytest.approx(
      fooled(stickered))


def test_members_pool_into_means_with_intervals():
  """Two members (seeds) of one model: every rate is the mean of the two
  members' own rates, and its interval is the two-way t over members and
  victims of the same per-victim outcomes (recomputed here by hand)."""
  from blurnet_jax import stats
  x, mask, rc = images(6), stripe_mask(), tiny_block()
  rc.steps_curve, rc.angles, rc.distances = (3, 8), (0.0, 45.0), (32, 8)
  assert rc.pgd_steps == 8 and rc.reference_linf == rc.linf_budgets[-1]
  members = [linear_params(scale=0.1), linear_params(scale=0.1, seed=1)]
  key = jax.random.key(3)
  pooled = _checklist(linear_apply, members, x, mask, key, rc, sticker=x)
  singles = [robustness_measure.measure(linear_apply, p, x, mask,
                                        jax.random.fold_in(key, j), rc,
                                        sticker=x)
             for j, p in enumerate(members)]
  assert pooled["members"] == 2 and pooled["victims"] == 6
  for get, got in (
      (lambda o: o["budgets"]["pgd_linf"]["success"][-1],
       lambda r: (r["budgets"]["pgd_linf"]["success"][-1],
                  r["budgets"]["pgd_linf"]["ci_low"][-1],
                  r["budgets"]["pgd_linf"]["ci_high"][-1])),
      (lambda o: o["physical"]["clean_angle"][1],
       lambda r: (r["physical"]["clean_angle"][1],
                  r["physical"]["clean_angle_ci_low"][1],
                  r["physical"]["clean_angle_ci_high"][1])),
      (lambda o: o["clean"],
       lambda r: (r["clean"], r["clean_ci_low"], r["clean_ci_high"]))):
    stack = np.stack([get(m["outcomes"]) for m in singles])  # (2, victims)
    want = stats.interval(stack)
    assert got(pooled) == pytest.approx(
        (stack.mean(), want["ci_low"], want["ci_high"]), abs=1e-6)
  # The steps curve's point at pgd_steps is the budget curve's own run.
  for m in singles:
    np.testing.assert_array_equal(m["outcomes"]["steps"][1],
                                  m["outcomes"]["budgets"]["pgd_linf"][
                                      "success"][-1])
  # One member of 0/1 outcomes: the Wilson interval over the victims.
  one = _checklist(linear_apply, members[:1], x, mask, key, rc, sticker=x)
  k = int(round(one["budgets"]["pgd_linf"]["success"][-1] * 6))
  assert (one["budgets"]["pgd_linf"]["ci_low"][-1],
          one["budgets"]["pgd_linf"]["ci_high"][-1]) == pytest.approx(
              stats.wilson_interval(k, 6), abs=1e-6)
  assert one["unbounded"]["linf"]["ci_low"] <= one["unbounded"]["linf"][
      "success"] <= one["unbounded"]["linf"]["ci_high"]


def test_members_setting_must_be_positive(tiny_data_dir):
  config = robustness_configs.get_config("runlocal")
  config.robustness.members = 0
  with pytest.raises(ValueError, match="robustness.members=0 must be >= 1"):
    robustness.evaluate_trained(config, {}, jax.random.key(0))


@pytest.mark.parametrize("field,value,match", [
    ("linf_budgets", (0.1, -1.0), r"linf_budgets=\(0.1, -1.0\) must be a "
     "tuple of numbers >= 0"),
    ("distances", (32, 0), r"distances=\(32, 0\) must be a tuple of "
     "integers"),
    ("reference_linf", 0.3, "reference_linf=0.3 is not one of linf_budgets"),
    ("angles", (0.0, 90.0), r"angles=\(0.0, 90.0\) must be below 90"),
])
def test_bad_robustness_settings_are_one_clear_error(field, value, match):
  rc = tiny_block()
  rc[field] = value
  with pytest.raises(ValueError, match=match):
    _checklist(linear_apply, [linear_params()], images(4), stripe_mask(),
               jax.random.key(0), rc)


def test_runlocal_writes_the_json_figures_and_report(tiny_data_dir, tmp_path,
                                                     capsys):
  config = robustness_configs.get_config("runlocal")
  tiny_data(config.data, tiny_data_dir)
  config.num_train_steps = 6
  config.warmup_steps = 2
  config.batch_size = 16
  tiny_robustness(config.robustness)
  studies.run(config, tmp_path)
  saved = json.loads((tmp_path / "robustness.json").read_text())
  base = saved["models"]["baseline"]
  assert set(base) >= {"clean", "gradients", "unbounded", "budgets", "steps",
                       "physical", "checks", "flags"}
  assert set(base["budgets"]) == {"pgd_linf", "pgd_l2", "square_linf",
                                  "square_l2"}
  assert base["budgets"]["pgd_linf"]["budgets"] == [0.25, 1.0]
  assert base["steps"]["steps"] == [1, 2]
  assert len(base["physical"]["perturbed_angle"]) == 2
  # The sticker's rate on its own model: as it is, in the transfer
  # matrix's diagonal and head on in the physical bench.
  assert saved["transfer"]["rp2"]["matrix"][0][0] == pytest.approx(
      base["sticker"])
  assert base["physical"]["perturbed_angle"][0] == pytest.approx(
      base["sticker"])
  assert 0 <= base["sticker_eot"] <= 1
  assert saved["models"]["rp2"]["data"] == "rp2"  # the packaged real data
  names = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
  assert names == ["robustness_budgets.png", "robustness_physical_rp2.png",
                   "robustness_physical_synthetic.png",
                   "robustness_steps.png", "robustness_transfer.png"]
  for p in (tmp_path / "figures").glob("*.png"):
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  html = (tmp_path / "report" / "index.html").read_text()
  assert html.count("data:image/png;base64,") == 5
  assert "The checklist, per model" in html
  # A second run reads every stage back; launch.report renders the report
  # again from the JSON alone.
  capsys.readouterr()
  studies.run(config, tmp_path)
  out = capsys.readouterr().out
  assert "stage train: read back" in out and "robustness: read back" in out
  (tmp_path / "report" / "index.html").unlink()
  assert studies.render(tmp_path).name == "report.md"
  assert "The checklist, per model" in (
      tmp_path / "report" / "index.html").read_text()
  # Deterministic: --noresume (models reused) gives the same numbers.
  studies.run(config, tmp_path, resume=False)
  again = json.loads((tmp_path / "robustness.json").read_text())
  assert again == saved


def test_configs_pick_the_models_and_refuse_an_unknown_variant():
  assert list(robustness_configs.get_config("runlocal").models) == [
      "baseline"]
  assert list(robustness_configs.get_config("quick").models) == [
      "baseline", "linf_5x5", "tv_1e-4"]
  every = robustness_configs.get_config("quick,all")
  assert list(every.models) == ["baseline", "linf_3x3", "linf_5x5",
                                "linf_7x7", "tv_1e-4", "tv_1e-5"]
  picked = robustness_configs.get_config(
      'variants=("baseline", "tv_1e-5")')
  assert list(picked.models) == ["baseline", "tv_1e-5"]
  with pytest.raises(ValueError, match="unknown variant 'blur'"):
    robustness_configs.get_config('variants=("blur",)')
  with pytest.raises(ValueError, match="unknown config argument 'fast'"):
    robustness_configs.get_config("fast")
