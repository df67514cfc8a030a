"""A progress bar per epoch on a terminal; nothing in a log file, where one line per epoch says it all.

The bar shows steps done, the running mean loss and images per second. Reading the loss makes the
host wait for the device, so the bar refreshes only every `refresh_steps` steps.
"""

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

from cnnjax.training.steps import Metrics, summarize


class EpochProgress:
  """Call `update(total_sums)` after each step and `close()` at the end of the epoch."""

  def __init__(self, description: str, steps: int, batch_size: int, *,
               stream: TextIO | None = None, interactive: bool | None = None,
               refresh_steps: int = 25):
    stream = stream or sys.stderr
    self.interactive = stream.isatty() if interactive is None else interactive
    self.batch_size = batch_size
    self.refresh_steps = refresh_steps
    self.step = 0
    self.start = time.perf_counter()
    self._bar: Any = None
    if self.interactive:
      self._bar = tqdm(total=steps, desc=description, file=stream, leave=False, unit='step',
                       dynamic_ncols=True)

  def update(self, sums: Metrics) -> None:
    self.step += 1
    if self._bar is None or self.step % self.refresh_steps:
      return
    seconds = time.perf_counter() - self.start
    self._bar.set_postfix_str(f"loss={summarize(sums)['loss']:.4f}, "
                              f'{self.step * self.batch_size / seconds:,.0f} images/s', refresh=False)
    self._bar.update(self.step - self._bar.n)
    self._bar.refresh()  # We already refresh rarely; tqdm's own rate limit would skip these.

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
