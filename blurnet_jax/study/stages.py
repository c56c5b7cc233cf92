"""The stage runner of the studies, and the stages both studies share
(data, train).

A stage is a function `(config, inputs) -> {result name: value}` that
computes and neither draws nor prints. A value is JSON-able (written to
WORKDIR/NAME.json) or a dict of numpy arrays (WORKDIR/NAME.npz, read back
without pickles: the images and spectra the figures are drawn from).
`run_stages` runs the stages in order with a header each, prints each
stage's summary (a function of its results), saves its results, records
its wall seconds in WORKDIR/stages.json, and with `resume` reads back the
results of every stage that stages.json lists instead of running it again.
In a multi-process run every stage ends at a barrier, so no process reads
what process 0 has not finished writing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import ml_collections
import numpy as np

from blurnet_jax import distributed
from blurnet_jax import train
from blurnet_jax.data import datasets
from blurnet_jax.data import sources
from blurnet_jax.jsonio import jsonable, read_json, write_json
from blurnet_jax.progress import format_seconds
from blurnet_jax.study import zoo

#: The file of the stages' wall seconds (and of which stages are done).
SECONDS_FILE = "stages.json"
#: WORKDIR/stage_outputs.json: the results each finished stage wrote, so a
#: resumed run reads a stage back only while every one of them is there
#: (an optional result deleted by hand runs its stage again).
OUTPUTS_FILE = "stage_outputs.json"


class Stages:
  """`with stages("train"): ...` prints a header and records the seconds."""

  def __init__(self, names: tuple[str, ...]):
    self.names = names
    self.seconds: dict[str, float] = {}
    self.t0 = time.perf_counter()

  @contextlib.contextmanager
  def __call__(self, name: str) -> Iterator[None]:
    i = self.names.index(name) + 1
    print(f"\n== stage {i}/{len(self.names)}: {name} "
          f"(elapsed {format_seconds(time.perf_counter() - self.t0)}) ==",
          flush=True)
    t0 = time.perf_counter()
    yield
    distributed.barrier(f"stage {name}")
    self.seconds[name] = round(time.perf_counter() - t0, 1)
    print(f"== {name} done in {format_seconds(self.seconds[name])} ==",
          flush=True)


@dataclasses.dataclass
class StudyInputs:
  """What every study's stages share, built on first use, so a resumed run
  loads only what the stages it runs need; each study adds its own (its
  trained models, its victims)."""

  config: ml_collections.ConfigDict
  workdir: Path
  results: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def key(self) -> jax.Array:
    return jax.random.key(self.config.seed)

  @functools.cached_property
  def builder(self):
    return train.prepare_data(self.config.data)  # process 0 first

  @functools.cached_property
  def real(self) -> zoo.RP2Data:
    """The RP2 authors' model and its 40 real victims."""
    return zoo.rp2_data(self.config.rp2_dir)


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of a study.

  Attributes:
    name: its name in the progress headers and in stages.json.
    run: (config, inputs) -> {result name: value}; `inputs.results` holds
      the results of the stages before it.
    outputs: the result names it returns.
    summary: the console text of its results, or None.
    optional: those of `outputs` it may leave out (a resumed run leaves
      them out too).
  """

  name: str
  run: Callable[[ml_collections.ConfigDict, Any], dict[str, Any]]
  outputs: tuple[str, ...]
  summary: Callable[[dict[str, Any]], str] | None = None
  optional: tuple[str, ...] = ()

  def saved(self, workdir: Path, written: list[str] | None = None) -> bool:
    """Whether every result it must return, and every one of `written`
    (what its finished run wrote), is in `workdir`."""
    names = {n for n in self.outputs if n not in self.optional}
    names |= set(written or ())
    return all((workdir / f"{n}.json").exists()
               or (workdir / f"{n}.npz").exists() for n in names)


def _is_arrays(value: Any) -> bool:
  return (isinstance(value, dict) and bool(value)
          and all(isinstance(v, np.ndarray) for v in value.values()))


def save_result(workdir: Path, name: str, value: Any) -> Path:
  """Writes one result: NAME.npz for a dict of arrays, else NAME.json
  (atomically, process 0 only)."""
  if not _is_arrays(value):
    return write_json(workdir / f"{name}.json", value)
  path = workdir / f"{name}.npz"
  if distributed.is_writer():
    buffer = io.BytesIO()
    np.savez(buffer, **value)
    tmp = path.with_suffix(".npz.tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
  return path


def load_result(workdir: Path, name: str) -> Any:
  """One saved result (NAME.json or NAME.npz), or None when absent."""
  path = workdir / f"{name}.npz"
  if path.exists():
    try:
      with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
    except (ValueError, OSError) as e:
      raise ValueError(f"result file {str(path)!r} is corrupt ({e}); delete "
                       "it and run the study again to recompute it") from None
  path = workdir / f"{name}.json"
  return read_json(path, f"{name} results") if path.exists() else None


def _done_stages(workdir: Path, config: ml_collections.ConfigDict,
                 resume: bool) -> dict[str, float]:
  """The seconds of the stages a resumed run skips (none without resume);
  a workdir of another config is an error, so no result of it is lost."""
  seconds_path, config_path = workdir / SECONDS_FILE, workdir / "config.json"
  if not (resume and seconds_path.exists()):
    return {}
  saved = read_json(config_path, "study config") if config_path.exists() else None
  if saved != json.loads(json.dumps(jsonable(config.to_dict()))):
    raise ValueError(
        f"{workdir} holds the results of another config; pass a new "
        "--workdir, or --noresume to run every stage again over them")
  return dict(read_json(seconds_path, "stage seconds"))


def run_stages(stages: tuple[Stage, ...], config: ml_collections.ConfigDict,
               inputs: Any, workdir: Path, *, resume: bool = True
               ) -> dict[str, float]:
  """Runs (or, with `resume`, reads back) every stage in order.

  Args:
    stages: the study's stages.
    config: the study config, saved to WORKDIR/config.json once its data
      block names the fingerprint of its files (`datasets.pin_data`).
    inputs: what the stages share; its `results` dict receives every
      stage's results as it goes.
    workdir: where the results are written.
    resume: read back the results of the stages WORKDIR/stages.json lists
      (written under the same config) instead of running them.

  Returns:
    The wall seconds of every stage (those read back: their first run's).
  """
  datasets.pin_data(config)  # the files checked before anything is written
  workdir.mkdir(parents=True, exist_ok=True)
  seconds = _done_stages(workdir, config, resume)
  written = (dict(read_json(workdir / OUTPUTS_FILE, "stage outputs"))
             if seconds and (workdir / OUTPUTS_FILE).exists() else {})
  write_json(workdir / "config.json", config.to_dict())
  write_json(workdir / SECONDS_FILE, seconds)
  timer = Stages(tuple(s.name for s in stages))
  for stage in stages:
    if stage.name in seconds and stage.saved(workdir,
                                             written.get(stage.name)):
      found = {n: load_result(workdir, n) for n in stage.outputs}
      inputs.results.update({n: v for n, v in found.items() if v is not None})
      print(f"== stage {stage.name}: read back from {workdir} ==", flush=True)
      continue
    with timer(stage.name):
      out = stage.run(config, inputs)
      required = set(stage.outputs) - set(stage.optional)
      if not required <= set(out) <= set(stage.outputs):
        raise ValueError(f"stage {stage.name} returned {sorted(out)}, not "
                         f"its outputs {stage.outputs}")
      for name, value in out.items():
        save_result(workdir, name, value)
      written[stage.name] = sorted(out)
      write_json(workdir / OUTPUTS_FILE, written)
      inputs.results.update(out)
      if stage.summary is not None:
        print(stage.summary(inputs.results), flush=True)
    seconds[stage.name] = timer.seconds[stage.name]
    write_json(workdir / SECONDS_FILE, seconds)
  return seconds


def data_stage(config, inputs) -> dict[str, Any]:
  """The data set prepared (`inputs.builder`): its name, path and the
  examples of each split, and for a real source the files it was built
  from (`source`: folder, files, bytes, fingerprint)."""
  del config
  summary = datasets.count_examples(inputs.builder)
  data = {k: summary[k] for k in ("name", "config", "path")} | {
      split: v["examples"] for split, v in summary["splits"].items()}
  if "source" in summary:
    data["source"] = summary["source"]
  return {"data": data}


def data_text(results) -> str:
  return "data: " + sources.data_line(results["data"])


def train_stage(config, inputs) -> dict[str, Any]:
  """Every model of the study trained, reused or resumed
  (`inputs.trained`): each one's seeds, mean held-out accuracy and
  per-seed rows."""
  del config
  return {"training": {
      name: {"seeds": m.seeds, "test_accuracy": m.test_accuracy,
             "train_seconds": m.train_seconds, "members": m.results}
      for name, m in inputs.trained.items()}}


def training_text(results) -> str:
  return "\n".join(f"  {name:10s} held-out accuracy {m['test_accuracy']:.2%}"
                   for name, m in results["training"].items())
