"""End to end on a slice of real Fashion-MNIST: files written, resume after an interrupt, NaN stop."""

import json
import math
import os

import pytest

from cnnjax.errors import CnnjaxError, ConfigError
from cnnjax.training.history import read_history
from cnnjax.training.checkpointing import Checkpoints
from cnnjax.training.train import train_and_evaluate

TIMING = ('epoch_seconds', 'images_per_second')

# Runs that compile what an earlier one did (resumed runs, runs of the same model) load it from
# JAX's persistent compilation cache instead (conftest.py): seconds a run.
pytestmark = pytest.mark.usefixtures('persistent_compilation_cache')


def without_timing(history):
  return [{k: v for k, v in epoch.items() if k not in TIMING} for epoch in history]


class Interrupt(Exception):
  pass


def test_end_to_end_writes_everything(tiny_config, tmp_path, capsys):
  workdir = str(tmp_path / 'run')
  result = train_and_evaluate(tiny_config, workdir)
  out = capsys.readouterr().out
  assert f"test_accuracy: {result['test_accuracy']:.4f}" in out.splitlines()
  assert 'Total params: 93,322' in out
  history = read_history(workdir)
  assert [epoch['epoch'] for epoch in history] == [1, 2]
  for epoch in history:
    assert set(epoch) == {'epoch', 'loss', 'accuracy', 'val_loss', 'val_accuracy',
                          'learning_rate', 'epoch_seconds', 'images_per_second'}
    assert all(math.isfinite(v) for v in epoch.values())
  # 1,024 training images after the 20% carve: two epochs of RMSprop learn something.
  assert history[-1]['val_accuracy'] > 0.6
  assert 0.5 < result['test_accuracy'] <= 1.0
  with open(os.path.join(workdir, 'test_metrics.json')) as f:
    assert json.load(f) == result
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['train']['epochs'] == 2
  for figure in ('learning_curves.png', 'learning_curves_smoothed.png'):
    with open(os.path.join(workdir, figure), 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  assert result['best_epoch'] == min(history, key=lambda e: e['val_loss'])['epoch']


def test_without_the_test_split_a_run_stops_at_its_best_epoch(tiny_config, tmp_path, capsys,
                                                              monkeypatch):
  """`train.evaluate_test=False` (choosing settings on the validation split): every evaluation is
  of the 256 validation images, none of the 200 test images; no test metrics are written."""
  from cnnjax.training import train as train_lib  # pylint: disable=import-outside-toplevel
  tiny_config.data.limit_test = 200
  tiny_config.train.evaluate_test = False
  evaluated, real_evaluate = [], train_lib.evaluate

  def spy(parallel, state, dataset, batch_size):
    evaluated.append(len(dataset.labels))
    return real_evaluate(parallel, state, dataset, batch_size)

  monkeypatch.setattr(train_lib, 'evaluate', spy)
  workdir = str(tmp_path / 'run')
  result = train_and_evaluate(tiny_config, workdir)
  out = capsys.readouterr().out
  history = read_history(workdir)
  best = min(history, key=lambda e: e['val_loss'])
  assert result == {'best_epoch': best['epoch'], 'val_loss': best['val_loss'],
                    'val_accuracy': best['val_accuracy']}
  assert evaluated == [256, 256]  # Validation after each of the 2 epochs; no test.
  assert 'test_accuracy' not in out and 'test split not evaluated' in out
  assert not os.path.exists(os.path.join(workdir, 'test_metrics.json'))


def test_resume_after_interrupt_gives_the_uninterrupted_run(tiny_config, tmp_path):
  tiny_config.train.epochs = 3
  tiny_config.model.name = 'small_convnet'
  tiny_config.model.dropout_rate = 0.3  # Dropout keys must be reproduced on resume too,
  tiny_config.augment.kind = 'image_data_generator'  # and so must augmentation keys.
  straight = train_and_evaluate(tiny_config, str(tmp_path / 'straight'))

  interrupted = str(tmp_path / 'interrupted')

  def stop_after_two(epoch, history):
    if epoch == 2:
      raise Interrupt()

  with pytest.raises(Interrupt):
    train_and_evaluate(tiny_config, interrupted, on_epoch_end=stop_after_two)
  assert len(read_history(interrupted)) == 2
  resumed = train_and_evaluate(tiny_config, interrupted)
  assert without_timing(read_history(interrupted)) == without_timing(
      read_history(str(tmp_path / 'straight')))
  assert resumed == straight
  # Running the finished job again trains nothing and gives the same test result.
  assert train_and_evaluate(tiny_config, interrupted) == straight
  assert len(read_history(interrupted)) == 3


def test_diverging_run_stops_with_a_clear_error_and_keeps_what_was_written(tiny_config, tmp_path):
  workdir = str(tmp_path / 'run')
  tiny_config.train.epochs = 1
  train_and_evaluate(tiny_config, workdir)
  tiny_config.train.epochs = 2
  tiny_config.train.learning_rate = 1e30
  with pytest.raises(CnnjaxError, match='learning_rate'):
    train_and_evaluate(tiny_config, workdir)
  history = read_history(workdir)
  assert len(history) == 1 and math.isfinite(history[0]['loss'])
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '32'))  # Epoch 1's end: 32 steps.


def test_end_to_end_on_tfds_mock_data(tiny_config, tmp_path):
  tfds = pytest.importorskip('tensorflow_datasets')
  tiny_config.data.source = 'tfds'
  tiny_config.data.dir = ''
  tiny_config.data.train_split = 'train[:90%]'
  tiny_config.train.epochs = 1
  with tfds.testing.mock_data(num_examples=96, policy=tfds.testing.MockPolicy.USE_CODE):
    result = train_and_evaluate(tiny_config, str(tmp_path / 'run'))
  assert 0.0 <= result['test_accuracy'] <= 1.0
  assert len(read_history(str(tmp_path / 'run'))) == 1


def test_augmentation_that_changes_the_image_shape_is_a_config_error_before_training(
    tiny_config, tmp_path):
  tiny_config.augment.kind = 'torchvision'
  tiny_config.augment.torchvision.crop_size = (20, 20)  # The data are 28x28.
  with pytest.raises(ConfigError, match=r"augment.kind='torchvision'.*data.image_size"):
    train_and_evaluate(tiny_config, str(tmp_path / 'run'))
  assert not os.path.exists(os.path.join(tmp_path, 'run', 'checkpoints'))


def test_a_run_with_frozen_layers_resumes_from_its_partitioned_checkpoint(tiny_config, tmp_path,
                                                                          capsys):
  """train.param_groups through the loop: the frozen layers stay as they were across a resume."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from cnnjax.transfer.pretrained import load_run_variables  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / 'run')
  tiny_config.train.epochs = 1
  tiny_config.train.optimizer = 'adamw'
  tiny_config.train.weight_decay = 0.05
  tiny_config.train.param_groups = ('conv[12]=frozen', 'conv3=0.1', '.*=1')
  train_and_evaluate(tiny_config, workdir)
  assert 'Non-trainable params: 18,816' in capsys.readouterr().out.splitlines()  # conv1, conv2.
  first = load_run_variables(workdir)[0]['params']
  tiny_config.train.epochs = 2
  train_and_evaluate(tiny_config, workdir)
  assert ('resuming from the checkpoint of step 32 (the end of epoch 1/2)'
          in capsys.readouterr().out)
  assert [epoch['epoch'] for epoch in read_history(workdir)] == [1, 2]
  # Epoch 2's end (step 64), whichever epoch is the best: the resumed run trained the head and
  # left the frozen layers bit for bit as they were.
  checkpoints = Checkpoints(os.path.join(workdir, 'checkpoints'))
  try:
    final = checkpoints.restore(64)[0]['params']
  finally:
    checkpoints.close()
  assert not np.array_equal(final['dense1']['kernel'], first['dense1']['kernel'])
  assert not np.array_equal(final['conv3']['kernel'], first['conv3']['kernel'])
  for layer in ('conv1', 'conv2'):
    for name in ('kernel', 'bias'):
      assert final[layer][name].tobytes() == first[layer][name].tobytes(), (layer, name)
