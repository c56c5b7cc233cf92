"""The package's layers, lowest first: a module imports only its own layer
and those below it (`tests/test_architecture.py` holds every import to
this; `docs/studies.md` draws it). Each layer: its name and the module
prefixes it holds, the longest prefix deciding."""

LAYERS = (
    ("base", ("blurnet_jax", "blurnet_jax.classes", "blurnet_jax.ops",
              "blurnet_jax.progress", "blurnet_jax.sentinel",
              "blurnet_jax.config_args", "blurnet_jax.host_memory",
              "blurnet_jax.stats", "blurnet_jax.document",
              "blurnet_jax.checkpoint", "blurnet_jax.checkpoint_format",
              "blurnet_jax.distributed", "blurnet_jax.jsonio",
              "blurnet_jax.layers")),
    ("data", ("blurnet_jax.data",)),
    ("models", ("blurnet_jax.models",)),
    ("losses", ("blurnet_jax.losses", "blurnet_jax.spectral")),
    ("train and attacks", ("blurnet_jax.train", "blurnet_jax.sweep",
                           "blurnet_jax.workdirs", "blurnet_jax.recognition",
                           "blurnet_jax.attacks", "blurnet_jax.plots",
                           "blurnet_jax.defences")),
    ("tools", ("blurnet_jax.bench",)),
    ("study", ("blurnet_jax.study",)),
    ("configs", ("configs",)),
    ("launch", ("launch",)),
)
