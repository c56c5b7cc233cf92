"""Every speed measurement of the project, one module per kind; one of them
per run of `launch.benchmark`, picked by a named override of
configs/benchmark.py:

  suite        (no override) the jitted train step, the RP2 white-box grid
               and the synthetic renderer, repeated and interleaved with the
               reference programs; a table and WORKDIR/benchmark.json.
  references   the suite's bare-JAX and PyTorch reference scripts: running
               them, and the ratios of the project's figures to theirs.
  render       (:render) the synthetic renderer's steady-state images/s,
               1 worker and several.
  populations  (:populations) a vmapped population step of
               `blurnet_jax.sweep`, per chunk size, against its members
               trained alone.
  scaling      (:scaling) a population and a target grid on every device of
               a job, of one process or several.
"""
