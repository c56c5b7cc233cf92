"""The project's studies, and the one place that picks among them.

  study = studies.for_config(config)          # the study a config runs
  results = studies.run(config, "/tmp/run")   # checks, lock, stages, report
  studies.render("/tmp/run")                  # the report again (launch.report)

A `Study` is a name, the configs it applies to, its stages (`stages.Stage`,
run and resumed by `stages.run_stages`), the inputs they share, the checks
and resolution of its config, and the renderer of its report from the
saved results alone. `STUDIES` holds the four:

  synthetic  the slides' study on the synthetic proxy and the RP2 data
             (configs/reproduce.py, data.source=synthetic)
  real       Table 2 on real photographs (configs/reproduce.py with a real
             data.source)
  defences   BlurNet beside other defences on real photographs
             (configs/defences.py)
  checklist  the robustness checklist on every model (configs/robustness.py)

`run` is every study's driver; `launch.reproduce`, `launch.robustness` and
`launch.report` call it or `render`, and nothing else chooses a study.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
import time
from typing import Any, Callable

from etils import epath
import flax
import jax
import ml_collections
import optax

from blurnet_jax import layers
from blurnet_jax import workdirs
from blurnet_jax.classes import REAL_SOURCES, label_space
from blurnet_jax.data import datasets
from blurnet_jax.data import rp2_assets
from blurnet_jax.jsonio import read_json, write_json
from blurnet_jax.progress import format_seconds
from blurnet_jax.study.robustness import stages as checklist_stages
from blurnet_jax.study.defences import evaluate as defence_eval
from blurnet_jax.study.defences import report as defence_report
from blurnet_jax.study.evaluators import table2
from blurnet_jax.study.robustness import checklist
from blurnet_jax.study.defences import stages as defence_stages
from blurnet_jax.study.real import measure as real_study
from blurnet_jax.study.real import stages as real_stages
from blurnet_jax.study import report
from blurnet_jax.study.robustness import report as robustness_report
from blurnet_jax.study import stages
from blurnet_jax.study.synthetic import stages as synthetic_stages

Config = ml_collections.ConfigDict


@dataclasses.dataclass(frozen=True)
class Study:
  """One study of the project.

  Attributes:
    name: its name (in study.json and the docs).
    description: what it measures, in a line.
    config_file: the config file that builds it (`--config=`).
    applies: whether a config is one of this study's.
    stages: its stages, in order.
    inputs: (config, workdir) -> what the stages share (its `results`
      dict receives every stage's results).
    render: WORKDIR -> WORKDIR/report/report.md, from the saved results.
    check: one-line errors for a config it cannot run, before anything.
    resolve: the config as run (derived settings filled in), as its
      config.json records it.
    facts: what study.json says beside the results (`facts`).
    measurements: what its rows measure, each through
      `evaluation.evaluate` (a `evaluation.Measurement`).
  """

  name: str
  description: str
  config_file: str
  applies: Callable[[Config], bool]
  stages: tuple[stages.Stage, ...]
  inputs: Callable[[Config, Path], Any]
  render: Callable[[epath.PathLike], Path]
  check: Callable[[Config], None] = lambda config: None
  resolve: Callable[[Config], Config] = lambda config: config
  facts: Callable[[Config], dict[str, Any]] = lambda config: {}
  measurements: tuple[type, ...] = ()


def _kind(config: Config) -> str:
  """The `study` field of a config ('reproduce' where it has none)."""
  return config.get("study", "reproduce")


def _real(config: Config) -> bool:
  return config.data.source in REAL_SOURCES


def environment() -> dict[str, str]:
  """Versions and the device the run used."""
  return {"jax": jax.__version__, "flax": flax.__version__,
          "optax": optax.__version__, "backend": jax.default_backend(),
          "device_kind": jax.devices()[0].device_kind}


def source_facts(config: Config) -> dict[str, Any]:
  """A real source's label space and what it rests on (study.json)."""
  labels = label_space(config.data.source)
  return {"source": config.data.source, "labels": labels.name,
          "class_names": list(labels.class_names),
          "rests_on": real_study.SOURCES[config.data.source]}


def _check_synthetic(config: Config) -> None:
  if "baseline" not in config.models:
    raise ValueError("config.models needs a 'baseline' entry: Table 1 and the "
                     "spectra are measured on the undefended model")


def _check_real(config: Config) -> None:
  if "baseline" not in config.real_models:
    raise ValueError("config.real.variants needs 'baseline': every defence "
                     "is paired against it")


STUDIES: tuple[Study, ...] = (
    Study("synthetic", "the slides' tables on the synthetic proxy and the "
          "RP2 authors' model", "configs/reproduce.py",
          lambda c: _kind(c) == "reproduce" and not _real(c),
          synthetic_stages.STAGES, synthetic_stages.Inputs,
          report.render_synthetic, check=_check_synthetic,
          measurements=(table2.Grid, checklist.Checklist)),
    Study("real", "Table 2 on models trained on real photographs",
          "configs/reproduce.py",
          lambda c: _kind(c) == "reproduce" and _real(c),
          real_stages.STAGES, real_stages.Inputs, report.render_real,
          check=_check_real, resolve=real_stages.resolved,
          facts=source_facts, measurements=(table2.Grid,)),
    Study("defences", "BlurNet beside other defences on real photographs",
          "configs/defences.py", lambda c: _kind(c) == "defences",
          defence_stages.STAGES, real_stages.Inputs, defence_report.render,
          check=defence_stages.check, resolve=real_stages.resolved,
          facts=source_facts, measurements=(defence_eval.DefenceMeasure,)),
    Study("checklist", "the robustness checklist on every model",
          "configs/robustness.py", lambda c: _kind(c) == "checklist",
          checklist_stages.STAGES, checklist_stages.Inputs,
          robustness_report.render, measurements=(checklist.Checklist,)),
)


def for_config(config: Config) -> Study:
  """The one study `config` runs; one line when it names none."""
  found = [s for s in STUDIES if s.applies(config)]
  if len(found) != 1:
    raise ValueError(
        f"study={_kind(config)!r} with data.source={config.data.source!r} "
        f"is {'no' if not found else 'more than one'} study; the studies "
        f"are {', '.join(s.name for s in STUDIES)} (configs/reproduce.py, "
        "defences.py, robustness.py)")
  return found[0]


def facts(study: Study, config: Config) -> dict[str, Any]:
  """study.json: the study, the environment, where the RP2 assets (and a
  real source's data) come from."""
  packaged = (not config.rp2_dir or Path(config.rp2_dir).resolve()
              == rp2_assets.PACKAGED_DIR)
  return {"study": study.name, "environment": environment(),
          "rp2_dir": ("the assets shipped with the package" if packaged
                      else str(Path(config.rp2_dir)))} | study.facts(config)


def run(config: Config, workdir: epath.PathLike, *, resume: bool = True
        ) -> dict[str, Any]:
  """Runs the study of `config` in `workdir`: its checks and its data's
  (before anything is written), then, holding the workdir, its stages
  (reading back those a run of the same config finished, with `resume`)
  and its report.

  Returns:
    Every stage's results, by name.
  """
  study = for_config(config)
  study.check(config)
  workdir = epath.Path(workdir)
  datasets.pin_data(config)  # a bad data folder stops before any file
  with workdirs.lock(workdir):
    config = study.resolve(config)
    inputs = study.inputs(config, workdir)
    seconds = stages.run_stages(study.stages, config, inputs, workdir,
                                resume=resume)
    write_json(workdir / "study.json", facts(study, config))
    t0 = time.perf_counter()
    md = study.render(workdir)
    seconds["report"] = round(time.perf_counter() - t0, 1)
    write_json(workdir / stages.SECONDS_FILE, seconds)
  print(f"\nreport ({format_seconds(seconds['report'])}): "
        f"{md.parent / 'index.html'} and {md}")
  return inputs.results


def render(workdir: epath.PathLike) -> Path:
  """WORKDIR/report/ again from a finished (or partly finished) run's
  saved results, by the study its config.json names."""
  config = ml_collections.ConfigDict(
      read_json(Path(workdir) / "config.json", "study config"))
  return for_config(config).render(workdir)


def describe() -> str:
  """docs/studies.md: every study, the configs it applies to and its
  stages with the results each writes, generated from `STUDIES` (a test
  holds the page to it, so the two cannot drift)."""
  lines = ["# The studies", "",
           "Generated from `blurnet_jax.study.studies.STUDIES` by "
           "`studies.describe()`; `tests/test_architecture.py` checks that "
           "this page is what it returns. Every study runs through "
           "`studies.run` (`launch.reproduce`, `launch.robustness`): its "
           "config's checks and data first, then, holding the workdir, its "
           "stages (each saved as WORKDIR/NAME.json or .npz, read back on "
           "resume, all run again with `--noresume`), study.json and "
           "WORKDIR/report/; `launch.report --workdir=W` renders the report "
           "again by the study that W/config.json names.", "",
           "## The layers", "",
           "Lowest first; a module imports only its own layer and those "
           "below (`blurnet_jax.layers`, held by the architecture test).",
           "", "| layer | modules |", "| --- | --- |"]
  lines += [f"| {name} | " + ", ".join(f"`{p}`" for p in prefixes) + " |"
            for name, prefixes in layers.LAYERS]
  lines += ["", "Every row of every study is one call of "
            "`study.evaluation.evaluate(population, victims, key, "
            "measurement)`: member i of the population meets the attack key "
            "`member_key(key, seed_i)`, so rows pair member by member.", ""]
  for s in STUDIES:
    measured = ", ".join(
        f"`{m.__module__.removeprefix('blurnet_jax.study.')}.{m.__name__}`"
        for m in s.measurements)
    lines += [f"## {s.name}", "", f"{s.description[0].upper()}"
              f"{s.description[1:]}; config `{s.config_file}`; measured by "
              f"{measured}; report by "
              f"`{s.render.__module__.removeprefix('blurnet_jax.study.')}."
              f"{s.render.__name__}`.", "", "| stage | writes |",
              "| --- | --- |"]
    lines += [f"| {st.name} | " + ", ".join(
        f"{o}{' (optional)' if o in st.optional else ''}"
        for o in st.outputs) + " |" for st in s.stages]
    lines.append("")
  return "\n".join(lines)
