"""The stages of the study on the synthetic proxy (the default source).

Each stage is a function of the config and `Inputs` (the data set, the
trained models, the RP2 assets, earlier results) to JSON-able results
(or arrays the figures are drawn from); `STAGES` lists them in order for
`stages.run_stages`:

  data        the synthetic set, prepared once (data.json)
  train       every Table 2 variant, a vmapped population of seeds,
              reused or resumed from WORKDIR/models (training.json)
  oracle      the RP2 (LISA) model on the synthetic test split (oracle.json)
  table1      black-box transfer of a camouflage perturbation to fixed
              filters inserted in the undefended model (table1.json; the
              synthetic victims it attacked, table1_victims.npz)
  table2      the white-box RP2 grid on every variant and the RP2 model
  lisa        the LISA-initialised arm
  proxy       baselines under settings of the synthetic set's knobs,
              and Table 2 again at the closest setting (proxy_table2.json)
  spectral    high-frequency shares, the spectral claim and the spectra
  sweep       vmapped alpha populations, each member attacked
  robustness  the checklist on every variant and the RP2 model
  findings    a verdict per claim of the slides
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from blurnet_jax import models
from blurnet_jax.data import datasets
from blurnet_jax.study.claims import findings
from blurnet_jax.study.evaluators import oracle
from blurnet_jax.study.synthetic import proxy
from blurnet_jax.study.synthetic import proxy_report
from blurnet_jax.study import report
from blurnet_jax.study.robustness import checklist as robustness
from blurnet_jax.study.robustness import report as robustness_report
from blurnet_jax.study.evaluators import high_frequency
from blurnet_jax.study.synthetic import alpha_curves
from blurnet_jax.study.synthetic import table1
from blurnet_jax.study.evaluators import table2
from blurnet_jax.study import zoo
from blurnet_jax.study import evaluation
from blurnet_jax.study.evaluation import Population
from blurnet_jax.study.stages import Stage, StudyInputs, data_stage
from blurnet_jax.study.stages import data_text
from blurnet_jax.study.stages import train_stage, training_text

class Inputs(StudyInputs):
  """What the stages share (`stages.StudyInputs`), with the test split, the
  trained variants and the synthetic victims of Table 1."""

  @functools.cached_property
  def test(self) -> tuple[np.ndarray, np.ndarray]:
    return datasets.load_split(self.builder, "test")

  @functools.cached_property
  def trained(self) -> dict[str, Population]:
    return zoo.train_models(self.config.models, self.workdir / "models")

  @property
  def baseline(self) -> Population:
    return self.trained["baseline"]

  @property
  def synth(self) -> dict[str, np.ndarray]:
    """The first seed's synthetic victims and their perturbation."""
    return self.results["table1_victims"]


def oracle_stage(config, inputs: Inputs) -> dict[str, Any]:
  """The RP2 (LISA) model on the test split: classes 1-17 equally weighted,
  and on the front-on renders."""
  del config
  out = oracle.oracle_report(*inputs.test, params=inputs.real.params)
  out["front_on"] = oracle.front_on_report(params=inputs.real.params)
  return {"oracle": out}


def table1_stage(config, inputs: Inputs) -> dict[str, Any]:
  """Each baseline member with its own perturbation (its key
  `evaluation.member_key`), pooled; the first
  seed's victims are saved for the figures and the spectra."""
  baseline, real = inputs.baseline, inputs.real
  variants = table1.filter_variants(config.table1)
  synths = [table1.synthetic_transfer_perturbation(
      config.table1.attack_steps, baseline.apply_fn, p,
      evaluation.member_key(jax.random.fold_in(inputs.key, 1), seed),
      desc=f", seed {seed}")
            for seed, p in evaluation.cells(baseline)]
  rows = table1.pool([table1.transfer_rows(p, s["images"], s["adversarial"],
                                           variants, dataset="synthetic")
                      for p, s in zip(baseline.members, synths)])
  real_rows = table1.transfer_rows(real.params, real.images, real.adversarial,
                                   variants, dataset="rp2")
  first = synths[0]
  victims = {k: np.asarray(first[k]) for k in ("images", "adversarial")}
  for k in ("images", "adversarial"):
    victims[f"{k}_labels"] = np.asarray(models.predict(
        baseline.apply_fn, baseline.params, victims[k]))
  return {"table1": real_rows + rows, "table1_victims": victims}


def table2_stage(config, inputs: Inputs) -> dict[str, Any]:
  return {"table2": table2.table2_rows(
      config, inputs.trained, jax.random.fold_in(inputs.key, 2), inputs.real,
      inputs.test)}


def lisa_stage(config, inputs: Inputs) -> dict[str, Any]:
  lisa_models = zoo.train_models(config.lisa_models, inputs.workdir / "lisa")
  return {"lisa": table2.lisa_rows(config, lisa_models,
                                   jax.random.fold_in(inputs.key, 5),
                                   inputs.real)}


def proxy_stage(config, inputs: Inputs) -> dict[str, Any]:
  """The proxy's settings; then Table 2's variants again at the setting
  closest to the RP2 model, attacked with Table 2's keys: how much the
  proxy moves the answer."""
  proxy_models = zoo.train_models(config.proxy_models,
                                  inputs.workdir / "proxy")
  out = {"proxy": proxy.proxy_rows(config, proxy_models,
                                   jax.random.fold_in(inputs.key, 6),
                                   inputs.real)}
  setting = proxy.table2_setting(config, out["proxy"])
  if setting is not None:
    block = proxy.variant_configs(config, setting)
    at = zoo.train_models(block, inputs.workdir / "proxy_table2" / setting)
    split = datasets.load_split(datasets.prepare(block.baseline.data), "test")
    rows = table2.synthetic_rows(config, at, jax.random.fold_in(inputs.key, 2),
                                 split, dataset=f"synthetic ({setting})")
    table2.compare(rows, rows[0]["dataset"])
    out["proxy_table2"] = rows
  return out


def spectral_stage(config, inputs: Inputs) -> dict[str, Any]:
  """Shares above `config.spectral_radius` per layer, the slides' spectral
  claim on the real victims, and the spectra of the figures."""
  baseline, real, synth = inputs.baseline, inputs.real, inputs.synth
  box = dict(filter_where="l1", filter_kernel="box", filter_size=5,
             filter_padding=config.table1.padding)
  filt_model, filt_params = models.insert_filter(baseline.params, **box)
  rm, rp = models.insert_filter(real.params, **box)
  radius = config.spectral_radius
  candidates = [("baseline + l1 5x5 box (inserted)", filt_model,
                 filt_params)] + [(n, m.model, m.params)
                                  for n, m in inputs.trained.items()]
  rows = high_frequency.spectral_rows(
      [("RP2 model", real.model, real.params),
       ("RP2 + l1 5x5 box (inserted)", rm, rp)],
      real.images, real.adversarial, radius=radius, dataset="rp2"
  ) + high_frequency.spectral_rows(candidates, synth["images"], synth["adversarial"],
                            radius=radius, dataset="synthetic")
  claim = findings.spectral_claim(real.model, real.params, rm, rp,
                                  real.images, real.adversarial,
                                  radius=radius)
  maps = {}
  for (prefix, _), (m, p, fm, fp, nat, adv) in zip(high_frequency.SPECTRAL_SETS, (
      (real.model, real.params, rm, rp, real.images, real.adversarial),
      (baseline.model, baseline.params, filt_model, filt_params,
       synth["images"], synth["adversarial"]))):
    maps |= high_frequency.spectral_maps(m, p, fm, fp, nat, adv, prefix)
  return {"spectral": rows, "spectral_claim": claim, "spectral_maps": maps}


def sweep_stage(config, inputs: Inputs) -> dict[str, Any]:
  return {"sweep": alpha_curves.run_sweeps(config, inputs.workdir,
                                     jax.random.fold_in(inputs.key, 3),
                                     inputs.test)}


def robustness_stage(config, inputs: Inputs) -> dict[str, Any]:
  return {"robustness": robustness.evaluate_trained(
      config, inputs.trained, jax.random.fold_in(inputs.key, 4), inputs.real)}


def findings_stage(config, inputs: Inputs) -> dict[str, Any]:
  del config
  r = inputs.results
  return {"findings": findings.findings(r["table1"], r["table2"] + r["lisa"],
                                        r["spectral_claim"])}


STAGES = (
    Stage("data", data_stage, ("data",), data_text),
    Stage("train", train_stage, ("training",), training_text),
    Stage("oracle", oracle_stage, ("oracle",),
          lambda r: oracle.format_oracle(r["oracle"])),
    Stage("table1", table1_stage, ("table1", "table1_victims"),
          lambda r: report.table1_text(r["table1"])),
    Stage("table2", table2_stage, ("table2",),
          lambda r: report.table2_text(r["table2"])),
    Stage("lisa", lisa_stage, ("lisa",),
          lambda r: report.table2_text(r["lisa"])),
    Stage("proxy", proxy_stage, ("proxy", "proxy_table2"),
          lambda r: proxy_report.proxy_text(r["proxy"]) + (
              "\n" + report.table2_text(r["proxy_table2"])
              if "proxy_table2" in r else ""),
          optional=("proxy_table2",)),
    Stage("spectral", spectral_stage,
          ("spectral", "spectral_claim", "spectral_maps")),
    Stage("sweep", sweep_stage, ("sweep",)),
    Stage("robustness", robustness_stage, ("robustness",),
          lambda r: robustness_report.robustness_text(r["robustness"])),
    Stage("findings", findings_stage, ("findings",)),
)
