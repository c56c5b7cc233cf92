"""The one evaluation call: its per-member key rule, its one-member
repetition (the RP2 model under several ids), its pooler and the
population and victim-set types' checks."""

import jax
import numpy as np
import pytest

from blurnet_jax import stats
from blurnet_jax.classes import STOP
from blurnet_jax.study import evaluation
from blurnet_jax.study.evaluation import Population, Victims
from tests.helpers import images, linear_apply


class _Recorder:
  """A measurement that records what each member was given."""

  def member(self, population, victims, params, key, index, count):
    return {"params": params, "key": jax.random.key_data(key),
            "index": index, "count": count}

  def pool(self, population, victims, measured):
    return {"name": population.name, "measured": measured}


def _keys(row):
  return [np.asarray(m["key"]) for m in row["measured"]]


def test_member_i_meets_the_key_of_its_seed_in_every_population():
  key = jax.random.key(7)
  victims = Victims("v", images(3), np.ones((32, 32, 1)))
  a = evaluation.evaluate(Population("a", linear_apply, ["p3", "p5"], (3, 5)),
                          victims, key, _Recorder())
  b = evaluation.evaluate(Population("b", linear_apply, ["q5"], (5,)),
                          victims, key, _Recorder())
  want = [jax.random.key_data(jax.random.fold_in(key, s)) for s in (3, 5)]
  for got, w in zip(_keys(a), want):
    np.testing.assert_array_equal(got, w)
  # The seed, not the position, picks the key: b's only member is seed 5.
  np.testing.assert_array_equal(_keys(b)[0], want[1])
  assert [m["params"] for m in a["measured"]] == ["p3", "p5"]
  assert [(m["index"], m["count"]) for m in a["measured"]] == [(0, 2), (1, 2)]


def test_a_one_member_population_is_attacked_once_per_id():
  key = jax.random.key(1)
  rp2 = Population("rp2", linear_apply, ["only"], (0,))
  victims = Victims("v", images(2), np.ones((32, 32, 1)))
  row = evaluation.evaluate(rp2, victims, key, _Recorder(), ids=(0, 1, 2))
  assert [m["params"] for m in row["measured"]] == ["only"] * 3
  for i, got in enumerate(_keys(row)):
    np.testing.assert_array_equal(
        got, jax.random.key_data(jax.random.fold_in(key, i)))
  two = Population("t", linear_apply, ["x", "y"], (0, 1))
  with pytest.raises(ValueError, match="3 ids for 2 members"):
    evaluation.evaluate(two, victims, key, _Recorder(), ids=(0, 1, 2))
  with pytest.raises(ValueError, match="names no member"):
    evaluation.evaluate(rp2, victims, key, _Recorder(), ids=())


def test_the_pooler_is_the_two_way_interval_and_skips_nan():
  rng = np.random.default_rng(0)
  x = (rng.uniform(size=(3, 20)) < 0.4).astype(float)
  x[1, :4] = np.nan
  got = evaluation.rate(x)
  assert got == stats.interval(x)
  assert got["mean"] == pytest.approx(np.nanmean(x))
  stack = np.stack([x, 1 - x], axis=1)  # (members, 2 rates, victims)
  means, lows, highs = evaluation.rates(stack)
  assert means == pytest.approx([np.nanmean(x), np.nanmean(1 - x)], abs=1e-6)
  assert lows[1] == pytest.approx(stats.interval(1 - x)["ci_low"], abs=1e-6)
  assert highs[0] == pytest.approx(got["ci_high"], abs=1e-6)


def test_the_types_name_what_is_wrong():
  with pytest.raises(ValueError, match="2 members and 1 seeds"):
    Population("a", linear_apply, ["x", "y"], (0,))
  with pytest.raises(ValueError, match="apply_fn must be callable"):
    Population("a", None, ["x"], (0,))
  with pytest.raises(ValueError, match=r"shape \(N, 32, 32, 3\)"):
    Victims("v", np.zeros((2, 16, 16, 3)), np.ones((32, 32, 1)))
  with pytest.raises(ValueError, match="one track per victim"):
    Victims("v", images(3), np.ones((32, 32, 1)), tracks=[1, 2])
  v = Victims("v", images(4), np.ones((32, 32, 1)), tracks=[7, 7, 9, 7])
  assert v.signs == 2 and v.label == STOP
  assert Victims("w", images(4), np.ones((32, 32, 1))).signs == 4
  p = Population("a", linear_apply, ["x", "y", "z"], (4, 5, 6),
                 results=({"test_accuracy": 0.5},) * 3)
  assert p.first(2).seeds == (4, 5) and p.first(2).members == ("x", "y")
  assert p.renamed("b").name == "b" and p.params == "x"
