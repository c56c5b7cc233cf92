"""Launchers end bad input with one `error:` line and status 2."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("args,message", [
    (["--config=configs/train.py:variant=nope"], "unknown variant 'nope'"),
    (["--config=configs/train.py", "--config.bogus=1"],
     "unknown config key bogus"),
    (["--config=configs/train.py:runlocal", "--config.data.source=lisa"],
     "--config.data.manual_dir=PATH"),
    (["--config=configs/train.py:variant=doa,runlocal",
      "--config.defence.stride=0"], "defence.stride=0 must be an int >= 1"),
    (["--config=configs/train.py:runlocal", "--config.defence.kind=mixup"],
     "defence.kind='mixup'; use one of"),
])
def test_bad_config_is_one_line(tmp_path, args, message):
  out = subprocess.run(
      [sys.executable, "-m", "launch.train", f"--workdir={tmp_path}", *args],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert out.returncode == 2, out.stderr[-2000:]
  errors = [l for l in out.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], out.stderr[-2000:]
  assert "Traceback" not in out.stderr


def test_config_paths_resolve_to_the_installed_configs_elsewhere(
    tmp_path, monkeypatch):
  from launch import cli  # pylint: disable=g-import-not-at-top
  import configs  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(tmp_path)  # no configs/ folder here
  out = cli.resolve_config_path("--config=configs/reproduce.py:quick")
  assert out == ("--config=" + os.path.join(
      os.path.dirname(configs.__file__), "reproduce.py") + ":quick")
  assert os.path.exists(out[len("--config="):].partition(":")[0])
  for unchanged in ("--config=configs/nope.py", "--config=mine.py",
                    "--workdir=configs/reproduce.py"):
    assert cli.resolve_config_path(unchanged) == unchanged
  monkeypatch.chdir(REPO)  # the repository's own file wins where it is
  assert cli.resolve_config_path("--config=configs/train.py") == (
      "--config=configs/train.py")


def test_compilation_cache_folder_or_off(tmp_path):
  """The launchers' persistent compilation cache: a folder, or off."""
  script = (
      "import jax, sys; from launch import cli; "
      f"print(cli.enable_compilation_cache({str(tmp_path / 'xla')!r})); "
      "print(jax.config.jax_compilation_cache_dir); "
      "print(cli.enable_compilation_cache('off'))")
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO,
                       capture_output=True, text=True, timeout=120,
                       check=True).stdout.split()
  assert out == [str(tmp_path / "xla"), str(tmp_path / "xla"), "None"]
  assert (tmp_path / "xla").is_dir()
