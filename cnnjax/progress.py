"""Progress of a long wait outside the training epochs: a bar on a terminal, a line now and then
in a log.

Decoding an image folder, extracting features with a frozen base, evaluating a large set and the
visualize job's long loops count their items through `Progress`. On a terminal it is a tqdm bar
(items, rate, time left) that disappears when done; in a log (stderr not a terminal) it prints a
line every `every_seconds` (30 by default), 'decoding photos: 1,200/5,000 images (24%), 40.1
images/s', and a last line with the total time, so that a slow step of a cluster job shows in its
log while a quick one leaves nothing.
"""

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm


class Progress:
  """Counts `total` items of one wait; use as a context manager, or call `close()`."""

  def __init__(self, description: str, total: int, unit: str = 'item', *,
               stream: TextIO | None = None, interactive: bool | None = None,
               every_seconds: float = 30.0, enabled: bool = True):
    self.description, self.total, self.unit = description, total, unit
    self.stream = stream or sys.stderr
    self.enabled = enabled
    self.interactive = self.stream.isatty() if interactive is None else interactive
    self.every_seconds = every_seconds
    self.done = 0
    self.start = self._last_line = time.perf_counter()
    self._printed = False
    self._bar: Any = None
    if enabled and self.interactive:
      self._bar = tqdm(total=total, desc=description, unit=unit, file=self.stream, leave=False,
                       dynamic_ncols=True)

  def _line(self, now: float) -> str:
    rate = self.done / max(now - self.start, 1e-9)
    percent = f' ({100 * self.done / self.total:.0f}%)' if self.total else ''
    return (f'{self.description}: {self.done:,}/{self.total:,} {self.unit}s{percent}, '
            f'{rate:,.1f} {self.unit}s/s')

  def update(self, count: int = 1) -> None:
    self.done += count
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.update(count)
      return
    now = time.perf_counter()
    if now - self._last_line >= self.every_seconds:
      print(self._line(now), file=self.stream, flush=True)
      self._last_line, self._printed = now, True

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    elif self.enabled and self._printed:  # A log that heard of this wait hears its end.
      now = time.perf_counter()
      print(f'{self._line(now)}; done in {now - self.start:.0f} s', file=self.stream, flush=True)
      self._printed = False

  def __enter__(self) -> 'Progress':
    return self

  def __exit__(self, *exc) -> None:
    self.close()
