"""The per-epoch progress bar: shown on a terminal, silent in a log."""

import io

import jax.numpy as jnp

from cnnjax import progress as progress_lib
from cnnjax.training.progress import EpochProgress


def sums(step):
  return {'loss': jnp.asarray(0.5 * step), 'correct': jnp.asarray(step), 'count': jnp.asarray(step)}


def test_bar_on_a_terminal_shows_steps_loss_and_speed():
  stream = io.StringIO()
  progress = EpochProgress('epoch 1/3', steps=10, batch_size=64, stream=stream, interactive=True,
                           refresh_steps=5)
  for step in range(1, 11):
    progress.update(sums(step))
  progress.close()
  text = stream.getvalue()
  assert 'epoch 1/3' in text and '10/10' in text
  assert 'loss=0.5000' in text and 'images/s' in text


def test_nothing_when_not_a_terminal():
  stream = io.StringIO()  # isatty() is False, as for a log file.
  progress = EpochProgress('epoch 1/3', steps=10, batch_size=64, stream=stream)
  for step in range(1, 11):
    progress.update(sums(step))
  progress.close()
  assert stream.getvalue() == ''


# ---------------------------------------------------------------------------------------------
# Progress of the other long waits (cnnjax.progress)


def test_a_wait_in_a_log_prints_a_line_now_and_then_and_its_end(monkeypatch):
  clock = [100.0]
  monkeypatch.setattr(progress_lib.time, 'perf_counter', lambda: clock[0])
  stream = io.StringIO()
  with progress_lib.Progress('decoding photos', 5000, 'image', stream=stream,
                             every_seconds=30) as progress:
    for _ in range(12):
      clock[0] += 10.0
      progress.update(100)
  lines = stream.getvalue().splitlines()
  # At 30, 60, 90 and 120 s, then the end.
  assert lines[0] == 'decoding photos: 300/5,000 images (6%), 10.0 images/s'
  assert len(lines) == 5 and lines[3].startswith('decoding photos: 1,200/5,000 images (24%)')
  assert lines[-1].endswith('; done in 120 s')


def test_a_short_wait_in_a_log_prints_nothing():
  stream = io.StringIO()
  with progress_lib.Progress('evaluating', 10, stream=stream) as progress:
    progress.update(10)
  assert stream.getvalue() == ''


def test_a_wait_on_a_terminal_is_a_bar():
  stream = io.StringIO()
  with progress_lib.Progress('extracting features', 64, 'image', stream=stream,
                             interactive=True) as progress:
    progress.update(32)
    progress.update(32)
  assert 'extracting features:   0%' in stream.getvalue() and '0/64' in stream.getvalue()
