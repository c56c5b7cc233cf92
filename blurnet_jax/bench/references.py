"""The suite's reference programs and how the project compares with them.

A bare-JAX and a PyTorch script (`jax_ref.py`, `torch_ref.py` in the
suite's `reference_dir`: the same LisaCNN, the same RP2 attack) run in
subprocesses, interleaved with the project's workloads (`bench.suite`);
each prints a correctness line, then one benchmark JSON line.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import os
import subprocess
import sys
from typing import Any

import ml_collections


def reference(script: str, args: list[str], *, python: str = sys.executable,
              timeout_s: float = 3600) -> dict[str, Any]:
  """Runs a reference script and returns its benchmark JSON line.

  The scripts print a correctness line first (the RP2 facts) and exit with
  status 2 when it fails; that is raised here, as is any other failure.
  """
  proc = subprocess.run([python, script, *args], capture_output=True,
                        text=True, timeout=timeout_s, check=False)
  lines = [json.loads(line) for line in proc.stdout.splitlines()
           if line.startswith("{")]
  if proc.returncode != 0 or len(lines) < 2:
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise RuntimeError(f"reference {os.path.basename(script)} {' '.join(args)}"
                       f" failed (exit {proc.returncode}): {tail}")
  row = dict(lines[-1])
  mode = row.get("mode", "")
  row["impl"] = f"{row.get('framework', '?')} reference" + (
      f" ({mode})" if mode else "")
  row["correctness_pass"] = bool(lines[0].get("pass"))
  return row


def has_torch(python: str) -> bool:
  """Whether `python` can import torch (the PyTorch reference needs it)."""
  try:
    proc = subprocess.run([python, "-c", "import torch"], capture_output=True,
                          check=False)
  except OSError:  # no such interpreter
    return False
  return proc.returncode == 0


def reference_jobs(config: ml_collections.ConfigDict
                   ) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
  """The reference runs of the suite `config` (configs/benchmark.py), as
  (label, thunk) in the order they run within one repetition: for the
  bare-JAX script of `reference_dir`, and the PyTorch one where
  `torch_python` imports torch, the train section and the grid in each of
  `reference_modes`. None without a `reference_dir`."""
  ref_dir = config.reference_dir
  if not ref_dir:
    return []
  if not os.path.isfile(os.path.join(ref_dir, "jax_ref.py")):
    raise ValueError(f"reference_dir={ref_dir!r} has no jax_ref.py; give the "
                     "folder of the reference scripts or '' to skip them")
  torch_python = config.torch_python or sys.executable
  frameworks = [("jax", sys.executable)]
  if (os.path.isfile(os.path.join(ref_dir, "torch_ref.py"))
      and has_torch(torch_python)):
    frameworks.append(("torch", torch_python))
  grid_args = ["--rp2grid", "--S", str(config.grid_steps),
               "--T", str(config.num_transforms)]
  jobs = []
  for name, python in frameworks:
    script = os.path.join(ref_dir, f"{name}_ref.py")
    if "train" in config.sections:
      jobs.append((f"{name} reference train", lambda s=script, p=python:
                   reference(s, ["--train", "--steps", str(config.train_steps)],
                             python=p)))
    if "grid" in config.sections:
      for mode in (f"--{m}" for m in config.reference_modes):
        jobs.append((f"{name} reference grid {mode[2:]}",
                     lambda s=script, p=python, m=mode:
                     reference(s, [*grid_args, m], python=p)))
  return jobs


def ratios(medians: list[dict[str, Any]]) -> dict[str, float]:
  """How the project compares with the references (from
  `suite.median_rows`).

  grid: our best `total_s` (attack + metrics) over the best reference
  `wall_s` of each framework (> 1: we are slower; the issue's goal for the
  bare-JAX one is <= 1.10). train: our best images/s over theirs (> 1: we
  are faster).
  """
  def best(bench, key, prefix, pick):
    values = [r[key] for r in medians
              if r["bench"] == bench and r["impl"].startswith(prefix)]
    return pick(values) if values else None

  out = {}
  ours_grid = best("rp2grid", "total_s", "blurnet_jax", min)
  ours_train = best("train", "images_per_s", "blurnet_jax", max)
  for framework in ("jax", "torch"):
    ref_grid = best("rp2grid", "wall_s", f"{framework} reference", min)
    if ours_grid and ref_grid:
      out[f"grid_time_vs_{framework}_reference"] = round(
          ours_grid / ref_grid, 3)
    ref_train = best("train", "images_per_s", f"{framework} reference", max)
    if ours_train and ref_train:
      out[f"train_speed_vs_{framework}_reference"] = round(
          ours_train / ref_train, 3)
  return out
