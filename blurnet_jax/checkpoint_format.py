"""The checkpoint file format and its integrity checks (`checkpoint` writes
and finds the files; this module says what is in them).

One checkpoint is two files::

  ckpt_00001200.msgpack   # flax.serialization.to_bytes(state), written whole
  ckpt_00001200.json      # sidecar: step, config, sha256, tree summary

`encode` makes both from a state; `load` reads one back verified: the
sha256 of the msgpack must match its sidecar, and the tree, shapes and
dtypes stored must match the `target` it restores into. Nothing is ever
unpickled: the state is msgpack, the sidecar JSON.
"""

from __future__ import annotations

import collections.abc
import hashlib
import json
import os
import re
from typing import Any

import flax.serialization
import jax
import ml_collections
import numpy as np

FORMAT = "blurnet_jax.checkpoint/1"

_PREFIX = "ckpt_"
_DATA_RE = re.compile(r"^ckpt_(\d+)\.msgpack$")
_SIDECAR_RE = re.compile(r"^ckpt_(\d+)\.json$")


class CorruptError(ValueError):
  """The checkpoint bytes are damaged (sha256 mismatch, cannot decode)."""


class MismatchError(ValueError):
  """The checkpoint is intact but holds another model's tree."""


# ----------------------------------------------------------------- names ---


def data_name(step: int) -> str:
  """The file name of the msgpack of `step`."""
  return f"{_PREFIX}{step:08d}.msgpack"


def sidecar_name(step: int) -> str:
  """The file name of the sidecar of `step`."""
  return f"{_PREFIX}{step:08d}.json"


def data_step(name: str) -> int | None:
  """The step of a msgpack file name, or None if `name` is not one."""
  match = _DATA_RE.match(name)
  return int(match.group(1)) if match else None


def sidecar_step(name: str) -> int | None:
  """The step of a sidecar file name, or None if `name` is not one."""
  match = _SIDECAR_RE.match(name)
  return int(match.group(1)) if match else None


# ------------------------------------------------------------ tree summary ---


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  """Flattens a flax state dict into {'a/b': leaf}; empty dicts are leaves."""
  if isinstance(tree, collections.abc.Mapping) and tree:
    flat = {}
    for key, value in tree.items():
      flat.update(_flatten(value, f"{prefix}{key}/"))
    return flat
  return {prefix[:-1] if prefix else "<root>": tree}


def _describe(leaf: Any) -> dict[str, Any]:
  """JSON-able shape/dtype summary of one state-dict leaf."""
  if isinstance(leaf, (np.ndarray, np.generic, jax.Array)):
    return {"shape": list(np.shape(leaf)), "dtype": str(leaf.dtype)}
  if isinstance(leaf, collections.abc.Mapping):  # An empty container.
    return {"shape": None, "dtype": "empty"}
  if isinstance(leaf, (bool, int, float, complex)):
    # A Python number, e.g. TrainState.step before any jitted update.
    return {"shape": [], "dtype": type(leaf).__name__}
  return {"shape": None, "dtype": type(leaf).__name__}  # None, str, ...


def _summary(state_dict: Any) -> dict[str, dict[str, Any]]:
  return {path: _describe(leaf) for path, leaf in _flatten(state_dict).items()}


def _shape_str(desc: dict[str, Any]) -> str:
  return "no array" if desc["shape"] is None else str(tuple(desc["shape"]))


def _leaf_mismatch(path: str, got: dict[str, Any] | None,
                   want: dict[str, Any] | None) -> str | None:
  """One-phrase description of how a saved leaf differs, or None if it fits."""
  if got is None:
    return f"leaf {path} is missing but the model has it"
  if want is None:
    return f"leaf {path} is saved but the model has no such leaf"
  if got["shape"] != want["shape"]:
    return (f"leaf {path} has shape {_shape_str(got)} but the model expects "
            f"{_shape_str(want)}")
  py_scalars = {"bool", "int", "float", "complex"}
  if got["dtype"] in py_scalars or want["dtype"] in py_scalars:
    return None  # A Python number and a 0-d array of any dtype restore fine.
  if got["dtype"] != want["dtype"]:
    return (f"leaf {path} has dtype {got['dtype']} but the model expects "
            f"{want['dtype']}")
  return None


def _check_matches(path: str, saved: dict[str, Any], target: Any) -> None:
  """Raises MismatchError unless `saved` fits the tree of `target`."""
  got = _summary(saved)
  want = _summary(flax.serialization.to_state_dict(target))
  problems = [(p, _leaf_mismatch(p, got.get(p), want.get(p)))
              for p in list(want) + [p for p in got if p not in want]]
  problems = [(p, msg) for p, msg in problems if msg is not None]
  if not problems:
    return
  # Report the most direct leaf (params before optimizer copies of them).
  problems.sort(key=lambda item: item[0].count("/"))
  more = ""
  if len(problems) > 1:
    more = f" ({len(problems) - 1} more leaves differ)"
  raise MismatchError(
      f"checkpoint {path} holds params of another model: {problems[0][1]}"
      f"{more}; use a workdir of this model")


# ---------------------------------------------------------------- encode ---


def _json_default(obj: Any) -> Any:
  """Best-effort JSON for config values json cannot encode."""
  if isinstance(obj, np.generic):
    return obj.item()
  if isinstance(obj, (np.ndarray, jax.Array)):
    return np.asarray(obj).tolist()
  if isinstance(obj, (set, frozenset)):
    return sorted(obj, key=repr)
  return repr(obj)


def config_json(config: Any) -> Any:
  """The config as a JSON-able value (None, ConfigDict or mapping)."""
  if config is None:
    return None
  if isinstance(config, ml_collections.ConfigDict):
    return json.loads(config.to_json_best_effort())
  if isinstance(config, collections.abc.Mapping):
    return json.loads(json.dumps(dict(config), default=_json_default))
  raise ValueError(
      f"config must be an ml_collections.ConfigDict, a dict or None, got "
      f"{type(config).__name__}; pass config.to_dict() or leave it out")


def encode(state: Any, step: int, config: Any) -> tuple[bytes, bytes]:
  """The msgpack bytes of `state` (device arrays fetched to the host) and
  the bytes of its sidecar, which records `config` (from `config_json`)."""
  state_dict = flax.serialization.to_state_dict(jax.device_get(state))
  data = flax.serialization.msgpack_serialize(state_dict)
  tree = _summary(state_dict)
  sidecar = {
      "format": FORMAT,
      "step": step,
      "file": data_name(step),
      "sha256": hashlib.sha256(data).hexdigest(),
      "num_bytes": len(data),
      "num_params": int(sum(np.prod(d["shape"]) for d in tree.values()
                            if d["shape"] is not None)),
      "config": config,
      "tree": tree,
  }
  return data, (json.dumps(sidecar, indent=1) + "\n").encode("utf-8")


# ------------------------------------------------------------------ load ---

_FIX = "delete it or restore an earlier step"


def _read_sidecar(data_path: str, sidecar_path: str,
                  step: int) -> tuple[Any, Any]:
  """(sha256, num_bytes) recorded by the sidecar of `step`; CorruptError if
  the sidecar is missing, unreadable or of another step."""
  try:
    with open(sidecar_path, "rb") as f:
      sidecar = json.loads(f.read().decode("utf-8"))
    expected_sha = sidecar["sha256"]
    if sidecar.get("step") != step:
      raise ValueError(f"sidecar says step {sidecar.get('step')!r}")
  except FileNotFoundError:
    raise CorruptError(f"checkpoint {data_path} is corrupt (cannot decode): "
                       f"its sidecar {sidecar_path} is missing; {_FIX}"
                       ) from None
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise CorruptError(f"checkpoint {data_path} is corrupt (cannot decode): "
                       f"bad sidecar {sidecar_path}: {e}; {_FIX}") from None
  return expected_sha, sidecar.get("num_bytes")


def _verified_state_dict(data_path: str, expected_sha: Any,
                         num_bytes: Any) -> Any:
  """The state dict stored in `data_path`; CorruptError unless its bytes
  hash to `expected_sha` and decode as msgpack."""
  with open(data_path, "rb") as f:
    data = f.read()
  sha = hashlib.sha256(data).hexdigest()
  if sha != expected_sha:
    raise CorruptError(
        f"checkpoint {data_path} is corrupt (sha256 mismatch): {len(data)} "
        f"bytes hash to {sha[:12]}.., the sidecar recorded "
        f"{str(expected_sha)[:12]}.. for {num_bytes} bytes; {_FIX}")
  try:
    return flax.serialization.msgpack_restore(data)
  except Exception as e:  # pylint: disable=broad-except
    raise CorruptError(f"checkpoint {data_path} is corrupt (cannot decode): "
                       f"{type(e).__name__}: {e}; {_FIX}") from None


def load(ckpt_dir: str, step: int, target: Any) -> Any:
  """Reads, verifies and restores one checkpoint into the tree of `target`.

  Raises:
    CorruptError: if the sidecar is missing or bad, or the msgpack does not
      match its sha256 or cannot be decoded.
    MismatchError: if the checkpoint holds another model's tree.
    OSError: if the msgpack cannot be read.
  """
  data_path = os.path.join(ckpt_dir, data_name(step))
  expected_sha, num_bytes = _read_sidecar(
      data_path, os.path.join(ckpt_dir, sidecar_name(step)), step)
  saved = _verified_state_dict(data_path, expected_sha, num_bytes)
  _check_matches(data_path, saved, target)
  try:
    return flax.serialization.from_state_dict(target, saved)
  except (ValueError, KeyError, TypeError) as e:
    raise MismatchError(
        f"checkpoint {data_path} holds params of another model: "
        f"{type(e).__name__}: {e}; use a workdir of this model") from None
