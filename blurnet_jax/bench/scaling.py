"""How a sweep and a target grid scale with the devices of a job: the same
program timed on 1 process or several (`blurnet_jax.distributed`), after
compilation, on random data (the figures of docs/multihost.md, "Measured
scaling"; `launch.benchmark --config=configs/benchmark.py:scaling`, run on
every process of the job).

    scaling.time_sweep(config, steps=5)    # population steps
    scaling.time_grid(config, targets=8, steps=5)  # RP2 grid, LisaCNN

`config` is a sweep's config (configs/sweep.py; `population` in
configs/benchmark.py). Both return the wall seconds of the timed part on
this process (every process runs the same program; process 0's figure is
the job's).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from blurnet_jax import distributed
from blurnet_jax import models
from blurnet_jax import sweep
from blurnet_jax import train
from blurnet_jax.attacks import grid
from blurnet_jax.attacks import rp2
from blurnet_jax.classes import NUM_CLASSES
from blurnet_jax.data import masks
from blurnet_jax.data import synthetic


def _job() -> dict:
  return {"backend": jax.default_backend(), "devices": jax.device_count(),
          "processes": jax.process_count()}


def time_sweep(config: ml_collections.ConfigDict, *, steps: int) -> dict:
  """Seconds of `steps` population steps of `config.sweep` (members split
  over every device of the job, padded to a multiple of their count)."""
  pairs = sweep.members(config)
  mesh, size = sweep.member_mesh(len(pairs))
  padded = pairs + pairs[-1:] * (size - len(pairs))
  model = models.model_for(config)
  pop = distributed.shard_leading(sweep.create_population(
      config, model, [a for a, _ in padded], [s for _, s in padded]), mesh)
  keys = distributed.shard_leading(jax.vmap(jax.random.key)(
      jnp.arange(size, dtype=jnp.uint32)), mesh)
  rng = np.random.default_rng(0)
  batch = (rng.random((config.batch_size, 32, 32, 3), np.float32),
           rng.integers(0, NUM_CLASSES, config.batch_size).astype(np.int32))
  step_fn = sweep.population_step(config, size)
  t0 = time.perf_counter()
  pop, m = step_fn(pop, batch, keys)
  jax.block_until_ready(m)
  t1 = time.perf_counter()
  for _ in range(steps):
    pop, m = step_fn(pop, batch, keys)
  jax.block_until_ready(m)
  seconds = time.perf_counter() - t1
  return _job() | {"workload": "sweep", "members": len(pairs),
                   "padded_members": size, "steps": steps,
                   "batch_size": config.batch_size,
                   "compile_seconds": round(t1 - t0, 2),
                   "seconds": round(seconds, 3),
                   "member_steps_per_s": round(len(pairs) * steps / seconds,
                                               2)}


def time_grid(config: ml_collections.ConfigDict, *, targets: int,
              steps: int) -> dict:
  """Seconds of an RP2 grid of `targets` targets (all in one program, split
  over every device of the job) of `steps` steps on 10 synthetic victims,
  against a freshly initialised LisaCNN of `config.model`."""
  model = models.model_for(config)
  state = train.create_train_state(config, model, jax.random.key(0))
  wanted = [t for t in grid.ALL_TARGETS][:targets]
  cfg = rp2.RP2Config(steps=steps, num_transforms=1)
  timings: dict[str, float] = {}
  grid.attack_targets(models.apply_fn_for(model), state.params,
                      synthetic.synthetic_victims(10, seed=0),
                      masks.get_mask("camouflage"), wanted, jax.random.key(0),
                      cfg=cfg, chunk=0, timings=timings)
  return _job() | {"workload": "grid", "targets": len(wanted),
                   "chunk": grid.chunk_size(len(wanted), 0), "steps": steps,
                   "compile_seconds": round(timings["compile_s"], 2),
                   "seconds": round(timings["run_s"], 3),
                   "target_steps_per_s": round(
                       len(wanted) * steps / timings["run_s"], 2)}
