"""The evaluation of defences beside BlurNet: adaptive against naive attacks
on a toy JPEG-defended model, the soft vote against the vote, paired
differences and certified fractions against hand counts, success counted
only over the victims a member reads as stop."""

import dataclasses
import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from blurnet_jax import jsonio
from blurnet_jax.classes import IMAGE_SHAPE, NUM_CLASSES, STOP
from blurnet_jax.defences import InputTransform, smoothing
from blurnet_jax.defences.occlusion import RoaConfig
from blurnet_jax.study.defences import evaluate as defence_eval
from blurnet_jax.study.defences.evaluate import (Defence, EvalSettings,
                                            compare_defences,
                                            evaluate_defence)
from blurnet_jax.study.evaluation import Population, Victims
from tests.helpers import linear_apply

#: Attacks small enough for a test: one target, a few steps each.
SETTINGS = EvalSettings(targets=(12,), steps=30, num_transforms=1,
                        pgd_steps=2, square_queries=2,
                        roa=RoaConfig(stride=8, pgd_steps=2))
SEEDS = (0, 1)


@functools.lru_cache(maxsize=None)
def _patterns() -> np.ndarray:
  """One smooth pattern per class: random 4 x 4 blocks of 8 x 8 pixels."""
  coarse = np.random.default_rng(0).uniform(-1, 1, (NUM_CLASSES, 4, 4, 3))
  return np.kron(coarse, np.ones((1, 8, 8, 1)))


def _draw(classes, seed) -> np.ndarray:
  """Tiny images of `classes`: their pattern around grey, plus noise."""
  rng = np.random.default_rng(seed)
  x = 0.5 + 0.25 * _patterns()[classes] + rng.normal(
      0, 0.05, (len(classes),) + IMAGE_SHAPE)
  return np.clip(x, 0, 1).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _member(seed: int):
  """A linear classifier trained (full-batch gradient descent) on 10
  images per class."""
  labels = np.tile(np.arange(NUM_CLASSES), 10)
  images = _draw(labels, 100 + seed)

  def loss(p):
    return optax.softmax_cross_entropy_with_integer_labels(
        linear_apply(p, images), labels).mean()

  def step(_, p):
    return jax.tree.map(lambda a, g: a - 0.05 * g, p, jax.grad(loss)(p))

  params = {"w": jnp.zeros((images[0].size, NUM_CLASSES)),
            "b": jnp.zeros(NUM_CLASSES)}
  return jax.jit(lambda p: jax.lax.fori_loop(0, 100, step, p))(params)


def _test_split():
  labels = np.tile(np.arange(NUM_CLASSES), 3)
  return _draw(labels, 7), labels


def _victims(n=8) -> np.ndarray:
  return _draw(np.full(n, STOP), 9)


def _mask() -> np.ndarray:
  """Rows 4..19 (half the image): wide enough to move the toy model."""
  mask = np.zeros((32, 32, 1), np.float32)
  mask[4:20] = 1.0
  return mask


def _population(name, members, seeds=SEEDS, apply_fn=linear_apply):
  return Population(name, apply_fn, members, seeds)


def _evaluate(defence, **kwargs):
  return evaluate_defence(defence, Victims("v", _victims(), _mask()),
                          _test_split(), jax.random.key(0), SETTINGS,
                          **kwargs)


@pytest.mark.slow
def test_bpda_beats_the_naive_attack_through_jpeg_and_raises_the_flag():
  members = [_member(s) for s in SEEDS]
  population = _population("baseline", members)
  base = _evaluate(defence_eval.undefended(population))
  jpeg = _evaluate(defence_eval.transform_defence(
      "jpeg", population, InputTransform("jpeg", quality=50)),
                   transfer_from=base)
  assert jpeg["defence"] == "jpeg" and base["defence"] == "baseline"
  assert base["clean_accuracy"]["mean"] > 0.9
  assert base["victims_recognised"] == [8, 8]
  assert base["adaptive_raises"] is None and "naive_rp2_success" not in base
  # JPEG's own gradient is zero almost everywhere: the naive sticker only
  # shrinks; through BPDA the attack sees the model's gradient.
  assert jpeg["naive_rp2_success"]["mean"] < 0.25
  assert jpeg["rp2_success"]["mean"] > 0.75
  assert jpeg["adaptive_raises"] is True
  assert jpeg["adaptive_vs_naive"]["b_only"] > jpeg["adaptive_vs_naive"][
      "a_only"]
  assert jpeg["_rp2_success"].shape == (2, 8, 1)
  assert jpeg["_transfer_success"].shape == (2, 8, 1)
  for rate in ("pgd_success", "square_success", "roa_success"):
    assert jpeg[f"_{rate}"].shape == (2, 8)
    assert 0.0 <= jpeg[rate]["mean"] <= 1.0
  written = json.loads(json.dumps(jsonio.jsonable(jpeg)))
  assert not [k for k in written if k.startswith("_")]
  assert written["rp2_success"]["mean"] == jpeg["rp2_success"]["mean"]


def test_success_counts_only_the_victims_each_member_reads_as_stop():
  good = _member(0)
  # A member that reads class 1 wherever the top-left corner is white:
  # +5 per corner pixel of channel 0 above 0.75 (the marked victims only).
  w = np.array(good["w"]).reshape(IMAGE_SHAPE + (NUM_CLASSES,))
  w[:4, :4, 0, 1] += 5.0
  misreads = {"w": jnp.asarray(w.reshape(-1, NUM_CLASSES)),
              "b": good["b"].at[1].add(-5.0 * 16 * 0.75)}
  victims = _victims()
  victims[:3, :4, :4, 0] = 1.0  # outside the mask: no attack moves it
  marker = lambda p, x, m: np.asarray(x)[:, 20, 0, 0] > 0.5  # certify
  defence = Defence(_population("fabricated", [good, misreads]),
                    linear_apply, linear_apply, certify=marker)
  row = evaluate_defence(defence, Victims("v", victims, _mask()),
                         _test_split(), jax.random.key(0), SETTINGS)
  recognised = np.ones((2, 8), bool)
  recognised[1, :3] = False
  assert row["victims_recognised"] == [8, 5]
  for rate in ("rp2_success", "pgd_success", "square_success",
               "roa_success", "certified"):
    outcomes = row[f"_{rate}"].reshape(2, 8, -1)
    np.testing.assert_array_equal(~np.isnan(outcomes).any(-1), recognised)
    assert row[rate]["n_counted"] == 13
  by_hand = np.tile(victims[:, 20, 0, 0] > 0.5, (2, 1))
  np.testing.assert_array_equal(row["_certified"][recognised],
                                by_hand[recognised])
  assert math.isclose(row["certified"]["mean"],
                      by_hand[recognised].sum() / 13)


def _base6(params, x6):
  """A linear base classifier on the 6-channel ablated encoding."""
  return x6.reshape(x6.shape[0], -1) @ params["w"] + params["b"]


def test_the_soft_vote_tracks_the_vote_and_has_a_gradient():
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.normal(0, 1.0, (32 * 32 * 6, 5)),
                             jnp.float32), "b": jnp.zeros(5)}
  x = rng.uniform(0, 1, (64,) + IMAGE_SHAPE).astype(np.float32)
  soft = smoothing.soft_vote_apply_fn(_base6, 4)
  assert soft is smoothing.soft_vote_apply_fn(_base6, 4)
  scores = np.asarray(soft(params, x))
  by_hand = np.log(np.mean([jax.nn.softmax(_base6(
      params, smoothing.ablate_columns(x[:2], s, 4))) for s in range(32)],
                           axis=0))
  np.testing.assert_allclose(scores[:2], by_hand, rtol=1e-4, atol=1e-5)
  votes = smoothing.smoothed_predict(smoothing.column_votes(
      _base6, params, x, 4, 5))
  assert np.mean(scores.argmax(-1) == np.asarray(votes)) >= 0.85
  grad = np.asarray(jax.grad(lambda v: soft(params, v)[:, 0].sum())(x))
  assert np.isfinite(grad).all()
  assert np.all(np.abs(grad).reshape(64, -1).max(1) > 0)


def _row(name, rp2, seeds=SEEDS):
  """A fabricated row: `rp2` outcomes for every compared rate."""
  rp2 = np.asarray(rp2, np.float64)
  return {"defence": name, "seeds": list(seeds),
          **{f"_{rate}": rp2 for rate in defence_eval.COMPARED}}


def test_paired_differences_against_hand_computations():
  nan = np.nan
  base = _row("baseline", [[1, 1, 0, nan], [1, 0, 0, 1]])
  blur = _row("linf_5x5", [[0, 1, 0, 1], [0, 0, nan, 1]])
  same = _row("jpeg", [[1, 1, 0, nan], [1, 0, 0, 1]])
  rows = [base, blur, same]
  compare_defences(rows, "linf_5x5")
  assert "vs_baseline" not in base and "vs_reference" not in blur
  assert all(r["reference"] == "linf_5x5" for r in rows)
  # Cells counted in both arms: 6; the defence lost two successes
  # (base-only), gained none: difference -2/6, McNemar p = 2 (1/2)^2.
  for rate in defence_eval.COMPARED:
    d = blur["vs_baseline"][rate]
    assert math.isclose(d["difference"], -2 / 6)
    assert (d["a_only"], d["b_only"], d["n_counted"]) == (2, 0, 6)
    assert math.isclose(d["p_value"], 0.5)
    assert d["ci_low"] <= d["difference"] <= d["ci_high"]
  assert same["vs_baseline"]["rp2_success"]["difference"] == 0.0
  assert math.isclose(base["vs_reference"]["rp2_success"]["difference"],
                      2 / 6)
  assert math.isclose(same["vs_reference"]["pgd_success"]["difference"],
                      2 / 6)


def test_compare_defences_names_what_it_cannot_pair():
  base = _row("baseline", [[1, 0]])
  with pytest.raises(ValueError, match="named 'linf_5x5'"):
    compare_defences([base], "linf_5x5")
  with pytest.raises(ValueError, match="seeds"):
    compare_defences([base, _row("linf_5x5", [[1, 0]], seeds=(3,))],
                     "linf_5x5")
  written = {k: v for k, v in _row("linf_5x5", [[1, 0]]).items()
             if not k.startswith("_")}
  with pytest.raises(ValueError, match="before they are written"):
    compare_defences([base, written], "linf_5x5")


def test_bad_arguments_are_one_line_errors():
  members = [_member(0)]
  with pytest.raises(ValueError, match="one seed per member"):
    _population("d", members, (0, 1))
  with pytest.raises(ValueError, match="population must be a Population"):
    Defence(members, linear_apply, linear_apply)
  with pytest.raises(ValueError, match="certify must be callable"):
    Defence(_population("d", members, (0,)), linear_apply, linear_apply,
            certify=1)
  with pytest.raises(ValueError, match="steps"):
    EvalSettings(pgd_steps=0)
  defence = defence_eval.undefended(_population("baseline", members, (0,)))
  with pytest.raises(ValueError, match="settings must be"):
    evaluate_defence(defence, Victims("v", _victims(), _mask()),
                     _test_split(), jax.random.key(0), {"steps": 1})
  with pytest.raises(ValueError, match="victims must be a Victims"):
    evaluate_defence(defence, _victims(), _test_split(), jax.random.key(0),
                     SETTINGS)
  with pytest.raises(ValueError, match="transfer_from"):
    _evaluate(defence, transfer_from={"defence": "baseline", "seeds": [0]})


def _colour_base(params, x6):
  """A base classifier of the kept pixels' mean colour (6 channels)."""
  kept = (x6[..., 0] + x6[..., 3]).sum((1, 2))[:, None]
  return x6.sum((1, 2)) / kept @ params["w"] + params["b"]


@pytest.mark.slow
def test_column_smoothing_is_certified_where_no_sticker_moves_it():
  # Stop when the kept pixels are red, class 1 when they are green.
  w = np.zeros((6, NUM_CLASSES), np.float32)
  w[0, STOP], w[1, 1] = 20.0, 20.0
  params = {"w": jnp.asarray(w), "b": jnp.zeros(NUM_CLASSES)}
  victims = np.zeros((4,) + IMAGE_SHAPE, np.float32)
  victims[..., 0] = 0.9
  # Green on the left half: 13 bands of 4 vote class 1, 19 stop; a sticker
  # on columns 16 and 17 (seen by 5 bands) can tip 4 of them.
  victims[2:, :, :16, 1] = 0.95
  mask = np.zeros((32, 32, 1), np.float32)
  mask[:, 16:18] = 1.0
  defence = defence_eval.smoothing_defence(
      _population("smoothing", [params], (0,), _colour_base), 4,
      NUM_CLASSES)
  settings = dataclasses.replace(SETTINGS, targets=(1,), pgd_steps=10)
  # One mask per victim, as on GTSRB (Square goes victim by victim).
  row = evaluate_defence(defence, Victims("v", victims, np.stack([mask] * 4)),
                         (victims, np.full(4, STOP)), jax.random.key(0),
                         settings)
  assert row["victims_recognised"] == [4]
  np.testing.assert_array_equal(row["_certified"], [[1, 1, 0, 0]])
  for rate in ("rp2_success", "pgd_success", "square_success"):
    assert np.all(row[f"_{rate}"][0, :2] == 0.0), rate
  # The attacks through the soft vote move the victims not certified.
  np.testing.assert_array_equal(row["_rp2_success"][0, :, 0], [0, 0, 1, 1])
  np.testing.assert_array_equal(row["_pgd_success"][0], [0, 0, 1, 1])
  # The naive attack's band (columns 14..17) holds the sticker: it moves
  # them too, so the adaptive attack raises nothing.
  np.testing.assert_array_equal(row["_naive_rp2_success"][0, :, 0],
                                [0, 0, 1, 1])
  assert row["adaptive_raises"] is False
  with pytest.raises(ValueError, match="band"):
    defence_eval.smoothing_defence(
        _population("s", [params], (0,), _colour_base), 33, 18)
