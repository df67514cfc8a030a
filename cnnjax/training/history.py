"""The per-epoch training history, as Keras' `History.history` records it, written after each epoch.

A history is a list with one dict per epoch: loss, accuracy, val_loss, val_accuracy, learning_rate,
epoch_seconds and images_per_second. `write_history` replaces the file atomically (write, then
rename), so a crash during a write never loses the history already on disk.
"""

import json
import os
from typing import Any

History = list[dict[str, float]]

HISTORY_FILE = 'history.json'


def write_json(path: str, data: Any) -> None:
  """Writes `data` as JSON to `path` atomically."""
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    json.dump(data, f, indent=1)
    f.write('\n')
  os.replace(tmp, path)


def write_history(workdir: str, history: History) -> str:
  path = os.path.join(workdir, HISTORY_FILE)
  write_json(path, history)
  return path


def read_history(workdir: str) -> History:
  with open(os.path.join(workdir, HISTORY_FILE)) as f:
    return json.load(f)


def as_columns(history: History) -> dict[str, list[float]]:
  """{'loss': [epoch 1, epoch 2, ...], ...}: the layout of Keras' `history.history`."""
  keys = history[0].keys() if history else ()
  return {key: [epoch[key] for epoch in history] for key in keys}
