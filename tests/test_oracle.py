"""Tests of the oracle measurement (the RP2 LISA model on a labelled set) and
of the synthetic set's knobs: corruption strength and class balance."""

import jax
import numpy as np
import pytest

from blurnet_jax.classes import CLASS_NAMES, NUM_CLASSES, STOP
from blurnet_jax.data import datasets
from blurnet_jax.study.evaluators import oracle
from blurnet_jax.data import rp2_assets
from blurnet_jax.data import synthetic
from blurnet_jax.data import synthetic_pixels
from blurnet_jax.data import synthetic_scene

# ---------------------------------------------------------------- the measure


def test_confusion_matrix_and_balanced_accuracy_by_hand():
  labels = np.array([1, 1, 2, 2, 2, 0, 17])
  preds = np.array([1, 2, 2, 2, 0, 0, 17])
  cm = oracle.confusion_matrix(labels, preds)
  assert cm.shape == (NUM_CLASSES, NUM_CLASSES)
  assert cm.sum() == labels.size
  np.testing.assert_array_equal(cm.sum(1), np.bincount(labels, minlength=18))
  assert cm[1, 1] == 1 and cm[1, 2] == 1 and cm[2, 2] == 2 and cm[2, 0] == 1
  acc, per = oracle.balanced_accuracy(cm, classes=(1, 2, 17))
  # recalls 1/2, 2/3, 1: each class weighs the same, whatever its count
  assert per == {"addedLane": 0.5, "keepRight": pytest.approx(2 / 3),
                 "yield": 1.0}
  assert acc == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
  # A prediction of output 0 is an error for a named class, and class 0
  # itself is not in the measure.
  assert oracle.ORACLE_CLASSES == tuple(range(1, 18))


def test_balanced_accuracy_needs_every_class_and_values_in_range():
  cm = oracle.confusion_matrix(np.array([1, 2]), np.array([1, 2]))
  with pytest.raises(ValueError, match="class 3 .laneEnds. has no example"):
    oracle.balanced_accuracy(cm)
  with pytest.raises(ValueError, match="predictions must lie in 0..17"):
    oracle.confusion_matrix(np.array([1]), np.array([18]))
  with pytest.raises(ValueError, match="1-d of one shape"):
    oracle.confusion_matrix(np.array([1, 2]), np.array([1]))


def test_the_oracle_reads_the_real_victims_as_stop():
  victims = rp2_assets.load_rp2_assets().victims
  preds = oracle.oracle_predictions(victims)
  np.testing.assert_array_equal(preds, np.full(40, STOP))
  # uint8 input is scaled by 1/255, the same predictions
  as_uint8 = np.rint(victims * 255).astype(np.uint8)
  np.testing.assert_array_equal(oracle.oracle_predictions(as_uint8), preds)


def test_outputs_are_read_through_the_measured_map():
  """The measured map differs from mapping.txt on outputs 0-3 only, and
  every prediction and report goes through it."""
  assert oracle.OUTPUT_CLASSES[4:] == oracle.MAPPING_TXT[4:]
  assert oracle.OUTPUT_CLASSES[:4] == (1, 2, 3, 0)
  assert sorted(oracle.OUTPUT_CLASSES) == sorted(oracle.MAPPING_TXT)
  labels = np.repeat(np.arange(NUM_CLASSES), 4)
  images = synthetic.render(labels, jax.random.key(0), corruption=0.0)
  raw = oracle.oracle_predictions(images, outputs=oracle.MAPPING_TXT)
  mapped = oracle.oracle_predictions(images)
  np.testing.assert_array_equal(mapped,
                                np.asarray(oracle.OUTPUT_CLASSES)[raw])
  report = oracle.oracle_report(images, labels)
  cm = np.asarray(report["confusion"])
  np.testing.assert_array_equal(cm, oracle.confusion_matrix(labels, mapped))
  literal, _ = oracle.balanced_accuracy(oracle.confusion_matrix(labels, raw))
  assert report["accuracy_mapping_txt"] == round(literal, 4)
  with pytest.raises(ValueError, match="outputs must name a class"):
    oracle.oracle_predictions(images[:1], outputs=(0,) * 17)
  # The words the console and the report use for a map, by hand.
  swapped = (0, 2, 1) + tuple(range(3, NUM_CLASSES))
  assert oracle.map_differences(swapped) == (
      "output 1 answers keepRight (mapping.txt: addedLane), "
      "output 2 answers addedLane (mapping.txt: keepRight)")
  assert oracle.map_differences(oracle.MAPPING_TXT) == ""


def test_report_on_a_split_lacking_classes_takes_those_it_has():
  """A real split (LISA's, by track) may lack a class: the accuracy is over
  the classes present, and says which are missing."""
  labels = np.repeat(np.asarray([0, 14, 17]), 4)
  images = synthetic.render(labels, jax.random.key(1), corruption=0.0)
  report = oracle.oracle_report(images, labels)
  assert report["classes"] == [14, 17]
  assert len(report["missing"]) == 15 and "addedLane" in report["missing"]
  assert set(report["per_class"]) == {"stop", "yield"}
  mapped = oracle.oracle_predictions(images)
  by_hand = np.mean([np.mean(mapped[labels == c] == c) for c in (14, 17)])
  assert report["accuracy"] == round(by_hand, 4)
  assert "the 2 of classes 1-17 it has" in oracle.format_oracle(report)
  with pytest.raises(ValueError, match="no example of classes 1-17"):
    oracle.oracle_report(images[:4], labels[:4])


def test_front_on_report_counts_every_template():
  report = oracle.front_on_report()
  assert list(report) == list(CLASS_NAMES[1:])
  for name, row in report.items():
    assert row["templates"] == len(row["read_as"]) >= 1, name
    assert row["correct"] == sum(r == name for r in row["read_as"])
  # The drawings the oracle must read: every stop and yield template.
  assert report["stop"]["correct"] == report["stop"]["templates"]
  assert report["yield"]["correct"] == report["yield"]["templates"]


# ---------------------------------------------------------------- the knobs


def test_corruption_zero_is_the_scene_without_the_camera():
  labels = np.arange(synthetic.CHUNK, dtype=np.int32) % NUM_CLASSES
  key = jax.random.key(3)
  clean = synthetic.render(labels, key, corruption=0.0, workers=1)
  taps, offsets, counts = synthetic._bank_arrays()
  rnd = synthetic_scene.chunk_draws(jax.random.fold_in(key, 0),
                                    synthetic.CHUNK)
  s0 = synthetic_scene.scene_parameters(labels, rnd, offsets, counts,
                                        victim=False, strength=0.0)
  s1 = synthetic_scene.scene_parameters(labels, rnd, offsets, counts,
                                        victim=False, strength=1.0)
  for k in ("blur_sigma", "blur_length", "noise_sigma", "noise_shot", "haze",
            "shadow_depth"):
    assert float(np.abs(np.asarray(s0[k])).max()) == 0.0, k
    assert float(np.abs(np.asarray(s1[k])).max()) > 0.0, k
  for k in ("jpeg", "occl"):
    assert not np.asarray(s0[k]).any() and np.asarray(s1[k]).any(), k
  np.testing.assert_array_equal(np.asarray(s0["resample"]),
                                np.broadcast_to(np.eye(32), (len(labels), 32,
                                                             32)))
  # Everything else about the scenes is the same at both strengths.
  for k in ("warp", "tidx", "gain", "bg_c0", "grey", "saturation"):
    np.testing.assert_array_equal(np.asarray(s0[k]), np.asarray(s1[k]))
  # The image is the exposure, quantised: no blur, noise, JPEG or resize.
  m = synthetic_pixels.planes(s0)
  bg = synthetic_pixels.background(s0, m)
  img = synthetic_pixels.compose(s0, m, synthetic_pixels.sign(taps, m), bg,
                                 synthetic_pixels.flip(bg))
  img = np.asarray(synthetic_pixels.contrast(s0, img))
  expected = np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)
  np.testing.assert_array_equal(clean, expected.transpose(0, 2, 3, 1))
  # At strength 1 the camera changes most images.
  default = synthetic.render(labels, key, workers=1)
  assert (np.abs(default.astype(int) - clean).max(axis=(1, 2, 3)) > 8).mean(
  ) > 0.9


def test_resample_bank_is_an_average_preserving_resize():
  bank = synthetic_scene.resample_bank()
  assert bank.shape == (32 - synthetic_scene.SOURCE_MIN + 1, 32, 32)
  np.testing.assert_allclose(bank.sum(-1), 1.0, atol=1e-5)  # flat stays flat
  np.testing.assert_array_equal(bank[-1], np.eye(32))
  # A 16-px source cannot show a 1-px stripe pattern: it is averaged away.
  stripes = np.tile([0.0, 1.0], 16)
  r16 = bank[16 - synthetic_scene.SOURCE_MIN] @ stripes
  assert np.abs(r16 - 0.5).max() < 1e-5


def test_out_of_range_knobs_fail_with_one_line():
  for bad in (-0.1, 1.5, "high", True, float("nan")):
    with pytest.raises(ValueError, match=r"corruption must be a number in "
                       r"\[0, 1\]") as err:
      synthetic.render(np.arange(3), jax.random.key(0), corruption=bad)
    assert "\n" not in str(err.value)
  with pytest.raises(ValueError, match="balance must be one of uniform, lisa"):
    next(synthetic.generate_split(1, seed=0, split="train", balance="zipf"))
  with pytest.raises(ValueError, match="corruption must be"):
    datasets.SyntheticSignsConfig.make(corruption=2.0)
  with pytest.raises(ValueError, match="balance must be"):
    datasets.SyntheticSignsConfig.make(balance="LISA")


def test_config_names_are_distinct_per_data_changing_knob():
  make = datasets.SyntheticSignsConfig.make
  assert make().name == "train2000_test300_seed0"  # default unchanged
  configs = [make(train_per_class=t, test_per_class=e, seed=s, corruption=c,
                  balance=b)
             for t in (300, 2000) for e in (50, 300) for s in (0, 1)
             for c in (0.0, 0.5, 1.0) for b in ("uniform", "lisa")]
  names = [c.name for c in configs]
  assert len(set(names)) == len(names)
  assert make(corruption=0.0, balance="lisa").name == (
      "train2000_test300_seed0_corruption0_lisa")
  assert make(corruption=0.25).name.endswith("_corruption0.25")


def test_lisa_balance_keeps_size_and_mixes_every_chunk():
  w = synthetic.class_weights("lisa")
  assert w.sum() == pytest.approx(1.0)
  assert np.argmax(w) == STOP and w[0] == pytest.approx(1 / NUM_CLASSES)
  np.testing.assert_allclose(synthetic.class_weights("uniform"), 1 / 18)
  labels = synthetic.split_labels(100, "lisa")
  assert labels.size == 1800
  counts = np.bincount(labels, minlength=NUM_CLASSES)
  np.testing.assert_allclose(counts / 1800, w, atol=1.5 / 1800)
  assert counts.min() >= 1
  # Interleaved: the first chunk holds every class near its share.
  first = np.bincount(labels[:synthetic.CHUNK], minlength=NUM_CLASSES)
  assert first.min() >= 1
  np.testing.assert_allclose(first / synthetic.CHUNK, w, atol=2 / 512)
  np.testing.assert_array_equal(synthetic.split_labels(3, "uniform"),
                                np.arange(54) % 18)


def test_training_regime_out_of_range_fails_with_one_line():
  import ml_collections  # pylint: disable=g-import-not-at-top
  from blurnet_jax import train  # pylint: disable=g-import-not-at-top
  from configs import train as train_configs  # pylint: disable=g-import-not-at-top
  base = train_configs.get_config("variant=baseline,runlocal").to_dict()
  train.check_regime(ml_collections.ConfigDict(base))  # the defaults pass
  for field, bad in (("num_train_steps", 0), ("batch_size", -1),
                     ("num_train_steps", 2.5)):
    c = ml_collections.ConfigDict({**base, field: bad})
    with pytest.raises(ValueError, match=f"{field} must be an integer >= 1"
                       ) as err:
      train.check_regime(c)
    assert "\n" not in str(err.value)
  with pytest.raises(ValueError, match="augment must be True or False"):
    train.check_regime(ml_collections.ConfigDict({**base, "augment": "yes"}))
