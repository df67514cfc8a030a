"""One bilinear resample of an image through an affine map: the gather every geometric op shares.

The map takes OUTPUT pixel coordinates to INPUT pixel coordinates (as `scipy.ndimage` and Keras
do), in homogeneous `(x, y, 1)` = (column, row, 1) coordinates with pixel centres on the integers.
Composing several geometric augmentations is a product of 3x3 matrices (`cnnjax.augment.geometry`),
so an image is interpolated once however many transforms it gets.

Points that fall outside the input are filled according to `fill_mode`, named and behaving as in
`scipy.ndimage.affine_transform(order=1)`, which is what Keras' `ImageDataGenerator` calls:

| mode | outside the input (a b c d are the first/last pixels of a row) |
| --- | --- |
| 'nearest' | a a a a \\| a b c d \\| d d d d |
| 'reflect' | d c b a \\| a b c d \\| d c b a (about the pixel edge; scipy's 'grid-mirror') |
| 'mirror' | d c b \\| a b c d \\| c b a (about the pixel centre) |
| 'wrap' | scipy's: period n - 1, the first and last pixels coincide |
| 'grid-wrap' | period n: a b c d \\| a b c d |
| 'constant' | cval wherever the point lies outside [0, n - 1] (no blending at the edge) |
| 'grid-constant' | the input padded with cval, blended bilinearly at the edge |

Keras 3's preprocessing layers (JAX backend, `jax.scipy.ndimage.map_coordinates`) call their modes
'wrap' and 'constant' what scipy calls 'grid-wrap' and 'grid-constant'.
`jax.scipy.ndimage.map_coordinates` has no scipy-style 'wrap' or 'constant', hence this gather.
"""

import jax
import jax.numpy as jnp

FILL_MODES = ('nearest', 'reflect', 'mirror', 'wrap', 'grid-wrap', 'constant', 'grid-constant')

# 'constant' counts points this close outside [0, n - 1] as inside, so that float32 rounding of a
# point that lies exactly on the border (an identity or a flip) does not turn it into cval.
_BORDER_TOLERANCE = 1e-4


def _fix_indices(index: jax.Array, size: int, fill_mode: str) -> jax.Array:
  """Maps integer sample indices outside [0, size) back inside, as the fill mode extends the row."""
  if fill_mode == 'reflect':
    period = 2 * size
    index = jnp.mod(index, period)
    return jnp.where(index >= size, period - 1 - index, index)
  if fill_mode == 'mirror':
    if size == 1:
      return jnp.zeros_like(index)
    period = 2 * size - 2
    index = jnp.mod(index, period)
    return jnp.where(index >= size, period - index, index)
  if fill_mode == 'grid-wrap':
    return jnp.mod(index, size)
  return jnp.clip(index, 0, size - 1)  # 'nearest', and in-range gathers for the others.


def _axis_samples(coordinate: jax.Array, size: int, fill_mode: str):
  """The two neighbours along one axis: (indices, weights, valid masks), and a point mask.

  The point mask is False where scipy's 'constant' puts cval for the whole output pixel.
  """
  inside = None
  if fill_mode == 'wrap':
    # scipy folds the coordinate itself (not the neighbours) with period size - 1.
    period = max(size - 1, 1)
    below = coordinate + period * (jnp.floor(-coordinate / period) + 1)
    above = coordinate - period * jnp.floor(coordinate / period)
    coordinate = jnp.where(coordinate < 0, below,
                           jnp.where(coordinate > size - 1, above, coordinate))
    if size == 1:
      coordinate = jnp.zeros_like(coordinate)
  elif fill_mode == 'constant':
    inside = ((coordinate >= -_BORDER_TOLERANCE)
              & (coordinate <= size - 1 + _BORDER_TOLERANCE))
    coordinate = jnp.clip(coordinate, 0, size - 1)
  lower = jnp.floor(coordinate)
  upper_weight = coordinate - lower
  lower = lower.astype(jnp.int32)
  indices, weights, valid = [], [], []
  for index, weight in ((lower, 1 - upper_weight), (lower + 1, upper_weight)):
    if fill_mode == 'grid-constant':
      valid.append((index >= 0) & (index < size))
    else:
      valid.append(None)
    indices.append(_fix_indices(index, size, fill_mode))
    weights.append(weight)
  return indices, weights, valid, inside


def affine_resample(image: jax.Array, matrix: jax.Array, *, fill_mode: str = 'nearest',
                    cval: float = 0.0,
                    output_shape: tuple[int, int] | None = None) -> jax.Array:
  """Resamples one image through an affine map with bilinear interpolation.

  Args:
    image: (height, width, channels), any value range.
    matrix: (3, 3) map from output `(x, y, 1)` to input `(x, y, 1)` pixel coordinates.
    fill_mode: one of `FILL_MODES` (see the module docstring).
    cval: the fill value of 'constant' and 'grid-constant'.
    output_shape: (height, width) of the result; default the input's.

  Returns:
    The resampled image, (output height, output width, channels), in the input's float dtype.
  """
  if fill_mode not in FILL_MODES:
    raise ValueError(f'fill_mode={fill_mode!r} is not one of {FILL_MODES}')
  height, width, channels = image.shape
  out_height, out_width = output_shape or (height, width)
  dtype = image.dtype if jnp.issubdtype(image.dtype, jnp.floating) else jnp.float32
  matrix = jnp.asarray(matrix, jnp.float32)
  ys, xs = jnp.meshgrid(jnp.arange(out_height, dtype=jnp.float32),
                        jnp.arange(out_width, dtype=jnp.float32), indexing='ij')
  x_in = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
  y_in = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
  x_idx, x_w, x_valid, x_inside = _axis_samples(x_in, width, fill_mode)
  y_idx, y_w, y_valid, y_inside = _axis_samples(y_in, height, fill_mode)

  values_flat = image.reshape(-1).astype(dtype)
  channel = jnp.arange(channels, dtype=jnp.int32)
  cval = jnp.asarray(cval, dtype)
  result = jnp.zeros((out_height, out_width, channels), dtype)
  for iy, wy, vy in zip(y_idx, y_w, y_valid):
    for ix, wx, vx in zip(x_idx, x_w, x_valid):
      # Scalar gathers (one per channel value): XLA:CPU fuses these into the consumers, where a
      # gather of whole pixels (slices of `channels` values) stays a slow standalone gather.
      values = jnp.take(values_flat, ((iy * width + ix) * channels)[..., None] + channel,
                        mode='clip')
      if vy is not None:
        values = jnp.where((vy & vx)[..., None], values, cval)
      result = result + (wy * wx).astype(dtype)[..., None] * values
  if x_inside is not None:
    result = jnp.where((x_inside & y_inside)[..., None], result, cval)
  return result
