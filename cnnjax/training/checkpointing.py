"""Orbax checkpoints of a run: the latest epoch (to resume) and the best one by val_loss (to test).

One `CheckpointManager` under `workdir/checkpoints`, one checkpoint per epoch, each holding the
train state (parameters, optimizer state, step, random key) and the history up to that epoch. A
preservation policy keeps the latest checkpoint and the one with the lowest val_loss and deletes the
rest. Orbax writes a checkpoint to a temporary directory and renames it when complete, so an
interrupted save never replaces a good checkpoint with a broken one.
"""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocp_managers

from cnnjax.errors import CnnjaxError

History = list[dict[str, float]]


def _val_loss(metrics: dict[str, float]) -> float:
  return metrics['val_loss']


class Checkpoints:
  """The run's checkpoints: `save` after each epoch, `restore` the latest or the best."""

  def __init__(self, directory: str):
    self.directory = os.path.abspath(directory)
    policy = ocp_managers.AnyPreservationPolicy([
        ocp_managers.LatestN(n=1),
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
    self._manager.save(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), history=ocp.args.JsonSave(history)),
        metrics={'val_loss': history[-1]['val_loss']})

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

  def wait(self) -> None:
    """Blocks until every save has reached the disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
