"""Affine maps of the image plane as 3x3 matrices, composed before one resample.

Every matrix here maps OUTPUT pixel coordinates to INPUT pixel coordinates (the inverse of the
motion the eye sees), in homogeneous `(x, y, 1)` = (column, row, 1) with pixel centres on the
integers and y pointing down. So when transform A is applied to an image and then transform B to
the result, the single map that does both is `A @ B`: the first transform's matrix stands leftmost.

Sign conventions, as the eye sees the content move:
- `rotation(+d)`: counter-clockwise by d degrees (Keras' and torchvision's positive angle);
- `translation(+tx, +ty)`: content moves left and up (the map reads further right/down);
- `scaling(s > 1)`: content shrinks (zoom out), s < 1 enlarges it (zoom in);
- `shear_x(k)`: the input column read at output (x, y) is x + k y.
"""

import jax
import jax.numpy as jnp


def from_rows(rows) -> jax.Array:
  """A float32 3x3 matrix from nested rows of scalars (possibly traced)."""
  return jnp.stack([jnp.stack([jnp.asarray(v, jnp.float32) for v in row]) for row in rows])


def identity() -> jax.Array:
  return jnp.eye(3, dtype=jnp.float32)


def translation(tx, ty) -> jax.Array:
  """Reads the input at (x + tx, y + ty)."""
  return from_rows([[1, 0, tx], [0, 1, ty], [0, 0, 1]])


def rotation(degrees) -> jax.Array:
  """About the origin; about the image centre with `about_center`."""
  theta = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  return from_rows([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])


def scaling(sx, sy) -> jax.Array:
  """Reads the input at (sx x, sy y); -1 mirrors an axis."""
  return from_rows([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])


def shear_x(k) -> jax.Array:
  """Reads the input at (x + k y, y): rows slide sideways in proportion to their height."""
  return from_rows([[1, k, 0], [0, 1, 0], [0, 0, 1]])


def center(height: int, width: int) -> tuple[float, float]:
  """The image centre (x, y) in pixel-centre coordinates."""
  return (width - 1) / 2, (height - 1) / 2


def about_center(matrix: jax.Array, height: int, width: int) -> jax.Array:
  """The same map with the image centre (not the top-left pixel) as its fixed point."""
  cx, cy = center(height, width)
  return translation(cx, cy) @ matrix @ translation(-cx, -cy)


def flip(flip_horizontal, flip_vertical, height: int, width: int) -> jax.Array:
  """Mirrors columns and/or rows (booleans, possibly traced); exact: pixels map onto pixels."""
  sx = jnp.where(flip_horizontal, -1.0, 1.0)
  sy = jnp.where(flip_vertical, -1.0, 1.0)
  return about_center(scaling(sx, sy), height, width)


def crop_and_resize(top, left, crop_height, crop_width, out_height: int,
                    out_width: int) -> jax.Array:
  """Reads the crop [top, top + crop_height) x [left, left + crop_width) stretched to the output.

  Pixel areas are aligned edge to edge (PyTorch's `interpolate(align_corners=False)`, which
  torchvision's resize uses): output x reads input
  `left + (x + 0.5) * crop_width / out_width - 0.5`.
  """
  sx = jnp.asarray(crop_width, jnp.float32) / out_width
  sy = jnp.asarray(crop_height, jnp.float32) / out_height
  return from_rows([[sx, 0, left + 0.5 * sx - 0.5], [0, sy, top + 0.5 * sy - 0.5], [0, 0, 1]])
