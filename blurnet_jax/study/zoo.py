"""The variant zoo: every model the study attacks, trained or loaded.

  zoo = train_models(config.models, workdir / "models")  # {name: ...}
  real = rp2_data(config.rp2_dir)         # the RP2 model and its victims
  apply_fn, params, description = load_model("/tmp/blurnet/l1_5x5")
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from blurnet_jax import checkpoint
from blurnet_jax import models
from blurnet_jax import sweep
from blurnet_jax import train
from blurnet_jax import workdirs
from blurnet_jax.attacks import rp2
from blurnet_jax.models import ApplyFn
from blurnet_jax.classes import STOP
from blurnet_jax.data import rp2_assets
from blurnet_jax.defences import training as defence_training
from blurnet_jax.study.evaluation import Population, Victims


@dataclasses.dataclass(frozen=True)
class RP2Data:
  """The RP2 authors' model, its 40 real victims, the camouflage mask and
  the victims wearing the authors' own camouflage perturbation."""

  assets: rp2_assets.RP2Assets
  adversarial: np.ndarray

  model = models.LisaCNN()

  @property
  def apply_fn(self) -> ApplyFn:
    return models.apply_fn_for(self.model)

  @property
  def params(self):
    return self.assets.params

  @property
  def images(self) -> np.ndarray:
    return self.assets.victims

  @property
  def mask(self) -> np.ndarray:
    return self.assets.camouflage_mask

  @property
  def population(self) -> Population:
    """The RP2 model as a population of one member (id 0); Table 2 attacks
    it under several ids (`evaluation.evaluate(..., ids=seeds)`)."""
    return Population("rp2", self.apply_fn, (self.params,), (0,),
                      model=self.model)

  @property
  def victims(self) -> Victims:
    """The 40 real victims with the camouflage mask, wearing the authors'
    own camouflage as their sticker."""
    return Victims("rp2", self.images, self.mask, label=STOP,
                   sticker=self.adversarial,
                   info={"description": "the RP2 authors' real stop-sign "
                                        "victims"})


def rp2_data(rp2_dir: str = "") -> RP2Data:
  """The RP2 data of the study ('' = the packaged assets)."""
  assets = rp2_assets.load_rp2_assets(rp2_dir)
  adversarial = np.asarray(rp2.apply_perturbation(
      assets.victims, assets.camouflage_mask, assets.camouflage_noise,
      rp2.RP2Config()))
  return RP2Data(assets=assets, adversarial=adversarial)


def train_models(models_block: ml_collections.ConfigDict,
                 root: epath.Path) -> dict[str, Population]:
  """Trains (or reuses, or resumes) every model of `models_block` (e.g.
  `config.models`) into `root/NAME`, each with its own train config as it
  stands: the seeds of `cfg.sweep.seeds` as one vmapped population."""
  out = {}
  for name, cfg in models_block.items():
    rows, params, summary = sweep.train_population(cfg,
                                                   epath.Path(root) / name)
    model = models.model_for(cfg)
    kind = models.defence_kind(cfg)
    out[name] = Population(
        name=name, apply_fn=models.apply_fn_for(model), members=params,
        seeds=tuple(r["seed"] for r in rows), model=model,
        alpha=float(cfg.penalty.alpha), penalty_kind=str(cfg.penalty.kind),
        defence_kind=kind,
        band=defence_training.smoothing_band(cfg) if kind == "smoothing"
        else 0,
        results=tuple(rows), train_seconds=float(summary["train_seconds"]))
  return out


def train_folds(models_block: ml_collections.ConfigDict, folds: int,
                root: epath.Path) -> dict[str, Population]:
  """Every model of `models_block` trained once per fold of a grouped
  k-fold (`data.folds`, `data.fold`: fold k held out) into
  `root/NAME/foldK`, each variant one population whose members are its
  folds' (fold by fold, seed by seed; `Population.folds` names each
  member's held-out fold). Member j of every variant is the same fold
  and seed, so the variants pair member by member."""
  out = {}
  for name, cfg in models_block.items():
    per_fold = []
    for k in range(folds):
      c = ml_collections.ConfigDict(cfg.to_dict())
      c.data.folds, c.data.fold = folds, k
      per_fold.append(train_models(ml_collections.ConfigDict({name: c}),
                                   epath.Path(root) / name / f"fold{k}")[name])
    first = per_fold[0]
    out[name] = dataclasses.replace(
        first, members=sum((p.members for p in per_fold), ()),
        seeds=sum((p.seeds for p in per_fold), ()),
        results=tuple(r | {"fold": k} for k, p in enumerate(per_fold)
                      for r in p.results),
        train_seconds=float(sum(p.train_seconds for p in per_fold)),
        folds=tuple(k for k, p in enumerate(per_fold) for _ in p.members))
  return out


def _training_config(path: Path) -> ml_collections.ConfigDict:
  """WORKDIR/config.json of a training workdir (`launch.train`, a sweep or
  a study's models/NAME), checked against its newest checkpoint's sidecar:
  the config its params were trained with."""
  config_file = path / "config.json"
  if not config_file.is_file():
    raise FileNotFoundError(
        f"model folder {str(path)!r} has no config.json; pass a workdir of "
        "launch.train, a study's WORKDIR/models/NAME or an RP2 .npz file")
  try:
    config = ml_collections.ConfigDict(json.loads(config_file.read_text()))
  except json.JSONDecodeError as e:
    raise ValueError(f"{config_file} is not valid JSON: {e}") from None
  if "model" not in config:
    raise ValueError(f"{config_file} has no 'model' block; it is not the "
                     "config of a training run")
  ckpt_dir = path / "checkpoints"
  if checkpoint.latest_step(ckpt_dir) is None:
    raise FileNotFoundError(
        f"training workdir {str(path)!r} has no checkpoint in {ckpt_dir}; "
        "train it first or pass another model")
  saved = checkpoint.sidecar(ckpt_dir)
  diff = (workdirs.config_differences(saved.get("config") or {}, config)
          if saved is not None else [])
  if diff:
    raise ValueError(
        f"{config_file} is not the config its checkpoints were trained with "
        f"({diff[0]}); the workdir was changed by hand or by an older "
        "version: train it again in a new workdir")
  return config


def load_members(spec: str | os.PathLike[str], rp2_dir: str = ""
                 ) -> tuple[ApplyFn, list[Any], str]:
  """Every member of a model: the seeds (and alphas) of a population's
  workdir (a sweep, a study's WORKDIR/models/NAME), or the one model of an
  RP2 `.npz` or a `launch.train` workdir.

  Args:
    spec: as `load_model`.

  Returns:
    (apply_fn, params of each member in the order of the config's
    `sweep.alphas` x `sweep.seeds`, description).
  """
  if not os.fspath(spec):
    spec = rp2_assets.rp2_dir(rp2_dir) / "rp2_lisa_cnn.npz"
  path = Path(spec)
  if not path.exists():
    raise FileNotFoundError(f"model {str(path)!r} does not exist; pass an RP2 "
                            ".npz file or a training workdir")
  if path.is_file():
    model = models.LisaCNN()
    return (models.apply_fn_for(model), [rp2_assets.params_from_rp2(path)],
            f"RP2 LisaCNN from {path}")
  config = _training_config(path)
  model = models.model_for(config)
  ckpt_dir = path / "checkpoints"
  if "sweep" in config:
    pairs = sweep.members(config)
    # The population as saved: padded to the devices of the run that
    # trained it (the padding members repeat the last one).
    saved = (checkpoint.sidecar(ckpt_dir) or {}).get("tree", {})
    size = max(len(pairs), int((saved.get("step") or {}).get(
        "shape", [len(pairs)])[0]))
    padded = pairs + pairs[-1:] * (size - len(pairs))
    target = sweep.create_population(config, model, [a for a, _ in padded],
                                     [s for _, s in padded])
    state, step = checkpoint.restore(ckpt_dir, target)
    params = [jax.tree.map(jnp.asarray, sweep.member(state, i).params)
              for i in range(len(pairs))]
    who = ", ".join(f"seed {s}" + (f" alpha {a:g}" if len(set(
        a for a, _ in pairs)) > 1 else "") for a, s in pairs)
    members_text = f"{len(pairs)} member(s): {who}"
  else:
    target = train.create_train_state(config, model, jax.random.key(0))
    state, step = checkpoint.restore(ckpt_dir, target)
    params = [jax.tree.map(jnp.asarray, state.params)]
    members_text = f"seed {config.get('seed', '?')}"
  fields = ", ".join(f"{k}={v}" for k, v in config.model.items())
  description = (f"LisaCNN({fields}) from {path}, variant "
                 f"{config.get('variant', '?')}, step {step}, {members_text}")
  return models.apply_fn_for(model), params, description


def load_model(spec: str | os.PathLike[str], rp2_dir: str = "",
               member: int = 0) -> tuple[ApplyFn, Any, str]:
  """A classifier from an RP2 `.npz` file or a training workdir.

  Args:
    spec: '' (the RP2 authors' model of the assets in `rp2_dir`, '' = the
      packaged copy), the path of an RP2 `.npz` (loaded into the unfiltered
      `LisaCNN`), or a training workdir: of `launch.train`, of a sweep, or
      a study's WORKDIR/models/NAME (its `config.json`, checked against the
      checkpoint's sidecar, rebuilds the model; the newest good checkpoint
      in `checkpoints/` gives the params).
    member: which member of a population (`load_members`' order); 0 for a
      single model.

  Returns:
    (apply_fn, params, description): the same `apply_fn` object for every
    model of one architecture (`models.apply_fn_for`), so the jitted attack
    compiles once for them.

  Raises:
    FileNotFoundError: no such path, or a folder that is not a training
      workdir or holds no checkpoint.
    ValueError: a file that is not an RP2 LisaCNN, a member out of range,
      or a config.json that is not its checkpoints' config.
  """
  apply_fn, members, description = load_members(spec, rp2_dir)
  if not (isinstance(member, int) and 0 <= member < len(members)):
    raise ValueError(f"member={member!r}, but {spec} holds {len(members)} "
                     f"member(s); pass --config.member=0..{len(members) - 1}")
  if len(members) > 1:
    description += f"; member {member}"
  return apply_fn, members[member], description
