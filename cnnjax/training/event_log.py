"""TensorBoard event files of a training run: scalars, figures and the config, in WORKDIR/tensorboard.

`tensorboard --logdir runs` then shows every run under runs/ side by side. Written by process 0
only, with tensorboardX: a maintained, pure-Python writer of TensorBoard's event format that needs
neither TensorFlow (Flax's `flax.metrics.tensorboard` and clu's `SummaryWriter` import it) nor
PyTorch (`torch.utils.tensorboard`).

What is written, all on one x axis, the global training step (epoch e ends at step
e * steps_per_epoch):

- every `train.log_every_steps` steps: `train/loss` and `train/accuracy` over the steps since the
  last point (from the epoch's running sums, which stay on the device between points: the host
  reads them once per point, not per step), `train/learning_rate` and `train/images_per_second`;
- at each epoch's end: `epoch/loss`, `epoch/accuracy`, `epoch/val_loss`, `epoch/val_accuracy`,
  `epoch/learning_rate`, `epoch/images_per_second`, the same numbers as history.json's, and the
  learning curves as an image;
- at the start: the resolved config as text, and the augmentation preview image when there is one;
- at the end: `test/loss` and `test/accuracy` of the best epoch's model.

A resumed run appends to the same files. The steps it redoes (those after the checkpoint it
resumes from, logged before the run stopped) were written once already: every writer starts with
a session-start marker at its first step (tensorboardX's `purge_step`), and TensorBoard drops,
at each start after a run's first, the events of earlier sessions from that step on, so every
step is shown once. (The first session must write the marker too: TensorBoard takes the first
start it sees for the run's beginning and purges nothing at it.)
"""

import os
from typing import Mapping

import numpy as np

SUBDIRECTORY = 'tensorboard'


def event_directory(workdir: str) -> str:
  return os.path.join(workdir, SUBDIRECTORY)


class EventLog:
  """Writes a run's TensorBoard events; every method does nothing when `enabled` is False."""

  def __init__(self, workdir: str, *, enabled: bool = True, first_step: int = 1):
    """Opens the run's event log.

    Args:
      workdir: the run's workdir; events go to workdir/tensorboard.
      enabled: False on processes other than 0.
      first_step: the first step this run computes; > 1 for a resumed run, whose earlier
        events from that step on TensorBoard then drops (see the module docstring).
    """
    self._writer = None
    if enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
      self._writer = SummaryWriter(event_directory(workdir),
                                   purge_step=first_step,
                                   flush_secs=30)

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    if self._writer is not None:
      for tag, value in values.items():
        self._writer.add_scalar(tag, float(value), step)

  def image(self, step: int, tag: str, path: str) -> None:
    """The PNG at `path` (a figure the run wrote) as image `tag`."""
    if self._writer is None or not os.path.exists(path):
      return
    from PIL import Image  # pylint: disable=import-outside-toplevel
    with Image.open(path) as image:
      pixels = np.asarray(image.convert('RGB'))
    self._writer.add_image(tag, pixels, step, dataformats='HWC')

  def text(self, step: int, tag: str, text: str) -> None:
    """`text` shown verbatim (as a Markdown code block) under `tag`."""
    if self._writer is not None:
      self._writer.add_text(tag, '```\n' + text + '\n```', step)

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None
