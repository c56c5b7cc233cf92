"""The one JSON writer and reader of the project.

`write_json` converts numpy scalars and arrays and tuples, leaves out dict
keys that start with '_' (in-memory extras), and writes atomically (a
temporary file renamed over the target), so a reader never sees half a
file; in a multi-process run only process 0 writes (the others return the
path and write nothing, so they never race on a file). `read_json` turns a missing or corrupt file into one clear error.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from blurnet_jax import distributed


def jsonable(x: Any) -> Any:
  """`x` with numpy scalars/arrays as Python numbers/lists, tuples as lists,
  NaN as null (strict JSON has no NaN; a NaN outcome is a cell that does
  not count, see `stats`), and dict keys that start with '_' left out."""
  if isinstance(x, dict):
    return {k: jsonable(v) for k, v in x.items()
            if not str(k).startswith("_")}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return jsonable(x.tolist())
  if isinstance(x, (np.floating, np.integer, np.bool_)):
    x = x.item()
  if isinstance(x, float) and math.isnan(x):
    return None
  return x


def write_json(path: str | os.PathLike[str], obj: Any, *,
               sort_keys: bool = False) -> Path:
  """Writes `jsonable(obj)` to `path` atomically (process 0 only); returns
  the path."""
  path = Path(path)
  if not distributed.is_writer():
    return path
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(path.suffix + ".tmp")
  tmp.write_text(json.dumps(jsonable(obj), indent=2, sort_keys=sort_keys)
                 + "\n")
  tmp.replace(path)
  return path


def read_json(path: str | os.PathLike[str], what: str = "results") -> Any:
  """The contents of a JSON file, or one-line FileNotFoundError/ValueError."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{what} file {str(path)!r} does not exist; run "
                            "the stage that writes it first")
  try:
    return json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{what} file {str(path)!r} is not valid JSON ({e}); "
                     "run the stage that writes it again") from None
