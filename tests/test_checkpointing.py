"""Checkpoints keep the latest epoch and the best by val_loss, and restore state and history."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.training.checkpointing import Checkpoints
from cnnjax.errors import CnnjaxError


def state_at(epoch):
  return {'params': {'w': jnp.full((3,), float(epoch))}, 'step': jnp.asarray(epoch * 10)}


def test_keeps_latest_and_best_only(tmp_path):
  checkpoints = Checkpoints(str(tmp_path / 'ckpt'))
  history = []
  for epoch, val_loss in enumerate([0.9, 0.4, 0.6, 0.7], start=1):
    history.append({'epoch': epoch, 'val_loss': val_loss})
    checkpoints.save(epoch, state_at(epoch), history)
  checkpoints.wait()
  assert checkpoints.latest_epoch() == 4
  assert checkpoints.best_epoch() == 2
  # The two latest (one to fall back on if the latest is damaged) and the best.
  assert sorted(int(d) for d in os.listdir(tmp_path / 'ckpt') if d.isdigit()) == [2, 3, 4]
  state, restored_history = checkpoints.restore(2, state_at(0))
  np.testing.assert_array_equal(state['params']['w'], [2.0, 2.0, 2.0])
  assert restored_history == history[:2]
  checkpoints.close()
  # A new manager on the same directory (a resumed run) finds them again.
  again = Checkpoints(str(tmp_path / 'ckpt'))
  assert (again.latest_epoch(), again.best_epoch()) == (4, 2)
  again.close()


def test_restoring_into_another_structure_is_a_clear_error(tmp_path):
  checkpoints = Checkpoints(str(tmp_path / 'ckpt'))
  checkpoints.save(1, state_at(1), [{'epoch': 1, 'val_loss': 1.0}])
  checkpoints.wait()
  other = {'params': {'w': jnp.zeros((5,)), 'b': jnp.zeros(2)}, 'step': jnp.asarray(0)}
  with pytest.raises(CnnjaxError, match='new --workdir'):
    checkpoints.restore(1, other)
  checkpoints.close()


def _data_files(directory):
  """The array data files of a checkpoint's state (OCDBT's `state/d/*`)."""
  data = os.path.join(directory, 'state', 'd')
  return [os.path.join(data, name) for name in os.listdir(data)]


@pytest.mark.parametrize('damage', ['truncate', 'delete'])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
  checkpoints = Checkpoints(str(tmp_path / 'ckpt'))
  history = []
  for epoch in (1, 2):
    history.append({'epoch': epoch, 'val_loss': 1.0 / epoch})
    checkpoints.save(epoch, state_at(epoch), history)
  checkpoints.close()
  for path in _data_files(tmp_path / 'ckpt' / '2'):
    if damage == 'truncate':
      os.truncate(path, os.path.getsize(path) // 2)
    else:
      os.remove(path)
  again = Checkpoints(str(tmp_path / 'ckpt'))
  warnings = []
  epoch, state, restored_history = again.restore_latest(state_at(0), warn=warnings.append)
  assert epoch == 1 and restored_history == history[:1]
  np.testing.assert_array_equal(state['params']['w'], [1.0, 1.0, 1.0])
  assert len(warnings) == 1 and 'epoch 2' in warnings[0] and 'damaged' in warnings[0]
  # Moved aside, not deleted; orbax no longer sees it and saves epoch 2 anew.
  names = os.listdir(tmp_path / 'ckpt')
  assert '2' not in names and any(name.startswith('2.corrupt-') for name in names)
  assert again.latest_epoch() == 1
  again.save(2, state_at(2), history)
  again.wait()
  assert again.restore_latest(state_at(0))[0] == 2
  again.close()


def test_restore_latest_into_another_structure_is_not_taken_for_damage(tmp_path):
  checkpoints = Checkpoints(str(tmp_path / 'ckpt'))
  checkpoints.save(1, state_at(1), [{'epoch': 1, 'val_loss': 1.0}])
  checkpoints.wait()
  other = {'params': {'w': jnp.zeros((5,)), 'b': jnp.zeros(2)}, 'step': jnp.asarray(0)}
  with pytest.raises(CnnjaxError, match='new --workdir'):
    checkpoints.restore_latest(other)
  assert os.listdir(tmp_path / 'ckpt') == ['1']
  checkpoints.close()
