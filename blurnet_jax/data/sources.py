"""What a real source is made of: the files a builder reads, and their
fingerprint, so that a prepared copy, a study and its report are keyed to
the very bytes they rest on.

  files = lisa_crops.source_files("/data/lisa")     # checked, one-line errors
  source = describe("/data/lisa", files)
  source.fingerprint                                 # 'sha256:...'

The fingerprint is the sha256 of every file's name (relative to the
folder), size and content hash, in name order: a changed, added, renamed
or removed file changes it; the folder's own path does not (a copy moved
elsewhere is the same data). A file the builder would read but that is
absent (a LISA frame the CSV names) enters as absent, so its appearing
later changes the fingerprint too. Hashes are kept per process by each
file's (size, mtime), so a study that prepares its data several times
reads each file once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Iterable

#: Bytes read per hashing call.
_CHUNK = 1 << 20
#: sha256 of a file's content by (path, size, mtime_ns): one process hashes
#: a file once however often its source is prepared.
_CONTENT: dict[tuple[str, int, int], str] = {}


@dataclasses.dataclass(frozen=True)
class Source:
  """The files behind a prepared real data set.

  Attributes:
    folder: the folder the user named (`data.manual_dir`), absolute.
    files: how many files the fingerprint covers (absent ones included).
    bytes: their total size.
    fingerprint: 'sha256:' and 64 hex digits (see the module doc).
  """

  folder: str
  files: int
  bytes: int
  fingerprint: str

  @property
  def short(self) -> str:
    """The first 12 hex digits: part of the prepared copy's config name."""
    return self.fingerprint.removeprefix("sha256:")[:12]

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def content_sha256(path: Path) -> str:
  """The sha256 of one file's bytes (cached by size and mtime)."""
  st = path.stat()
  key = (os.fspath(path.resolve()), st.st_size, st.st_mtime_ns)
  if key not in _CONTENT:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
      while chunk := f.read(_CHUNK):
        digest.update(chunk)
    _CONTENT[key] = digest.hexdigest()
  return _CONTENT[key]


def describe(folder: os.PathLike | str, files: Iterable[os.PathLike | str]
             ) -> Source:
  """The `Source` of `files` (each inside `folder`, or absent)."""
  root = Path(folder).expanduser().resolve()
  digest = hashlib.sha256()
  count = size = 0
  paths = sorted({Path(f).expanduser().resolve() for f in files})
  for path in paths:
    try:
      name = path.relative_to(root).as_posix()
    except ValueError:
      raise ValueError(f"{path} is outside the source folder {root}; a "
                       "source's files must lie in the folder it names"
                       ) from None
    count += 1
    if path.is_file():
      n = path.stat().st_size
      size += n
      line = f"{name}\0{n}\0{content_sha256(path)}\n"
    else:
      line = f"{name}\0absent\n"
    digest.update(line.encode("utf-8"))
  return Source(folder=os.fspath(root), files=count, bytes=size,
                fingerprint="sha256:" + digest.hexdigest())


def check_pin(source: Source, pinned: str, source_name: str) -> None:
  """A one-line error when a config pins other files than the folder holds
  (`data.fingerprint`, set by the run that wrote the config)."""
  if pinned and pinned != source.fingerprint:
    raise ValueError(
        f"the {source_name} files in {source.folder} have fingerprint "
        f"{source.fingerprint}, but the config was run on {pinned}: the "
        "source changed since; pass a new --workdir (or "
        "--config.data.fingerprint='' to run on the files as they are)")


#: The keys of the data stage's record that are not split counts.
DATA_FIELDS = ("name", "config", "path", "source")


def data_line(d: dict[str, Any]) -> str:
  """A study's data record (its data stage) in a sentence: the prepared
  copy, its splits and, for a real source, the files it was built from."""
  text = (f"{d['name']} at {d['path']}: " + ", ".join(
      f"{k} {v}" for k, v in d.items() if k not in DATA_FIELDS))
  if "source" in d:
    s = d["source"]
    text += (f"; built from {s['folder']} ({s['files']} file(s), "
             f"{s['bytes'] / 1e6:.1f} MB, {s['fingerprint']})")
  return text
