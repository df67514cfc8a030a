"""Random erasing (cutout) of one image: a box of the image set to a value, with static shapes.

Two samplers of the box, each that of its library, and one way to apply it (a mask, so that the
box's size can be traced: `jnp.where(inside_box, value, image)`):
- torchvision's `transforms.RandomErasing(p, scale, ratio, value)` (`get_params`, torchvision 0.9
  and later, and `transforms.v2.RandomErasing`): up to 10 tries of area = uniform(scale) x image
  area and aspect ratio = exp(uniform(log ratio)), rounded to whole pixels as
  h = round(sqrt(area x ratio)), w = round(sqrt(area / ratio)) (so `ratio` is HEIGHT / width, the
  reverse of RandomResizedCrop's), kept if h < image height and w < image width (strictly), at a
  uniform integer offset top in [0, height - h], left in [0, width - w]. If no try fits, the image
  is left unchanged. (torchvision 0.8 drew the ratio uniformly, not log-uniformly.)
- Keras 3's `layers.RandomErasing(factor, scale, fill_value, value_range)` (Keras 3.15,
  `random_erasing.py`): each side independently, length = sqrt(uniform(scale)) x side (a float,
  not rounded) and start = uniform(0, 1) x (side - length); the box is the pixels whose integer
  index lies in [start, start + length). Always fits; no retries.
Python's `round` and `jnp.round` both round halves to even; the sampling here is float32 where
torchvision's rounding works on float64, which can differ only for a draw within float32 rounding
of a half-pixel boundary.
"""

import math

import jax
import jax.numpy as jnp

TRIES = 10  # torchvision's RandomErasing.get_params tries this many boxes.
TORCHVISION_UNIFORMS = 2 * TRIES + 2  # Per box: 10 areas, 10 ratios, 2 offsets.
KERAS_UNIFORMS = 4  # Per box: 2 side fractions, 2 starts.


def torchvision_box_from_uniforms(u: jax.Array, height: int, width: int, scale,
                                  ratio) -> tuple[jax.Array, ...]:
  """`torchvision_box` from `TORCHVISION_UNIFORMS` uniforms in [0, 1)."""
  area = height * width
  erase_area = area * (scale[0] + (scale[1] - scale[0]) * u[:TRIES])
  log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
  aspect = jnp.exp(log_low + (log_high - log_low) * u[TRIES:2 * TRIES])
  box_h = jnp.round(jnp.sqrt(erase_area * aspect)).astype(jnp.int32)
  box_w = jnp.round(jnp.sqrt(erase_area / aspect)).astype(jnp.int32)
  fits = (box_h < height) & (box_w < width)
  first = jnp.argmax(fits)  # The first try that fits, as torchvision's loop returns it.
  box_h, box_w = box_h[first], box_w[first]
  # torch.randint(0, n + 1): uniform over the integers 0..n. The minimum guards against a float32
  # product that rounds up to n + 1.
  top = jnp.minimum(jnp.floor(u[2 * TRIES] * (height - box_h + 1)).astype(jnp.int32),
                    height - box_h)
  left = jnp.minimum(jnp.floor(u[2 * TRIES + 1] * (width - box_w + 1)).astype(jnp.int32),
                     width - box_w)
  return top, left, box_h, box_w, jnp.any(fits)


def torchvision_box(key: jax.Array, height: int, width: int, scale=(0.02, 0.33),
                    ratio=(0.3, 3.3)) -> tuple[jax.Array, ...]:
  """torchvision's `RandomErasing.get_params`: (top, left, box height, box width, found).

  int32 box and a bool `found`, False when none of the 10 tries fits (torchvision then leaves the
  image unchanged). The box is [top, top + box height) x [left, left + box width).
  """
  u = jax.random.uniform(key, (TORCHVISION_UNIFORMS,), jnp.float32)
  return torchvision_box_from_uniforms(u, height, width, scale, ratio)


def keras_box_from_uniforms(u: jax.Array, height: int, width: int,
                            scale) -> tuple[jax.Array, ...]:
  """Keras 3's RandomErasing box from `KERAS_UNIFORMS` uniforms: (x0, x1, y0, y1), float32.

  u[0], u[1]: the width's and the height's fraction of `scale`; u[2], u[3]: their starts.
  """
  fraction = jnp.sqrt(scale[0] + (scale[1] - scale[0]) * u[:2])
  length_x, length_y = fraction[0] * width, fraction[1] * height
  x0 = u[2] * (width - length_x)
  y0 = u[3] * (height - length_y)
  return x0, x0 + length_x, y0, y0 + length_y


def box_mask(top, left, bottom, right, height: int, width: int) -> jax.Array:
  """(height, width) bool: rows in [top, bottom) and columns in [left, right).

  Bounds may be integers (torchvision) or floats (Keras compares the integer pixel index with
  float bounds), traced or not; an empty range gives an all-False mask.
  """
  rows = jnp.arange(height, dtype=jnp.float32)[:, None]
  cols = jnp.arange(width, dtype=jnp.float32)[None, :]
  return ((rows >= top) & (rows < bottom)) & ((cols >= left) & (cols < right))


def erase(image: jax.Array, mask: jax.Array, value) -> jax.Array:
  """`image` with the pixels of `mask` ((height, width) bool) set to `value`.

  `value` broadcasts against (height, width, channels): a scalar, one value per channel, or a
  whole image (per-pixel noise).
  """
  value = jnp.asarray(value, image.dtype)
  return jnp.where(mask[..., None], value, image)
