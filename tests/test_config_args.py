"""Config files: named overrides of a base config (config_args.configure),
options, and lists as tuples on the command line."""

import importlib
import sys

from absl import flags
import ml_collections
from ml_collections import config_flags
import pytest

from blurnet_jax import config_args

CONFIGS = ("benchmark", "data", "reproduce", "robustness", "rp2", "sweep",
           "train")


def _base(size):
  c = ml_collections.ConfigDict()
  c.size = size
  c.steps = 100
  c.block = ml_collections.ConfigDict({"targets": (1, 5, 12)})
  return c


OVERRIDES = {
    "quick": {"steps": 10, "block.targets": (12,)},
    "runlocal": {"steps": lambda c: c.steps // 5, "size": "small"},
    "bad": {"block.target": (1,)},
}


def _configure(arg):
  return config_args.configure(arg, _base, OVERRIDES, size="full")


def test_overrides_apply_in_their_declared_order():
  assert _configure(None).to_dict() == {
      "size": "full", "steps": 100, "block": {"targets": (1, 5, 12)}}
  for arg in ("quick,runlocal", "runlocal,quick", " runlocal , quick "):
    c = _configure(arg)
    assert (c.steps, c.block.targets, c.size) == (2, (12,), "small"), arg
  assert _configure("quick=false,runlocal=True").steps == 20
  assert _configure("quick,size=tiny").size == "tiny"


def test_an_override_may_set_an_option_and_the_argument_wins():
  overrides = {"small": {"variants": ("a",)}, "all": {"variants": ("a", "b")}}
  pick = lambda arg: config_args.configure(
      arg, lambda variants: ml_collections.ConfigDict({"v": variants}),
      overrides, variants=("a", "b", "c")).v
  assert pick(None) == ("a", "b", "c")
  assert pick("small") == ("a",)
  assert pick("all,small") == ("a", "b")
  assert pick('small,variants=("c", "b")') == ("c", "b")
  assert pick("variants=['b']") == ("b",)


@pytest.mark.parametrize("arg,error,match", [
    ("fast", ValueError,
     "unknown config argument 'fast'; known: quick, runlocal, bad, size=..."),
    ("quick=maybe", ValueError, "not a boolean"),
    ("size", ValueError, "needs a value"),
    ("bad", KeyError, "override 'bad': the config has no field block.target"),
])
def test_mistakes_are_one_line(arg, error, match):
  with pytest.raises(error, match=match):
    _configure(arg)


def test_a_block_override_under_a_prefix_sees_its_block():
  outer = lambda: ml_collections.ConfigDict({"inner": _base("full")})
  c = config_args.configure(
      "runlocal", outer,
      {"runlocal": config_args.under("inner", OVERRIDES["runlocal"])})
  assert (c.inner.steps, c.inner.size) == (20, "small")


def test_tuple_options_and_exclusive_names():
  assert config_args.option_value("v", '("a", "b")', ()) == ("a", "b")
  with pytest.raises(ValueError, match="is not a tuple"):
    config_args.option_value("v", "a+b", ())
  with pytest.raises(ValueError, match="pick at most one of quick, runlocal"):
    config_args.configure("quick,runlocal", _base, OVERRIDES,
                          exclusive=("quick", "runlocal"), size="full")


@pytest.mark.parametrize("name", CONFIGS)
def test_every_named_override_of_every_config_file_applies(name):
  """Each override's paths are fields of its base (else a KeyError)."""
  module = importlib.import_module(f"configs.{name}")
  for override in module.OVERRIDES:
    assert module.get_config(override).to_dict(), override


def test_runlocal_is_the_quick_checklist_smaller_still():
  from configs import robustness  # pylint: disable=g-import-not-at-top
  runlocal = robustness.get_config("runlocal").to_dict()
  assert robustness.get_config("quick,runlocal").to_dict() == runlocal


def test_command_line_tuples_in_the_argument_and_the_fields(monkeypatch):
  """As a launcher parses `--config='configs/robustness.py:quick,variants=(
  "baseline", "tv_1e-5")' --config.robustness.steps_curve='(1, 5, 12)'`."""
  argv = ["prog",
          '--config=configs/robustness.py:quick,variants=("baseline", '
          '"tv_1e-5")',
          "--config.robustness.steps_curve=(1, 5, 12)",
          "--config.num_train_steps=1000"]
  monkeypatch.setattr(sys, "argv", argv)  # config_flags reads its overrides
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", flag_values=values,
                                  lock_config=True)
  values(argv)
  config = values.config
  assert list(config.models) == ["baseline", "tv_1e-5"]
  assert config.robustness.steps_curve == (1, 5, 12)
  # The study's step budget reaches every model.
  assert {m.num_train_steps for m in config.models.values()} == {1000}
