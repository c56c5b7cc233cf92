"""Pure, jitted training of every LisaCNN variant.

    state = create_train_state(config, model, jax.random.key(0))
    state, metrics = train_step(state, batch, rng, penalty_kind="linf")

`train_step` and `eval_step` are module-level pure functions; the penalty
kind is static, its weight `alpha` is a leaf of the state, so a population
of models with different alphas is just `jax.vmap(train_step)` over stacked
states (`sweep.py`). `train_and_evaluate(config, workdir)` is the whole run:
data, resuming from the latest checkpoint, a progress line, JSON metrics,
and a clear stop on a non-finite loss. A config with a defence trains
through the `Training` that `blurnet_jax.defences.training.training_for`
gives it (its step, evaluation and classifier): this module knows no
defence, and only refuses to train one with `train_step`.

The slides do not name an optimiser. We use Adam (lr 1e-3, b1 0.9, b2 0.999)
with a linear warm-up and cosine decay and no weight decay: it reaches
the accuracy targets on both the synthetic set and LISA within a few epochs
(see README), which plain SGD at the same budget does not.
"""

import functools
import json
import os
import time
from typing import Callable, NamedTuple

from absl import logging
from etils import epath
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from blurnet_jax import checkpoint
from blurnet_jax import distributed
from blurnet_jax import workdirs
from blurnet_jax.jsonio import write_json
from blurnet_jax import losses
from blurnet_jax import models
from blurnet_jax import recognition
from blurnet_jax.classes import IMAGE_SHAPE
from blurnet_jax.data import datasets
from blurnet_jax.data import pipeline
from blurnet_jax.data import rp2_assets
from blurnet_jax.progress import Progress

PENALTIES = ("none", "linf", "tv")
#: Where the weights start: 'scratch' (random init) or 'rp2' (the RP2
#: authors' LISA-trained weights, the variant's filter inserted; a learned
#: kernel starts as the box of its size).
INITS = ("scratch", "rp2")
#: What trains: 'all', or 'added' (from rp2 weights: only what the variant
#: adds, the learned kernel; for a TV variant, which adds no layer, the
#: first layer, which its penalty acts on).
TRAINABLE = ("all", "added")


class TrainState(train_state.TrainState):
  """Flax's TrainState plus the penalty weight, a leaf so it can be vmapped."""

  alpha: jax.Array


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or Inf loss, gradient norm or parameter norm."""


#: The step metrics watched for NaN/Inf, each step (the loss alone misses
#: parameters that overflowed in the update it has not yet been computed
#: on, and gradients that blow up before the loss does).
WATCHED_METRICS = ("loss", "grad_norm", "param_norm")


def trainable_layers(config: ml_collections.ConfigDict) -> tuple[str, ...] | None:
  """The layers that train under `config.trainable` (None: all of them)."""
  init, trainable = config.get("init", "scratch"), config.get("trainable",
                                                              "all")
  if init not in INITS:
    raise ValueError(f"init={init!r}; use one of {INITS}")
  if trainable not in TRAINABLE:
    raise ValueError(f"trainable={trainable!r}; use one of {TRAINABLE}")
  if trainable == "all":
    return None
  if init != "rp2":
    raise ValueError("trainable='added' freezes pretrained layers; it needs "
                     "init='rp2'")
  if config.model.filter_kernel == "learned" and (
      config.model.filter_where != "none"):
    return ("blur",)
  if config.penalty.kind == "tv":
    return ("conv1",)
  raise ValueError(f"variant {config.get('variant', '?')!r} adds nothing to "
                   "train; trainable='added' needs a learned filter or a TV "
                   "penalty (the control is the RP2 model itself)")


def check_regime(config: ml_collections.ConfigDict) -> None:
  """One-line ValueErrors for a training regime out of range: the length
  (`num_train_steps` >= 1), `batch_size` >= 1 and `augment` (on/off)."""
  for field in ("num_train_steps", "batch_size"):
    value = config.get(field)
    if (isinstance(value, bool) or not isinstance(value, int) or value < 1):
      raise ValueError(f"{field} must be an integer >= 1, got {value!r}; "
                       f"pass --config.{field}=N")
  if not isinstance(config.get("augment", True), bool):
    raise ValueError(f"augment must be True or False, got "
                     f"{config.get('augment')!r}")


def make_optimizer(config: ml_collections.ConfigDict
                   ) -> optax.GradientTransformation:
  """Adam with linear warm-up then cosine decay over `num_train_steps`;
  layers outside `trainable_layers(config)` get zero updates."""
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=config.learning_rate,
      warmup_steps=config.warmup_steps,
      decay_steps=max(config.num_train_steps, config.warmup_steps + 1),
      end_value=config.learning_rate * 0.01)
  layers = trainable_layers(config)
  if layers is None:
    return optax.adam(schedule)
  return optax.multi_transform(
      {"train": optax.adam(schedule), "freeze": optax.set_to_zero()},
      lambda params: {k: ("train" if k in layers else "freeze")
                      for k in params})


def create_train_state(config: ml_collections.ConfigDict, model: models.LisaCNN,
                       rng: jax.Array, *, alpha: float | None = None,
                       tx: optax.GradientTransformation | None = None
                       ) -> TrainState:
  """Initialises params (from `rng`, or the RP2 weights with
  `config.init='rp2'`), the optimiser and the penalty weight.

  `tx` and `model.apply` are static parts of the state: states built with
  the same `tx` object share one compiled `train_step`; pass it when making
  several states of one config.
  """
  inputs = jnp.zeros((1, *IMAGE_SHAPE[:2], model.input_channels), jnp.float32)
  params = model.init(rng, inputs)["params"]
  if config.get("init", "scratch") == "rp2":
    pretrained = rp2_assets.params_from_rp2(
        rp2_assets.rp2_dir(config.get("rp2_dir", "")) / "rp2_lisa_cnn.npz")
    _, params = models.insert_filter(pretrained, **config.model.to_dict())
  alpha = config.penalty.alpha if alpha is None else alpha
  state = TrainState.create(apply_fn=model.apply, params=params,
                            tx=make_optimizer(config) if tx is None else tx,
                            alpha=jnp.asarray(alpha, jnp.float32))
  # flax starts `step` as a Python int and the first update makes it an
  # int32 array: the step would trace twice. Start it as the array.
  return state.replace(step=jnp.zeros((), jnp.int32))


def penalty(kind: str, alpha: jax.Array, params, features) -> jax.Array:
  """The BlurNet regulariser of a variant (the formulas of `losses`)."""
  if kind == "none":
    return jnp.zeros((), jnp.float32)
  if kind == "linf":
    if "blur" not in params:
      raise ValueError("the linf penalty needs a learned filter: set "
                       "model.filter_kernel='learned' and model.filter_where")
    return losses.linf_penalty(params["blur"]["kernel"], alpha=alpha)
  if kind == "tv":
    return losses.tv_penalty(features["l1"], alpha=alpha)
  raise ValueError(f"unknown penalty {kind!r}; use one of {PENALTIES}")


def _loss(params, state: TrainState, images, labels, penalty_kind):
  logits, features = state.apply_fn({"params": params}, images,
                                     return_features=True)
  ce = losses.cross_entropy(logits, labels)
  pen = penalty(penalty_kind, state.alpha, params, features)
  return ce + pen, (logits, ce, pen)


@functools.partial(jax.jit, static_argnames=("penalty_kind", "augment"),
                   donate_argnums=(0,))
def train_step(state: TrainState, batch: tuple[jax.Array, jax.Array],
               rng: jax.Array, *, penalty_kind: str = "none",
               augment: bool = True) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimiser step on a batch (images float32 (B,32,32,3), labels (B,)).

  `rng` drives the on-device augmentation; pass `fold_in(root, step)`.
  """
  images, labels = batch
  if augment:
    images = pipeline.augment(rng, images)
  return gradient_step(state, images, labels, penalty_kind=penalty_kind)


def gradient_step(state: TrainState, images: jax.Array, labels: jax.Array, *,
                  penalty_kind: str) -> tuple[TrainState, dict[str, jax.Array]]:
  """The optimiser step of `train_step` on inputs already prepared
  (augmented, or perturbed by `blurnet_jax.defences.adversarial`), and its
  metrics; not jitted itself, it runs inside its caller's program."""
  grad_fn = jax.value_and_grad(_loss, has_aux=True)
  (loss, (logits, ce, pen)), grads = grad_fn(state.params, state, images,
                                             labels, penalty_kind)
  state = state.apply_gradients(grads=grads)
  metrics = {
      "loss": loss, "cross_entropy": ce, "penalty": pen,
      "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
      "grad_norm": optax.tree.norm(grads),
      "param_norm": optax.tree.norm(state.params),
  }
  return state, metrics


@jax.jit
def eval_step(state: TrainState, batch) -> dict[str, jax.Array]:
  """Sums over a padded batch (images, labels, mask): correct, loss, count."""
  images, labels, mask = batch
  logits = state.apply_fn({"params": state.params}, images)
  per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return {"correct": jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
          "loss": jnp.sum(per_example * mask), "count": jnp.sum(mask)}


def evaluate(state: TrainState, images: np.ndarray, labels: np.ndarray, *,
             batch_size: int = 500, step=eval_step) -> dict[str, float]:
  """Accuracy and mean loss over a whole split, from the sums of
  `step(state, batch)` over its padded batches (`eval_step`'s)."""
  sums = {"correct": 0.0, "loss": 0.0, "count": 0.0}
  for batch in pipeline.eval_batches(images, labels, batch_size=batch_size):
    out = jax.device_get(step(state, batch))
    for k in sums:
      sums[k] += float(out[k])
  return {"accuracy": sums["correct"] / sums["count"],
          "loss": sums["loss"] / sums["count"]}


class Training(NamedTuple):
  """How a model trains and is tested.

  Attributes:
    step: `step(state, batch, rng) -> (state, metrics)`, the jitted step
      that `fit` runs (vmappable over a population, `sweep.py`).
    evaluate: `evaluate(state, images, labels, *, batch_size) ->
      {"accuracy", "loss"}` over a held-out split.
    classifier: the `ApplyFn` whose argmax is the model's class, as the
      victims are classified.
  """

  step: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
  evaluate: Callable[..., dict[str, float]]
  classifier: models.ApplyFn


def plain_training(config: ml_collections.ConfigDict) -> Training:
  """`train_step` with the config's penalty and augmentation, `evaluate`,
  and the model itself: the training of a config without a defence."""
  kind = (config.get("defence") or {}).get("kind", "none")
  if kind != "none":
    raise ValueError(
        f"defence.kind={kind!r} needs its own training step: pass "
        "training=blurnet_jax.defences.training.training_for(config) "
        "(launch.train and sweep.train_population do)")
  return Training(step=functools.partial(train_step,
                                         penalty_kind=config.penalty.kind,
                                         augment=config.augment),
                  evaluate=evaluate,
                  classifier=models.apply_fn_for(models.model_for(config)))


def prepare_data(data: ml_collections.ConfigDict):
  """`datasets.prepare(data)`; with several processes, process 0 builds the
  data set first (the others would race on its files), then the others
  open what it built."""
  if distributed.is_writer():
    builder = datasets.prepare(data)
  distributed.barrier("data prepared")
  if not distributed.is_writer():
    builder = datasets.prepare(data)
  return builder


def load_data(config: ml_collections.ConfigDict):
  """(train_images, train_labels, test_images, test_labels) of a config."""
  builder = prepare_data(config.data)
  return (*datasets.load_split(builder, "train"),
          *datasets.load_split(builder, "test"))


def fit(config: ml_collections.ConfigDict, workdir: epath.Path, state,
        step_fn, rng_for_step, evaluate_fn, train_images, train_labels, *,
        desc: str, place=jax.device_put, members: int | None = None):
  """The training loop shared by single runs and vmapped populations.

  Resumes from `workdir/checkpoints`, feeds `config.num_train_steps` batches
  of the shared order (`data.shuffle_seed`), logs JSON lines to
  `workdir/metrics.jsonl`, evaluates with `evaluate_fn(state) -> dict` every
  `eval_every` steps, checkpoints every `checkpoint_every`, and stops with
  `NonFiniteLossError` (keeping every saved checkpoint) on a NaN/Inf loss,
  gradient norm or parameter norm.
  Metrics of a population are lists, one value per member (the first
  `members` if given: the rest pad the population).

  With several processes every one runs this loop on the same batches;
  values are gathered (`distributed.to_host`) before they are checked or
  logged, process 0 alone writes metrics and checkpoints while the others
  wait at a barrier, and every process resumes from the same checkpoint
  (`place(host_state)` lays a restored state out as `state` was).

  Returns:
    (state, seconds spent in this call's steps).
  """
  ckpt_dir = workdir / "checkpoints"
  restored, start = checkpoint.restore_or_init(ckpt_dir,
                                               distributed.to_host(state))
  start = distributed.same_on_every_process(
      start, "the checkpoint step to resume from",
      f"put {workdir} on a filesystem that every process shares")
  if start:
    state = place(restored)
    logging.info("resuming %s from step %d", desc, start)
  trim = (lambda v: v) if members is None else (
      lambda v: v[:members] if np.ndim(v) else v)
  total = config.num_train_steps
  log_every = max(1, config.log_every)
  eval_every = max(1, config.eval_every)
  checkpoint_every = max(1, config.checkpoint_every)
  batches = pipeline.train_batches(train_images, train_labels,
                                   batch_size=config.batch_size,
                                   seed=config.data.shuffle_seed,
                                   start_step=start)
  progress = Progress(total, desc, start=start, unit="step")
  t0 = time.perf_counter()
  step = start
  writer = distributed.is_writer()
  # Appended to when resuming; a run from step 0 starts the file again (the
  # lines of a run that saved no checkpoint describe a state that is gone).
  with ((workdir / "metrics.jsonl").open("a" if start else "w") if writer
        else open(os.devnull, "w", encoding="utf-8")) as metrics_file:
    while step < total:
      state, metrics = step_fn(state, next(batches), rng_for_step(step))
      step += 1
      watched = {name: trim(np.asarray(distributed.to_host(metrics[name])))
                 for name in WATCHED_METRICS}
      for name, value in watched.items():
        if not np.isfinite(value).all():
          bad = np.flatnonzero(~np.isfinite(value.ravel())).tolist()
          raise NonFiniteLossError(
              f"{name} is {value.tolist()} at step {step}"
              f"{f' (population members {bad})' if value.ndim else ''}; "
              f"lower learning_rate or penalty.alpha. Last good checkpoint: "
              f"step {checkpoint.latest_step(ckpt_dir)} in {ckpt_dir}")
      record = None
      if step % log_every == 0 or step == total:
        record = {"step": step} | {
            k: trim(np.asarray(v)).tolist()
            for k, v in distributed.to_host(metrics).items()}
      if step % eval_every == 0 or step == total:
        record = (record or {"step": step}) | {
            "test_" + k: v for k, v in evaluate_fn(state).items()}
      if record is not None:
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()
        progress.update(step, loss=float(np.mean(watched["loss"])), acc=float(
            np.mean(record.get("accuracy", np.nan))))
      if step % checkpoint_every == 0 or step == total:
        host = distributed.to_host(state)
        if writer:
          checkpoint.save(ckpt_dir, host, step=step, config=config,
                          keep=config.keep_checkpoints)
        distributed.barrier(f"checkpoint {step}")
  progress.close()
  return state, time.perf_counter() - t0


def data_parallel_mesh(batch_size: int):
  """The mesh over which one model's batch is split (None: one device).

  Every device of the job (all processes) takes `batch_size / devices`
  examples of each batch; the train state is replicated, and the compiled
  step averages the gradients over the devices (XLA inserts the all-reduce
  that the sharding annotations call for), so the step computes what one
  device computes on the whole batch, up to the order of float sums.
  """
  mesh = distributed.global_mesh("batch")
  if mesh is not None and batch_size % jax.device_count():
    raise ValueError(
        f"batch_size={batch_size} cannot be split over {jax.device_count()} "
        f"devices ({jax.process_count()} process(es)); use a multiple of "
        f"{jax.device_count()}, e.g. --config.batch_size="
        f"{-(-batch_size // jax.device_count()) * jax.device_count()}")
  return mesh


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: epath.PathLike, *,
                       training: Training | None = None
                       ) -> tuple[TrainState, dict]:
  """Trains one variant, resuming from `workdir`, and evaluates it.

  `training` gives the step, the evaluation and the classifier (default
  `plain_training(config)`; a config with a defence needs
  `blurnet_jax.defences.training.training_for(config)`).

  Writes into workdir: `config.json`, `metrics.jsonl` (one JSON object per
  logged step: train metrics, and test metrics every `eval_every` steps),
  `checkpoints/`, and `results.json` (test accuracy, victims recognised as
  stop, seconds). With several devices (local, or over processes) training
  is data-parallel (`data_parallel_mesh`); the returned state is then on
  the host.

  Returns:
    The final state and the results dict.
  """
  workdir = epath.Path(workdir)
  datasets.pin_data(config)  # a bad data folder stops before any file
  with workdirs.lock(workdir):
    return _train_and_evaluate(config, workdir, training)


def _train_and_evaluate(config, workdir, training):
  check_regime(config)
  workdirs.claim(config, workdir)
  if config.penalty.kind not in PENALTIES:
    raise ValueError(f"unknown penalty.kind {config.penalty.kind!r}; use one "
                     f"of {PENALTIES}")
  training = plain_training(config) if training is None else training
  mesh = data_parallel_mesh(config.batch_size)
  train_images, train_labels, test_images, test_labels = load_data(config)
  model = models.model_for(config)
  init_rng, step_root = jax.random.split(jax.random.key(config.seed))
  state = distributed.replicate(create_train_state(config, model, init_rng),
                                mesh)
  step_fn = training.step
  if mesh is not None:
    unsharded_step = step_fn

    def step_fn(state, batch, rng):  # pylint: disable=function-redefined
      return unsharded_step(state, distributed.shard_leading(batch, mesh),
                            rng)

    step_root = distributed.replicate(step_root, mesh)

  state, seconds = fit(
      config, workdir, state, step_fn,
      lambda step: jax.random.fold_in(step_root, step),
      lambda st: training.evaluate(distributed.to_host(st), test_images,
                                   test_labels),
      train_images, train_labels, desc=config.get("variant", "train"),
      place=lambda host: distributed.replicate(host, mesh))
  if mesh is not None:
    state = distributed.to_host(state)
  results = {"variant": config.get("variant", ""),
             "steps": config.num_train_steps,
             "penalty": config.penalty.to_dict(),
             "train_seconds_this_run": round(seconds, 1),
             "test": training.evaluate(state, test_images, test_labels),
             **recognition.read_as_stop(
                 training.classifier, state.params,
                 recognition.victim_sets(config.rp2_dir))}
  write_json(workdir / "results.json", results, sort_keys=True)
  return state, results
