"""The ARG of `--config=FILE.py:ARG`: named overrides and options, e.g.
`variant=l1_5x5,runlocal`.

A config file builds its base (full) config and declares its named
overrides beside it as data: per name, a dict of dotted paths to values,
e.g. `{"num_train_steps": 60, "data.train_per_class": 20}`. `configure`
applies the overrides that ARG names, in the order the file declares them
(`grid,runlocal` is `runlocal,grid`). A value may be a function of the
config so far (`lambda c: c.sweep.alphas[:2]`). A `key=value` in ARG is an
option of the base, typed by its default; a tuple is a Python literal, as on
the command line (`variants=("baseline", "tv_1e-5")`). An override may set
an option too (a key that names one), and an option that ARG gives wins.
"""

import ast
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

Override = Mapping[str, Any]


def configure(arg: str | None,
              base: Callable[..., ml_collections.ConfigDict],
              overrides: Mapping[str, Override], *,
              exclusive: tuple[str, ...] = (),
              **options) -> ml_collections.ConfigDict:
  """`base(**options)` with the named overrides of `arg` applied.

  Args:
    arg: comma-separated names of `overrides` (`name=false` leaves one out,
      so `runlocal={flag}` works) and `key=value` options.
    base: builds the full config from the options' values.
    overrides: name -> {dotted path or option name: value or function of
      the config}, applied in this order.
    exclusive: names of which `arg` may pick one at most.
    **options: the options' defaults, which give their types.

  Raises:
    ValueError: an unknown name or option (one line naming the known ones),
      a value of the wrong type, or two exclusive names.
    KeyError: an override path that is not a field of the base config.
  """
  picked, given = set(), {}
  for part in split(arg or ""):
    key, eq, value = (s.strip() for s in part.partition("="))
    if key in overrides:
      if not eq or _boolean(key, value):
        picked.add(key)
    elif key in options:
      if not eq:
        raise ValueError(f"config argument {key!r} needs a value "
                         f"({key}=...)")
      given[key] = option_value(key, value, options[key])
    else:
      known = list(overrides) + [f"{k}=..." for k in options]
      raise ValueError(f"unknown config argument {key!r}; known: "
                       f"{', '.join(known)}")
  if len(picked & set(exclusive)) > 1:
    raise ValueError(f"pick at most one of {', '.join(exclusive)}")
  names = [name for name in overrides if name in picked]
  values = dict(options)
  for name in names:
    values.update((k, v) for k, v in overrides[name].items() if k in options)
  values.update(given)
  config = base(**values)
  for name in names:
    for path, value in overrides[name].items():
      if path not in options:
        _set(config, name, path, value(config) if callable(value) else value)
  return config


def under(prefix: str, override: Override) -> dict[str, Any]:
  """`override`'s paths below `prefix`: a block's override in a config
  that holds the block at `prefix` (a function of the block is given the
  block there)."""
  def at(value):
    if not callable(value):
      return value
    return lambda config: value(_get(config, prefix))
  return {f"{prefix}.{path}": at(value) for path, value in override.items()}


def option_value(key: str, text: str, default):
  """`text` as a value of `default`'s type (a tuple: a Python literal)."""
  if isinstance(default, tuple):
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = None
    if not isinstance(value, (tuple, list)):
      raise ValueError(f"config argument {key}={text!r} is not a tuple "
                       f"(e.g. {key}=(\"a\", \"b\"))")
    return tuple(value)
  try:
    return type(default)(text)
  except ValueError:
    raise ValueError(f"config argument {key}={text!r} is not a "
                     f"{type(default).__name__}") from None


def split(arg: str) -> list[str]:
  """`arg`'s parts between the commas outside brackets and quotes."""
  parts, depth, quote, start = [], 0, "", 0
  for i, ch in enumerate(arg):
    if quote:
      quote = "" if ch == quote else quote
    elif ch in "'\"":
      quote = ch
    elif ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
    elif ch == "," and not depth:
      parts.append(arg[start:i])
      start = i + 1
  parts.append(arg[start:])
  return [p.strip() for p in parts if p.strip()]


def _boolean(key: str, value: str) -> bool:
  if value.lower() not in ("true", "false", "1", "0"):
    raise ValueError(f"config argument {key}={value!r} is not a boolean")
  return value.lower() in ("true", "1")


def _get(config: ml_collections.ConfigDict, path: str):
  """The field or block at dotted `path`."""
  for key in path.split("."):
    config = config[key]
  return config


def _set(config: ml_collections.ConfigDict, name: str, path: str, value):
  """Sets the field at dotted `path`, which the base config must have."""
  *parents, leaf = path.split(".")
  block = config
  for key in parents:
    block = block[key]
  if leaf not in block:
    raise KeyError(f"override {name!r}: the config has no field {path}")
  block[leaf] = value
