"""The vmapped alpha sweep: members equal single runs, sharding changes nothing."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from blurnet_jax import checkpoint
from blurnet_jax import distributed
from blurnet_jax import models
from blurnet_jax import plots
from blurnet_jax import sweep
from blurnet_jax import train
from tests.helpers import tiny_train_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sweep_config(data_dir, alphas=(0.0, 0.5), seeds=(0, 1)):
  config = tiny_train_config("linf_3x3", data_dir, num_train_steps=6,
                             eval_every=6, checkpoint_every=6)
  config.sweep = dict(alphas=alphas, seeds=seeds)
  return config


def test_every_member_equals_its_single_run(tiny_data_dir, tmp_path):
  config = _sweep_config(tiny_data_dir)
  rows = sweep.run_sweep(config, tmp_path / "sweep")
  assert [(r["alpha"], r["seed"]) for r in rows] == [
      (0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1)]
  summary = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
  assert len(summary["members"]) == 4
  png = plots.plot_sweep(rows, tmp_path / "sweep" / "sweep.png", title="t")
  assert png.stat().length > 1000
  pop_state, _ = checkpoint.restore(
      tmp_path / "sweep" / "checkpoints",
      sweep.create_population(config, models.model_from_config(
          config.model), [0.0, 0.0, 0.5, 0.5], [0, 1, 0, 1]))
  for i, (alpha, seed) in ((3, (0.5, 1)), (0, (0.0, 0))):
    single = tiny_train_config("linf_3x3", tiny_data_dir, num_train_steps=6,
                               eval_every=6, checkpoint_every=6, seed=seed)
    single.penalty.alpha = alpha
    state, results = train.train_and_evaluate(single, tmp_path / f"s{i}")
    member = jax.tree.map(lambda x, i=i: np.asarray(x[i]), pop_state.params)
    # Same function, different XLA programs (lax.map/vmap vs one model):
    # rounding differs, and Adam turns a near-zero gradient's rounding into
    # up to a learning-rate-sized step, so a rare element may differ by
    # ~1e-5. A wrong alpha, seed or key moves nearly every weight by ~1e-3.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                         atol=5e-5),
                 member, jax.device_get(state.params))
    np.testing.assert_allclose(rows[i]["test_accuracy"],
                               results["test"]["accuracy"], atol=1e-9)
  # different alphas really train different models
  a, b = (jax.tree.map(lambda x, i=i: np.asarray(x[i]), pop_state.params)
          for i in (1, 3))
  assert not np.allclose(a["blur"]["kernel"], b["blur"]["kernel"])


_SCRIPT = textwrap.dedent("""
    import json, sys, jax, numpy as np
    sys.path.insert(0, {repo!r})
    from blurnet_jax import checkpoint, sweep
    from tests.helpers import tiny_train_config
    config = tiny_train_config("tv_1e-4", {data!r}, num_train_steps=4,
                               eval_every=4, checkpoint_every=4)
    config.sweep = dict(alphas=(0.0, 1e-3), seeds=(0,))
    rows = sweep.run_sweep(config, {workdir!r})
    target = sweep.create_population(
        config, sweep.models.model_from_config(config.model), [0.0, 1e-3],
        [0, 0])
    state, _ = checkpoint.restore({workdir!r} + "/checkpoints", target)
    sums = [float(np.abs(np.asarray(x, np.float64)).sum())
            for x in jax.tree.leaves(state.params)]
    print("RESULT", json.dumps({{"devices": len(jax.local_devices()),
        "acc": [r["test_accuracy"] for r in rows], "sums": sums}}))
""")


def _run(data_dir, workdir, devices):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  out = subprocess.run(
      [sys.executable, "-c", _SCRIPT.format(repo=REPO, data=str(data_dir),
                                            workdir=str(workdir))],
      env=env, capture_output=True, text=True, timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  line = [l for l in out.stdout.splitlines() if l.startswith("RESULT")][-1]
  return json.loads(line[len("RESULT "):])


def test_sharded_over_two_devices_gives_the_same_numbers(tiny_data_dir,
                                                         tmp_path):
  one = _run(tiny_data_dir, tmp_path / "one", 1)
  two = _run(tiny_data_dir, tmp_path / "two", 2)
  assert one["devices"] == 1 and two["devices"] == 2
  np.testing.assert_allclose(one["acc"], two["acc"], atol=1e-9)
  # One member per device is a differently fused program than two members
  # vmapped on one: float32 sums reassociate, and 4 Adam steps (which
  # normalise small gradients) carry that to 1.5e-5 of a leaf's size on the
  # tiny set as it renders now (the test accuracies stay identical).
  np.testing.assert_allclose(one["sums"], two["sums"], rtol=1e-4)


def test_a_member_count_the_devices_do_not_divide_is_padded(monkeypatch):
  assert sweep.member_mesh(3) == (None, 3)  # one device: nothing to pad
  monkeypatch.setattr(jax, "device_count", lambda: 4)
  assert [distributed.padded_size(n) for n in (1, 4, 6, 9)] == [4, 4, 8, 12]
  padded = distributed.pad_leading({"a": np.arange(3), "b": np.eye(3)}, 4)
  np.testing.assert_array_equal(padded["a"], [0, 1, 2, 2])
  np.testing.assert_array_equal(padded["b"][3], [0, 0, 1])
