"""The `distributed` block every launcher config carries: how a process
joins a multi-process job (blurnet_jax.distributed). Unset fields come from
the environment; with none set the run is a single process.

    # two local processes (one per shell), 2 CPU devices each:
    XLA_FLAGS=--xla_force_host_platform_device_count=2 \
    python -m launch.sweep --config=configs/sweep.py:runlocal --workdir=DIR \
        --config.distributed.coordinator_address=127.0.0.1:12355 \
        --config.distributed.num_processes=2 --config.distributed.process_id=0
"""

import ml_collections


def distributed_config() -> ml_collections.ConfigDict:
  d = ml_collections.ConfigDict()
  # HOST:PORT of process 0 ('' = $BLURNET_JAX_COORDINATOR, else one
  # process); 'auto' lets JAX detect a TPU pod slice or a SLURM job.
  d.coordinator_address = ""
  d.num_processes = -1  # -1 = $BLURNET_JAX_NUM_PROCESSES
  d.process_id = -1  # -1 = $BLURNET_JAX_PROCESS_ID; the one field that
  # differs between processes (left out of the config check)
  d.initialization_timeout = 120  # s to reach the coordinator, all to join
  d.heartbeat_timeout = 30  # s of silence after which a process is lost
  return d
