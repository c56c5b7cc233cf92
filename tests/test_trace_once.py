"""The hot programs trace once per shape: a second call with new values of
the same shapes and dtypes reuses the compiled program (a silent retrace,
e.g. a Python scalar or a weak type that changes after the first step,
recompiles every step and goes unnoticed otherwise).

Each test uses a batch size no other test uses, so the first call is a
fresh trace and the count is exact."""

import jax
import jax.numpy as jnp
import numpy as np

from blurnet_jax import models
from blurnet_jax import sweep
from blurnet_jax import train
from blurnet_jax.attacks import grid
from blurnet_jax.attacks import RP2Config
from blurnet_jax.data import masks
from tests.helpers import tiny_train_config


def _batch(rng, n):
  return (jnp.asarray(rng.random((n, 32, 32, 3)), jnp.float32),
          jnp.asarray(rng.integers(0, 18, n), jnp.int32))


def test_the_train_step_traces_once(tiny_data_dir):
  config = tiny_train_config("tv_1e-4", tiny_data_dir)
  model = models.model_for(config)
  state = train.create_train_state(config, model, jax.random.key(0))
  rng = np.random.default_rng(0)
  before = train.train_step._cache_size()  # pylint: disable=protected-access
  for i in range(3):  # the state after a step feeds the next, as in fit()
    state, _ = train.train_step(state, _batch(rng, 13), jax.random.key(i),
                                penalty_kind="tv", augment=True)
  assert train.train_step._cache_size() == before + 1  # pylint: disable=protected-access


def test_the_vmapped_population_step_traces_once(tiny_data_dir):
  config = tiny_train_config("linf_5x5", tiny_data_dir)
  config.sweep = {"alphas": (0.1, 0.01), "seeds": (0, 1)}
  model = models.model_for(config)
  population = sweep.create_population(config, model, [0.1, 0.01], [0, 1])
  step = sweep.population_step(config, 2)
  rng = np.random.default_rng(1)
  for i in range(3):
    keys = jax.random.split(jax.random.key(i), 2)
    population, _ = step(population, _batch(rng, 11), keys)
  assert step._cache_size() == 1  # pylint: disable=protected-access


def test_the_attack_grid_compiles_once_for_its_shapes():
  model = models.LisaCNN()
  apply_fn = models.apply_fn_for(model)
  params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
  rng = np.random.default_rng(2)
  cfg = RP2Config(steps=2, num_transforms=1)
  before = len(grid._COMPILED)  # pylint: disable=protected-access
  for i, targets in enumerate(((5, 12), (1, 7))):
    images = rng.random((3, 32, 32, 3)).astype(np.float32)
    grid.attack_targets(apply_fn, params, images, masks.get_mask("camouflage"),
                        targets, jax.random.key(i), cfg=cfg)
  assert len(grid._COMPILED) == before + 1  # pylint: disable=protected-access
