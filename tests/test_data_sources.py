"""The data a run names is the data it reads: a real source's folder is
checked first, its prepared copy is keyed to the fingerprint of its files
(never read stale), and the fingerprint reaches the config and data.json.

Fabricated arrays in temporary folders; every image is painted with the
value that names it, so the counts and pixels read back say which folder
a prepared copy came from.
"""

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
import pytest

from blurnet_jax.data import datasets
from blurnet_jax.data import gtsrb
from blurnet_jax.data import lisa_crops
from blurnet_jax.data import sources
from blurnet_jax.study import stages
from configs import data as data_configs


def _one_line(excinfo):
  return "\n" not in str(excinfo.value)


def _crops(folder: Path, tracks: int, per_track: int, paint: int) -> int:
  """A crops npz: 17 classes x `tracks` tracks x `per_track` crops, every
  pixel of every image `paint`; returns the number of images."""
  y = np.repeat(np.arange(17), tracks * per_track)
  track = np.asarray([f"c{c}_t{i // per_track}" for c in range(17)
                      for i in range(tracks * per_track)])
  x = np.full((len(y), 32, 32, 3), paint, np.uint8)
  folder.mkdir(parents=True, exist_ok=True)
  np.savez(folder / lisa_crops.FILE_NAME, x=x, y=y, track=track)
  return len(y)


def _block(manual, data_dir, source="lisa_crops"):
  config = data_configs.data_config()
  config.update(dict(source=source, manual_dir=str(manual),
                     data_dir=str(data_dir)))
  return config


def _counts(builder):
  return {split: len(src) for split, src in builder.as_data_source().items()}


def _paint(builder, split="train"):
  images, _ = datasets.load_split(builder, split, limit=1)
  return int(images[0, 0, 0, 0])


def test_fingerprint_by_hand(tmp_path):
  (tmp_path / "sub").mkdir()
  (tmp_path / "a.bin").write_bytes(b"abc")
  (tmp_path / "sub" / "b.bin").write_bytes(b"")
  got = sources.describe(tmp_path, [tmp_path / "sub" / "b.bin",
                                    tmp_path / "a.bin",
                                    tmp_path / "gone.png"])
  import hashlib  # pylint: disable=g-import-not-at-top
  sha = lambda b: hashlib.sha256(b).hexdigest()
  lines = (f"a.bin\0{3}\0{sha(b'abc')}\n" f"gone.png\0absent\n"
           f"sub/b.bin\0{0}\0{sha(b'')}\n")
  assert got.fingerprint == "sha256:" + sha(lines.encode())
  assert (got.files, got.bytes) == (3, 3)
  assert got.short == got.fingerprint[7:19]
  # The folder's own path does not count: a moved copy is the same data.
  moved = tmp_path.parent / (tmp_path.name + "_moved")
  os.rename(tmp_path, moved)
  again = sources.describe(moved, [moved / "a.bin", moved / "sub" / "b.bin",
                                   moved / "gone.png"])
  assert again.fingerprint == got.fingerprint
  # One byte changes it; a file outside the folder is refused.
  (moved / "a.bin").write_bytes(b"abd")
  assert sources.describe(moved, [moved / "a.bin", moved / "sub" / "b.bin",
                                  moved / "gone.png"]).fingerprint != (
                                      got.fingerprint)
  with pytest.raises(ValueError, match="outside") as e:
    sources.describe(moved / "sub", [moved / "a.bin"])
  assert _one_line(e)


def test_lisa_crops_keyed_to_their_files(tmp_path):
  a, b, tfds_dir = tmp_path / "A", tmp_path / "B", tmp_path / "tfds"
  n_a = _crops(a, tracks=5, per_track=2, paint=10)   # 170 images
  n_b = _crops(b, tracks=4, per_track=3, paint=20)   # 204 images
  first = datasets.prepare(_block(a, tfds_dir))
  assert sum(_counts(first).values()) == n_a and _paint(first) == 10
  # Folder B under the same split settings: B's arrays, in a copy of its own.
  second = datasets.prepare(_block(b, tfds_dir))
  assert sum(_counts(second).values()) == n_b and _paint(second) == 20
  assert second.data_path != first.data_path
  # A folder that does not exist: one line naming it, whatever is prepared.
  before = sorted(p for p in tfds_dir.rglob("*"))
  with pytest.raises(FileNotFoundError, match="nonexistent") as e:
    datasets.prepare(_block(tmp_path / "nonexistent", tfds_dir))
  assert _one_line(e) and lisa_crops.FILE_NAME in str(e.value)
  assert sorted(p for p in tfds_dir.rglob("*")) == before
  # A again: its copy is reused, not rebuilt (a file dropped in it stays).
  marker = first.data_path / "marker"
  marker.write_text("kept")
  again = datasets.prepare(_block(a, tfds_dir))
  assert again.data_path == first.data_path and marker.read_text() == "kept"
  recorded = json.loads((first.data_path / "source.json").read_text())
  assert recorded == sources.describe(
      a, lisa_crops.source_files(a)).to_dict()
  assert recorded["folder"] == str(a.resolve()) and recorded["files"] == 1
  # A file changed in place is prepared again, never read stale.
  n_a2 = _crops(a, tracks=3, per_track=2, paint=30)
  changed = datasets.prepare(_block(a, tfds_dir))
  assert changed.data_path != first.data_path
  assert sum(_counts(changed).values()) == n_a2 and _paint(changed) == 30


def test_pinned_fingerprint_refuses_other_files(tmp_path):
  a = tmp_path / "A"
  _crops(a, tracks=5, per_track=2, paint=10)
  config = data_configs.data_config()
  train_config = type(config)({"data": _block(a, tmp_path / "tfds")})
  source = datasets.pin_data(train_config)
  assert train_config.data.fingerprint == source.fingerprint
  assert datasets.pin_data(train_config) == source  # idempotent
  _crops(a, tracks=5, per_track=2, paint=11)  # same shapes, other pixels
  with pytest.raises(ValueError, match="changed since") as e:
    datasets.prepare(train_config.data)
  assert _one_line(e) and source.fingerprint in str(e.value)
  # The synthetic set takes no fingerprint; its settings name it.
  synthetic = data_configs.data_config()
  assert datasets.source_of(synthetic) is None
  synthetic.fingerprint = source.fingerprint
  with pytest.raises(ValueError, match="synthetic") as e:
    datasets.source_of(synthetic)
  assert _one_line(e)


def _official(root: Path, per_track: int, paint: int) -> int:
  """GTSRB's official layout: 43 classes x 2 tracks x `per_track` images
  (24x24), 43 test images; every pixel `paint`. Returns the image count."""
  header = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
  image = np.full((24, 24, 3), paint, np.uint8)
  for c in range(43):
    folder = root / "Final_Training" / "Images" / f"{c:05d}"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [header]
    for t in range(2):
      for n in range(per_track):
        name = f"{t:05d}_{n:05d}.ppm"
        Image.fromarray(image).save(folder / name)
        lines.append(f"{name};24;24;1;1;22;22;{c}")
    (folder / f"GT-{c:05d}.csv").write_text("\n".join(lines) + "\n")
  images = root / "Final_Test" / "Images"
  images.mkdir(parents=True, exist_ok=True)
  lines = [header]
  for c in range(43):
    Image.fromarray(image).save(images / f"{c:05d}.ppm")
    lines.append(f"{c:05d}.ppm;24;24;1;1;22;22;{c}")
  (root / "Final_Test" / gtsrb.TEST_CSV).write_text("\n".join(lines) + "\n")
  return 43 * 2 * per_track + 43


def test_gtsrb_official_layout_keyed_to_its_files(tmp_path):
  a, b, tfds_dir = tmp_path / "A", tmp_path / "B", tmp_path / "tfds"
  n_a, n_b = _official(a, 1, paint=40), _official(b, 2, paint=50)
  first = datasets.prepare(_block(a, tfds_dir, "gtsrb"))
  assert sum(_counts(first).values()) == n_a and _paint(first) == 40
  second = datasets.prepare(_block(b, tfds_dir, "gtsrb"))
  assert sum(_counts(second).values()) == n_b and _paint(second) == 50
  before = sorted(p for p in tfds_dir.rglob("*"))
  with pytest.raises(FileNotFoundError, match="does not exist") as e:
    datasets.prepare(_block(tmp_path / "nonexistent", tfds_dir, "gtsrb"))
  assert _one_line(e)
  assert sorted(p for p in tfds_dir.rglob("*")) == before
  marker = first.data_path / "marker"
  marker.write_text("kept")
  again = datasets.prepare(_block(a, tfds_dir, "gtsrb"))
  assert again.data_path == first.data_path and marker.exists()
  # Every image and csv counts: one test image repainted changes the copy.
  assert sources.describe(a, gtsrb.source_files(a)).files == 43 * 3 + 44
  Image.fromarray(np.full((24, 24, 3), 60, np.uint8)).save(
      a / "Final_Test" / "Images" / "00007.ppm")
  changed = datasets.prepare(_block(a, tfds_dir, "gtsrb"))
  assert changed.data_path != first.data_path
  test_paint = datasets.load_split(changed, "test")[0][:, 0, 0, 0]
  assert sorted(set(test_paint.tolist())) == [40, 60]


def test_data_json_records_the_source(tmp_path):
  """A study's data stage and its saved config name the files it read."""
  a = tmp_path / "A"
  _crops(a, tracks=5, per_track=2, paint=10)
  config = type(data_configs.data_config())(
      {"seed": 0, "data": _block(a, tmp_path / "tfds")})
  inputs = stages.StudyInputs(config, tmp_path / "study")
  stage = stages.Stage("data", stages.data_stage, ("data",), stages.data_text)
  stages.run_stages((stage,), config, inputs, tmp_path / "study")
  fingerprint = sources.describe(a, lisa_crops.source_files(a)).fingerprint
  data = json.loads((tmp_path / "study" / "data.json").read_text())
  assert data["source"]["fingerprint"] == fingerprint
  assert data["source"]["folder"] == str(a.resolve())
  assert data["train"] + data["test"] == 170
  saved = json.loads((tmp_path / "study" / "config.json").read_text())
  assert saved["data"]["fingerprint"] == fingerprint
  line = sources.data_line(data)
  assert fingerprint in line and str(a.resolve()) in line
  # The files changed: the study's saved results rest on others, so a
  # resumed run stops with one line and leaves config.json as it was.
  _crops(a, tracks=4, per_track=2, paint=12)
  config.data.fingerprint = ""
  with pytest.raises(ValueError, match="another config") as e:
    stages.run_stages((stage,), config, inputs, tmp_path / "study")
  assert _one_line(e)
  assert json.loads((tmp_path / "study" / "config.json").read_text()) == saved


def test_packaged_rp2_assets_carry_their_sha256(tmp_path):
  from blurnet_jax.data import rp2_assets  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  packaged = rp2_assets.PACKAGED_DIR
  files = [p for p in packaged.rglob("*")
           if p.is_file() and p.name != rp2_assets.MANIFEST]
  assert rp2_assets.verify(packaged) == len(files) > 40
  copy = tmp_path / "rp2"
  shutil.copytree(packaged, copy)
  victim = sorted((copy / "victim-set").glob("*.png"))[3]
  data = bytearray(victim.read_bytes())
  data[-20] ^= 1
  victim.write_bytes(bytes(data))
  with pytest.raises(ValueError, match="does not match its sha256") as e:
    rp2_assets.load_rp2_assets(copy)
  assert _one_line(e) and victim.name in str(e.value)
  victim.unlink()
  with pytest.raises(ValueError, match="missing") as e:
    rp2_assets.verify(copy)
  assert _one_line(e)
  # A folder of the user's without a manifest is loaded as it is.
  shutil.copy(packaged / "victim-set" / victim.name, victim)
  (copy / rp2_assets.MANIFEST).unlink()
  assert rp2_assets.verify(copy) == 0
  assert len(rp2_assets.load_rp2_assets(copy).victims) == 40
