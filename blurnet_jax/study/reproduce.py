"""The BlurNet study end to end (the application behind `launch.reproduce`,
see configs/reproduce.py):

  config = configs.reproduce.get_config("quick")
  run(config, "/tmp/blurnet_quick")

The study is a sequence of stages, each a function of the config and
earlier results to JSON-able results (`stages.Stage`): on the synthetic
proxy those of `synthetic_stages.STAGES` (Tables 1 and 2, the LISA arm, the
proxy ablation, spectra, sweeps, the robustness checklist, findings), on a
real source (`data.source` lisa_crops, gtsrb, lisa) those of
`real_stages.STAGES` (Table 2 on real photographs). `run` runs them in
order, saving each stage's results as it ends; a second run on the same
workdir and config reads back the stages that finished and runs the rest
(trained models are reused or resumed from WORKDIR/models either way).
The report and its figures are then rendered from the saved results alone
(`report.render`, also `launch.report`).
"""

from __future__ import annotations

from pathlib import Path
import time
from typing import Any

from etils import epath
import flax
import jax
import ml_collections
import optax

from blurnet_jax import workdirs
from blurnet_jax.classes import REAL_SOURCES, label_space
from blurnet_jax.data import datasets
from blurnet_jax.data import rp2_assets
from blurnet_jax.jsonio import write_json
from blurnet_jax.progress import format_seconds
from blurnet_jax.study import real as real_study
from blurnet_jax.study import real_stages
from blurnet_jax.study import report
from blurnet_jax.study import stages
from blurnet_jax.study import synthetic_stages


def environment() -> dict[str, str]:
  """Versions and the device the run used."""
  return {"jax": jax.__version__, "flax": flax.__version__,
          "optax": optax.__version__, "backend": jax.default_backend(),
          "device_kind": jax.devices()[0].device_kind}


def study_facts(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What the report says of the run beside its results: the environment,
  where the RP2 assets and (on a real source) the data come from."""
  packaged = (not config.rp2_dir or Path(config.rp2_dir).resolve()
              == rp2_assets.PACKAGED_DIR)
  facts = {"environment": environment(),
           "rp2_dir": ("the assets shipped with the package" if packaged
                       else str(Path(config.rp2_dir)))}
  if config.data.source in REAL_SOURCES:
    labels = label_space(config.data.source)
    facts |= {"source": config.data.source, "labels": labels.name,
              "class_names": list(labels.class_names),
              "rests_on": real_study.SOURCES[config.data.source]}
  return facts


def _check(config: ml_collections.ConfigDict) -> None:
  if config.data.source in REAL_SOURCES:
    if "baseline" not in config.real_models:
      raise ValueError("config.real.variants needs 'baseline': every defence "
                       "is paired against it")
  elif "baseline" not in config.models:
    raise ValueError("config.models needs a 'baseline' entry: Table 1 and the "
                     "spectra are measured on the undefended model")


def run(config: ml_collections.ConfigDict, workdir: epath.PathLike, *,
        resume: bool = True) -> dict[str, Any]:
  """Runs the study's stages (reading back those a previous run of the
  same config finished, with `resume`), then renders the report.

  Returns:
    Every stage's results, by name.
  """
  _check(config)
  workdir = epath.Path(workdir)
  datasets.pin_data(config)  # a bad data folder stops before any file
  with workdirs.lock(workdir):
    return _run(config, workdir, resume)


def _run(config, workdir, resume):
  real = config.data.source in REAL_SOURCES
  study = real_stages if real else synthetic_stages
  if real:
    config = real_stages.resolved(config)
  inputs = study.Inputs(config, workdir)
  seconds = stages.run_stages(study.STAGES, config, inputs, workdir,
                              resume=resume)
  write_json(workdir / "study.json", study_facts(config))
  t0 = time.perf_counter()
  md = report.render(workdir)
  seconds["report"] = round(time.perf_counter() - t0, 1)
  write_json(workdir / stages.SECONDS_FILE, seconds)
  print(f"\nreport ({format_seconds(seconds['report'])}): "
        f"{md.parent / 'index.html'} and {md}")
  return inputs.results
