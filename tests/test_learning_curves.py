"""Learning curves: the EMA smoothing of the reference and the figures' content."""

import matplotlib.image
import numpy as np
import pytest

from cnnjax.training.history import as_columns, write_history, read_history
from cnnjax.training.learning_curves import plot_learning_curves, smooth_curve


def test_smooth_curve_is_the_reference_ema():
  assert smooth_curve([1.0, 0.0, 0.0]) == pytest.approx([1.0, 0.8, 0.64])
  assert smooth_curve([2.0, 4.0], factor=0.5) == pytest.approx([2.0, 3.0])
  assert smooth_curve([]) == []


def history(n=6):
  rng = np.random.default_rng(0)
  return [{'epoch': i + 1, 'loss': 1 / (i + 1), 'accuracy': 0.5 + 0.05 * i,
           'val_loss': 1 / (i + 1) + rng.random() * 0.1, 'val_accuracy': 0.5 + 0.04 * i}
          for i in range(n)]


def test_history_round_trip_and_columns(tmp_path):
  write_history(str(tmp_path), history())
  assert read_history(str(tmp_path)) == history()
  assert as_columns(history(3))['epoch'] == [1, 2, 3]
  assert not list(tmp_path.glob('*.tmp'))


@pytest.mark.parametrize('smoothing', [None, 0.8])
def test_figure_is_written_with_two_panels(tmp_path, smoothing):
  path = plot_learning_curves(history(), str(tmp_path / 'curves.png'), smoothing=smoothing)
  image = matplotlib.image.imread(path)
  assert image.shape[0] == 400 and image.shape[1] == 1100
  # Blue dots and lines are drawn: the figure is not blank.
  blue = (image[..., 2] > 0.6) & (image[..., 0] < 0.3)
  assert blue[:, :550].sum() > 200 and blue[:, 550:].sum() > 200
