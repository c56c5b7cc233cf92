"""A workdir's record stays true: a mismatched config stops before it
writes, config.json is the config its checkpoints were trained with, a
study's trained population loads member by member, and one run at a time
holds a workdir."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from blurnet_jax import checkpoint
from blurnet_jax import workdirs
from blurnet_jax import sweep
from blurnet_jax import train
from blurnet_jax.study import attack
from blurnet_jax.study import zoo
from configs import rp2 as rp2_configs
from tests.helpers import tiny_train_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _one_line(excinfo):
  return "\n" not in str(excinfo.value)


def _population_config(data_dir, **overrides):
  settings = dict(num_train_steps=4, eval_every=4, checkpoint_every=4)
  config = tiny_train_config("baseline", data_dir, **(settings | overrides))
  config.sweep = dict(alphas=(0.0,), seeds=(0, 1), chunk=0)
  return config


def _fake_checkpoint(workdir, config):
  """A checkpoint whose sidecar records `config`, and its config.json."""
  checkpoint.save(workdir / "checkpoints", {"w": np.zeros(3, np.float32)},
                  step=4, config=config)
  (workdir / "config.json").write_text(json.dumps(config.to_dict()))


@pytest.mark.parametrize("run", ["population", "single"])
def test_mismatched_config_stops_before_writing(tiny_data_dir, tmp_path, run):
  good = _population_config(tiny_data_dir)
  _fake_checkpoint(tmp_path, good)
  before = (tmp_path / "config.json").read_bytes()
  other = _population_config(tiny_data_dir, num_train_steps=7)
  fn = sweep.train_population if run == "population" else (
      train.train_and_evaluate)
  with pytest.raises(ValueError, match="another config") as e:
    fn(other, tmp_path)
  assert _one_line(e) and "num_train_steps: 4 -> 7" in str(e.value)
  assert (tmp_path / "config.json").read_bytes() == before
  assert sorted(os.listdir(tmp_path)) == [".lock", "checkpoints",
                                          "config.json"]


def test_run_only_settings_may_differ():
  config = tiny_train_config("baseline", "/tmp/d")
  saved = checkpoint.checkpoint_format.config_json(config)
  moved = tiny_train_config("baseline", "/elsewhere", log_every=1,
                            keep_checkpoints=9)
  moved.data.manual_dir = "/another/copy"
  assert workdirs.config_differences(saved, moved) == []
  moved.seed = 3
  moved.data.fingerprint = "sha256:00"
  assert workdirs.config_differences(saved, moved) == [
      "data.fingerprint: '' -> 'sha256:00'", "seed: 0 -> 3"]


def test_population_workdir_loads_in_the_attack(tiny_data_dir, tmp_path):
  config = _population_config(tiny_data_dir)
  trained = zoo.train_models(type(config)({"base": config}), tmp_path)["base"]
  workdir = tmp_path / "base"
  # config.json is the config the checkpoint's sidecar records.
  sidecar = checkpoint.sidecar(workdir / "checkpoints")
  saved = json.loads((workdir / "config.json").read_text())
  assert saved == sidecar["config"]
  apply_fn, members, description = zoo.load_members(workdir)
  assert len(members) == 2 and "seed 0, seed 1" in description
  for got, want in zip(members, trained.members):
    jax.tree.map(np.testing.assert_array_equal, got, want)
  # The two seeds are different models.
  assert not np.array_equal(members[0]["conv1"]["kernel"],
                            members[1]["conv1"]["kernel"])
  _, one, text = zoo.load_model(workdir, member=1)
  jax.tree.map(np.testing.assert_array_equal, one, trained.members[1])
  assert text.endswith("member 1")
  # launch.attack's run on member 1 of the study's model.
  rc = rp2_configs.get_config("runlocal")
  rc.model, rc.member, rc.steps = str(workdir), 1, 2
  results = attack.run_attack(rc, tmp_path / "attack")
  assert "member 1" in results["model"] and results["targets"]
  rc.member = 2
  with pytest.raises(ValueError, match="member=2") as e:
    attack.run_attack(rc, tmp_path / "attack2")
  assert _one_line(e)
  # A config.json changed by hand no longer describes the checkpoints.
  saved["seed"] = 5
  (workdir / "config.json").write_text(json.dumps(saved))
  with pytest.raises(ValueError, match="not the config") as e:
    zoo.load_members(workdir)
  assert _one_line(e)


_HOLDER = textwrap.dedent("""
    import sys, time
    from blurnet_jax import workdirs
    with workdirs.lock(sys.argv[1]):
      print("held", flush=True)
      time.sleep(120)
""")


def test_one_run_per_workdir(tiny_data_dir, tmp_path, capsys):
  holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(workdirs.WorkdirBusyError,
                       match=f"in use by pid {holder.pid}") as e:
      sweep.train_population(_population_config(tiny_data_dir), tmp_path)
    assert _one_line(e) and "--workdir" in str(e.value)
    assert sorted(os.listdir(tmp_path)) == [".lock"]
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  # Killed without releasing: the next run says so in one line, takes it,
  # and nested holds in one process share it.
  with workdirs.lock(tmp_path):
    with workdirs.lock(tmp_path / "."):
      pass
    record = json.loads((tmp_path / ".lock").read_text())
    assert record["pid"] == os.getpid()
  err = capsys.readouterr().err
  assert f"pid {holder.pid}" in err and "no longer running" in err
  assert len(err.strip().splitlines()) == 1
  assert (tmp_path / ".lock").read_text() == ""  # released
  with workdirs.lock(tmp_path):
    pass
  assert capsys.readouterr().err == ""
