"""Learning-curve figures as the reference material draws them.

Training values as dots, validation values as a line, one panel for accuracy and one for loss;
and the same with both curves smoothed by an exponential moving average (factor 0.8), which makes
the trend readable when the validation curve is noisy.
"""

from typing import Sequence

import matplotlib

matplotlib.use('Agg')  # Files only: no display is needed, or wanted, on a training machine.
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
from matplotlib import ticker  # pylint: disable=wrong-import-position

from cnnjax.training.history import History, as_columns  # pylint: disable=wrong-import-position


def smooth_curve(values: Sequence[float], factor: float = 0.8) -> list[float]:
  """Exponential moving average: s[0] = v[0], s[i] = factor * s[i-1] + (1 - factor) * v[i]."""
  smoothed: list[float] = []
  for value in values:
    smoothed.append(smoothed[-1] * factor + value * (1 - factor) if smoothed else value)
  return smoothed


def plot_learning_curves(history: History, path: str, smoothing: float | None = None,
                         title: str = '') -> str:
  """Draws accuracy and loss per epoch to `path` (PNG); `smoothing` is the EMA factor or None."""
  columns = as_columns(history)
  epochs = range(1, len(history) + 1)
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for ax, metric in zip(axes, ('accuracy', 'loss')):
    train, val = columns[metric], columns[f'val_{metric}']
    if smoothing:
      train, val = smooth_curve(train, smoothing), smooth_curve(val, smoothing)
    ax.plot(epochs, train, 'bo', label=f'Training {metric}')
    ax.plot(epochs, val, 'b', label=f'Validation {metric}')
    kind = f'Smoothed training and validation {metric}' if smoothing else \
        f'Training and validation {metric}'
    ax.set_title(kind)
    ax.set_xlabel('epoch')
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.legend()
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
