"""Orbax checkpoints of a run: at the end of every epoch and within epochs, to resume exactly.

One `CheckpointManager` under `workdir/checkpoints`. A checkpoint is numbered by the training steps
the run has done (its global step) and holds three items: the train state (parameters, optimizer
state, BatchNorm statistics, step, random key), the history of the finished epochs, and its
`Position` in the run (JSON: the epoch, the steps done of it, and within an epoch the metric sums
so far), from which a resumed run continues exactly where this one was. End-of-epoch checkpoints
carry the epoch's val_loss as orbax's metric; checkpoints within an epoch (`train.checkpoint_every_steps`
/ `_minutes`, and the one written on SIGTERM / SIGINT) carry none. A preservation policy keeps
the two latest checkpoints and the end-of-epoch one with the lowest val_loss, and deletes the
rest. Orbax writes a checkpoint to a temporary directory and renames it when complete, so an
interrupted save (`kill -9` while it writes) never replaces a good checkpoint with a broken one.

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
the history's and the position's JSON, the state's metadata and every key of its OCDBT store). A
damaged one is renamed `N.corrupt-<UTC time>` (never deleted; orbax ignores the name), a warning
names it, and the next older one is tried. Keeping the two latest checkpoints is what leaves one
to fall back on. Bytes changed inside an array file without changing its length are not
detected. Multi-host: process 0 renames, every process checks for itself and skips the same
damaged checkpoint.
"""

import dataclasses
import errno
import json
import logging
import os
import shutil
import sys
import time
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from orbax.checkpoint import checkpoint_managers as ocp_managers

from cnnjax.errors import CnnjaxError, ConfigError

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


Sums = dict[str, Any]  # An epoch's metric sums ('loss', 'correct', 'count'), on the device or not.


@dataclasses.dataclass(frozen=True)
class Position:
  """Where in the run a checkpoint was taken: enough to continue exactly from there.

  Attributes:
    epoch: the epoch in flight (1-based).
    steps_done: how many of its `steps_per_epoch` steps were done; all of them: the epoch ended
      and was validated (an end-of-epoch checkpoint, the history ending with this epoch).
    steps_per_epoch: the epoch's length when the checkpoint was taken.
    sums: within an epoch, the epoch's metric sums after `steps_done` steps; None at its end.
    logged: within an epoch, the sums at its last TensorBoard point (`train.log_every_steps`)
      and that point's step ({'step': ..., 'sums': ...}), or None if there was none yet.
    seconds: training seconds of the epoch so far (for its images/s; not reproducible).
  """
  epoch: int
  steps_done: int
  steps_per_epoch: int
  sums: Sums | None = None
  logged: dict[str, Any] | None = None
  seconds: float = 0.0

  @property
  def step(self) -> int:
    """Training steps done in the whole run: the checkpoint's number."""
    return (self.epoch - 1) * self.steps_per_epoch + self.steps_done

  @property
  def epoch_ended(self) -> bool:
    return self.steps_done == self.steps_per_epoch

  def to_json(self) -> dict[str, Any]:
    """Sums as [value, dtype] pairs: JSON's floats hold a float32 exactly, so a resumed epoch
    adds its next step to bit-identical sums."""
    record = dataclasses.asdict(self)
    record['sums'] = _encode_sums(self.sums)
    if self.logged is not None:
      record['logged'] = {'step': self.logged['step'], 'sums': _encode_sums(self.logged['sums'])}
    return record

  @classmethod
  def from_json(cls, record: dict[str, Any]) -> 'Position':
    record = dict(record)
    record['sums'] = _decode_sums(record.get('sums'))
    if record.get('logged') is not None:
      record['logged'] = {'step': record['logged']['step'],
                          'sums': _decode_sums(record['logged']['sums'])}
    return cls(**record)


def _encode_sums(sums: Sums | None) -> dict[str, list] | None:
  if sums is None:
    return None
  return {name: [value.item(), value.dtype.name]
          for name, value in jax.tree.map(np.asarray, jax.device_get(sums)).items()}


def _decode_sums(encoded: dict[str, list] | None) -> Sums | None:
  if encoded is None:
    return None
  return {name: np.asarray(value, dtype) for name, (value, dtype) in encoded.items()}


class SaveSchedule:
  """When to checkpoint within an epoch: every `every_steps` steps of the run and every
  `every_minutes` minutes since the last checkpoint (0 turns either off)."""

  def __init__(self, every_steps: int = 0, every_minutes: float = 0.0,
               clock: Callable[[], float] = time.monotonic):
    if every_steps < 0 or every_minutes < 0:
      raise ConfigError(
          f'train.checkpoint_every_steps={every_steps} and train.checkpoint_every_minutes='
          f'{every_minutes} must be >= 0 (0 turns that kind of checkpoint within epochs off)')
    self.every_steps = int(every_steps)
    self.every_seconds = 60.0 * every_minutes
    self._clock = clock
    self._last = clock()

  def steps_due(self, step: int) -> bool:
    """Whether global step `step` is one of the every-N-steps checkpoints (the same on every host)."""
    return bool(self.every_steps) and step % self.every_steps == 0

  def time_due(self) -> bool:
    """Whether `every_minutes` have passed since the last checkpoint (this host's clock)."""
    return bool(self.every_seconds) and self._clock() - self._last >= self.every_seconds

  def saved(self) -> None:
    """A checkpoint was just taken: the minutes count from now."""
    self._last = self._clock()


class Checkpoints:
  """The run's checkpoints: `save` at the end of an epoch or within one, `restore` any of them."""

  def __init__(self, directory: str):
    self.directory = os.path.abspath(directory)
    policy = ocp_managers.AnyPreservationPolicy([
        ocp_managers.LatestN(n=2),  # One to fall back on if the latest is damaged.
        # The best end-of-epoch checkpoint; those within epochs have no val_loss.
        ocp_managers.BestN(get_metric_fn=_val_loss, reverse=True, n=1,
                           keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(best_fn=_val_loss, best_mode='min',
                                           preservation_policy=policy, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=('state', 'history', 'position'))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    """The end-of-epoch checkpoint with the lowest val_loss (None before an epoch has ended)."""
    return self._manager.best_step()

  def save(self, step: int, state: Any, history: History, position: Position | None = None
           ) -> None:
    """Saves the state after `step` steps with the history so far; returns before it is on disk.

    `position` None or at an epoch's end: an end-of-epoch checkpoint, ranked by the history's
    last val_loss; within an epoch: kept only while it is one of the two latest.
    """
    # The save finishes in the background: give it a copy of the history, which the caller
    # goes on appending to. (Orbax copies the arrays to the host before `save` returns.)
    history = [dict(record) for record in history]
    self._check_writable(step, state)
    items = {'state': ocp.args.StandardSave(state), 'history': ocp.args.JsonSave(history)}
    if position is not None:
      items['position'] = ocp.args.JsonSave(position.to_json())
    ended = position is None or position.epoch_ended
    self._manager.save(step, args=ocp.args.Composite(**items),
                       metrics={'val_loss': history[-1]['val_loss']} if ended else None)

  def _check_writable(self, step: int, state: Any) -> None:
    """Raises EROFS / ENOSPC before a save the disk cannot take (module docstring)."""
    target = os.path.join(self.directory, str(step))
    if os.statvfs(self.directory).f_flag & os.ST_RDONLY:
      raise OSError(errno.EROFS, DISK_ERRORS[errno.EROFS], target)
    need = sum(getattr(leaf, 'nbytes', 0) for leaf in jax.tree.leaves(state))
    need += need // 10 + (1 << 20)  # Metadata and the history, with room to spare.
    free = shutil.disk_usage(self.directory).free
    if free < need:
      raise OSError(errno.ENOSPC, f'{DISK_ERRORS[errno.ENOSPC]} (the checkpoint needs about '
                    f'{need:,} bytes, {free:,} are free)', target)

  def restore(self, step: int, like: Any = None) -> tuple[Any, History]:
    """Restores the state saved after `step`, shaped like the state `like`, and its history.

    `like` None restores the arrays as saved, in nested dicts, on this process's first device
    whatever devices wrote them (a run of 8 devices serves `model.init_from` on one).
    """
    if like is None:
      abstract = self._as_saved_on_one_device(step)
    else:
      abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()))
    except (ValueError, KeyError, TypeError) as e:
      raise CnnjaxError(
          f'cannot restore the checkpoint {step} in {self.directory}: {e}. It was '
          'probably written for a different model or optimizer; use a new --workdir, or the '
          'config that wrote it') from e
    return restored['state'], list(restored['history'])

  def _as_saved_on_one_device(self, step: int) -> Any:
    """The saved state's shapes and dtypes, placed on this process's first device (orbax would
    otherwise ask for the devices the checkpoint was written from)."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    try:
      saved = ocp.StandardCheckpointer().metadata(
          os.path.join(self.directory, str(step), 'state')).item_metadata
    except (FileNotFoundError, ValueError) as e:
      raise CnnjaxError(f'cannot read the checkpoint {step} in {self.directory}: {e}') from e
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
                        saved)

  def position(self, step: int) -> Position:
    """Where in the run the checkpoint `step` was taken."""
    path = os.path.join(self.directory, str(step), 'position', 'metadata')
    if not os.path.exists(path):
      raise CnnjaxError(
          f'the checkpoint {os.path.dirname(os.path.dirname(path))} has no position item: it was '
          'written by a cnnjax from before checkpoints within epochs; its weights still serve '
          'model.init_from and the visualize job, but to resume training use a new --workdir')
    with open(path) as f:
      return Position.from_json(json.load(f))

  def restore_latest(self, like: Any, warn: Callable[[str], None] | None = None
                     ) -> tuple[Any, History, Position] | None:
    """(state, history, position) of the newest readable checkpoint, or None if there are none.

    Damaged checkpoints on the way are renamed `N.corrupt-<time>` with a warning (module
    docstring). Raises CnnjaxError if the newest readable checkpoint was written for another state
    structure, or if every checkpoint is damaged.
    """
    warn = warn or (lambda message: print(message, file=sys.stderr, flush=True))
    moved = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      damage = self.damage(step)
      if damage is None:
        state, history = self.restore(step, like)
        return state, history, self.position(step)
      aside = self._move_aside(step)
      moved.append(aside)
      warn(f'warning: the checkpoint {step} in {self.directory} is damaged ({damage}); '
           f'moved it to {aside} and falling back to the checkpoint before it')
    if moved:
      raise CnnjaxError(
          f'every checkpoint in {self.directory} is damaged; they are moved aside to '
          f'{", ".join(moved)}. Run the same command again to train from scratch in this '
          'workdir, or use a new --workdir')
    return None

  def damage(self, step: int) -> str | None:
    """What is wrong with the checkpoint `step` (a missing or short file), None if nothing.

    Reads every file of it synchronously (the history's JSON, every key of the state's OCDBT
    store) rather than letting orbax's asynchronous restore fail halfway, which leaves
    TensorStore callbacks printing tracebacks about a closed event loop.
    """
    directory = os.path.join(self.directory, str(step))
    try:
      for item in ('history', 'position'):
        path = os.path.join(directory, item, 'metadata')
        if item == 'history' or os.path.exists(os.path.dirname(path)):
          with open(path) as f:
            json.load(f)
      state = os.path.join(directory, 'state')
      with open(os.path.join(state, '_METADATA')) as f:
        json.load(f)
      if os.path.exists(os.path.join(state, 'manifest.ocdbt')):
        store = ts.KvStore.open({'driver': 'ocdbt', 'base': f'file://{state}/'}).result()
        for key in store.list().result():
          store.read(key).result()
    except (OSError, ValueError) as e:
      return _first_line(e)
    return None

  def _move_aside(self, step: int) -> str:
    """Renames the checkpoint directory `step` (process 0 only) and forgets it."""
    stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
    source = os.path.join(self.directory, str(step))
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
