"""The robustness checklist as a study of its own (`launch.robustness`,
configs/robustness.py): the checks of `robustness` on every model of
`config.models` and on the RP2 model with its real victims.

  train       every model trained, reused or resumed (training.json)
  robustness  the checklist on each model (robustness.json)

`studies.run` runs them (resume, `--noresume`) and renders WORKDIR/report/
from robustness.json alone (`robustness_report.render`, also
`launch.report`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax

from blurnet_jax.study.robustness import checklist as robustness
from blurnet_jax.study.robustness import report as robustness_report
from blurnet_jax.study import zoo
from blurnet_jax.study.evaluation import Population
from blurnet_jax.study.stages import Stage, StudyInputs
from blurnet_jax.study.stages import train_stage, training_text


class Inputs(StudyInputs):
  """What the stages share (`stages.StudyInputs`), with the trained
  models."""

  @functools.cached_property
  def trained(self) -> dict[str, Population]:
    return zoo.train_models(self.config.models, self.workdir / "models")


def robustness_stage(config, inputs: Inputs) -> dict[str, Any]:
  """The checklist on the first `robustness.members` seeds of every model
  and on the RP2 model (root key `config.seed`)."""
  return {"robustness": robustness.evaluate_trained(
      config, inputs.trained, jax.random.key(config.seed), inputs.real)}


STAGES = (
    Stage("train", train_stage, ("training",), training_text),
    Stage("robustness", robustness_stage, ("robustness",),
          lambda r: robustness_report.robustness_text(r["robustness"])),
)
