"""Test-time augmentation: evaluation logits averaged over a flip and small translations.

`train.tta_flip` adds the horizontally mirrored image; `train.tta_shift = s` (pixels) adds, for
each of those views, the image moved by s pixels down-right and by s pixels up-left, filled with
zeros (the content that leaves the frame is lost). The model's logits of every view are averaged
with equal weights, and the loss and accuracy are those of the average. It applies to every
evaluation (validation, hence the choice of the best epoch, and test) so the epoch chosen is the
one tested. Views are taken of the images as the data gives them, before the augmenter's fixed
preprocessing (torchvision's Normalize), which each view then gets.

The anchor is airbench's CIFAR-10 speed runs (Keller Jordan, `hlb-CIFAR10` / `airbench94.py`:
`infer_mirror_translate`, a flip and one-pixel translations along the diagonal), which weights
the untranslated views 1/2 and the translated ones 1/4 each; here every view weighs the same.
The views are stacked and run one after another through one compiled copy of the model
(`jax.lax.map`), so the memory is that of one view and the compilation that of one.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from cnnjax.errors import ConfigError


def translate(images: jax.Array, dy: int, dx: int) -> jax.Array:
  """(B, H, W, C) images with their content moved dy rows down and dx columns right, zero fill."""
  height, width = images.shape[1:3]
  if abs(dy) >= height or abs(dx) >= width:
    raise ValueError(f'a shift of ({dy}, {dx}) moves a {height}x{width} image out of the frame')
  padded = jnp.pad(images, ((0, 0), (abs(dy),) * 2, (abs(dx),) * 2, (0, 0)))
  top, left = abs(dy) - dy, abs(dx) - dx
  return padded[:, top:top + height, left:left + width]


@dataclasses.dataclass(frozen=True)
class TestTimeAugmentation:
  """The views evaluation averages over (see the module docstring)."""

  __test__ = False  # Not a pytest test class, whatever its name.

  flip: bool = False
  shift: int = 0

  def __post_init__(self):
    if not isinstance(self.shift, int) or self.shift < 0:
      raise ConfigError(f'train.tta_shift={self.shift!r} must be a whole number of pixels >= 0 '
                        '(1 or 2 is usual; 0: no translated views)')

  @property
  def num_views(self) -> int:
    return (2 if self.flip else 1) * (3 if self.shift else 1)

  def views(self, images: jax.Array) -> list[jax.Array]:
    """The views of a (B, H, W, C) batch: the images, [mirrored], each [shifted both ways]."""
    views = [images]
    if self.flip:
      views.append(images[:, :, ::-1])
    if self.shift:
      s = self.shift
      views = [moved for view in views
               for moved in (view, translate(view, s, s), translate(view, -s, -s))]
    return views

  def logits(self, apply: Callable[[jax.Array], jax.Array], images: jax.Array) -> jax.Array:
    """The mean of `apply(view)` over the views (one view: `apply(images)` itself)."""
    if self.num_views == 1:
      return apply(images)
    return jnp.mean(jax.lax.map(apply, jnp.stack(self.views(images))), axis=0)


def from_config(train_config) -> TestTimeAugmentation | None:
  """The `train.tta_flip` / `train.tta_shift` views, or None when both are off."""
  tta = TestTimeAugmentation(bool(train_config.get('tta_flip', False)),
                             train_config.get('tta_shift', 0))
  return tta if tta.num_views > 1 else None
