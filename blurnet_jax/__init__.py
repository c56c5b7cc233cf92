"""blurnet-jax: BlurNet defenses and the RP2 physical attack in JAX/Flax.

Layers, imports running downwards only:

* `classes`, `ops`, `models`, `losses`, `data`: the 18 classes, the
  convolutions, `LisaCNN` with its filters, the penalties, the data sets and
  the packaged RP2 assets (`data.rp2_assets`);
* `attacks`: RP2, its transforms, the target grid, PGD, Square (pure
  functions, no files);
* `train`, `sweep`, `checkpoint`, `spectral`: training one model or a
  vmapped population, checkpoints, spectra;
* `plots`, `document`: every figure, and markdown/HTML documents;
* `study`: the BlurNet study (the variant zoo, Tables 1 and 2, spectra,
  sweeps, the robustness checklist, the report), which nothing below imports.

One convention everywhere: a classifier is `apply_fn(params, images) ->
logits` with images float32 (N, 32, 32, 3) in [0, 1] and `params` the inner
params dict; `models.apply_fn_for(model)` makes it for a `LisaCNN`, and
`models.predict(apply_fn, params, images)` gives its classes.

Importing the package changes nothing process-wide. Launchers call
`launch.cli.setup_process()` (host-memory reuse for XLA:CPU and JAX's
persistent compilation cache); a notebook may call
`blurnet_jax.host_memory.reuse_freed_memory()` before its first computation.
"""

from blurnet_jax.classes import CLASS_NAMES, NUM_CLASSES, RP2_TARGET, STOP

__version__ = "0.1.0"
__all__ = ["CLASS_NAMES", "NUM_CLASSES", "RP2_TARGET", "STOP"]
