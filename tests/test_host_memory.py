"""The malloc settings that let XLA:CPU reuse freed host memory."""

import os
import subprocess
import sys

import pytest

from blurnet_jax import host_memory

# A jitted program with a 48 MiB output, called 30 times in a fresh
# interpreter (the settings must precede JAX's client): the minor page
# faults of each call. While the heap grows to its working size a few calls
# still fault, at moments that vary from run to run; the median call shows
# the steady state.
_FAULTS = """
import resource
import statistics
import sys
import blurnet_jax
from blurnet_jax import host_memory
from blurnet_jax.study import studies  # the whole package, imported
imported = host_memory.applied()
if sys.argv[1] == "call":
  host_memory.reuse_freed_memory()
import jax, jax.numpy as jnp
x = jnp.ones((12 * 2**20,), jnp.float32)
f = jax.jit(lambda x: x * 2 + 1)
faults = []
for _ in range(30):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(imported, host_memory.applied(), statistics.median(faults), min(faults))
"""
_PAGES = 12 * 2**20 * 4 // 4096  # of the output buffer


def _faults(env_value, action):
  env = dict(os.environ)
  env.pop(host_memory.ENV_VAR, None)
  if env_value is not None:
    env[host_memory.ENV_VAR] = env_value
  out = subprocess.run([sys.executable, "-c", _FAULTS, action], env=env,
                       check=True, capture_output=True,
                       text=True).stdout.split()
  return out[0] == "True", out[1] == "True", float(out[2]), float(out[3])


@pytest.mark.skipif(not host_memory.glibc(), reason="the settings exist only in glibc")
def test_the_call_sets_malloc_so_calls_stop_page_faulting():
  imported, applied, median, _ = _faults(None, "call")
  assert not imported and applied
  assert median < 0.05 * _PAGES, median


@pytest.mark.skipif(not host_memory.glibc(), reason="the settings exist only in glibc")
@pytest.mark.parametrize("env_value,action", [(None, "import"),
                                              ("system", "call")])
def test_import_alone_or_the_opt_out_leaves_glibc_defaults(env_value, action):
  # glibc's defaults: every call maps its 48 MiB output afresh.
  imported, applied, _, least = _faults(env_value, action)
  assert not imported and not applied
  assert least > 0.5 * _PAGES, least


def test_reuse_freed_memory_is_idempotent():
  first = host_memory.reuse_freed_memory()
  assert host_memory.reuse_freed_memory() == first == host_memory.applied()
