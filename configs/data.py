r"""Prepares the built-in synthetic traffic-sign set.

    python -m launch.data --config=configs/data.py --workdir=/tmp/data
    python -m launch.data --config=configs/data.py:runlocal --workdir=/tmp/d

The full set (2,000 train + 300 test crops per class, 41,400 images) takes
about a minute on a 2-core CPU; `runlocal` (20 + 5 per class) a few seconds.
Writes the tfds set under `data_dir` (default: tfds's ~/tensorflow_datasets), and
`contact_sheet.png` and `summary.json` into WORKDIR.
"""

import ml_collections

from blurnet_jax import config_args


def data_config() -> ml_collections.ConfigDict:
  """The data block shared by every config that trains or evaluates."""
  c = ml_collections.ConfigDict()
  # synthetic (built in) | lisa_crops | gtsrb | lisa (the full LISA
  # download): the real sources read data.manual_dir, never download.
  c.source = "synthetic"
  c.data_dir = ""  # tfds data_dir; "" -> ~/tensorflow_datasets
  c.manual_dir = ""  # the folder of a real source's files
  # sha256 of a real source's files: '' is filled in by the run (the config
  # it saves names the bytes it read); set, the files must have it.
  c.fingerprint = ""
  c.train_per_class = 2000
  c.test_per_class = 300
  c.seed = 0  # the synthetic set's seed (independent of the training seed)
  # Camera corruption strength in [0, 1]: 0 = clean renders, 1 = the default
  # camera (blur, low resolution, noise, JPEG, haze, shadow, occluder).
  c.corruption = 1.0
  c.balance = "uniform"  # train split: uniform | lisa (stop dominates)
  c.workers = 0  # rendering workers; 0 = one per core; bytes never change
  c.shuffle_seed = 0  # batch order; shared by every model of a sweep
  return c


def base() -> ml_collections.ConfigDict:
  """The full set's data block, and the contact sheet's size."""
  config = data_config()
  config.contact_sheet_per_class = 12
  return config


#: Named overrides of `base` (see blurnet_jax/config_args.py); train.py
#: applies `runlocal` to its data block.
OVERRIDES = {
    "runlocal": {"train_per_class": 20, "test_per_class": 5},
}


def get_config(arg=None):
  return config_args.configure(arg, base, OVERRIDES)
