"""The per-epoch progress bar: shown on a terminal, silent in a log."""

import io

import jax.numpy as jnp

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
