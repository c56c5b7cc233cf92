"""Parsing of `--config=file.py:ARG` strings, e.g. `variant=l1_5x5,runlocal`."""

import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses 'a=1,b=x,flag' against typed defaults.

  A bare name sets a boolean default to True. Values are converted to the
  type of their default. An unknown name is an error naming the known ones.
  """
  out = dict(defaults)
  for part in (arg or "").split(","):
    part = part.strip()
    if not part:
      continue
    key, _, value = part.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ValueError(f"unknown config argument {key!r}; known: "
                       f"{', '.join(sorted(defaults))}")
    default = defaults[key]
    if not _:
      if not isinstance(default, bool):
        raise ValueError(f"config argument {key!r} needs a value ({key}=...)")
      out[key] = True
    elif isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"config argument {key}={value!r} is not a boolean")
      out[key] = value.lower() in ("true", "1")
    else:
      try:
        out[key] = type(default)(value)
      except ValueError:
        raise ValueError(f"config argument {key}={value!r} is not a "
                         f"{type(default).__name__}") from None
  return ml_collections.ConfigDict(out)
