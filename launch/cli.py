"""Launcher helpers: process set-up, and bad input ends a program with one
line, not a traceback.

Every launcher wraps its `main` in `one_line_errors`, which first calls
`setup_process()`: XLA:CPU's host-memory reuse (`host_memory`) and JAX's
persistent compilation cache in `--compilation_cache` (default
~/.cache/blurnet_jax/xla, or $BLURNET_JAX_COMPILATION_CACHE; 'off' turns it
off), so that a second run of a launcher loads its compiled programs
instead of compiling them again; and the distributed runtime when the
config's `distributed` block or the environment names several processes
(`blurnet_jax.distributed`), after which every process checks that the
others run the same config and workdir.
"""

import functools
import os
import sys

from absl import flags
from absl import logging
import jax

from blurnet_jax import distributed
from blurnet_jax import host_memory
from blurnet_jax import workdirs

CACHE_ENV = "BLURNET_JAX_COMPILATION_CACHE"
_CACHE = flags.DEFINE_string(
    "compilation_cache",
    os.environ.get(CACHE_ENV, os.path.join("~", ".cache", "blurnet_jax",
                                           "xla")),
    "folder of JAX's persistent compilation cache; 'off' for none "
    f"(default from ${CACHE_ENV})")


def enable_compilation_cache(path: str) -> str | None:
  """Turns on JAX's persistent compilation cache in `path` ('off'/'': none).

  Every program that takes a second or more to compile is stored, so the
  next process loads it. Returns the folder, or None when off.
  """
  import jax  # pylint: disable=g-import-not-at-top
  if not path or path.lower() == "off":
    return None
  folder = os.path.abspath(os.path.expanduser(path))
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise ValueError(f"compilation cache folder {folder!r} cannot be made "
                     f"({e.strerror}); pass --compilation_cache=DIR or "
                     "--compilation_cache=off") from None
  jax.config.update("jax_compilation_cache_dir", folder)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return folder


def setup_process(config=None, *same: str) -> None:
  """What a launcher sets for the whole process, before any computation.

  With a `config` whose `distributed` block (or the environment) names
  several processes, joins them (`distributed.initialize`) and checks that
  every process has the same config and `same` values (e.g. the workdir).
  """
  host_memory.reuse_freed_memory()
  enable_compilation_cache(_CACHE.value)
  block = None if config is None else config.get("distributed")
  if distributed.initialize(distributed.Setup.from_config(block)):
    distributed.check_same_config(config, *same)


def _launcher_config():
  """The launcher's `--config` and `--workdir` values (None where it has
  no such flag)."""
  values = []
  for name in ("config", "workdir"):
    values.append(flags.FLAGS[name].value if name in flags.FLAGS else None)
  return values


def one_line_errors(main):
  """Wraps an absl `main`: `setup_process()`, then ValueError,
  FileNotFoundError, FloatingPointError (a NaN loss) and WorkdirBusyError
  (another run holds the workdir) print
  `error: <message>` and exit with status 2; the full traceback goes to the
  debug log. In a multi-process run a failed collective (a process lost)
  ends this one with a line naming the lost process, status 3, and any
  error ends the process at once (JAX's shutdown would wait for the
  others)."""

  @functools.wraps(main)
  def wrapped(argv):
    try:
      config, workdir = _launcher_config()
      setup_process(config, str(workdir))
      return main(argv)
    except (ValueError, FileNotFoundError, FloatingPointError,
            workdirs.WorkdirBusyError) as e:
      logging.debug("failed", exc_info=True)
      if distributed.multi_process():
        if distributed.is_collective_failure(e):
          distributed.stop_on_lost_process(e)
        distributed.stop(str(e))
      sys.stderr.write(f"error: {e}\n")
      sys.exit(2)
    except jax.errors.JaxRuntimeError as e:
      distributed.stop_on_lost_process(e)
      raise

  return wrapped


def resolve_config_path(arg: str) -> str:
  """`--config=configs/NAME.py[:ARG]` pointing at the installed `configs`
  package when no such file is under the current folder (a pip-installed
  package run from anywhere); any other argument unchanged."""
  prefix = "--config="
  if not arg.startswith(prefix):
    return arg
  path, colon, rest = arg[len(prefix):].partition(":")
  if os.path.exists(path) or not path.startswith("configs/"):
    return arg
  import configs  # pylint: disable=g-import-not-at-top
  installed = os.path.join(os.path.dirname(configs.__file__),
                           path[len("configs/"):])
  return prefix + installed + colon + rest if os.path.exists(installed) else arg


def parse_flags(argv):
  """absl's flag parsing, with config mistakes reported in one line.

  Pass as `app.run(main, flags_parser=parse_flags)`. A misspelt
  `--config.key=...` (the config is locked) and an error raised by a
  config file's `get_config(arg)` both end the program with `error: ...`.
  `--config=configs/NAME.py` finds the installed configs when run outside
  the repository (`resolve_config_path`).
  """
  argv = [argv[0]] + [resolve_config_path(a) for a in argv[1:]]
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
