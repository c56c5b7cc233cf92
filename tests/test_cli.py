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
     "needs lisa_dir"),
])
def test_bad_config_is_one_line(tmp_path, args, message):
  out = subprocess.run(
      [sys.executable, "-m", "launch.train", f"--workdir={tmp_path}", *args],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert out.returncode == 2, out.stderr[-2000:]
  errors = [l for l in out.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], out.stderr[-2000:]
  assert "Traceback" not in out.stderr
