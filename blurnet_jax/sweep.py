"""A population of models (alphas x seeds for one penalty) trained as one program.

The population is a `TrainState` whose leaves have a leading member axis;
one step is `jax.jit(jax.vmap(train_step))` over it with the data batch
shared by every member, so member i computes exactly what a single run with
its (alpha, seed) computes. With several devices, local or in other
processes (`blurnet_jax.distributed`), the member axis is sharded over all
of them (`jax.sharding`), padded to a multiple of their count, and XLA
splits the work; the numbers do not change. Process 0 alone writes files.
"""

from collections.abc import Callable
from typing import Any

from etils import epath
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import ml_collections
import numpy as np

from blurnet_jax import checkpoint
from blurnet_jax import distributed
from blurnet_jax import workdirs
from blurnet_jax import models
from blurnet_jax import recognition
from blurnet_jax import train
from blurnet_jax.data import datasets
from blurnet_jax.defences import training as defence_training
from blurnet_jax.jsonio import read_json, write_json


def members(config: ml_collections.ConfigDict) -> list[tuple[float, int]]:
  """The (alpha, seed) of every member, alphas outer, seeds inner."""
  alphas = [float(a) for a in config.sweep.alphas]
  seeds = [int(s) for s in config.sweep.seeds]
  if not alphas or not seeds:
    raise ValueError("sweep.alphas and sweep.seeds must be non-empty")
  if any(a < 0 for a in alphas):
    raise ValueError(f"sweep.alphas must be >= 0, got {alphas}")
  return [(a, s) for a in alphas for s in seeds]


def member_mesh(num_members: int) -> tuple[Mesh | None, int]:
  """A 1-d mesh over every device of the job (all processes) for the member
  axis (None: one device), and the population size it runs: `num_members`
  padded up to a multiple of the devices (the padding members repeat the
  last one and are dropped from every result)."""
  mesh = distributed.global_mesh("member")
  if mesh is None:
    return None, num_members
  return mesh, distributed.padded_size(num_members)


def create_population(config, model, alphas, seeds) -> train.TrainState:
  """Stacked train states: member i initialised exactly as a single run."""
  def one(seed, alpha):
    init_rng, _ = jax.random.split(jax.random.key(seed))
    return train.create_train_state(config, model, init_rng, alpha=alpha)
  return jax.vmap(one)(jnp.asarray(seeds, jnp.uint32),
                       jnp.asarray(alphas, jnp.float32))


def member_chunk(config, num_members: int) -> int:
  """Members per vmapped program: `sweep.chunk`, or by backend when 0.

  On an accelerator every member goes in one vmap. On a CPU a vmapped batch
  of members runs slower per member than one model (cache), so members go
  through `lax.map` in chunks; 0 picks the chunk measured fastest on a
  2-core CPU (`bench.populations` times every chunk size).
  """
  chunk = int(config.sweep.get("chunk", 0))
  if chunk <= 0:
    single_cpu = (jax.default_backend() == "cpu"
                  and jax.device_count() == 1)
    # Several devices: one vmap whose member axis is sharded over them.
    chunk = 1 if single_cpu else num_members
  if num_members % chunk:
    raise ValueError(f"sweep.chunk={chunk} does not divide the {num_members} "
                     "members; use a divisor, or 0 for the default")
  return chunk


def population_step(config, num_members: int, chunk: int | None = None):
  """One jitted program: the config's step (`train_step`, or its defence's:
  `defences.training.training_for`) vmapped over members (in chunks of
  `chunk` through `lax.map` when smaller than the population), with states
  and keys per member and one shared batch."""
  step = defence_training.training_for(config).step
  chunk = member_chunk(config, num_members) if chunk is None else chunk

  def run(states, batch, keys):
    if chunk == num_members:
      return jax.vmap(step, in_axes=(0, None, 0))(states, batch, keys)
    return jax.lax.map(lambda sk: step(sk[0], batch, sk[1]), (states, keys),
                       batch_size=chunk)

  return jax.jit(run, donate_argnums=(0,))


def member(state, i: int):
  """Member i of a population, as host arrays (no cross-device program)."""
  return jax.tree.map(lambda x: np.asarray(x)[i], jax.device_get(state))


def population_evaluate(state, images, labels, *, batch_size=500,
                        members: int | None = None,
                        evaluate=train.evaluate) -> dict:
  """Test accuracy and loss of every member (lists), of the first
  `members` only if given (the rest pad the population), by `evaluate`
  (a `train.Training`'s).

  Members are fetched to the host first: slicing a sharded population on
  device compiles a cross-device program per slice, for no gain here.
  """
  state = distributed.to_host(state)
  count = state.alpha.shape[0] if members is None else members
  out = [evaluate(member(state, i), images, labels, batch_size=batch_size)
         for i in range(count)]
  return {k: [o[k] for o in out] for k in out[0]}


def run_sweep(config: ml_collections.ConfigDict, workdir: epath.PathLike, *,
              on_member: Callable[[Any], dict] | None = None) -> list[dict]:
  """Trains the population, evaluates every member, writes `sweep.json`
  (one object per member: alpha, seed, test accuracy, victims).

  `on_member(params) -> dict`, if given, adds its fields to each member's
  row (e.g. the white-box attack results of the study).
  """
  rows, params, summary = train_population(config, workdir)
  if on_member is not None:
    rows = [r | on_member(p) for r, p in zip(rows, params)]
    write_json(epath.Path(workdir) / "sweep.json", summary | {"members": rows})
  return rows


def _earlier_train_seconds(workdir: epath.Path) -> float:
  """The training seconds the runs before this one spent on the population
  in `workdir`: those its sweep.json records, when a checkpoint is there
  to resume from (else training starts again, from none)."""
  summary = workdir / "sweep.json"
  if checkpoint.latest_step(workdir / "checkpoints") is None or (
      not summary.exists()):
    return 0.0
  recorded = read_json(summary, "population summary")
  return float(recorded.get("train_seconds",
                            recorded.get("train_seconds_this_run", 0.0)))


def train_population(config: ml_collections.ConfigDict,
                     workdir: epath.PathLike
                     ) -> tuple[list[dict], list[Any], dict]:
  """Trains (or resumes) the population of `config.sweep` in `workdir`.

  Returns:
    (rows, params, summary): one row per member (alpha, seed, test
    accuracy and loss, victims classified as stop), each member's params
    as host arrays, and the `sweep.json` written.
  """
  workdir = epath.Path(workdir)
  datasets.pin_data(config)  # a bad data folder stops before any file
  with workdirs.lock(workdir):
    return _train_population(config, workdir)


def _train_population(config, workdir):
  train.check_regime(config)
  pairs = members(config)
  workdirs.claim(config, workdir)  # checked before anything is written
  mesh, size = member_mesh(len(pairs))
  padded = pairs + pairs[-1:] * (size - len(pairs))
  alphas = [a for a, _ in padded]
  seeds = [s for _, s in padded]
  train_images, train_labels, test_images, test_labels = train.load_data(
      config)
  model = models.model_for(config)
  training = defence_training.training_for(config)
  state = create_population(config, model, alphas, seeds)
  step_fn = population_step(config, size)
  step_roots = jax.vmap(lambda s: jax.random.split(jax.random.key(s))[1])(
      jnp.asarray(seeds, jnp.uint32))
  fold = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))
  state = distributed.shard_leading(state, mesh)
  step_roots = distributed.shard_leading(step_roots, mesh)
  earlier = _earlier_train_seconds(workdir)
  evaluated = []  # fit's evaluations; its last is of the final state

  def evaluate(st):
    evaluated.append(population_evaluate(st, test_images, test_labels,
                                         members=len(pairs),
                                         evaluate=training.evaluate))
    return evaluated[-1]

  state, seconds = train.fit(
      config, workdir, state, step_fn, lambda step: fold(step_roots, step),
      evaluate, train_images, train_labels,
      desc=f"sweep {config.penalty.kind} x{len(pairs)}",
      place=lambda host: distributed.shard_leading(host, mesh),
      members=len(pairs))
  # fit evaluates the last step it runs; a population restored already
  # trained ran none, and is evaluated here.
  final = evaluated[-1] if evaluated else evaluate(state)
  rows, params = [], []
  host = distributed.to_host(state)
  # rendered / read once for all members
  sets = recognition.victim_sets(config.rp2_dir)
  for i, (alpha, seed) in enumerate(pairs):
    params.append(member(host, i).params)
    rows.append({"penalty": config.penalty.kind, "alpha": alpha, "seed": seed,
                 "test_accuracy": final["accuracy"][i],
                 "test_loss": final["loss"][i],
                 **recognition.read_as_stop(training.classifier,
                                            params[-1], sets)})
  summary = {"members": rows, "train_seconds_this_run": round(seconds, 1),
             "train_seconds": round(earlier + seconds, 1),
             "devices": jax.device_count(),
             "processes": jax.process_count(),
             "num_train_steps": config.num_train_steps}
  write_json(workdir / "sweep.json", summary)
  return rows, params, summary
