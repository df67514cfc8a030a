"""TensorBoard events of a training run, read back through a real TensorBoard server.

A tiny run of the main job writes WORKDIR/tensorboard; the test starts `tensorboard` on the runs'
parent directory (loopback only, a port the OS picks) and reads the scalars, images and text back
through its HTTP API, as the web page does: every epoch's val_loss equals history.json's, the
step-level points are all there, and a run stopped by SIGTERM in the middle of an epoch and
resumed shows every step once.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from cnnjax import data as data_lib
from cnnjax.errors import ConfigError
from cnnjax.training import train as train_lib
from cnnjax.training.interrupts import Interrupted

TENSORBOARD = os.path.join(os.path.dirname(sys.executable), 'tensorboard')
STEPS_PER_EPOCH = 32  # tiny_config: 1,024 training images (1,280 less 20% validation) / 32.
LOG_EVERY = 8


class TensorBoardServer:
  """`tensorboard --logdir LOGDIR` on 127.0.0.1 at a free port, stopped on exit."""

  def __init__(self, logdir):
    self.process = subprocess.Popen(
        [TENSORBOARD, '--logdir', str(logdir), '--host', '127.0.0.1', '--port', '0',
         '--load_fast', 'false', '--reload_interval', '1'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 90
    self.url = None
    while self.url is None:
      line = self.process.stdout.readline()
      assert line or self.process.poll() is None, 'tensorboard exited'
      found = re.search(r'(http://127\.0\.0\.1:\d+)/', line)
      if found:
        self.url = found.group(1)
      assert time.time() < deadline, 'tensorboard did not start within 90 s'

  def get(self, path, **query):
    url = f'{self.url}/data/{path}?{urllib.parse.urlencode(query)}'
    with urllib.request.urlopen(url, timeout=30) as response:
      body = response.read()
    return json.loads(body) if response.headers.get_content_type() == 'application/json' else body

  def scalars(self, run, tag):
    """{step: value} of one scalar tag (each step shown once), waiting until the server has
    loaded it."""
    deadline = time.time() + 60
    while True:
      tags = self.get('plugin/scalars/tags').get(run, {})
      if tag in tags:
        points = [(step, value) for _, step, value in
                  self.get('plugin/scalars/scalars', run=run, tag=tag)]
        steps = [step for step, _ in points]
        assert len(set(steps)) == len(steps), f'{tag}: steps shown twice: {steps}'
        return dict(points)
      assert time.time() < deadline, f'{tag} not served for {run}; tags: {sorted(tags)}'
      time.sleep(0.5)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.process.terminate()
    self.process.wait(timeout=30)


@pytest.fixture
def events_config(tiny_config):
  tiny_config.train.log_every_steps = LOG_EVERY
  return tiny_config


def test_tensorboard_serves_the_runs_scalars_images_and_config(events_config, tmp_path):
  events_config.augment.kind = 'image_data_generator'  # So that the run draws a preview.
  workdir = tmp_path / 'runs' / 'tiny'
  train_lib.train_and_evaluate(events_config, str(workdir))
  with open(workdir / 'history.json') as f:
    history = json.load(f)
  with open(workdir / 'test_metrics.json') as f:
    test_metrics = json.load(f)
  run = 'tiny/tensorboard'
  with TensorBoardServer(tmp_path / 'runs') as server:
    val_loss = server.scalars(run, 'epoch/val_loss')
    assert val_loss == pytest.approx(
        {r['epoch'] * STEPS_PER_EPOCH: r['val_loss'] for r in history}, rel=1e-6)
    accuracy = server.scalars(run, 'epoch/accuracy')
    assert accuracy == pytest.approx(
        {r['epoch'] * STEPS_PER_EPOCH: r['accuracy'] for r in history}, rel=1e-6)
    train_loss = server.scalars(run, 'train/loss')
    assert sorted(train_loss) == list(range(LOG_EVERY, 2 * STEPS_PER_EPOCH + 1, LOG_EVERY))
    # Each point is the mean over its window: the epoch's mean loss is the mean of its windows.
    for record in history:
      windows = [train_loss[s] for s in train_loss
                 if (record['epoch'] - 1) * STEPS_PER_EPOCH < s <= record['epoch'] * STEPS_PER_EPOCH]
      assert sum(windows) / len(windows) == pytest.approx(record['loss'], rel=1e-5)
    assert server.scalars(run, 'train/learning_rate')[LOG_EVERY] == pytest.approx(1e-3)
    assert server.scalars(run, 'test/accuracy') == pytest.approx(
        {2 * STEPS_PER_EPOCH: test_metrics['test_accuracy']}, rel=1e-6)
    images = server.get('plugin/images/tags')[run]
    assert 'learning_curves' in images
    assert 'augmentation_preview' in images
    text_tags = server.get('plugin/text/tags')[run]
    assert text_tags == ['config/text_summary']  # tensorboardX's name for text 'config'.
    text = server.get('plugin/text/text', run=run, tag=text_tags[0])
    assert 'learning_rate: 0.001' in text[0]['text']  # The config as ml_collections prints it.


def test_a_resumed_run_shows_every_step_once(events_config, tmp_path, monkeypatch):
  """SIGTERM in the middle of epoch 2 (after its step 20): the run stops at epoch 1's checkpoint
  with the points of steps 40 and 48 logged; the resumed run redoes them, and TensorBoard shows
  each step once, the values of the resumed run."""
  workdir = tmp_path / 'runs' / 'resumed'
  prefetch = data_lib.prefetch

  def prefetch_then_signal(batches, *args, **kwargs):
    for index, batch in enumerate(prefetch(batches, *args, **kwargs)):
      yield batch
      if signal_at_step[0] is not None and index + 1 == signal_at_step[0]:
        signal_at_step[0] = None
        os.kill(os.getpid(), signal.SIGTERM)

  signal_at_step = [None]
  monkeypatch.setattr(data_lib, 'prefetch', prefetch_then_signal)

  def stop_in_epoch_2(epoch, history):
    del history
    if epoch == 1:
      signal_at_step[0] = 20  # Counted within epoch 2's batches.

  with pytest.raises(Interrupted):
    train_lib.train_and_evaluate(events_config, str(workdir), on_epoch_end=stop_in_epoch_2)
  train_lib.train_and_evaluate(events_config, str(workdir))
  with open(workdir / 'history.json') as f:
    history = json.load(f)
  with TensorBoardServer(tmp_path / 'runs') as server:
    train_loss = server.scalars('resumed/tensorboard', 'train/loss')
    val_loss = server.scalars('resumed/tensorboard', 'epoch/val_loss')
  assert sorted(train_loss) == list(range(LOG_EVERY, 2 * STEPS_PER_EPOCH + 1, LOG_EVERY))
  assert val_loss == pytest.approx(
      {r['epoch'] * STEPS_PER_EPOCH: r['val_loss'] for r in history}, rel=1e-6)
  # The resumed run's epoch-2 windows average to its epoch-2 loss (not the stopped run's).
  windows = [train_loss[s] for s in train_loss if s > STEPS_PER_EPOCH]
  assert sum(windows) / len(windows) == pytest.approx(history[1]['loss'], rel=1e-5)


def test_profile_steps_write_a_trace(events_config, tmp_path):
  events_config.train.epochs = 1
  events_config.train.profile_steps = (3, 5)
  workdir = tmp_path / 'profiled'
  train_lib.train_and_evaluate(events_config, str(workdir))
  traces = [os.path.join(d, f) for d, _, files in os.walk(workdir / 'tensorboard' / 'plugins')
            for f in files if f.endswith('.xplane.pb')]
  assert traces and os.path.getsize(traces[0]) > 0
  assert os.path.exists(os.path.join(os.path.dirname(traces[0]), 'perfetto_trace.json.gz'))
  events_config.train.profile_steps = (5, 3)
  with pytest.raises(ConfigError, match=r'train.profile_steps=\(5, 3\) must be two steps'):
    train_lib.train_and_evaluate(events_config, str(tmp_path / 'bad'))
