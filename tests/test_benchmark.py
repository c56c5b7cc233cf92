"""launch.benchmark's measurements (blurnet_jax.bench): medians, ratios,
reading the reference scripts' output, the renderer's speed, each defence's
train step against the baseline's, the named override that picks a
measurement and the launcher that runs it; the populations and scaling
measurements, and the defences' runlocal run through the launcher, under
`-m slow`."""

import json
import math
import os
import subprocess
import sys

import pytest

from blurnet_jax.bench import defences
from blurnet_jax.bench import populations
from blurnet_jax.bench import references
from blurnet_jax.bench import render
from blurnet_jax.bench import scaling
from blurnet_jax.bench import suite

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fake_reference(tmp_path, lines, code=0):
  script = tmp_path / "fake_ref.py"
  body = "\n".join(f"print({line!r})" for line in lines)
  script.write_text(f"import sys\n{body}\nsys.exit({code})\n")
  return str(script)


def test_reference_returns_the_benchmark_line(tmp_path):
  script = _fake_reference(tmp_path, [
      '{"check": "correctness", "pass": true}',
      "some log line",
      '{"bench": "rp2grid", "framework": "jax", "mode": "sequential", '
      '"wall_s": 81.5}'])
  row = references.reference(script, ["--rp2grid"])
  assert row["wall_s"] == 81.5
  assert row["impl"] == "jax reference (sequential)"
  assert row["correctness_pass"] is True


def test_a_failing_reference_is_one_clear_error(tmp_path):
  script = _fake_reference(tmp_path, ['{"check": "correctness", '
                                      '"pass": false}'], code=2)
  with pytest.raises(RuntimeError, match=r"failed \(exit 2\)"):
    references.reference(script, ["--rp2grid"])


def test_median_rows_and_ratios():
  rows = [
      {"bench": "rp2grid", "impl": "blurnet_jax (chunk 1)", "total_s": t,
       "wall_s": t - 1} for t in (10.0, 30.0, 12.0)] + [
      {"bench": "rp2grid", "impl": "jax reference (batched(vmap))",
       "wall_s": 20.0},
      {"bench": "rp2grid", "impl": "jax reference (sequential)",
       "wall_s": 16.0},
      {"bench": "train", "impl": "blurnet_jax (auto)", "images_per_s": 900.0},
      {"bench": "train", "impl": "torch reference", "images_per_s": 1500.0}]
  medians = suite.median_rows(rows)
  ours = [m for m in medians if m["impl"] == "blurnet_jax (chunk 1)"][0]
  assert ours["runs"] == 3 and ours["total_s"] == 12.0
  # Our best total over the best reference wall; train as a speed ratio.
  assert references.ratios(medians) == {
      "grid_time_vs_jax_reference": 0.75,
      "train_speed_vs_torch_reference": 0.6}
  assert "blurnet_jax (chunk 1)" in suite.format_table(medians)


def test_train_throughput_runs_the_real_step():
  row = suite.train_throughput(batch=8, steps=2, warmup=1)
  assert row["bench"] == "train" and row["images_per_s"] > 0
  assert row["impl"] == "blurnet_jax (auto)"


def test_render_speed_counts_what_it_renders():
  result = render.render_speed(1, workers=2, repeats=1)
  assert result["images"] == 18 and result["chunk"] == 512
  assert [r["workers"] for r in result["results"]] == [1, 2]
  assert all(r["best"] > 0 and r["runs"] == [r["best"]]
             for r in result["results"])
  table = render.format_render_speed(result)
  assert table.splitlines()[0].split()[0] == "workers"
  with pytest.raises(ValueError, match="per_class must be an integer >= 1"):
    render.render_speed(0)


def test_lists_are_tuples_and_bad_ones_say_so():
  from configs import benchmark as benchmark_configs  # pylint: disable=g-import-not-at-top
  c = benchmark_configs.get_config("runlocal")
  assert c.sections == ("train", "grid", "data") and c.grid_chunks == ()
  assert suite._chunks((1, 0)) == [1, 0]  # pylint: disable=protected-access
  assert 0 in suite._chunks(())  # pylint: disable=protected-access
  with pytest.raises(ValueError, match=r"grid_chunks=\('1',\) must be"):
    suite._chunks(("1",))  # pylint: disable=protected-access
  c.sections = ("gird",)
  with pytest.raises(ValueError, match=r"sections=\('gird',\): give a tuple"):
    suite.run_benchmark(c, "/nonexistent")


def test_a_named_override_picks_each_measurement():
  from configs import benchmark as benchmark_configs  # pylint: disable=g-import-not-at-top
  from configs import sweep as sweep_configs  # pylint: disable=g-import-not-at-top
  for name in ("suite", "render", "populations", "scaling", "defences"):
    assert benchmark_configs.get_config(f"{name},runlocal").measure == name
  assert benchmark_configs.get_config().measure == "suite"
  with pytest.raises(ValueError, match="pick at most one of suite, render"):
    benchmark_configs.get_config("render,scaling")
  # populations times configs/sweep.py's sweep; scaling docs/multihost.md's.
  for arg in ("", "penalty=tv", "runlocal"):
    population = benchmark_configs.get_config(
        f"populations,{arg}").population.to_dict()
    expected = sweep_configs.get_config(arg).to_dict()
    del expected["distributed"]  # the job's is the benchmark's own
    assert population == expected, arg
  scaling = benchmark_configs.get_config("scaling").population
  assert scaling.sweep.alphas == sweep_configs.ALPHAS["linf"][:2]
  assert (scaling.sweep.seeds, scaling.batch_size) == ((0, 1, 2, 3), 64)
  assert len(benchmark_configs.get_config(
      "scaling,runlocal").population.sweep.seeds) == 1


def _check_defence_rows(result, variants, batch):
  """A row per variant, in order; the baseline's ratio exactly 1; every
  ratio the seconds over the baseline's; positive finite timings."""
  rows = result["rows"]
  assert [r["variant"] for r in rows] == list(variants)
  base = rows[0]["seconds_per_step"]
  assert rows[0]["x_baseline"] == 1.0
  for r in rows:
    for key in ("seconds_per_step", "images_per_s", "compile_seconds"):
      assert math.isfinite(r[key]) and r[key] > 0, (r["variant"], key)
    assert r["x_baseline"] == round(r["seconds_per_step"] / base, 4)
    assert r["images_per_s"] == round(
        batch * r["members"] / r["seconds_per_step"], 1)
  table = defences.format_defence_speed(result).splitlines()
  assert table[0].split()[:2] == ["variant", "defence"]
  assert [l.split()[0] for l in table[1:-1]] == list(variants)


def test_defences_builds_each_variant_as_the_studies_train_it():
  from configs import benchmark as benchmark_configs  # pylint: disable=g-import-not-at-top
  c = benchmark_configs.get_config("defences")
  assert c.defences.variants[0] == "baseline" and c.defences.seeds == 2
  block = benchmark_configs.get_config("defences,runlocal").defences
  assert block.variants == ("baseline", "pgd_at", "doa", "smoothing")
  assert (block.steps, block.batch) == (3, 16)
  configs = benchmark_configs.defence_configs(block)
  assert [c.defence.kind for c in configs.values()] == [
      "none", "pgd_mask", "doa", "smoothing"]
  for config in configs.values():
    assert config.batch_size == 16
    assert config.sweep.seeds == (0, 1) and len(config.sweep.alphas) == 1
  # Every ratio is against the baseline: none is one clear line, before
  # anything is built.
  block.variants = ("pgd_at", "doa")
  with pytest.raises(ValueError, match=r"must include 'baseline': every "
                     "ratio is against the baseline's seconds per step"):
    defences.defence_speed(benchmark_configs.defence_configs(block))


@pytest.mark.slow
def test_defences_times_each_variant_against_the_baseline():
  from configs import benchmark as benchmark_configs  # pylint: disable=g-import-not-at-top
  # runlocal's block, two variants of cheap compiles (the launcher's test
  # under -m slow runs all of runlocal's).
  block = benchmark_configs.get_config("defences,runlocal").defences
  block.variants = ("baseline", "smoothing")
  block.seeds, block.batch = 1, 4
  result = defences.defence_speed(
      benchmark_configs.defence_configs(block), steps=1, repeats=2)
  _check_defence_rows(result, block.variants, 4)
  assert [r["defence"] for r in result["rows"]] == ["none", "smoothing"]
  assert all(len(r["runs"]) == 2 for r in result["rows"])
  assert (result["steps"], result["batch"], result["repeats"]) == (1, 4, 2)


def _launch(*args):
  return subprocess.run(
      [sys.executable, "-m", "launch.benchmark", *args], cwd=REPO,
      capture_output=True, text=True, timeout=300, check=False)


def test_the_launcher_runs_the_measurement_the_config_names():
  out = _launch("--config=configs/benchmark.py:render",
                "--config.render.per_class=1", "--config.render.repeats=1",
                "--config.render.workers=2")
  assert out.returncode == 0, out.stderr[-2000:]
  lines = out.stdout.splitlines()
  assert lines[0].split()[0] == "workers"
  result = json.loads(lines[-1])
  assert result["images"] == 18
  assert [r["workers"] for r in result["results"]] == [1, 2]
  # The suite writes benchmark.json: no workdir is one line.
  out = _launch("--config=configs/benchmark.py:runlocal")
  assert out.returncode == 2, out.stderr[-2000:]
  errors = [l for l in out.stderr.splitlines() if l.startswith("error:")]
  assert errors == ["error: the suite writes benchmark.json: give "
                    "--workdir=DIR"]


@pytest.mark.slow
def test_populations_and_scaling_time_the_configured_sweep():
  from configs import benchmark as benchmark_configs  # pylint: disable=g-import-not-at-top
  config = benchmark_configs.get_config("populations,runlocal").population
  config.batch_size = 8
  row = populations.population_vs_singles(config, steps=1)
  assert (row["members"], row["steps"], row["default_chunk"]) == (2, 1, 1)
  assert set(row["population_seconds_by_chunk"]) == {"1", "2"}
  assert row["single_runs_seconds"] > 0
  sweep_row = scaling.time_sweep(config, steps=1)
  grid_row = scaling.time_grid(config, targets=2, steps=1)
  assert (sweep_row["workload"], sweep_row["members"]) == ("sweep", 2)
  assert (grid_row["workload"], grid_row["targets"]) == ("grid", 2)
  assert sweep_row["processes"] == grid_row["processes"] == 1
  assert sweep_row["seconds"] > 0 and grid_row["seconds"] > 0


@pytest.mark.slow
def test_the_launcher_times_runlocal_defences():
  out = _launch("--config=configs/benchmark.py:defences,runlocal")
  assert out.returncode == 0, out.stderr[-2000:]
  lines = out.stdout.splitlines()
  result = json.loads(lines[-1])
  variants = ("baseline", "pgd_at", "doa", "smoothing")
  _check_defence_rows(result, variants, 16)
  assert lines[0].split()[:2] == ["variant", "defence"]
  assert all(r["members"] == 2 for r in result["rows"])
