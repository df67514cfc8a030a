"""SIGTERM and SIGINT during training: stop cleanly at a checkpoint, resumable by the same command.

SIGTERM (what SLURM and Kubernetes send before they kill a job) or SIGINT (Ctrl-C) while
`train_and_evaluate` runs: the step in flight finishes, the loop stops, the last checkpoint is
waited for until it is on disk, and `Interrupted` is raised with one line saying which epoch's
checkpoint is where and that the same command resumes from it. `launch.py` prints that line and
exits with `Interrupted.exit_code`:

  143 (128 + SIGTERM) after SIGTERM, 130 (128 + SIGINT) after SIGINT,

the shell's codes for death by those signals, which SLURM's `--requeue` and job scripts test for.

Checkpoints come at the end of epochs, so the steps of the epoch in flight are not saved: the
run resumes at the start of that epoch (an epoch whose training steps had all finished when the
signal came is validated and saved before the stop). A second SIGTERM or SIGINT exits at once
(`os._exit` with the same code); the checkpoints already complete are safe, orbax having renamed
each into place only once it was whole.

The handlers are installed only in the main thread (Python's rule) and only while training, and
the previous ones are put back after. Multi-host runs: each process handles its own signal, with
no agreement on the step where they stop (orbax's preemption sync needs `jax.distributed`); not
handled yet.
"""

import os
import signal
import sys
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
  """Training stopped on a signal at a resumable checkpoint; `str()` says where."""

  def __init__(self, signum: int, message: str):
    super().__init__(message)
    self.signum = signum
    self.exit_code = 128 + signum


class StopRequests:
  """A context manager: inside it, the first SIGTERM / SIGINT sets `signum`, a second exits."""

  def __init__(self):
    self.signum: int | None = None
    self._previous = {}

  @property
  def requested(self) -> bool:
    return self.signum is not None

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name if self.signum else ''

  def _handle(self, signum, frame) -> None:
    del frame
    if self.signum is not None:
      print(f'{signal.Signals(signum).name} again: exiting at once', file=sys.stderr, flush=True)
      os._exit(128 + signum)  # pylint: disable=protected-access
    self.signum = signum
    print(f'{signal.Signals(signum).name}: stopping after the step in flight '
          '(send it again to exit at once)', file=sys.stderr, flush=True)

  def __enter__(self) -> 'StopRequests':
    if threading.current_thread() is threading.main_thread():
      for signum in SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}
