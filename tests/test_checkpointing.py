"""Checkpoints keep the two latest and the best end-of-epoch one by val_loss, and restore state,
history and position; the schedule of checkpoints within epochs."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.training.checkpointing import Checkpoints, Position, SaveSchedule
from cnnjax.errors import CnnjaxError, ConfigError


def state_at(epoch):
  return {'params': {'w': jnp.full((3,), float(epoch))}, 'step': jnp.asarray(epoch * 10)}


def end_of(epoch):
  """The position of an end-of-epoch checkpoint with 10 steps per epoch."""
  return Position(epoch=epoch, steps_done=10, steps_per_epoch=10)


def test_keeps_latest_and_best_only(tmp_path):
  checkpoints = Checkpoints(str(tmp_path / 'ckpt'))
  history = []
  for epoch, val_loss in enumerate([0.9, 0.4, 0.6, 0.7], start=1):
    history.append({'epoch': epoch, 'val_loss': val_loss})
    checkpoints.save(epoch, state_at(epoch), history)
  checkpoints.wait()
  assert checkpoints.latest_step() == 4
  assert checkpoints.best_step() == 2
  # The two latest (one to fall back on if the latest is damaged) and the best.
  assert sorted(int(d) for d in os.listdir(tmp_path / 'ckpt') if d.isdigit()) == [2, 3, 4]
  state, restored_history = checkpoints.restore(2, state_at(0))
  np.testing.assert_array_equal(state['params']['w'], [2.0, 2.0, 2.0])
  assert restored_history == history[:2]
  checkpoints.close()
  # A new manager on the same directory (a resumed run) finds them again.
  again = Checkpoints(str(tmp_path / 'ckpt'))
  assert (again.latest_step(), again.best_step()) == (4, 2)
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
    checkpoints.save(epoch * 10, state_at(epoch), history, end_of(epoch))
  checkpoints.close()
  for path in _data_files(tmp_path / 'ckpt' / '20'):
    if damage == 'truncate':
      os.truncate(path, os.path.getsize(path) // 2)
    else:
      os.remove(path)
  again = Checkpoints(str(tmp_path / 'ckpt'))
  warnings = []
  state, restored_history, position = again.restore_latest(state_at(0), warn=warnings.append)
  assert position == end_of(1) and restored_history == history[:1]
  np.testing.assert_array_equal(state['params']['w'], [1.0, 1.0, 1.0])
  assert len(warnings) == 1 and 'checkpoint 20 ' in warnings[0] and 'damaged' in warnings[0]
  # Moved aside, not deleted; orbax no longer sees it and saves step 20 anew.
  names = os.listdir(tmp_path / 'ckpt')
  assert '20' not in names and any(name.startswith('20.corrupt-') for name in names)
  assert again.latest_step() == 10
  again.save(20, state_at(2), history, end_of(2))
  again.wait()
  assert again.restore_latest(state_at(0))[2] == end_of(2)
  again.close()


def test_restore_latest_into_another_structure_is_not_taken_for_damage(tmp_path):
  checkpoints = Checkpoints(str(tmp_path / 'ckpt'))
  checkpoints.save(1, state_at(1), [{'epoch': 1, 'val_loss': 1.0}], end_of(1))
  checkpoints.wait()
  other = {'params': {'w': jnp.zeros((5,)), 'b': jnp.zeros(2)}, 'step': jnp.asarray(0)}
  with pytest.raises(CnnjaxError, match='new --workdir'):
    checkpoints.restore_latest(other)
  assert os.listdir(tmp_path / 'ckpt') == ['1']
  checkpoints.close()


def test_checkpoints_within_epochs_are_kept_only_while_among_the_two_latest(tmp_path):
  """Retention with checkpoints within epochs (no val_loss): the two latest, whatever their kind,
  and the best end-of-epoch one; none within an epoch is ever the best."""
  checkpoints = Checkpoints(str(tmp_path / 'ckpt'))
  history = []
  for epoch, val_loss in ((1, 0.5), (2, 0.7)):
    for steps_done in (4, 8):
      checkpoints.save((epoch - 1) * 10 + steps_done, state_at(epoch), history, Position(
          epoch=epoch, steps_done=steps_done,
          steps_per_epoch=10, sums={'loss': np.float32(steps_done)}))
    history.append({'epoch': epoch, 'val_loss': val_loss})
    checkpoints.save(epoch * 10, state_at(epoch), history, end_of(epoch))
  checkpoints.save(24, state_at(3), history, Position(epoch=3, steps_done=4,
                                                       steps_per_epoch=10))
  checkpoints.wait()
  assert sorted(int(d) for d in os.listdir(tmp_path / 'ckpt') if d.isdigit()) == [10, 20, 24]
  assert (checkpoints.latest_step(), checkpoints.best_step()) == (24, 10)
  state, restored_history, position = checkpoints.restore_latest(state_at(0))
  assert restored_history == history and position.epoch == 3 and not position.epoch_ended
  checkpoints.close()


def test_a_position_within_an_epoch_restores_its_metric_sums_bit_for_bit(tmp_path):
  # float32 sums whose decimal printing is not exact, and an integer count.
  sums = {'loss': jnp.float32(1) / 3, 'correct': jnp.float32(2) ** -20 * 7, 'count': jnp.int32(96)}
  logged = {'step': 5, 'sums': {'loss': jnp.float32(0.1), 'correct': jnp.float32(3),
                                 'count': jnp.int32(32)}}
  position = Position(epoch=1, steps_done=7, steps_per_epoch=10, sums=sums,
                      logged=logged, seconds=1.5)
  checkpoints = Checkpoints(str(tmp_path / 'ckpt'))
  checkpoints.save(7, state_at(1), [], position)
  checkpoints.wait()
  restored = checkpoints.position(7)
  for name, value in sums.items():
    assert restored.sums[name].dtype == value.dtype
    assert restored.sums[name].tobytes() == np.asarray(value).tobytes(), name
  assert restored.logged['step'] == 5
  assert restored.logged['sums']['loss'].tobytes() == np.float32(0.1).tobytes()
  assert (restored.step, restored.epoch, restored.steps_done, restored.seconds) == (7, 1, 7, 1.5)
  checkpoints.close()


def test_save_schedule_within_epochs():
  now = [0.0]
  schedule = SaveSchedule(every_steps=5, every_minutes=2, clock=lambda: now[0])
  assert [step for step in range(1, 16) if schedule.steps_due(step)] == [5, 10, 15]
  now[0] = 119.0
  assert not schedule.time_due()
  now[0] = 120.0
  assert schedule.time_due()
  schedule.saved()  # The minutes count from the last checkpoint of either kind.
  assert not schedule.time_due()
  off = SaveSchedule(0, 0, clock=lambda: now[0])
  now[0] = 1e9
  assert not off.time_due() and not any(off.steps_due(step) for step in range(1, 100))
  with pytest.raises(ConfigError, match='checkpoint_every_steps=-1'):
    SaveSchedule(-1, 0)
