"""Orbax checkpoints of a run: the latest epochs (to resume) and the best one by val_loss (to test).

One `CheckpointManager` under `workdir/checkpoints`, one checkpoint per epoch, each holding the
train state (parameters, optimizer state, step, random key) and the history up to that epoch. A
preservation policy keeps the two latest checkpoints and the one with the lowest val_loss and
deletes the rest. Orbax writes a checkpoint to a temporary directory and renames it when complete,
so an interrupted save never replaces a good checkpoint with a broken one.

A full disk or a read-only one: before each save, the directory's file system is checked for a
read-only mount and its free space against the state's size, so such a disk is an `OSError`
(EROFS, ENOSPC) naming the checkpoint, raised before orbax writes anything; `train_and_evaluate`
turns it into a one-line error. A disk that fills up (or turns read-only) while orbax writes still
ends in that error (orbax raises it again in the main thread), but orbax and TensorStore also log
the failure from their threads on stderr (a filter keeps orbax's own record to one line), and
when orbax cannot even create the checkpoint's directory its other threads wait out their
timeout (minutes) before the process exits. Either way the checkpoints before stay intact: the
unfinished one is a temporary directory that the next run removes.

Damaged checkpoints (a file truncated or deleted afterwards, by a disk fault or a hand):
`restore_latest` checks the checkpoints newest first by reading every file of each (`damage`:
the history's JSON, the state's metadata and every key of its OCDBT store). A damaged one is
renamed `N.corrupt-<UTC time>` (never deleted; orbax ignores the name), a warning names it, and
the next older one is tried. Keeping the two latest checkpoints is what leaves one to fall back
on. Bytes changed inside an array file without changing its length are not detected. Multi-host:
process 0 renames, every process checks for itself and skips the same damaged checkpoint.
"""

import errno
import json
import logging
import os
import shutil
import sys
import time
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
import tensorstore as ts
from orbax.checkpoint import checkpoint_managers as ocp_managers

from cnnjax.errors import CnnjaxError

History = list[dict[str, float]]

# errno values of a workdir that cannot be written, and the strerror texts by which wrapped errors
# (TensorStore's ValueErrors, orbax's) are recognized.
DISK_ERRORS = {errno.ENOSPC: 'No space left on device', errno.EDQUOT: 'Disk quota exceeded',
               errno.EROFS: 'Read-only file system'}


def disk_error_reason(error: BaseException) -> str | None:
  """'No space left on device' etc. if `error` is a full or read-only disk's, else None."""
  if isinstance(error, OSError) and error.errno in DISK_ERRORS:
    return DISK_ERRORS[error.errno]
  text = str(error).lower()
  return next((reason for reason in DISK_ERRORS.values() if reason.lower() in text), None)


class _NoTracebackForDiskErrors(logging.Filter):
  """Orbax logs a failed background save with its traceback, then raises the error again in the
  main thread, where the run reports a full or read-only disk as one clear line; this filter
  keeps orbax's log record of such an error to one line."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.exc_info and record.exc_info[1] is not None and disk_error_reason(
        record.exc_info[1]):
      record.exc_info = None
      record.exc_text = None
    return True


for _logger in ('absl', 'asyncio'):
  logging.getLogger(_logger).addFilter(_NoTracebackForDiskErrors())


def _val_loss(metrics: dict[str, float]) -> float:
  return metrics['val_loss']


class Checkpoints:
  """The run's checkpoints: `save` after each epoch, `restore` the latest or the best."""

  def __init__(self, directory: str):
    self.directory = os.path.abspath(directory)
    policy = ocp_managers.AnyPreservationPolicy([
        ocp_managers.LatestN(n=2),  # One to fall back on if the latest is damaged.
        ocp_managers.BestN(get_metric_fn=_val_loss, reverse=True, n=1),
    ])
    options = ocp.CheckpointManagerOptions(best_fn=_val_loss, best_mode='min',
                                           preservation_policy=policy, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=('state', 'history'))

  def latest_epoch(self) -> int | None:
    return self._manager.latest_step()

  def best_epoch(self) -> int | None:
    return self._manager.best_step()

  def save(self, epoch: int, state: Any, history: History) -> None:
    """Saves the state after `epoch` (1-based) with the history so far; returns before it is on disk."""
    # The save finishes in the background: give it a copy of the history, which the caller
    # goes on appending to. (Orbax copies the arrays to the host before `save` returns.)
    history = [dict(record) for record in history]
    self._check_writable(epoch, state)
    self._manager.save(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), history=ocp.args.JsonSave(history)),
        metrics={'val_loss': history[-1]['val_loss']})

  def _check_writable(self, epoch: int, state: Any) -> None:
    """Raises EROFS / ENOSPC before a save the disk cannot take (module docstring)."""
    target = os.path.join(self.directory, str(epoch))
    if os.statvfs(self.directory).f_flag & os.ST_RDONLY:
      raise OSError(errno.EROFS, DISK_ERRORS[errno.EROFS], target)
    need = sum(getattr(leaf, 'nbytes', 0) for leaf in jax.tree.leaves(state))
    need += need // 10 + (1 << 20)  # Metadata and the history, with room to spare.
    free = shutil.disk_usage(self.directory).free
    if free < need:
      raise OSError(errno.ENOSPC, f'{DISK_ERRORS[errno.ENOSPC]} (the checkpoint needs about '
                    f'{need:,} bytes, {free:,} are free)', target)

  def restore(self, epoch: int, like: Any) -> tuple[Any, History]:
    """Restores the state saved after `epoch`, shaped like the state `like`, and its history."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
      restored = self._manager.restore(epoch, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()))
    except (ValueError, KeyError, TypeError) as e:
      raise CnnjaxError(
          f'cannot restore the checkpoint of epoch {epoch} in {self.directory}: {e}. It was '
          'probably written for a different model or optimizer; use a new --workdir, or the '
          'config that wrote it') from e
    return restored['state'], list(restored['history'])

  def restore_latest(self, like: Any, warn: Callable[[str], None] | None = None
                     ) -> tuple[int, Any, History] | None:
    """(epoch, state, history) of the newest readable checkpoint, or None if there are none.

    Damaged checkpoints on the way are renamed `N.corrupt-<time>` with a warning (module
    docstring). Raises CnnjaxError if the newest readable checkpoint was written for another state
    structure, or if every checkpoint is damaged.
    """
    warn = warn or (lambda message: print(message, file=sys.stderr, flush=True))
    moved = []
    for epoch in sorted(self._manager.all_steps(), reverse=True):
      damage = self.damage(epoch)
      if damage is None:
        state, history = self.restore(epoch, like)
        return epoch, state, history
      aside = self._move_aside(epoch)
      moved.append(aside)
      warn(f'warning: the checkpoint of epoch {epoch} in {self.directory} is damaged ({damage}); '
           f'moved it to {aside} and falling back to the checkpoint before it')
    if moved:
      raise CnnjaxError(
          f'every checkpoint in {self.directory} is damaged; they are moved aside to '
          f'{", ".join(moved)}. Run the same command again to train from scratch in this '
          'workdir, or use a new --workdir')
    return None

  def damage(self, epoch: int) -> str | None:
    """What is wrong with the checkpoint of `epoch` (a missing or short file), None if nothing.

    Reads every file of it synchronously (the history's JSON, every key of the state's OCDBT
    store) rather than letting orbax's asynchronous restore fail halfway, which leaves
    TensorStore callbacks printing tracebacks about a closed event loop.
    """
    step = os.path.join(self.directory, str(epoch))
    try:
      with open(os.path.join(step, 'history', 'metadata')) as f:
        json.load(f)
      state = os.path.join(step, 'state')
      with open(os.path.join(state, '_METADATA')) as f:
        json.load(f)
      if os.path.exists(os.path.join(state, 'manifest.ocdbt')):
        store = ts.KvStore.open({'driver': 'ocdbt', 'base': f'file://{state}/'}).result()
        for key in store.list().result():
          store.read(key).result()
    except (OSError, ValueError) as e:
      return _first_line(e)
    return None

  def _move_aside(self, epoch: int) -> str:
    """Renames the checkpoint directory of `epoch` (process 0 only) and forgets it."""
    stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
    source = os.path.join(self.directory, str(epoch))
    target = f'{source}.corrupt-{stamp}'
    if jax.process_index() == 0:
      os.rename(source, target)
    self._manager.reload()
    return target

  def wait(self) -> None:
    """Blocks until every save has reached the disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def _first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  line = text[0] if text else type(error).__name__
  return line if len(line) <= 300 else line[:300] + '...'
