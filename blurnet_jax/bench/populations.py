"""A population step against its members trained alone: the wall seconds of
`steps` vmapped population steps of `blurnet_jax.sweep` (per chunk size,
members per vmapped program) and of the same steps run for each member
alone, one after another, compile excluded, one shared batch
(`launch.benchmark --config=configs/benchmark.py:populations`).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from blurnet_jax import distributed
from blurnet_jax import models
from blurnet_jax import sweep
from blurnet_jax import train
from blurnet_jax.classes import NUM_CLASSES


def population_vs_singles(config: ml_collections.ConfigDict, *,
                          steps: int = 20) -> dict:
  """Wall seconds of `steps` population steps against the same steps run
  for each member alone, one after another (compile excluded, same batch)."""
  pairs = sweep.members(config)
  model = models.model_for(config)
  rng = np.random.default_rng(0)
  batch = (jnp.asarray(rng.random((config.batch_size, 32, 32, 3),
                                  np.float32)),
           jnp.asarray(rng.integers(0, NUM_CLASSES, config.batch_size),
                       jnp.int32))
  alphas = [a for a, _ in pairs]
  seeds = [s for _, s in pairs]

  mesh, _ = sweep.member_mesh(len(pairs))
  if mesh is not None and len(pairs) % jax.device_count():
    raise ValueError(f"{len(pairs)} sweep members cannot be split over "
                     f"{jax.device_count()} devices; use a multiple of "
                     f"{jax.device_count()} (alphas x seeds)")
  keys = distributed.shard_leading(jax.vmap(jax.random.key)(
      jnp.arange(len(pairs), dtype=jnp.uint32)), mesh)
  population_s = {}
  for chunk in [c for c in range(1, len(pairs) + 1) if len(pairs) % c == 0]:
    pop = distributed.shard_leading(
        sweep.create_population(config, model, alphas, seeds), mesh)
    step_fn = sweep.population_step(config, len(pairs), chunk)
    pop, m = step_fn(pop, batch, keys)  # compile
    jax.block_until_ready(m)
    t = time.perf_counter()
    for _ in range(steps):
      pop, m = step_fn(pop, batch, keys)
    jax.block_until_ready(m)
    population_s[chunk] = time.perf_counter() - t

  single = functools.partial(train.train_step, penalty_kind=config.penalty.kind,
                             augment=config.augment)
  tx = train.make_optimizer(config)  # one tx: one compiled step for all
  states = [train.create_train_state(config, model, jax.random.key(s),
                                     alpha=a, tx=tx) for a, s in pairs]
  key = jax.random.key(0)
  for i in range(len(states)):  # compile once, warm every state's buffers
    states[i], m = single(states[i], batch, key)
  jax.block_until_ready(m)
  t = time.perf_counter()
  for i in range(len(states)):
    for _ in range(steps):
      states[i], m = single(states[i], batch, key)
  jax.block_until_ready(m)
  singles_s = time.perf_counter() - t
  default = sweep.member_chunk(config, len(pairs))
  one = singles_s / len(pairs)
  return {"penalty": config.penalty.kind, "members": len(pairs),
          "steps": steps, "batch_size": config.batch_size,
          "backend": jax.default_backend(), "devices": jax.device_count(),
          "processes": jax.process_count(),
          "default_chunk": default,
          "population_seconds": round(population_s[default], 3),
          "population_seconds_by_chunk": {
              str(c): round(v, 3) for c, v in population_s.items()},
          "single_runs_seconds": round(singles_s, 3),
          "one_model_seconds": round(one, 3),
          "ratio_population_over_singles": round(
              population_s[default] / singles_s, 3),
          "ratio_population_over_one_model": round(
              population_s[default] / one, 3)}
