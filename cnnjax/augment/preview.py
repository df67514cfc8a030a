"""A 3x3 grid of augmented variants of one image, to see what an augmenter does (book Fig. 5.11)."""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure


def _displayable(images: np.ndarray) -> np.ndarray:
  """Float images in [0, 1]: 0..255 data is scaled down, normalized data is stretched."""
  low, high = float(images.min()), float(images.max())
  if low >= 0 and high <= 1:
    return images
  if low >= 0 and high <= 255:
    return images / 255
  return (images - low) / max(high - low, 1e-12)


def preview_grid(key: jax.Array, image: jax.Array, augment_fn: Callable[..., jax.Array],
                 path: str, *, title: str = '') -> str:
  """Draws 9 augmented variants of `image` to the PNG file `path`.

  Args:
    key: random key of the nine draws.
    image: one (height, width, channels) image.
    augment_fn: a batch augmenter, `augment_fn(key, images) -> images` (e.g. `make_augmenter`'s).
    path: where to write the PNG.
    title: optional figure title.

  Returns:
    `path`.
  """
  batch = jnp.broadcast_to(jnp.asarray(image), (9, *image.shape))
  variants = _displayable(np.asarray(augment_fn(key, batch), np.float32))
  grey = variants.shape[-1] == 1
  fig = Figure(figsize=(6, 6.4 if title else 6))
  axes = fig.subplots(3, 3)
  for ax, variant in zip(axes.flat, variants):
    ax.imshow(variant[..., 0] if grey else variant, cmap='gray' if grey else None, vmin=0,
              vmax=1, interpolation='nearest')
    ax.set_axis_off()
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  return path
