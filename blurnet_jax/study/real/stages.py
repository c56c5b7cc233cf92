"""The stages of Table 2 on real photographs (`data.source` lisa_crops,
gtsrb or lisa; the computations are in `blurnet_jax.study.real.measure`), in
order for `stages.run_stages`:

  data      the source prepared from `data.manual_dir` (data.json)
  victims   the real victims, fixed before any model is trained
            (victims.json; the first of each set, victims_preview.npz)
  train     every variant of `real.variants`, seed by seed (training.json)
  oracle    the RP2 model's reading of every LISA crop (LISA sources)
  table2    the white-box grid, paired differences, treatment checks and
            verdicts on each victim set
  plan      the design a decisive run needs, this run as the pilot
            (plan.json)
  findings  a verdict per claim
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import ml_collections

from blurnet_jax.classes import LabelSpace, label_space
from blurnet_jax.data import datasets
from blurnet_jax.study.claims import findings
from blurnet_jax.study.evaluators import oracle
from blurnet_jax.jsonio import read_json
from blurnet_jax.study.real import measure as real_study
from blurnet_jax.study.real import plan
from blurnet_jax.study import report
from blurnet_jax.study import zoo
from blurnet_jax.study.evaluation import Population, Victims
from blurnet_jax.study.figures import SHOWN
from blurnet_jax.study.stages import SECONDS_FILE, Stage, StudyInputs
from blurnet_jax.study.stages import data_stage
from blurnet_jax.study.stages import data_text
from blurnet_jax.study.stages import train_stage, training_text


def real_model_configs(config: ml_collections.ConfigDict, labels
                       ) -> ml_collections.ConfigDict:
  """`config.real_models` with the training length of the data set's label
  space (`config.real.num_train_steps[labels.name]`) and the seeds of
  `config.real.seeds`, detached values; evaluated at the end only."""
  steps = int(config.real.num_train_steps[labels.name])
  out = {}
  for name, m in config.real_models.items():
    v = ml_collections.ConfigDict(m.to_dict())
    v.num_train_steps = steps
    v.warmup_steps = steps // 10
    v.checkpoint_every = max(1, steps // 2)
    # Held-out accuracy at the end only: nothing reads a mid-run one, and
    # column smoothing's costs 32 passes per image (GTSRB's 12,630).
    v.eval_every = steps
    v.log_every = max(1, steps // 10)
    v.sweep.seeds = tuple(config.real.seeds)
    out[name] = v
  return ml_collections.ConfigDict(out)


def resolved(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config a real-data study runs, as its config.json records it:
  `real_models` as `real_model_configs` derives them from `config`, whose
  data block `studies.run` has pinned to its files (`datasets.pin_data`),
  so each model's block is the config.json of its workdir. A detached
  copy; resolving twice changes nothing."""
  out = ml_collections.ConfigDict(config.to_dict())
  out.real_models = real_model_configs(out, label_space(out.data.source))
  return out


class Inputs(StudyInputs):
  """What the stages share (`stages.StudyInputs`), with the source's label
  space, its victims and its trained variants."""

  @property
  def labels(self) -> LabelSpace:
    return label_space(self.config.data.source)

  @functools.cached_property
  def victim_sets(self) -> list[Victims]:
    return real_study.victim_sets(self.config, self.builder, self.labels,
                                  self.real)

  @functools.cached_property
  def trained(self) -> dict[str, Population]:
    configs = real_model_configs(self.config, self.labels)
    folds = int(self.config.real.get("folds", 0))
    if folds:
      return zoo.train_folds(configs, folds, self.workdir / "models")
    return zoo.train_models(configs, self.workdir / "models")


def victims_stage(config, inputs: Inputs) -> dict[str, Any]:
  del config
  sets = inputs.victim_sets
  return {"victims": {v.name: v.info for v in sets},
          "victims_preview": {v.name: v.images[:SHOWN] for v in sets}}


def oracle_stage(config, inputs: Inputs) -> dict[str, Any]:
  del config
  if inputs.labels.name != "lisa":
    return {}
  return {"oracle": real_study.oracle(inputs.builder)}


def table2_stage(config, inputs: Inputs) -> dict[str, Any]:
  return {"table2": real_study.table2_rows(
      config, inputs.trained, jax.random.fold_in(inputs.key, 2),
      inputs.victim_sets, datasets.load_split(inputs.builder, "test"),
      inputs.labels)}


def plan_stage(config, inputs: Inputs) -> dict[str, Any]:
  """plan.json: the design this run's data say a decisive run needs
  (`real.plan`), this run as the pilot."""
  seconds = read_json(inputs.workdir / SECONDS_FILE, "stage seconds")
  return {"plan": plan.plan_from(config, inputs.results["table2"], seconds,
                                 inputs.results["victims"])}


def findings_stage(config, inputs: Inputs) -> dict[str, Any]:
  return {"findings": findings.findings(
      [], inputs.results["table2"], None,
      replicates="folds" if int(config.real.get("folds", 0)) else "seeds")}


def _victims_text(results) -> str:
  return "\n".join(
      f"  {name}: {v['victims']} victims of {v['candidates']} "
      f"({v['excluded_near_duplicates']} near-duplicates excluded)"
      for name, v in results["victims"].items())


STAGES = (
    Stage("data", data_stage, ("data",), data_text),
    Stage("victims", victims_stage, ("victims", "victims_preview"),
          _victims_text),
    Stage("train", train_stage, ("training",), training_text),
    Stage("oracle", oracle_stage, ("oracle",),
          lambda r: oracle.format_oracle(r["oracle"]) if "oracle" in r
          else "", optional=("oracle",)),
    Stage("table2", table2_stage, ("table2",),
          lambda r: report.table2_text(r["table2"])),
    Stage("plan", plan_stage, ("plan",), lambda r: plan.plan_text(r["plan"])),
    Stage("findings", findings_stage, ("findings",)),
)
