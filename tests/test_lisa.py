"""Tests of the LISA annotation reader, cropper and builder on a tiny
synthetic LISA-shaped folder."""

import logging
import os

import numpy as np
from PIL import Image
import pytest

from blurnet_jax import classes
from blurnet_jax.data import lisa
from blurnet_jax.data import sources as data_sources
from blurnet_jax.data import lisa_annotations
from blurnet_jax.data import lisa_examples

HEIGHT, WIDTH = 120, 160
BACKGROUND = (30, 30, 30)
ORIGIN_1 = "aiua120214-0/DataLog02142012_external_camera.avi"
ORIGIN_2 = "aiua120306-1/DataLog03062012_external_camera.avi"
# (origin file, origin track, tag); each track has 2 frames.
TRACKS = (
    (ORIGIN_1, "stop_1330545910.avi", "stop"),
    (ORIGIN_1, "yield_1330546012.avi", "yield"),
    (ORIGIN_1, "pedestrianCrossing_1330546101.avi", "pedestrianCrossing"),
    (ORIGIN_1, "speedLimit25_1330546240.avi", "speedLimit25"),
    (ORIGIN_2, "addedLane_1331081570.avi", "addedLane"),
    (ORIGIN_2, "stop_1331081720.avi", "stop"),
    (ORIGIN_2, "signalAhead_1331081811.avi", "signalAhead"),
    (ORIGIN_2, "merge_1331081930.avi", "merge"),
)
DROPPED_TAG = "thruMergeLeft"


def _colour(index):
  """A distinct, saturated colour per box, far from BACKGROUND."""
  return (70 + (37 * index) % 180, 250 - (53 * index) % 170,
          90 + (71 * index) % 160)


def _near(pixel, colour, tol=4):
  return np.abs(pixel.astype(int) - np.asarray(colour)).max() <= tol


def _closer_to(pixels, colour, other):
  pixels = pixels.astype(int)
  return (np.abs(pixels - colour).sum(-1) < np.abs(pixels - other).sum(-1))


def _make_lisa(folder):
  """Writes frames + allAnnotations.csv; returns the rows of the CSV.

  Returns:
    list of dicts with keys filename, tag, box, colour, group, line.
  """
  frames = {}  # filename -> uint8 (H, W, 3)
  rows = []  # dicts; "line" is filled in when the CSV is written.

  def add(filename, tag, box, origin="", track="", draw=True, raw=None):
    colour = _colour(len(rows))
    if draw:
      frame = frames.setdefault(
          filename, np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8))
      x1, y1, x2, y2 = box
      frame[y1:y2 + 1, x1:x2 + 1] = colour
    rows.append(dict(filename=filename, tag=tag, box=box, colour=colour,
                     origin=origin, track=track, raw=raw))

  for i, (origin, track, tag) in enumerate(TRACKS):
    for j in range(2):
      x1, y1 = 10 + 12 * i + 6 * j, 15 + 7 * i
      add(f"{track}_annotations/frame{j:05d}.png", tag,
          (x1, y1, x1 + 27 + 2 * j, y1 + 31), origin, track)
  # A track whose boxes touch the frame border (left edge, bottom-right).
  add("edge_annotations/frame00000.png", "stop", (0, 40, 29, 69),
      ORIGIN_2, "stop_1331082044.avi")
  add("edge_annotations/frame00001.png", "stop",
      (WIDTH - 30, HEIGHT - 30, WIDTH - 1, HEIGHT - 1),
      ORIGIN_2, "stop_1331082044.avi")
  # Two signs in one frame without an origin track: grouped by frame.
  add("notrack/frame00001.png", "keepRight", (20, 20, 49, 59))
  add("notrack/frame00001.png", "school", (90, 30, 129, 69))
  # Tag outside the 18 classes, drawn in an existing frame.
  add("notrack/frame00001.png", DROPPED_TAG, (60, 80, 85, 110))
  # Frame file that does not exist.
  add("missing/frame00000.png", "yield", (10, 10, 40, 40), ORIGIN_1,
      "yield_missing.avi", draw=False)
  # Malformed boxes: non-numeric, and inverted.
  add("notrack/frame00001.png", "stop", (0, 0, 0, 0), draw=False,
      raw=("abc", "10", "30", "40"))
  add("notrack/frame00001.png", "stop", (0, 0, 0, 0), draw=False,
      raw=("50", "10", "30", "40"))

  for filename, frame in frames.items():
    path = folder / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(path)
  lines = [";".join(lisa_annotations.HEADER)]
  for line, row in enumerate(rows, start=2):
    row["line"] = line
    row["group"] = (f"track:{row['origin']}|{row['track']}" if row["track"]
                    else f"frame:{row['filename']}")
    coords = row["raw"] or tuple(str(v) for v in row["box"])
    lines.append(";".join((row["filename"], row["tag"], *coords, "0,0",
                           row["origin"], "17", row["track"], "3")))
  (folder / lisa_annotations.CSV_NAME).write_text("\n".join(lines) + "\n")
  return rows


@pytest.fixture(name="lisa_dir")
def fixture_lisa_dir(tmp_path):
  """LISA extracted one folder below the manual dir, as users often do."""
  manual = tmp_path / "manual"
  rows = _make_lisa(manual / "LISA_TS")
  return manual, rows


def _kept(rows):
  return [r for r in rows
          if r["tag"] in classes.CLASS_NAMES and r["raw"] is None]


def test_read_annotations_labels_and_drops(lisa_dir, caplog):
  manual, rows = lisa_dir
  with caplog.at_level(logging.WARNING):
    records = lisa_annotations.read_annotations(manual)
  kept = _kept(rows)
  assert [r.row for r in records] == [r["line"] for r in kept]
  for record, row in zip(records, kept):
    assert record.label == classes.CLASS_NAMES.index(row["tag"]) >= 1
    assert record.box == row["box"]
    assert record.group == row["group"]
    assert record.frame == (manual / "LISA_TS" / row["filename"])
  assert {r.label for r in records if r.tag == "stop"} == {classes.STOP}
  assert DROPPED_TAG not in {r.tag for r in records}
  assert "skipped 2 malformed rows" in caplog.text

  with_other = lisa_annotations.read_annotations(manual, other_tags=True)
  assert len(with_other) == len(records) + 1
  assert [r.label for r in with_other if r.tag == DROPPED_TAG] == [0]


def test_crops_land_where_the_csv_says(lisa_dir, caplog):
  manual, rows = lisa_dir
  records = lisa_annotations.read_annotations(manual)
  with caplog.at_level(logging.WARNING):
    examples = list(lisa_examples.generate_examples(records))
  # Only the box in the missing frame is lost.
  drawn = [r for r in _kept(rows) if not r["filename"].startswith("missing")]
  assert len(examples) == len(drawn)
  assert "skipped 1 boxes in 1 missing frame files" in caplog.text
  keys = [k for k, _ in examples]
  assert len(set(keys)) == len(keys)
  for (key, example), row in zip(examples, drawn):
    assert key == f"{row['filename']}#{row['line']}"
    image = example["image"]
    assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
    assert _near(image[16, 16], row["colour"]), (row, image[16, 16])
    assert example["label"] == classes.CLASS_NAMES.index(row["tag"])


def test_crop_margin():
  frame = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
  colour = (200, 60, 120)
  frame[30:70, 40:80] = colour  # Box (40, 30, 79, 69), 40x40 px.
  box = (40, 30, 79, 69)
  whole = lisa_examples.crop_box(frame, box, margin=0.0)
  assert (np.abs(whole.astype(int) - colour) <= 2).all()
  for margin in (0.1, 0.25, 0.5):
    crop = lisa_examples.crop_box(frame, box, margin=margin)
    expected = 32 / (1 + 2 * margin)
    inside = _closer_to(crop[16], colour, BACKGROUND).sum()
    assert abs(inside - expected) <= 1.5, (margin, inside)
    inside = _closer_to(crop[:, 16], colour, BACKGROUND).sum()
    assert abs(inside - expected) <= 1.5, (margin, inside)
  crop = lisa_examples.crop_box(frame, box, margin=0.5)
  for y, x in ((0, 0), (1, 16), (16, 1), (30, 30)):
    assert _near(crop[y, x], BACKGROUND, tol=6), (y, x, crop[y, x])


def test_crop_margin_clipped_at_frame_border():
  frame = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
  colour = (40, 220, 90)
  frame[40:70, 0:30] = colour  # Box touching the left edge.
  crop = lisa_examples.crop_box(frame, (0, 40, 29, 69), margin=0.5)
  # Window x in [0, 45): no padding, the box fills the left 2/3.
  assert _near(crop[16, 0], colour)
  assert _near(crop[16, 31], BACKGROUND, tol=6)
  inside = _closer_to(crop[16], colour, BACKGROUND).sum()
  assert abs(inside - 32 * 30 / 45) <= 1.5
  # Vertically nothing is clipped: box in the middle half.
  inside = _closer_to(crop[:, 4], colour, BACKGROUND).sum()
  assert abs(inside - 16) <= 1.5

  frame[:] = BACKGROUND
  frame[-30:, -30:] = colour  # Box in the bottom-right corner.
  crop = lisa_examples.crop_box(frame, (WIDTH - 30, HEIGHT - 30, WIDTH - 1,
                                        HEIGHT - 1), margin=0.5)
  assert _near(crop[31, 31], colour) and _near(crop[0, 0], BACKGROUND, tol=6)


def test_split_is_by_track(lisa_dir):
  manual, _ = lisa_dir
  records = lisa_annotations.read_annotations(manual)
  splits = lisa_annotations.split_records(records, test_fraction=0.2)
  assert splits["train"] and splits["test"]
  assert len(splits["train"]) + len(splits["test"]) == len(records)
  train_groups = {r.group for r in splits["train"]}
  test_groups = {r.group for r in splits["test"]}
  assert not train_groups & test_groups
  # Every track of the fixture has 2 frames: they stay together.
  for side in splits.values():
    for record in side:
      if record.group.startswith("track:") and "missing" not in record.group:
        assert sum(r.group == record.group for r in side) == 2
  # Deterministic: the hash depends only on the key.
  again = lisa_annotations.split_records(records, test_fraction=0.2)
  assert again == splits


def _read_all(source):
  return [source[i] for i in range(len(source))]


def _crop_set(examples):
  return sorted((int(e["label"]), e["image"].tobytes()) for e in examples)


def test_builder_end_to_end(lisa_dir, tmp_path):
  manual, _ = lisa_dir
  builder = lisa.prepare_lisa(manual, tmp_path / "tfds")
  short = data_sources.describe(manual, lisa.source_files(manual)).short
  assert builder.data_dir.endswith(
      os.path.join("lisa", f"margin0p1_test0p2_src{short}", "1.0.0"))
  sources = builder.as_data_source()
  assert set(sources) == {"train", "test"}

  records = lisa_annotations.read_annotations(manual)
  expected = lisa_annotations.split_records(records, 0.2)
  for side in ("train", "test"):
    examples = _read_all(sources[side])
    assert examples
    for example in examples:
      assert example["image"].dtype == np.uint8
      assert example["image"].shape == (32, 32, 3)
      assert isinstance(example["label"], (int, np.integer))
    want = [e for _, e in lisa_examples.generate_examples(expected[side])]
    assert _crop_set(examples) == _crop_set(want)


def test_builder_deterministic_and_config_folders(lisa_dir, tmp_path):
  manual, _ = lisa_dir
  builders = [lisa.prepare_lisa(manual, tmp_path / name, margin=0.25)
              for name in ("a", "b")]
  short = data_sources.describe(manual, lisa.source_files(manual)).short
  assert builders[0].builder_config.name == f"margin0p25_test0p2_src{short}"
  for side in ("train", "test"):
    files = [sorted(p for p in os.listdir(b.data_dir) if side in p)
             for b in builders]
    assert files[0] == files[1] and files[0]
    for name in files[0]:
      with open(os.path.join(builders[0].data_dir, name), "rb") as f:
        first = f.read()
      with open(os.path.join(builders[1].data_dir, name), "rb") as f:
        assert f.read() == first
    reads = [_read_all(b.as_data_source()[side]) for b in builders]
    assert [int(e["label"]) for e in reads[0]] == [
        int(e["label"]) for e in reads[1]]
    assert [e["image"].tobytes() for e in reads[0]] == [
        e["image"].tobytes() for e in reads[1]]
  # Different parameters do not share a folder; other_tags adds label 0.
  other = lisa.prepare_lisa(manual, tmp_path / "a", other_tags=True)
  assert other.data_dir != builders[0].data_dir
  labels = [int(e["label"]) for side in other.as_data_source().values()
            for e in _read_all(side)]
  assert labels.count(0) == 1


def _one_line(excinfo):
  return "\n" not in str(excinfo.value)


def test_no_manual_dir(tmp_path):
  with pytest.raises(FileNotFoundError, match="no manual_dir given") as e:
    lisa.prepare_lisa(None, tmp_path / "tfds")
  assert _one_line(e)
  builder = lisa.Lisa(data_dir=os.fspath(tmp_path / "tfds"),
                      file_format="array_record")
  with pytest.raises(FileNotFoundError, match="no manual_dir given") as e:
    builder.download_and_prepare()
  assert _one_line(e) and lisa_annotations.CSV_NAME in str(e.value)
  assert not (tmp_path / "tfds" / "lisa").exists()


@pytest.mark.parametrize("make", [True, False])
def test_folder_without_csv(tmp_path, make):
  manual = tmp_path / "not_lisa"
  if make:
    (manual / "sub").mkdir(parents=True)
    (manual / "sub" / "frame.png").write_bytes(b"")
  with pytest.raises(FileNotFoundError) as e:
    lisa.prepare_lisa(manual, tmp_path / "tfds")
  message = str(e.value)
  assert _one_line(e)
  assert lisa_annotations.CSV_NAME in message
  assert lisa_annotations.HOMEPAGE in message
  assert str(manual) in message and "manual_dir" in message
  assert not (tmp_path / "tfds" / "lisa").exists()


def test_malformed_header(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  header = ";".join(lisa_annotations.HEADER).replace(
      "Occluded,On another road", "Occluded;On another road")
  row = "x.png;stop;1;2;3;4;0,0;a;1;t;1"
  (manual / lisa_annotations.CSV_NAME).write_text(f"{header}\n{row}\n")
  with pytest.raises(ValueError, match="header") as e:
    lisa_annotations.read_annotations(manual)
  assert _one_line(e)
  with pytest.raises(ValueError, match="header"):
    lisa.prepare_lisa(manual, tmp_path / "tfds")
  assert not (tmp_path / "tfds" / "lisa").exists()
  (manual / lisa_annotations.CSV_NAME).write_text("")
  with pytest.raises(ValueError, match="header"):
    lisa_annotations.read_annotations(manual)


def test_ambiguous_csv(tmp_path):
  for sub in ("a", "b"):
    (tmp_path / sub).mkdir()
    (tmp_path / sub / lisa_annotations.CSV_NAME).write_text(
        ";".join(lisa_annotations.HEADER) + "\n")
  with pytest.raises(ValueError, match="Several") as e:
    lisa_annotations.find_annotations_csv(tmp_path)
  assert _one_line(e)


def test_bad_arguments(tmp_path):
  frame = np.zeros((20, 20, 3), np.uint8)
  cases = [
      lambda: lisa_examples.crop_box(frame.astype(np.float32), (1, 1, 5, 5)),
      lambda: lisa_examples.crop_box(frame[..., 0], (1, 1, 5, 5)),
      lambda: lisa_examples.crop_box(frame, (1, 1, 5, 5), margin=-0.1),
      lambda: lisa_examples.crop_box(frame, (5, 1, 1, 5)),
      lambda: lisa_examples.crop_box(frame, (30, 30, 40, 40)),
      lambda: lisa.LisaConfig(test_fraction=0.0),
      lambda: lisa.LisaConfig(test_fraction=1.5),
      lambda: lisa.LisaConfig(margin=-1.0),
      lambda: lisa.LisaConfig(other_tags="yes"),
      lambda: lisa.LisaConfig(name="custom"),
      lambda: lisa.prepare_lisa(tmp_path, tmp_path / "tfds", marg=0.2),
  ]
  for case in cases:
    with pytest.raises(ValueError) as e:
      case()
    assert _one_line(e)
  assert lisa.LisaConfig().name == "margin0p1_test0p2"
  assert lisa.LisaConfig(margin=0.125, other_tags=True).name == (
      "margin0p125_test0p2_other")
