"""A dependency-free progress line with rate and ETA, for long loops."""

import sys
import time


def format_seconds(seconds: float) -> str:
  seconds = max(0, int(round(seconds)))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
  """Prints `desc  12/300 [####....] 4.0%  loss 0.12  35.1 it/s  ETA 1m02s`.

  On a terminal the line is redrawn in place; otherwise (CI, log files) a new
  line is printed at most every `every_s` seconds and at the end.
  """

  def __init__(self, total: int, desc: str = "", *, start: int = 0,
               every_s: float = 10.0, stream=None, unit: str = "it"):
    self.total, self.desc, self.unit = total, desc, unit
    self.start = self.done = start
    self.stream = stream or sys.stderr
    self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.every_s = 0.2 if self.tty else every_s
    self.t0 = time.perf_counter()
    self.last = -float("inf")

  def eta(self) -> float:
    rate = self.rate()
    return (self.total - self.done) / rate if rate > 0 else float("nan")

  def rate(self) -> float:
    elapsed = time.perf_counter() - self.t0
    return (self.done - self.start) / elapsed if elapsed > 0 else 0.0

  def update(self, done: int, **metrics) -> None:
    self.done = done
    now = time.perf_counter()
    if now - self.last < self.every_s and done < self.total:
      return
    self.last = now
    frac = done / max(self.total, 1)
    bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
    parts = [f"{self.desc} {done}/{self.total} [{bar}] {100 * frac:5.1f}%"]
    parts += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
              for k, v in metrics.items()]
    parts.append(f"{self.rate():.1f} {self.unit}/s")
    eta = self.eta()
    if eta == eta:  # not NaN
      parts.append(f"ETA {format_seconds(eta)}")
    line = "  ".join(parts)
    end = "\n" if not self.tty or done >= self.total else ""
    self.stream.write(("\r\033[K" if self.tty else "") + line + end)
    self.stream.flush()

  def close(self) -> None:
    """Prints the final line (if not yet shown) and the elapsed time."""
    if self.tty and self.last >= 0 and self.done < self.total:
      self.stream.write("\n")  # end the line redrawn in place
    self.stream.write(f"{self.desc}: {self.done}/{self.total} in "
                      f"{format_seconds(time.perf_counter() - self.t0)}\n")
    self.stream.flush()
