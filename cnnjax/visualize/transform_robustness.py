"""Random jitter, scale and rotation applied at every step of a feature visualization.

A pattern that excites a filter only at one exact pixel alignment is an adversarial artifact, not
what the filter detects. Asking the pattern to keep exciting the filter while the image is moved,
scaled and rotated a little at random every step (Lucid's "transformation robustness") removes
most of that high-frequency noise. Each image of a batch draws its own transform.

`robust_transform` follows Lucid's standard chain: pad 12 pixels of grey, jitter by up to 8
pixels, scale by 0.9..1.1, rotate by -10..10 degrees, jitter by up to 4 pixels.
"""

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_SCALES = tuple(1 + (i - 5) / 50 for i in range(11))
# Zero is drawn more often than any other angle (6 times in 26), as in Lucid.
DEFAULT_ANGLES = tuple(range(-10, 11)) + (0,) * 5


def pad_constant(images: jax.Array, width: int, value: float = 0.5) -> jax.Array:
  """Pads (N, H, W, C) images by `width` pixels of `value` on every side."""
  return jnp.pad(images, ((0, 0), (width, width), (width, width), (0, 0)), constant_values=value)


def jitter(key: jax.Array, images: jax.Array, max_shift: int) -> jax.Array:
  """Random crops of size (H - max_shift, W - max_shift): a shift by 0..max_shift pixels."""
  if max_shift <= 0:
    return images
  n, h, w, c = images.shape
  offsets = jax.random.randint(key, (n, 2), 0, max_shift + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0),
                                 (h - max_shift, w - max_shift, c))

  return jax.vmap(crop)(images, offsets)


def scale_and_rotate(images: jax.Array, scales: jax.Array, angles_degrees: jax.Array) -> jax.Array:
  """Scales and rotates each image about its centre by its own factor and angle (bilinear).

  Output pixel p samples the input at centre + R(-angle) (p - centre) / scale, with the border
  pixels repeated outside the image; the output keeps the input's size. With rows running down,
  a positive angle turns the picture clockwise as it is displayed.
  """
  n, h, w, c = images.shape
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                            indexing='ij')
  cy, cx = (h - 1) / 2, (w - 1) / 2

  def transform(image, scale, angle):
    theta = jnp.deg2rad(angle)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    y, x = (rows - cy) / scale, (cols - cx) / scale
    src_y = cy + cos * y - sin * x
    src_x = cx + sin * y + cos * x
    sample = lambda channel: jax.scipy.ndimage.map_coordinates(
        channel, [src_y, src_x], order=1, mode='nearest')
    return jax.vmap(sample, in_axes=-1, out_axes=-1)(image)

  return jax.vmap(transform)(images, scales, angles_degrees)


def random_scale_and_rotate(key: jax.Array, images: jax.Array,
                            scales: Sequence[float] = DEFAULT_SCALES,
                            angles_degrees: Sequence[float] = DEFAULT_ANGLES) -> jax.Array:
  """Scales and rotates each image by a factor and an angle drawn from the given choices."""
  scale_key, angle_key = jax.random.split(key)
  n = images.shape[0]
  chosen_scales = jax.random.choice(scale_key, np.asarray(scales, np.float32), (n,))
  chosen_angles = jax.random.choice(angle_key, np.asarray(angles_degrees, np.float32), (n,))
  return scale_and_rotate(images, chosen_scales, chosen_angles)


def robust_transform(key: jax.Array, images: jax.Array, pad_width: int = 12,
                     first_jitter: int = 8, last_jitter: int = 4,
                     scales: Sequence[float] = DEFAULT_SCALES,
                     angles_degrees: Sequence[float] = DEFAULT_ANGLES) -> jax.Array:
  """Lucid's standard chain: pad, jitter, random scale, random rotation, jitter again.

  Returns images of size H + 2 pad_width - first_jitter - last_jitter.
  """
  keys = jax.random.split(key, 3)
  images = pad_constant(images, pad_width)
  images = jitter(keys[0], images, first_jitter)
  images = random_scale_and_rotate(keys[1], images, scales, angles_degrees)
  return jitter(keys[2], images, last_jitter)
