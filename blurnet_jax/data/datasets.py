"""The `synthetic_signs` tfds builder, and reading any prepared set into memory.

    builder = prepare_synthetic(data_dir, train_per_class=2000,
                                test_per_class=300, seed=0)
    images, labels = load_split(builder, "train")  # uint8 NHWC, int32

Prepared as `array_record` with plain `Tensor` features, read back with
`builder.as_data_source()`: no TensorFlow anywhere.
"""

import dataclasses
import time

from absl import logging
from etils import epath
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from blurnet_jax.classes import NUM_CLASSES, label_space
from blurnet_jax.data import common
from blurnet_jax.data import sources
from blurnet_jax.data import synthetic
from blurnet_jax.jsonio import write_json


@dataclasses.dataclass
class SyntheticSignsConfig(tfds.core.BuilderConfig):
  """Everything that changes the synthetic set's bytes; the name is derived
  from it, so two prepared sets of different settings never share a folder.

  Attributes:
    train_per_class, test_per_class: split sizes (images per class; with
      balance 'lisa' the train split holds train_per_class * 18 images in
      LISA-like shares).
    seed: the rendering seed.
    corruption: camera corruption strength in [0, 1] (0 = clean renders,
      1 = the default camera); both splits.
    balance: the train split's classes: 'uniform' or 'lisa' (stop
      dominates; `synthetic.class_weights`). The test split stays uniform,
      so that accuracies stay comparable.
  """

  train_per_class: int = 2000
  test_per_class: int = 300
  seed: int = 0
  corruption: float = 1.0
  balance: str = "uniform"

  @staticmethod
  def make(*, train_per_class: int = 2000, test_per_class: int = 300,
           seed: int = 0, corruption: float = 1.0,
           balance: str = "uniform") -> "SyntheticSignsConfig":
    for field, value in (("train_per_class", train_per_class),
                         ("test_per_class", test_per_class)):
      if not isinstance(value, int) or value < 1:
        raise ValueError(f"{field} must be a positive integer, got {value!r}")
    corruption = synthetic.check_corruption(corruption)
    synthetic.class_weights(balance)  # one line naming the choices
    return SyntheticSignsConfig(
        name=config_name(train_per_class, test_per_class, seed, corruption,
                         balance),
        train_per_class=train_per_class, test_per_class=test_per_class,
        seed=seed, corruption=corruption, balance=balance)


def config_name(train_per_class: int, test_per_class: int, seed: int,
                corruption: float = 1.0, balance: str = "uniform") -> str:
  """The tfds config name of a synthetic set: default knobs add nothing, any
  other value adds its own part (`_corruption0.5`, `_lisa`)."""
  name = f"train{train_per_class}_test{test_per_class}_seed{seed}"
  if corruption != 1.0:
    name += f"_corruption{corruption:g}"
  if balance != "uniform":
    name += f"_{balance}"
  return name


class SyntheticSigns(tfds.core.GeneratorBasedBuilder):
  """Procedural LISA-like 32x32 sign crops in the project's 18 classes."""

  VERSION = tfds.core.Version("2.1.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release.",
      "2.0.0": ("LISA's look: tight boxes, crops resized from the sign's "
                "size in the frame, greyscale share, the real victims' "
                "colours, MUTCD warning borders; corruption and balance."),
      "2.1.0": ("W3-1 (arrow above the octagon) and R4-7 (island nose at the "
                "top left) as the MUTCD describes them; W4-2's dotted lane "
                "line."),
  }
  BUILDER_CONFIGS = [SyntheticSignsConfig.make()]
  # tfds's own lookup of the code path imports `importlib_resources`, which
  # is not always installed; this is the path it would find.
  code_path = epath.Path(__file__)

  def __init__(self, *, workers: int | None = None, **kwargs):
    """`workers`: rendering threads (None: one per core); bytes never change."""
    self._workers = workers
    self.generation_seconds = 0.0  # rendering time, without tfds's writing
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    # Not `dataset_info_from_configs`: it lists a metadata folder beside this
    # module and fails when there is none.
    return tfds.core.DatasetInfo(
        builder=self,
        description=("Procedural LISA-like traffic-sign crops (32x32 RGB), "
                     "18 classes in the order of blurnet_jax.classes."),
        features=common.features(),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: every image is generated
    cfg = self.builder_config
    return {"train": self._generate_examples("train", cfg.train_per_class),
            "test": self._generate_examples("test", cfg.test_per_class)}

  def _generate_examples(self, split, per_class):
    cfg = self.builder_config
    i = 0
    chunks = synthetic.generate_split(
        per_class, seed=cfg.seed, split=split, workers=self._workers,
        corruption=cfg.corruption,
        balance=cfg.balance if split == "train" else "uniform")
    while True:
      t = time.perf_counter()
      chunk = next(chunks, None)
      self.generation_seconds += time.perf_counter() - t
      if chunk is None:
        return
      for image, label in zip(*chunk):
        yield f"{split}{i:08d}", {"image": image, "label": int(label)}
        i += 1


def prepare_synthetic(data_dir: epath.PathLike, *, train_per_class: int = 2000,
                      test_per_class: int = 300, seed: int = 0,
                      corruption: float = 1.0, balance: str = "uniform",
                      workers: int | None = None) -> SyntheticSigns:
  """Prepares (or reuses) the synthetic set under `data_dir`.

  A new preparation also writes `summary.json` (examples per class and
  split, preparation speed) into the data set's folder
  (`builder.data_path`); pictures and the RP2 model's reading of the set
  are the study's (`study.describe`).
  """
  config = SyntheticSignsConfig.make(
      train_per_class=train_per_class, test_per_class=test_per_class,
      seed=seed, corruption=corruption, balance=balance)
  if config == SyntheticSigns.BUILDER_CONFIGS[0]:
    config = config.name  # tfds refuses a second object of a registered name
  builder = SyntheticSigns(data_dir=str(data_dir), config=config,
                           file_format="array_record", workers=workers)
  if builder.data_path.exists():
    logging.info("reusing the synthetic set in %s", builder.data_path)
    return builder
  start = time.perf_counter()
  builder.download_and_prepare()
  seconds = time.perf_counter() - start
  total = (train_per_class + test_per_class) * NUM_CLASSES
  summary = count_examples(builder)
  summary.update(
      prepare_seconds=round(seconds, 2),
      prepared_images_per_second=round(total / seconds, 1),
      generation_seconds=round(builder.generation_seconds, 2),
      generation_images_per_second=round(
          total / max(builder.generation_seconds, 1e-9), 1))
  write_json(builder.data_path / "summary.json", summary)
  return builder


def count_examples(builder: tfds.core.DatasetBuilder,
                   num_classes: int = NUM_CLASSES) -> dict:
  """Examples per class and split of a prepared builder."""
  out = {"name": builder.name, "config": builder.builder_config.name,
         "path": str(builder.data_path), "splits": {}}
  for split in builder.info.splits:
    _, labels = load_split(builder, split)
    counts = np.bincount(labels, minlength=num_classes)
    out["splits"][split] = {"examples": int(labels.size),
                            "per_class": counts.tolist()}
  source = common.recorded_source(builder)
  if source is not None:
    out["source"] = source
  return out


def load_split(builder: tfds.core.DatasetBuilder, split: str, *,
               limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Reads a prepared split into memory, in its stored order.

  Returns:
    images uint8 (N, 32, 32, 3) and labels int32 (N,).
  """
  sources = builder.as_data_source()
  if split not in sources:
    raise ValueError(f"{builder.name} has no split {split!r}; it has "
                     f"{sorted(sources)}")
  source = sources[split]
  n = len(source) if limit is None else min(limit, len(source))
  records = source.__getitems__(list(range(n)))
  images = np.stack([r["image"] for r in records]).astype(np.uint8)
  labels = np.asarray([r["label"] for r in records], np.int32)
  return images, labels


def _real(source: str):
  """(module, prepare function) of a real source."""
  # pylint: disable=g-import-not-at-top
  if source == "lisa":
    from blurnet_jax.data import lisa
    return lisa, lisa.prepare_lisa
  if source == "lisa_crops":
    from blurnet_jax.data import lisa_crops
    return lisa_crops, lisa_crops.prepare_lisa_crops
  from blurnet_jax.data import gtsrb
  return gtsrb, gtsrb.prepare_gtsrb


def source_of(config) -> sources.Source | None:
  """The files a data block reads, checked and fingerprinted (None for the
  synthetic set, which its settings name in full).

  Raises:
    ValueError, FileNotFoundError: one line naming the folder and what it
      should hold (a real source without `manual_dir`, a missing folder or
      file), before anything is prepared or written.
  """
  if _checked_source(config) == "synthetic":
    return None
  module, _ = _real(config.source)
  return sources.describe(config.manual_dir,
                          module.source_files(config.manual_dir))


def _checked_source(config) -> str:
  """`config.source`, with one-line errors for an unknown source, a
  fingerprint given for the synthetic set, or a real source without its
  folder."""
  label_space(config.source)  # one line naming the sources
  if config.source == "synthetic":
    if config.get("fingerprint"):
      raise ValueError(
          f"data.fingerprint={config.fingerprint!r} names real files; the "
          "synthetic set has none (its settings name it): leave it ''")
  elif not config.get("manual_dir"):
    raise ValueError(f"source={config.source!r} reads real photographs from "
                     "a folder: pass --config.data.manual_dir=PATH")
  return config.source


def pin_data(config: ml_collections.ConfigDict) -> sources.Source | None:
  """Checks the files a run's data block (`config.data`) names and records
  their fingerprint in `config.data.fingerprint`, so that the config a run
  saves names the bytes its figures rest on; a fingerprint already there
  (the config of an earlier run) must be the files'.

  In place: every model of a study shares the study's data block.

  Returns:
    The files' `sources.Source` (None for the synthetic set, or a config
    that reads no data set).
  """
  if "data" not in config:
    return None
  source = source_of(config.data)
  if source is not None:
    sources.check_pin(source, config.data.get("fingerprint", ""),
                      config.data.source)
    config.data.fingerprint = source.fingerprint
  return source


def prepare(config) -> tfds.core.DatasetBuilder:
  """Prepares (or reuses) the data set a config's data block names.

  Args:
    config: a data block (`configs/data.py:data_config`): `source`,
      `data_dir`, `manual_dir` (the real sources' folder), `fingerprint`
      (if set, the real files must have it), `train_per_class`,
      `test_per_class`, `seed`, `workers`; optionally `folds` and `fold`
      (a real source's test split as one fold of a grouped k-fold by
      track; lisa_crops).
  """
  data_dir = config.data_dir or None
  if data_dir is None:
    data_dir = str(epath.Path("~/tensorflow_datasets").expanduser())
  # One-line errors before anything is read or made; a real source's
  # folder and files are checked by its prepare function, first.
  if _checked_source(config) == "synthetic":
    return prepare_synthetic(
        data_dir, train_per_class=config.train_per_class,
        test_per_class=config.test_per_class, seed=config.seed,
        corruption=config.get("corruption", 1.0),
        balance=config.get("balance", "uniform"),
        workers=config.workers or None)
  _, prepare_real = _real(config.source)
  folds = int(config.get("folds", 0))
  if not folds:
    return prepare_real(config.manual_dir, data_dir,
                        fingerprint=config.get("fingerprint", ""))
  if config.source != "lisa_crops":
    raise ValueError(f"data.folds={folds}: grouped k-fold splits are built "
                     f"for lisa_crops only, not {config.source!r}; pass "
                     "--config.real.folds=0")
  return prepare_real(config.manual_dir, data_dir,
                      fingerprint=config.get("fingerprint", ""), folds=folds,
                      fold=int(config.get("fold", 0)))


def load_field(builder: tfds.core.DatasetBuilder, split: str, field: str
               ) -> np.ndarray:
  """One feature of every example of a prepared split, stacked in the
  stored order (e.g. 'group' or 'roi' of the real photographs)."""
  source = builder.as_data_source()[split]
  if field not in builder.info.features:
    raise ValueError(f"{builder.name} has no feature {field!r}; it has "
                     f"{sorted(builder.info.features)}")
  return np.stack([r[field] for r in source.__getitems__(
      list(range(len(source))))])
