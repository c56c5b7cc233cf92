"""Tests of the real-photograph sources (LISA crops, GTSRB) on small
fabricated files, of the leak-free split they use, and of what the attacks
need of them (per-image masks, a second label space).

Every image is painted with a value that names it, so that an example read
back from a prepared set can be traced to the row of the file it came from.
"""

import os
from pathlib import Path

import numpy as np
from PIL import Image
import pytest

from blurnet_jax import classes
from blurnet_jax.attacks import checks
from blurnet_jax.attacks import grid
from blurnet_jax.data import datasets
from blurnet_jax.data import gtsrb
from blurnet_jax.data import lisa_crops
from blurnet_jax.data import masks
from blurnet_jax.data import splits
from configs import data as data_configs


def _one_line(excinfo):
  return "\n" not in str(excinfo.value)


def _painted(indices):
  """uint8 (N, 32, 32, 3): image i is uniform (i % 256, i // 256, 7)."""
  indices = np.asarray(indices)
  x = np.zeros((len(indices), 32, 32, 3), np.uint8)
  x[..., 0] = (indices % 256)[:, None, None]
  x[..., 1] = (indices // 256)[:, None, None]
  x[..., 2] = 7
  return x


def _index_of(images):
  """The painted index of each image (checking that it is still uniform)."""
  images = np.asarray(images)
  assert (images == images[:, :1, :1]).all(), "an image is not uniform"
  assert (images[..., 2] == 7).all()
  return images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 0, 1].astype(int)


def _read(builder, split):
  return {f: datasets.load_field(builder, split, f)
          for f in ("image", "label", "group", "roi")}


# ---------------------------------------------------------------- splits ----


def _hand_case():
  """Class 0: five groups of 2; class 1: groups of 1, 1 and 4; class 2: groups
  of 1 and 9; class 3 and 4 share group 'mixed' (one example each) and have
  one group of their own each."""
  labels, groups = [], []

  def add(label, group, n):
    labels.extend([label] * n)
    groups.extend([group] * n)

  for g in range(5):
    add(0, f"zero{g}", 2)
  add(1, "one_a", 1)
  add(1, "one_b", 1)
  add(1, "one_c", 4)
  add(2, "two_small", 1)
  add(2, "two_big", 9)
  add(3, "three", 2)
  add(4, "four", 2)
  add(3, "mixed", 1)
  add(4, "mixed", 1)
  return np.asarray(labels), np.asarray(groups)


def test_grouped_split_invariants_and_hand_counts():
  labels, groups = _hand_case()
  outcomes = set()
  for seed in range(12):
    held = splits.grouped_split(labels, groups, fraction=0.3, seed=seed)
    assert held.dtype == bool and held.shape == labels.shape
    outcomes.add(held.tobytes())
    # No group on both sides (the two-class group included).
    for g in np.unique(groups):
      assert len(set(held[groups == g])) == 1, (seed, g)
    # Every class on both sides.
    for c in np.unique(labels):
      assert held[labels == c].any() and (~held[labels == c]).any(), (seed, c)
    # Class 0: 10 examples, 0.3 -> at least 3 -> exactly two groups of 2.
    assert held[labels == 0].sum() == 4
    # Class 1 (6 examples, needs >= 1.8): {4}, {1, 4} or {1, 1}.
    assert held[labels == 1].sum() in (2, 4, 5)
    # Class 2 (needs >= 3) can hold out only one of its two groups: 1 or 9.
    assert held[labels == 2].sum() in (1, 9)
    # Classes 3 and 4 (3 examples each, need >= 0.9): one group each side;
    # 'mixed' held out takes one example of both.
    mixed = held[groups == "mixed"][0]
    if mixed:
      assert held[labels == 3].sum() == held[labels == 4].sum() == 1
    else:
      assert held[labels == 3].sum() == held[labels == 4].sum() == 2
  # The seed changes which groups are held out.
  assert len(outcomes) > 1


def test_grouped_split_at_least_fraction_by_hand():
  # Four classes of 5 groups x 3 examples; fraction 0.25 of 15 = 3.75 ->
  # two groups (6 examples); fraction 0.2 of 15 = 3 -> one group (3).
  labels = np.repeat(np.arange(4), 15)
  groups = np.repeat(np.arange(20), 3)
  for fraction, want in ((0.25, 6), (0.2, 3), (0.5, 9), (0.7, 12)):
    held = splits.grouped_split(labels, groups, fraction=fraction, seed=3)
    assert np.bincount(labels[held], minlength=4).tolist() == [want] * 4
    assert want >= fraction * 15


def test_grouped_split_deterministic():
  labels, groups = _hand_case()
  a = splits.grouped_split(labels, groups, fraction=0.3, seed=5)
  b = splits.grouped_split(list(labels), list(groups), fraction=0.3, seed=5)
  np.testing.assert_array_equal(a, b)
  # Integer group ids work too, and name the same partition.
  _, ids = np.unique(groups, return_inverse=True)
  c = splits.grouped_split(labels, ids, fraction=0.3, seed=5)
  np.testing.assert_array_equal(a, c)


def test_grouped_folds_hold_every_group_out_once_balanced_by_class():
  # Three classes: 10 groups of 3, 5 groups of 4 and 7 groups of 2 (in
  # 5 folds: two folds hold 2 groups of the last class, three hold 1).
  labels = np.concatenate([np.repeat(0, 30), np.repeat(1, 20),
                           np.repeat(2, 14)])
  groups = np.concatenate([np.repeat(np.arange(10), 3),
                           np.repeat(np.arange(10, 15), 4),
                           np.repeat(np.arange(15, 22), 2)])
  fold = splits.grouped_folds(labels, groups, folds=5, seed=1)
  for g in np.unique(groups):  # a group lies in one fold
    assert len(set(fold[groups == g])) == 1
  per_class = [np.bincount(fold[labels == c], minlength=5).tolist()
               for c in range(3)]
  assert per_class[0] == [6] * 5 and per_class[1] == [4] * 5
  assert sorted(per_class[2]) == [2, 2, 2, 4, 4]
  np.testing.assert_array_equal(
      fold, splits.grouped_folds(labels, groups, folds=5, seed=1))
  assert not np.array_equal(
      fold, splits.grouped_folds(labels, groups, folds=5, seed=2))
  with pytest.raises(ValueError, match="folds=1 must be an int >= 2"):
    splits.grouped_folds(labels, groups, folds=1, seed=0)


def test_grouped_split_bad_inputs():
  labels = np.asarray([1, 1, 14])
  groups = np.asarray(["a", "b", "c"])
  with pytest.raises(ValueError, match="class stop has 1 group") as e:
    splits.grouped_split(labels, groups, fraction=0.2, seed=0,
                         class_names=classes.CLASS_NAMES)
  assert _one_line(e)
  with pytest.raises(ValueError, match="class 14 has 1 group"):
    splits.grouped_split(labels, groups, fraction=0.2, seed=0)
  with pytest.raises(ValueError, match="one length") as e:
    splits.grouped_split([0, 0, 1, 1], ["a", "b", "c"], fraction=0.2, seed=0)
  assert _one_line(e)
  with pytest.raises(ValueError, match="1-D"):
    splits.grouped_split(np.zeros((2, 2), int), np.zeros((2, 2), int),
                         fraction=0.2, seed=0)
  for fraction in (0.0, 1.0, -0.5):
    with pytest.raises(ValueError, match="fraction"):
      splits.grouped_split([0, 0], ["a", "b"], fraction=fraction, seed=0)


def test_near_duplicates_by_hand():
  rng = np.random.default_rng(0)
  base = rng.integers(0, 240, (32, 32, 3), dtype=np.uint8)
  images = np.stack([base + 3, base + 10, base])  # uint8, no overflow
  references = np.stack([255 - base, base])
  distance, duplicate = splits.near_duplicates(images, references)
  assert distance.dtype == np.float64 and duplicate.dtype == bool
  np.testing.assert_allclose(distance, [3 / 255, 10 / 255, 0.0], atol=1e-6)
  assert duplicate.tolist() == [True, False, True]
  # The same images as floats in [0, 1]: the same distances.
  f_distance, f_duplicate = splits.near_duplicates(
      images.astype(np.float32) / 255, references.astype(np.float32) / 255)
  np.testing.assert_allclose(f_distance, distance, atol=1e-6)
  assert f_duplicate.tolist() == duplicate.tolist()
  # A looser threshold takes the +10/255 copy too.
  _, loose = splits.near_duplicates(images, references, threshold=11 / 255)
  assert loose.tolist() == [True, True, True]
  # The mean over pixels, not the largest difference: half the pixels +6,
  # half unchanged -> 3/255, a duplicate.
  half = base.copy()
  half[:16] += 6
  d, dup = splits.near_duplicates(half[None], base[None])
  np.testing.assert_allclose(d, [3 / 255], atol=1e-6)
  assert dup.tolist() == [True]
  # Nearest of several references: an image half-way between two.
  mid = np.full((1, 32, 32, 3), 100, np.uint8)
  refs = np.stack([np.full((32, 32, 3), v, np.uint8) for v in (90, 104, 30)])
  d, _ = splits.near_duplicates(mid, refs)
  np.testing.assert_allclose(d, [4 / 255], atol=1e-6)


def test_near_duplicates_without_references_is_inf():
  images = np.zeros((2, 32, 32, 3), np.uint8)
  distance, duplicate = splits.near_duplicates(
      images, np.zeros((0, 32, 32, 3), np.uint8))
  assert np.isinf(distance).all() and distance.shape == (2,)
  assert not duplicate.any()


def test_near_duplicates_dark_and_mixed_inputs():
  # uint8 pixels of 0 and 1 are still 0/255 and 1/255 (not floats in [0, 1]).
  black = np.zeros((1, 32, 32, 3), np.uint8)
  almost = np.ones((1, 32, 32, 3), np.uint8)
  distance, duplicate = splits.near_duplicates(black, almost)
  np.testing.assert_allclose(distance, [1 / 255], atol=1e-6)
  assert duplicate.tolist() == [True]
  # One set uint8, the other floats in [0, 1]: the same scale.
  grey = np.full((1, 32, 32, 3), 100, np.uint8)
  distance, _ = splits.near_duplicates(grey, np.full((1, 32, 32, 3),
                                                     104 / 255, np.float32))
  np.testing.assert_allclose(distance, [4 / 255], atol=1e-6)


# ----------------------------------------------------------- LISA crops ----

NAMES = tuple(classes.CLASS_NAMES[1:])
# Tracks x crops per class (file label y = index into NAMES); the default
# is 3 tracks of 3 crops.
LISA_LAYOUT = {0: (6, 1), 13: (5, 3)}
# Crops of each class in the test split (fraction 0.2, by hand): 0.2 * 6 =
# 1.2 -> two tracks of 1; 0.2 * 15 = 3 -> one track of 3; 0.2 * 9 = 1.8 ->
# one track of 3.
LISA_TEST = {0: 2, 13: 3}


def _lisa_arrays(with_classes=True):
  y, track = [], []
  for c, name in enumerate(NAMES):
    tracks, crops = LISA_LAYOUT.get(c, (3, 3))
    for t in range(tracks):
      y += [c] * crops
      track += [f"aiua1202{c:02d}-0/{name}_{1330000000 + t}.avi"] * crops
  arrays = {"x": _painted(np.arange(len(y))), "y": np.asarray(y, np.int64),
            "track": np.asarray(track)}
  if with_classes:
    arrays["classes"] = np.asarray(NAMES)
  return arrays


def _write_npz(folder, arrays, name=lisa_crops.FILE_NAME):
  folder.mkdir(parents=True, exist_ok=True)
  np.savez(folder / name, **arrays)
  return folder


def _check_lisa_builder(builder, arrays):
  sources = builder.as_data_source()
  assert set(sources) == {"train", "test"}
  seen, tracks = [], {}
  for split in ("train", "test"):
    got = _read(builder, split)
    rows = _index_of(got["image"])
    seen.extend(rows)
    # Labels are the file's y + 1, in the order of CLASS_NAMES.
    np.testing.assert_array_equal(got["label"], arrays["y"][rows] + 1)
    assert 0 not in got["label"]
    assert set(got["label"].tolist()) == set(range(1, 18))
    np.testing.assert_array_equal(
        got["roi"], np.tile(np.float32([0, 0, 32, 32]), (len(rows), 1)))
    # A group is one track, and a track is one group.
    for group, row in zip(got["group"], rows):
      assert tracks.setdefault(int(group), (split, arrays["track"][row])) == (
          split, arrays["track"][row])
    if split == "test":
      per_class = np.bincount(got["label"], minlength=18)
      want = [0] + [LISA_TEST.get(c, 3) for c in range(17)]
      assert per_class.tolist() == want
  assert sorted(seen) == list(range(len(arrays["y"])))
  by_track = {}
  for split, track in tracks.values():
    by_track.setdefault(track, set()).add(split)
  assert all(len(s) == 1 for s in by_track.values())
  assert len(by_track) == len(set(arrays["track"].tolist()))


def test_lisa_crops_builder(tmp_path):
  arrays = _lisa_arrays()
  manual = _write_npz(tmp_path / "manual", arrays)
  builder = lisa_crops.prepare_lisa_crops(manual, tmp_path / "tfds")
  assert builder.name == "lisa_crops"
  _check_lisa_builder(builder, arrays)
  # Without the optional `classes`, and under another file name.
  other = _write_npz(tmp_path / "other", _lisa_arrays(with_classes=False),
                     name="crops.npz")
  x, y, groups = lisa_crops.read_crops(other)
  np.testing.assert_array_equal(x, arrays["x"])
  np.testing.assert_array_equal(y, arrays["y"] + 1)
  # One group id per track string.
  pairs = set(zip(groups.tolist(), arrays["track"].tolist()))
  assert len(pairs) == len({g for g, _ in pairs}) == len(
      {t for _, t in pairs})


def test_lisa_crops_via_data_config(tmp_path):
  arrays = _lisa_arrays()
  manual = _write_npz(tmp_path / "manual", arrays)
  config = data_configs.data_config()
  config.source = "lisa_crops"
  config.manual_dir = str(manual)
  config.data_dir = str(tmp_path / "tfds")
  builder = datasets.prepare(config)
  assert builder.name == "lisa_crops"
  _check_lisa_builder(builder, arrays)
  config.manual_dir = ""
  with pytest.raises(ValueError, match="manual_dir") as e:
    datasets.prepare(config)
  assert _one_line(e)
  config.source = "lisa_cropz"
  config.manual_dir = str(manual)
  with pytest.raises(ValueError, match="unknown data source") as e:
    datasets.prepare(config)
  assert _one_line(e)


def _bad_lisa_cases():
  def drop_track(a):
    del a["track"]

  def float_x(a):
    a["x"] = a["x"].astype(np.float32) / 255

  def small_x(a):
    a["x"] = a["x"][:, :28, :28]

  def label_17(a):
    a["y"][-1] = 17

  def empty_class(a):
    keep = a["y"] != 5
    for k in ("x", "y", "track"):
      a[k] = a[k][keep]

  def reordered(a):
    a["classes"] = a["classes"][::-1]

  def one_track(a):  # yield (y = 16): every crop in one track
    a["track"][a["y"] == 16] = "one/yield_1.avi"

  return [(drop_track, ValueError, r"\['track'\]"),
          (float_x, ValueError, "float32.*expected uint8"),
          (small_x, ValueError, r"28, 28, 3.*expected uint8 \(N, 32, 32, 3\)"),
          (label_17, ValueError, r"0\.\.17, expected 0\.\.16"),
          (empty_class, ValueError, r"class\(es\) \[5\] have no image"),
          (reordered, ValueError, "project's order"),
          (one_track, ValueError, "class yield has 1 group")]


@pytest.mark.parametrize("case", range(7))
def test_lisa_crops_bad_file(tmp_path, case):
  change, error, match = _bad_lisa_cases()[case]
  arrays = _lisa_arrays()
  change(arrays)
  manual = _write_npz(tmp_path / "manual", arrays)
  with pytest.raises(error, match=match) as e:
    lisa_crops.prepare_lisa_crops(manual, tmp_path / "tfds")
  assert _one_line(e)
  if change.__name__ != "one_track":  # the others fail before tfds starts
    assert not (tmp_path / "tfds" / "lisa_crops").exists()


def test_lisa_crops_missing_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist") as e:
    lisa_crops.prepare_lisa_crops(tmp_path / "nowhere", tmp_path / "tfds")
  assert _one_line(e) and "manual_dir" in str(e.value)
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "notes.txt").write_text("no crops here")
  with pytest.raises(FileNotFoundError, match=lisa_crops.FILE_NAME) as e:
    lisa_crops.prepare_lisa_crops(empty, tmp_path / "tfds")
  assert _one_line(e) and "0 other .npz" in str(e.value)
  # Two .npz files, neither the expected name: ambiguous.
  two = _write_npz(tmp_path / "two", _lisa_arrays(), name="a.npz")
  _write_npz(two, _lisa_arrays(), name="b.npz")
  with pytest.raises(FileNotFoundError, match="2 other .npz") as e:
    lisa_crops.read_crops(two)
  assert _one_line(e)
  assert not (tmp_path / "tfds" / "lisa_crops").exists()


# ---------------------------------------------------------------- GTSRB ----

TRAIN_ROI = (4, 6, 35, 41)  # on 40 x 48 (w x h) images
# (x1 * 32 / 40, y1 * 32 / 48, (x2 + 1) * 32 / 40, (y2 + 1) * 32 / 48)
TRAIN_ROI_32 = (3.2, 4.0, 28.8, 28.0)
TEST_ROI = (8, 16, 55, 47)  # on 64 x 64 images
TEST_ROI_32 = (4.0, 8.0, 28.0, 24.0)
TEST_CLASSES = (14, 5, 38, 0, 42, 14)
# The official layout's test images: every class once (the builder needs
# each class in every split), then TEST_CLASSES.
OFFICIAL_TEST = tuple(range(43)) + TEST_CLASSES


def _gtsrb_npz(folder):
  """43 classes x 2 tracks x 2 images; a test file of every class once plus
  TEST_CLASSES."""
  y = np.repeat(np.arange(43), 4)
  track = np.tile([0, 0, 1, 1], 43)
  rows = np.arange(len(y))
  roi = np.stack([rows % 5, rows % 7, 20 + rows % 11, 25 + rows % 3], 1)
  test_y = np.concatenate([np.arange(43), TEST_CLASSES])
  test_rows = 1000 + np.arange(len(test_y))
  test_roi = np.stack([test_rows % 3, test_rows % 4, 30 + 0 * test_rows,
                       31 + 0 * test_rows], 1)
  folder.mkdir(parents=True, exist_ok=True)
  train = dict(x=_painted(rows), y=y, track=track,
               roi=roi.astype(np.float32))
  test = dict(x=_painted(test_rows), y=test_y, roi=test_roi.astype(np.float32))
  np.savez(folder / gtsrb.NPZ_FILES[0], **train)
  np.savez(folder / gtsrb.NPZ_FILES[1], **test)
  return train, test


def test_gtsrb_npz_layout(tmp_path):
  manual = tmp_path / "manual"
  train, test = _gtsrb_npz(manual)
  builder = gtsrb.prepare_gtsrb(manual, tmp_path / "tfds")
  assert builder.name == "gtsrb"
  assert set(builder.as_data_source()) == {"train", "validation", "test"}
  sides = {}
  for split in ("train", "validation"):
    got = _read(builder, split)
    rows = _index_of(got["image"])
    np.testing.assert_array_equal(got["label"], train["y"][rows])
    np.testing.assert_array_equal(got["roi"], train["roi"][rows])
    np.testing.assert_array_equal(
        got["group"], train["y"][rows] * 100_000 + train["track"][rows])
    sides[split] = {(int(c), int(t)) for c, t in zip(
        train["y"][rows], train["track"][rows])}
    # Fraction 0.1 of 4 images -> one track of 2 per class, by hand.
    assert np.bincount(got["label"], minlength=43).tolist() == [2] * 43
    assert len(rows) == len(set(rows)) == 86
  assert not sides["train"] & sides["validation"]
  assert len(sides["train"]) == len(sides["validation"]) == 43
  got = _read(builder, "test")
  rows = _index_of(got["image"]) - 1000
  assert len(got["label"]) == len(test["y"]) == 49
  assert sorted(got["label"].tolist()) == sorted(test["y"].tolist())
  assert sorted(rows.tolist()) == list(range(49))
  np.testing.assert_array_equal(got["label"], test["y"][rows])
  np.testing.assert_array_equal(got["roi"], test["roi"][rows])
  assert (got["group"] == -1).all()
  # The data block reaches the same prepared set.
  config = data_configs.data_config()
  config.update(dict(source="gtsrb", manual_dir=str(manual),
                     data_dir=str(tmp_path / "tfds")))
  assert datasets.prepare(config).data_path == builder.data_path


def _colour(c, t, n):
  return (5 * c + 2, 40 + 100 * t + 30 * n, 200)


def _write_official(root, *, test_csv=True):
  """The official layout: 43 class folders of 2 tracks x 2 images (40x48),
  and len(OFFICIAL_TEST) test images (64x64), image i of colour
  (3 i, 250, 10 + class)."""
  header = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
  for c in range(43):
    folder = root / "Final_Training" / "Images" / f"{c:05d}"
    folder.mkdir(parents=True)
    lines = [header]
    for t in range(2):
      for n in range(2):
        name = f"{t:05d}_{n:05d}.ppm"
        Image.fromarray(np.full((48, 40, 3), _colour(c, t, n), np.uint8)
                        ).save(folder / name)
        lines.append(f"{name};40;48;{';'.join(map(str, TRAIN_ROI))};{c}")
    (folder / f"GT-{c:05d}.csv").write_text("\n".join(lines) + "\n")
  images = root / "Final_Test" / "Images"
  images.mkdir(parents=True)
  lines = [header]
  for i, c in enumerate(OFFICIAL_TEST):
    name = f"{i:05d}.ppm"
    Image.fromarray(np.full((64, 64, 3), (3 * i, 250, 10 + c), np.uint8)
                    ).save(images / name)
    lines.append(f"{name};64;64;{';'.join(map(str, TEST_ROI))};{c}")
  if test_csv:
    (root / "Final_Test" / gtsrb.TEST_CSV).write_text("\n".join(lines) + "\n")


def _check_official_train(images, labels, groups, roi):
  assert images.shape[1:] == (32, 32, 3) and images.dtype == np.uint8
  for image, label, group, box in zip(images, labels, groups, roi):
    pixel = tuple(int(v) for v in image[0, 0])
    assert (image == image[0, 0]).all()
    c, rest = divmod(pixel[0] - 2, 5)
    assert rest == 0 and pixel[2] == 200
    t, rest = divmod(pixel[1] - 40, 100)
    n, rest = divmod(rest, 30)
    assert rest == 0 and pixel == _colour(c, t, n) and t in (0, 1)
    assert label == c and group == c * 100_000 + t
    np.testing.assert_allclose(box, TRAIN_ROI_32, atol=1e-5)


def test_gtsrb_official_layout(tmp_path):
  manual = tmp_path / "manual"
  _write_official(manual)
  builder = gtsrb.prepare_gtsrb(manual, tmp_path / "tfds")
  sides = {}
  for split in ("train", "validation"):
    got = _read(builder, split)
    _check_official_train(got["image"], got["label"], got["group"],
                          got["roi"])
    assert np.bincount(got["label"], minlength=43).tolist() == [2] * 43
    sides[split] = set(got["group"].tolist())
  assert not sides["train"] & sides["validation"]
  assert len(sides["train"] | sides["validation"]) == 86
  got = _read(builder, "test")
  assert len(got["label"]) == len(OFFICIAL_TEST) == 49
  order = np.argsort(got["image"][:, 0, 0, 0])  # red = 3 * i
  assert got["label"][order].tolist() == list(OFFICIAL_TEST)
  for i, (image, label) in enumerate(zip(got["image"][order],
                                         got["label"][order])):
    assert (image == (3 * i, 250, 10 + label)).all()
  np.testing.assert_allclose(got["roi"], np.tile(TEST_ROI_32, (49, 1)),
                             atol=1e-5)
  assert (got["group"] == -1).all()


def test_gtsrb_official_one_folder_down(tmp_path):
  _write_official(tmp_path / "manual" / "GTSRB")
  (tmp_path / "manual" / "readme_folder").mkdir()
  train, test = gtsrb.read_gtsrb(tmp_path / "manual")
  assert len(train.labels) == 172 and len(test.labels) == 49
  _check_official_train(train.images, train.labels, train.groups, train.roi)
  assert test.labels.tolist() == list(OFFICIAL_TEST)  # the csv's order


def test_gtsrb_bad_folders(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist") as e:
    gtsrb.prepare_gtsrb(tmp_path / "nowhere", tmp_path / "tfds")
  assert _one_line(e)
  neither = tmp_path / "neither"
  (neither / "Final_Training").mkdir(parents=True)  # no Images, no Final_Test
  np.savez(neither / gtsrb.NPZ_FILES[0], x=np.zeros(1))  # its pair missing
  with pytest.raises(FileNotFoundError) as e:
    gtsrb.prepare_gtsrb(neither, tmp_path / "tfds")
  message = str(e.value)
  assert _one_line(e) and "neither" in message
  for part in (*gtsrb.NPZ_FILES, "Final_Training/Images", "Final_Test"):
    assert part in message, part
  no_csv = tmp_path / "no_csv"
  _write_official(no_csv, test_csv=False)
  with pytest.raises(FileNotFoundError, match="GT-final_test.csv") as e:
    gtsrb.prepare_gtsrb(no_csv, tmp_path / "tfds")
  assert _one_line(e)
  assert not (tmp_path / "tfds" / "gtsrb").exists()


def test_gtsrb_npz_bad_arrays(tmp_path):
  manual = tmp_path / "manual"
  train, test = _gtsrb_npz(manual)
  np.savez(manual / gtsrb.NPZ_FILES[1], x=test["x"], y=test["y"])
  with pytest.raises(ValueError, match=r"\['roi'\]") as e:
    gtsrb.read_gtsrb(manual)
  assert _one_line(e)
  np.savez(manual / gtsrb.NPZ_FILES[1], x=test["x"], y=test["y"] + 1,
           roi=test["roi"])
  with pytest.raises(ValueError, match=r"1\.\.43, expected 0\.\.42") as e:
    gtsrb.read_gtsrb(manual)
  assert _one_line(e)
  np.savez(manual / gtsrb.NPZ_FILES[1], x=test["x"], y=test["y"],
           roi=test["roi"][:, :3])
  with pytest.raises(ValueError, match="roi has shape") as e:
    gtsrb.read_gtsrb(manual)
  assert _one_line(e)


# ---------------------------------------------------------------- masks ----


def test_place_in_box_full_box_is_identity():
  rng = np.random.default_rng(0)
  mask = (rng.random((32, 32, 3)) > 0.5).astype(np.float32)
  out = masks.place_in_box(mask, (0, 0, 32, 32))
  assert out.dtype == np.float32
  np.testing.assert_array_equal(out, mask)


def test_place_in_box_half_size():
  # 2x2-block checkerboard; in the box (8, 8, 24, 24) output pixel r takes
  # the mask's row floor((r + 0.5 - 8) / 16 * 32) = 2 (r - 8) + 1, whose
  # block is r - 8: a one-pixel checkerboard.
  i = np.arange(32)
  board = (((i[:, None] // 2) + (i[None, :] // 2)) % 2).astype(np.float32)
  out = masks.place_in_box(board[..., None], (8, 8, 24, 24))
  assert out.shape == (32, 32, 1)
  want = np.zeros((32, 32), np.float32)
  want[8:24, 8:24] = (i[:16, None] + i[None, :16]) % 2
  np.testing.assert_array_equal(out[..., 0], want)
  assert out[8, 8, 0] == 0 and out[8, 9, 0] == 1 and out[23, 22, 0] == 1
  # One set pixel at (5, 9) (odd, odd) lands at (8 + 2, 8 + 4); one at an
  # even row is skipped by the downscale.
  one = np.zeros((32, 32, 1), np.float32)
  one[5, 9] = 1
  out = masks.place_in_box(one, (8, 8, 24, 24))
  assert out.sum() == 1 and out[10, 12, 0] == 1
  one[:] = 0
  one[4, 9] = 1
  assert masks.place_in_box(one, (8, 8, 24, 24)).sum() == 0
  # An uneven box (a GTSRB roi): all-ones fills exactly the pixels whose
  # centres are inside: columns 3..28 (3.5 >= 3.2, 28.5 < 28.8), rows 4..27.
  out = masks.place_in_box(np.ones((32, 32, 1)), TRAIN_ROI_32)
  want = np.zeros((32, 32, 1), np.float32)
  want[4:28, 3:29] = 1
  np.testing.assert_array_equal(out, want)


def test_place_in_box_bad_boxes():
  mask = np.ones((32, 32, 1), np.float32)
  for box in ((8, 8, 8, 24), (24, 8, 8, 24), (-1, 0, 32, 32),
              (0, 0, 33, 32), (0, 0, 32, 32.5), (0, 10, 32, 5)):
    with pytest.raises(ValueError, match="box") as e:
      masks.place_in_box(mask, box)
    assert _one_line(e)


# ------------------------------------------------------- attacks' checks ----


def test_check_mask_per_image():
  for channels in (1, 3):
    one = np.ones((32, 32, channels), np.float32)
    checks.check_mask(one)
    checks.check_mask(one, num_images=5)
    per_image = np.ones((5, 32, 32, channels), np.float32)
    checks.check_mask(per_image, num_images=5)
    for n in (4, 6, None):
      with pytest.raises(ValueError, match="mask must have shape") as e:
        checks.check_mask(per_image, num_images=n)
      assert _one_line(e)
  with pytest.raises(ValueError, match=r"\(5, 32, 32, 1\|3\)"):
    checks.check_mask(np.ones((5, 32, 32, 2)), num_images=5)
  with pytest.raises(ValueError):
    checks.check_mask(np.ones((5, 16, 16, 1)), num_images=5)


def test_parse_targets_label_spaces():
  g = classes.GTSRB
  assert g.num_classes == 43 and g.stop == 14 and g.target == 5
  assert grid.parse_targets((5, 38, "keepRight"), labels=g) == [5, 38]
  assert grid.parse_targets(("speedLimit80", 0), labels=g) == [0, 5]
  everything = grid.parse_targets((), labels=g)
  assert everything == [c for c in range(43) if c != 14]
  assert len(everything) == 42
  with pytest.raises(ValueError, match="43 is not a") as e:
    grid.parse_targets((5, 43), labels=g)
  assert _one_line(e) and "gtsrb" in str(e.value) and "0..42" in str(e.value)
  for stop in (14, "stop"):
    with pytest.raises(ValueError, match="true class"):
      grid.parse_targets((5, stop), labels=g)
  # LISA (the default): speedLimit80 is no LISA class; () is ALL_TARGETS.
  with pytest.raises(ValueError, match="'speedLimit80' is not a") as e:
    grid.parse_targets(("speedLimit80",))
  assert "lisa" in str(e.value) and "0..17" in str(e.value)
  lisa_all = grid.parse_targets(())
  assert lisa_all == list(grid.ALL_TARGETS)
  assert lisa_all == [c for c in range(18) if c != 14] and len(lisa_all) == 17
  with pytest.raises(ValueError, match="true class"):
    grid.parse_targets((14,))


# ------------------------------------------------------------ real data ----

REAL = os.environ.get("BLURNET_REAL_DATA", "")


def _has_real_data():
  return bool(REAL) and (
      Path(REAL, "lisa", lisa_crops.FILE_NAME).is_file()
      and Path(REAL, "gtsrb", gtsrb.NPZ_FILES[0]).is_file())


@pytest.mark.skipif(not _has_real_data(), reason=(
    "set BLURNET_REAL_DATA to a folder holding lisa/lisa17_train_32x32.npz "
    "and gtsrb/gtsrb32_train.npz (+ gtsrb32_test.npz)"))
def test_real_data(tmp_path):
  lisa = lisa_crops.prepare_lisa_crops(Path(REAL, "lisa"), tmp_path / "tfds")
  labels, groups = {}, {}
  for split in ("train", "test"):
    labels[split] = datasets.load_field(lisa, split, "label")
    groups[split] = set(datasets.load_field(lisa, split, "group").tolist())
    assert set(labels[split].tolist()) == set(range(1, 18)), split
  assert len(labels["train"]) + len(labels["test"]) == 5860
  assert not groups["train"] & groups["test"]

  photos = gtsrb.prepare_gtsrb(Path(REAL, "gtsrb"), tmp_path / "tfds")
  assert len(datasets.load_field(photos, "test", "label")) == 12_630
  sizes, groups = 0, {}
  for split in ("train", "validation"):
    labels = datasets.load_field(photos, split, "label")
    sizes += len(labels)
    assert set(labels.tolist()) == set(range(43)), split
    groups[split] = set(datasets.load_field(photos, split, "group").tolist())
  assert sizes == 39_209
  assert not groups["train"] & groups["validation"]
