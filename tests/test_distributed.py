"""Multi-process runs with JAX's multi-controller runtime, tested with real
local processes: 2 processes x 2 CPU devices (gloo collectives over the
loopback) against 1 process x 4 forced host devices, for a sweep, a target
grid and data-parallel training; a process killed mid-run; bad setups.

Every spawned process has a hard timeout and is killed by the test.
"""

import contextlib
import json
import os
from pathlib import Path
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from blurnet_jax import distributed
from blurnet_jax.data import datasets
from tests.helpers import tiny_data

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240  # hard bound on any spawned process


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def env_for(devices: int) -> dict[str, str]:
  return dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu",
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
              BLURNET_JAX_COMPILATION_CACHE="off")


@contextlib.contextmanager
def processes(commands: list[list[str]], devices: int, cwd: Path):
  """Starts one process per command; kills whatever is left on exit."""
  procs = []
  try:
    for i, cmd in enumerate(commands):
      procs.append(subprocess.Popen(
          cmd, env=env_for(devices), cwd=str(cwd), text=True,
          stdout=open(cwd / f"out{i}.txt", "w", encoding="utf-8"),
          stderr=open(cwd / f"err{i}.txt", "w", encoding="utf-8")))
    yield procs
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
      p.wait()


def finish(procs, cwd: Path, timeout: float = TIMEOUT_S):
  """Waits for every process (at most `timeout` s in all); returns
  [(returncode, stdout, stderr)]."""
  deadline = time.monotonic() + timeout
  out = []
  for i, p in enumerate(procs):
    try:
      p.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()
    out.append((p.returncode, (cwd / f"out{i}.txt").read_text(),
                (cwd / f"err{i}.txt").read_text()))
  return out


def dist_flags(port: int, n: int, i: int, **extra) -> list[str]:
  fields = dict(coordinator_address=f"127.0.0.1:{port}", num_processes=n,
                process_id=i, initialization_timeout=60, heartbeat_timeout=5)
  fields.update(extra)
  return [f"--config.distributed.{k}={v}" for k, v in fields.items()]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
  """The tiny synthetic set, built once here so no process races on it."""
  from configs.data import data_config  # pylint: disable=g-import-not-at-top
  path = tmp_path_factory.mktemp("tfds_dist")
  datasets.prepare(tiny_data(data_config(), path))
  return path


# ------------------------------------------------- same numbers, 2 x 2 --

_WORKER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from blurnet_jax import distributed
    n, i, port, data, workdir, what = sys.argv[1:]
    n, i = int(n), int(i)
    distributed.initialize(distributed.Setup.from_config(dict(
        coordinator_address=f"127.0.0.1:{port}" if n > 1 else "",
        num_processes=n, process_id=i, initialization_timeout=60,
        heartbeat_timeout=10)))
    import jax, numpy as np
    from blurnet_jax import sweep, train
    from blurnet_jax.attacks import RP2Config, TransformConfig, grid
    from blurnet_jax.data import masks, synthetic
    from tests.helpers import linear_apply, linear_params, tiny_train_config
    workdir = Path(workdir)
    out = {"devices": jax.device_count(), "processes": jax.process_count()}
    if "sweep" in what:
      config = tiny_train_config("tv_1e-4", data, num_train_steps=4,
                                 eval_every=4, checkpoint_every=4,
                                 batch_size=16)
      # 6 members: padded to 8 over 4 devices
      config.sweep = dict(alphas=(0.0, 1e-3), seeds=(0, 1, 2), chunk=0)
      rows, params, summary = sweep.train_population(config,
                                                     workdir / "sweep")
      out["sweep_members"] = [(r["alpha"], r["seed"]) for r in rows]
      out["sweep_acc"] = [r["test_accuracy"] for r in rows]
      out["sweep_loss"] = [r["test_loss"] for r in rows]
      out["sweep_sums"] = [[float(np.abs(np.asarray(x, np.float64)).sum())
                            for x in jax.tree.leaves(p)] for p in params]
      out["sweep_devices"] = summary["devices"]
    if "grid" in what:
      cfg = RP2Config(steps=3, num_transforms=1,
                      transforms=TransformConfig.physical())
      res = grid.attack_targets(linear_apply, linear_params(), 
                                synthetic.synthetic_victims(4, seed=0),
                                masks.get_mask("camouflage"), [1, 5, 12],
                                jax.random.key(7), cfg=cfg, chunk=0)
      out["grid_noise"] = np.asarray(res["noise"]).ravel()[::97].tolist()
      out["grid_losses"] = np.asarray(res["losses"]).tolist()
    if "budgets" in what:
      from blurnet_jax.attacks import pgd
      from blurnet_jax.study.robustness import attacks as robustness_attacks
      victims = synthetic.synthetic_victims(4, seed=0)
      mask = masks.get_mask("camouflage").astype(np.float32)
      adv = robustness_attacks.budget_curve(
          "pgd", linear_apply, linear_params(), victims,
          np.stack([mask] * 3), jax.random.key(3), [0.1, 0.3, 1.0],
          pgd.PGDConfig(steps=3))
      out["budget_shape"] = list(adv.shape)
      out["budget_l1"] = np.abs(adv - victims[None]).sum((1, 2, 3, 4)).tolist()
    if "train" in what:
      config = tiny_train_config("baseline", data, num_train_steps=6,
                                 eval_every=6, checkpoint_every=3,
                                 batch_size=16)
      state, results = train.train_and_evaluate(config, workdir / "train")
      out["train_params"] = [np.asarray(x).ravel()[::53].tolist()
                             for x in jax.tree.leaves(state.params)]
      out["train_loss"] = results["test"]["loss"]
    print("RESULT " + json.dumps(out), flush=True)
""")


def _worker(tmp: Path, n: int, devices: int, data: Path, what: str):
  port = free_port()
  tmp.mkdir(parents=True, exist_ok=True)
  cmds = [[sys.executable, "-c", _WORKER, str(n), str(i), str(port),
           str(data), str(tmp / "work"), what] for i in range(n)]
  with processes(cmds, devices, tmp) as procs:
    done = finish(procs, tmp)
  results = []
  for rc, out, err in done:
    assert rc == 0, err[-3000:]
    line = [l for l in out.splitlines() if l.startswith("RESULT ")][-1]
    results.append(json.loads(line[len("RESULT "):]))
  return results, tmp / "work"


@pytest.fixture(scope="module")
def two_by_two(data_dir, tmp_path_factory):
  return _worker(tmp_path_factory.mktemp("p2"), 2, 2, data_dir, "sweep,train")


@pytest.fixture(scope="module")
def one_by_four(data_dir, tmp_path_factory):
  return _worker(tmp_path_factory.mktemp("p1"), 1, 4, data_dir, "sweep,train")


def test_grid_and_budgets_of_two_processes_match_one_process(data_dir,
                                                           tmp_path):
  (two, two_b), _ = _worker(tmp_path / "p2", 2, 2, data_dir, "grid,budgets")
  (one,), _ = _worker(tmp_path / "p1", 1, 4, data_dir, "grid,budgets")
  assert (two["devices"], two["processes"]) == (4, 2)
  assert (one["devices"], one["processes"]) == (4, 1)
  assert two == two_b  # every process gets every (gathered) result
  assert len(two["grid_losses"]) == 3  # 3 targets, padded to 4 and cut
  # Each target runs alone on its device: the same numbers up to rounding.
  np.testing.assert_allclose(two["grid_noise"], one["grid_noise"], rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(two["grid_losses"], one["grid_losses"],
                             rtol=1e-5)
  assert not np.allclose(two["grid_losses"][0], two["grid_losses"][1])
  # robustness budgets: 3, padded to 4 over the devices and cut
  assert two["budget_shape"] == [3, 4, 32, 32, 3]
  np.testing.assert_allclose(two["budget_l1"], one["budget_l1"], rtol=1e-5)
  assert two["budget_l1"][0] < two["budget_l1"][1] < two["budget_l1"][2]


@pytest.mark.slow
def test_two_processes_see_four_devices_and_agree(two_by_two):
  (a, b), _ = two_by_two
  assert (a["devices"], a["processes"]) == (4, 2)
  assert a["sweep_devices"] == 4
  assert a == b  # every process gets every (gathered) result


@pytest.mark.slow
def test_sweep_of_two_processes_matches_one_process(two_by_two, one_by_four):
  (two, _), _ = two_by_two
  (one,), _ = one_by_four
  assert one["devices"] == 4 and one["processes"] == 1
  want = [[a, s] for a in (0.0, 1e-3) for s in (0, 1, 2)]
  assert two["sweep_members"] == one["sweep_members"] == want  # pads dropped
  # The same program over the same 4 devices: only the order of float sums
  # in the collectives may differ.
  np.testing.assert_allclose(two["sweep_acc"], one["sweep_acc"], atol=1e-9)
  np.testing.assert_allclose(two["sweep_loss"], one["sweep_loss"], rtol=1e-5)
  np.testing.assert_allclose(two["sweep_sums"], one["sweep_sums"], rtol=1e-5)
  # different seeds trained different members (the first leaf, a bias,
  # sums to ~0.06 for every seed: compare every leaf, to 1e-6)
  assert len({tuple(np.round(s, 6)) for s in two["sweep_sums"][:3]}) == 3


@pytest.mark.slow
def test_data_parallel_training_matches_one_device(two_by_two, one_by_four,
                                                   data_dir, tmp_path):
  (two, _), work = two_by_two
  (four,), _ = one_by_four
  (one,), _ = _worker(tmp_path, 1, 1, data_dir, "train")
  assert one["devices"] == 1
  # Gradients averaged by an all-reduce over 4 devices sum in another order
  # than one device's mean; Adam turns a near-zero gradient's rounding into
  # up to a learning-rate-sized step on a rare weight, hence the atol. A
  # gradient of a quarter batch (no averaging) moves every weight by ~1e-3.
  for got in (two, four):
    for a, b in zip(got["train_params"], one["train_params"]):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5)
    np.testing.assert_allclose(got["train_loss"], one["train_loss"],
                               rtol=1e-4)
  # process 0 wrote the checkpoints and results, once
  assert (work / "train" / "results.json").is_file()
  assert sorted(p.name for p in (work / "train" / "checkpoints").glob(
      "*.msgpack")) == ["ckpt_00000003.msgpack", "ckpt_00000006.msgpack"]
  lines = (work / "train" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["step"] for l in lines] == [2, 4, 6]


# ------------------------------------------------------- a lost process --

def _train_cmd(data: Path, workdir: Path, port: int, n: int, i: int,
               steps: int, extra=(), heartbeat: int = 5) -> list[str]:
  return [sys.executable, "-m", "launch.train",
          "--config=configs/train.py:variant=baseline,runlocal",
          f"--workdir={workdir}", "--compilation_cache=off",
          f"--config.data.data_dir={data}", "--config.data.train_per_class=4",
          "--config.data.test_per_class=2", "--config.data.workers=1",
          "--config.batch_size=16", f"--config.num_train_steps={steps}",
          "--config.warmup_steps=2", "--config.log_every=1",
          "--config.eval_every=1000", "--config.checkpoint_every=2",
          *dist_flags(port, n, i, heartbeat_timeout=heartbeat), *extra]


@pytest.mark.slow
@pytest.mark.parametrize("killed", [1, 0])
def test_a_killed_process_stops_the_other_in_one_line_and_a_restart_resumes(
    data_dir, tmp_path, killed):
  workdir = tmp_path / "work"
  port = free_port()
  steps = 400  # far more than run before the kill
  # The survivor names the lost process once the coordination service has
  # missed its heartbeats for `heartbeat` s; the bound below allows that.
  cmds = [_train_cmd(data_dir, workdir, port, 2, i, steps, heartbeat=10)
          for i in (0, 1)]
  with processes(cmds, 2, tmp_path) as procs:
    latest = workdir / "checkpoints" / "LATEST"
    deadline = time.monotonic() + TIMEOUT_S
    while not latest.exists() and time.monotonic() < deadline:
      assert procs[0].poll() is None, (tmp_path / "err0.txt").read_text()
      time.sleep(0.2)
    assert latest.exists()
    procs[killed].send_signal(signal.SIGKILL)
    t = time.monotonic()
    done = finish(procs, tmp_path, timeout=60)
    seconds = time.monotonic() - t
  rc, _, _ = done[1 - killed]
  # No hang: the survivor stops within the bound (its next collective fails
  # at once, every step has one; naming the lost process takes up to the
  # heartbeat timeout).
  assert seconds < 45
  assert rc not in (0, None)
  # One line naming the lost process, whichever way the loss reached the
  # survivor: a failed collective (its own line, status 3) or JAX's runtime
  # ending it from a native thread (the sentinel's line, written just after
  # the process ended: wait for it).
  err_file = tmp_path / f"err{1 - killed}.txt"
  deadline = time.monotonic() + 15
  while True:
    err = err_file.read_text()
    lines = err.strip().splitlines()
    if (lines and lines[-1].startswith("error:")) or (
        time.monotonic() > deadline):
      break
    time.sleep(0.2)
  errors = [l for l in lines if l.startswith("error:")]
  assert len(errors) == 1, err[-3000:]
  assert lines[-1].startswith(f"error: process {killed}"), err[-3000:]
  assert "was lost" in lines[-1] and "restart" in lines[-1]
  # JAX's native logs went to the runtime log, not to the terminal
  assert "coordination_service" not in err, err[-3000:]
  saved = int(latest.read_text().strip()[len("ckpt_"):-len(".msgpack")])
  assert 2 <= saved < steps

  # Restart both with a short budget: they resume from the checkpoint.
  port = free_port()
  resume = saved + 2
  cmds = [_train_cmd(data_dir, workdir, port, 2, i, resume) for i in (0, 1)]
  restart = tmp_path / "restart"
  restart.mkdir()
  with processes(cmds, 2, restart) as procs:
    done = finish(procs, restart)
  for rc, _, err in done:
    assert rc == 0, err[-3000:]
  lines = [json.loads(l) for l in
           (workdir / "metrics.jsonl").read_text().splitlines()]
  after = [l["step"] for l in lines if l["step"] > saved]
  assert after[-2:] == [saved + 1, saved + 2]
  assert json.loads((workdir / "results.json").read_text())["steps"] == resume


# ----------------------------------------------------------- bad setups --

def test_an_unreachable_coordinator_is_one_line(data_dir, tmp_path):
  port = free_port()  # nobody listens there
  cmd = _train_cmd(data_dir, tmp_path / "w", port, 2, 1, 2,
                   extra=["--config.distributed.initialization_timeout=2"])
  t = time.monotonic()
  with processes([cmd], 2, tmp_path) as procs:
    ((rc, _, err),) = finish(procs, tmp_path, timeout=60)
  assert rc == 2 and time.monotonic() - t < 30
  assert err.strip().splitlines()[-1] == (
      f"error: coordinator 127.0.0.1:{port} is not reachable after 2 s "
      "(distributed.initialization_timeout); start process 0 there, or check "
      "the address and port")


def test_processes_with_different_configs_are_one_line(data_dir, tmp_path):
  port = free_port()
  cmds = [_train_cmd(data_dir, tmp_path / "w", port, 2, i, 2 + i)
          for i in (0, 1)]
  with processes(cmds, 2, tmp_path) as procs:
    done = finish(procs, tmp_path, timeout=120)
  for rc, _, err in done:
    assert rc == 2, err[-3000:]
    assert err.strip().splitlines()[-1].startswith(
        "error: process(es) [1] were started with another config than "
        "process 0"), err[-3000:]
  assert not (tmp_path / "w" / "checkpoints").exists()


def test_a_batch_the_devices_do_not_divide_is_one_line(data_dir, tmp_path):
  cmd = _train_cmd(data_dir, tmp_path / "w", 0, 1, 0, 2,
                   extra=["--config.batch_size=10",
                          "--config.distributed.coordinator_address="])
  with processes([cmd], 4, tmp_path) as procs:
    ((rc, _, err),) = finish(procs, tmp_path, timeout=120)
  assert rc == 2
  assert err.strip().splitlines()[-1] == (
      "error: batch_size=10 cannot be split over 4 devices (1 process(es)); "
      "use a multiple of 4, e.g. --config.batch_size=12")


@pytest.mark.parametrize("block, match", [
    (dict(num_processes=2, process_id=0), "needs a coordinator"),
    (dict(coordinator_address="localhost", num_processes=2, process_id=0),
     "must be HOST:PORT"),
    (dict(coordinator_address="h:1", num_processes=2, process_id=2),
     "0 <= process_id < num_processes"),
    (dict(coordinator_address="h:1", num_processes="two", process_id=0),
     "must be an int"),
])
def test_an_incomplete_setup_says_what_is_missing(block, match):
  with pytest.raises(ValueError, match=match):
    distributed.Setup.from_config(block, environ={})


def test_the_environment_fills_unset_fields_and_the_config_wins():
  env = {distributed.ENV_COORDINATOR: "h:1",
         distributed.ENV_NUM_PROCESSES: "4",
         distributed.ENV_PROCESS_ID: "3"}
  setup = distributed.Setup.from_config(
      dict(coordinator_address="", num_processes=-1, process_id=1), env)
  assert (setup.coordinator_address, setup.num_processes,
          setup.process_id) == ("h:1", 4, 1)
  assert setup.multi_process
  assert not distributed.Setup.from_config(None, environ={}).multi_process
  assert distributed.Setup.from_config(
      dict(coordinator_address="auto"), environ={}).multi_process


def test_the_config_hash_ignores_only_the_process_id():
  a = {"lr": 1e-3, "distributed": {"process_id": 0, "num_processes": 2}}
  b = {"lr": 1e-3, "distributed": {"process_id": 1, "num_processes": 2}}
  c = {"lr": 2e-3, "distributed": {"process_id": 0, "num_processes": 2}}
  assert distributed.config_fingerprint(a) == distributed.config_fingerprint(b)
  assert distributed.config_fingerprint(a) != distributed.config_fingerprint(c)
  assert distributed.config_fingerprint(a, "/w") != (
      distributed.config_fingerprint(a, "/v"))


# ------------------------------------------------------------- sentinel --

_RUNTIME_LOG = """\
E1202 18:57:58.468899   13664 coordination_service.cc:1549] [322] Use error \
polling to propagate the following error to all tasks: UNAVAILABLE: The \
following tasks are unhealthy (stopped sending heartbeats):
1
The tasks have crashed. Check the task logs for an earlier error.
F1202 18:57:58.469981   13675 client.h:80] Terminating process because the \
JAX distributed service detected fatal errors.
"""


def _sentinel(args, said: bytes) -> subprocess.CompletedProcess:
  script = Path(distributed.__file__).with_name("sentinel.py")
  return subprocess.run([sys.executable, str(script), *args], input=said,
                        capture_output=True, timeout=60, check=True)


def test_the_sentinel_names_the_lost_process_only_when_not_told_done(
    tmp_path):
  from blurnet_jax import sentinel  # pylint: disable=g-import-not-at-top
  assert sentinel.lost_processes(_RUNTIME_LOG) == [1]
  assert sentinel.lost_processes(
      "UNAVAILABLE: Task 3 heartbeat timeout. This indicates") == [3]
  assert sentinel.lost_processes("nothing to see") == []
  log = tmp_path / "runtime.log"
  log.write_text(_RUNTIME_LOG)
  # process 0 (the coordinator is itself): the log names process 1
  args = [f"127.0.0.1:{free_port()}", "0", "2", str(log)]
  assert _sentinel(args, b"done").stderr == b""
  line = _sentinel(args, b"").stderr.decode().strip()
  assert line.startswith("error: process 1 was lost (this is process 0 of 2"
                         ), line
  assert str(log) in line and line.endswith("the last checkpoint")
  # process 1 whose coordinator no longer answers: process 0 is lost
  line = _sentinel([f"127.0.0.1:{free_port()}", "1", "2", str(log)],
                   b"").stderr.decode().strip()
  assert line.startswith("error: process 0 (the coordinator) was lost "
                         "(this is process 1 of 2"), line
  # nothing in the log and the coordinator up: no process to blame
  with socket.socket() as up:
    up.bind(("127.0.0.1", 0))
    up.listen()
    empty = tmp_path / "empty.log"
    empty.write_text("")
    line = _sentinel([f"127.0.0.1:{up.getsockname()[1]}", "1", "2",
                      str(empty)], b"").stderr.decode().strip()
  assert line.startswith("error: this is process 1 of 2 and it was ended "
                         "outside Python"), line
