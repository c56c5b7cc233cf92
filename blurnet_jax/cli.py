"""Launcher helpers: bad input ends a program with one line, not a traceback."""

import functools
import sys

from absl import logging


def one_line_errors(main):
  """Wraps an absl `main`: ValueError, FileNotFoundError and FloatingPointError
  (a NaN loss) print `error: <message>` and exit with status 2; the full
  traceback goes to the debug log."""

  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
      logging.debug("failed", exc_info=True)
      sys.stderr.write(f"error: {e}\n")
      sys.exit(2)

  return wrapped


def parse_flags(argv):
  """absl's flag parsing, with config mistakes reported in one line.

  Pass as `app.run(main, flags_parser=parse_flags)`. A misspelt
  `--config.key=...` (the config is locked) and an error raised by a
  config file's `get_config(arg)` both end the program with `error: ...`.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    # ml_collections puts the config file's traceback in the message; its
    # last line is the exception that says what is wrong.
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    sys.stderr.write(f"error: {lines[-1] if lines else e}\n")
  except (KeyError, AttributeError) as e:
    overrides = " ".join(a for a in argv[1:] if a.startswith("--config."))
    key = str(e).strip("'\"")
    sys.stderr.write(f"error: unknown config key {key} ({overrides}); check "
                     "its spelling against the config file's fields\n")
  sys.exit(2)
