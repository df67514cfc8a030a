"""SIGTERM and SIGINT during training: stop cleanly at a checkpoint, resumable by the same command.

SIGTERM (what SLURM and Kubernetes send before they kill a job) or SIGINT (Ctrl-C) while
`train_and_evaluate` runs: the step in flight finishes, the run writes a checkpoint of that very
step (within the epoch: `checkpointing.Position` holds the epoch's partial metric sums), waits
until it is on disk, and raises `Interrupted` with one line saying which checkpoint is where and
that the same command resumes from it. `launch.py` prints that line and exits with
`Interrupted.exit_code`:

  143 (128 + SIGTERM) after SIGTERM, 130 (128 + SIGINT) after SIGINT,

the shell's codes for death by those signals, which SLURM's `--requeue` and job scripts test for.
The resumed run continues with the next batch and ends bit-identical to an uninterrupted run
(CPU; tests/test_faults.py). A second SIGTERM or SIGINT exits at once (`os._exit` with the same
code); the checkpoints already complete are safe, orbax having renamed each into place only once
it was whole.

The handlers are installed only in the main thread (Python's rule) and only while training, and
the previous ones are put back after. Many processes (`jax.distributed`): a signal may reach some
processes and not others, and every process must save the same step (an orbax save is
collective). So the processes agree (`agreed`: one all-gather of the stop flags, a host sync)
every `AGREE_EVERY_STEPS` steps and at the start of each epoch, and all stop at the first agreement
step after any of them got a signal. One process alone needs no agreement and stops after the
step in flight.
"""

import os
import signal
import sys
import threading

import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGINT)

# Steps between two agreements of a multi-process run (each a host sync of every process).
AGREE_EVERY_STEPS = 10


def agreed(*values: int) -> tuple[int, ...]:
  """Each value's maximum over the processes (the values themselves with one process): a stop
  signal's number (0: none) or a flag. One all-gather, a host sync of every process."""
  # Imported here: launch.py imports this module before JAX may be (its flags come first).
  import jax  # pylint: disable=import-outside-toplevel
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  if jax.process_count() == 1:
    return tuple(int(value) for value in values)
  gathered = multihost_utils.process_allgather(np.asarray(values, np.int32))
  return tuple(int(value) for value in np.asarray(gathered).reshape(-1, len(values)).max(axis=0))


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
