"""launch.benchmark: medians, ratios, reading the reference scripts' output."""

import pytest

from blurnet_jax import benchmark


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
  row = benchmark.reference(script, ["--rp2grid"])
  assert row["wall_s"] == 81.5
  assert row["impl"] == "jax reference (sequential)"
  assert row["correctness_pass"] is True


def test_a_failing_reference_is_one_clear_error(tmp_path):
  script = _fake_reference(tmp_path, ['{"check": "correctness", '
                                      '"pass": false}'], code=2)
  with pytest.raises(RuntimeError, match=r"failed \(exit 2\)"):
    benchmark.reference(script, ["--rp2grid"])


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
  medians = benchmark.median_rows(rows)
  ours = [m for m in medians if m["impl"] == "blurnet_jax (chunk 1)"][0]
  assert ours["runs"] == 3 and ours["total_s"] == 12.0
  # Our best total over the best reference wall; train as a speed ratio.
  assert benchmark.ratios(medians) == {
      "grid_time_vs_jax_reference": 0.75,
      "train_speed_vs_torch_reference": 0.6}
  assert "blurnet_jax (chunk 1)" in benchmark.format_table(medians)


def test_train_throughput_runs_the_real_step():
  row = benchmark.train_throughput(batch=8, steps=2, warmup=1)
  assert row["bench"] == "train" and row["images_per_s"] > 0
  assert row["impl"] == "blurnet_jax (auto)"


def test_render_speed_counts_what_it_renders():
  result = benchmark.render_speed(1, workers=2, repeats=1)
  assert result["images"] == 18 and result["chunk"] == 512
  assert [r["workers"] for r in result["results"]] == [1, 2]
  assert all(r["best"] > 0 and r["runs"] == [r["best"]]
             for r in result["results"])
  table = benchmark.format_render_speed(result)
  assert table.splitlines()[0].split()[0] == "workers"
  with pytest.raises(ValueError, match="per_class must be an integer >= 1"):
    benchmark.render_speed(0)


def test_lists_are_tuples_and_bad_ones_say_so():
  from configs import benchmark as benchmark_configs  # pylint: disable=g-import-not-at-top
  c = benchmark_configs.get_config("runlocal")
  assert c.sections == ("train", "grid", "data") and c.grid_chunks == ()
  assert benchmark._chunks((1, 0)) == [1, 0]  # pylint: disable=protected-access
  assert 0 in benchmark._chunks(())  # pylint: disable=protected-access
  with pytest.raises(ValueError, match=r"grid_chunks=\('1',\) must be"):
    benchmark._chunks(("1",))  # pylint: disable=protected-access
  c.sections = ("gird",)
  with pytest.raises(ValueError, match=r"sections=\('gird',\): give a tuple"):
    benchmark.run_benchmark(c, "/nonexistent")
