"""Keras `ImageDataGenerator`'s random transform (1st edition of the book), on the device.

Units and sampling are those of `keras.src.legacy.preprocessing.image.ImageDataGenerator`
(`get_random_transform` + `apply_transform`, Keras 3.15):
- rotation angle uniform in [-rotation_range, rotation_range] degrees;
- shifts uniform in [-range, range], times the image width / height when range < 1, else pixels
  (Keras draws whole pixels for an int range; here the draw is always continuous);
- shear angle uniform in [-shear_range, shear_range] DEGREES (so the book's shear_range=0.2 is a
  fifth of a degree; torchvision's RandomAffine(shear=20) is the visible one);
- zoom factors zx, zy drawn independently, uniform in [1 - z, 1 + z] (or in [lo, hi] for a
  pair); zx > 1 zooms out;
- horizontal / vertical flips each with probability 1/2, applied after the affine part.

The geometry is Keras' `apply_affine_transform`: the map from output to input pixel coordinates is
`C R(theta) T(tx, ty) Shear(s) Zoom(zx, zy) C^-1`, with `Shear(s) = [[1, -sin s], [0, cos s]]`
and C the move to the image centre, all in (x = column, y = row) coordinates; the flips compose on
the output side. Keras resamples with `scipy.ndimage.affine_transform(order=1, mode=fill_mode)`;
here the affine part and the flips are one bilinear gather with the same fill modes.

One deliberate difference: since keras-preprocessing PR #318 (2020), `apply_affine_transform`
swaps x and y after building the matrix in (row, col) order, so Keras applies the HEIGHT shift
(a fraction of the height) along the width and vice versa, and on non-square images transforms
about a point that is not the centre (keras-preprocessing #348, tf-keras #310). Here the width
shift moves along the width and the centre is the centre. On square images with equal shift
ranges the two agree exactly (tests compare them with Keras itself).
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from cnnjax.augment import geometry
from cnnjax.augment.resample import affine_resample
from cnnjax.errors import ConfigError

FILL_MODES = ('nearest', 'reflect', 'wrap', 'constant')  # scipy.ndimage's, as Keras passes them.


class ImageDataGeneratorParams(NamedTuple):
  """One image's draw: degrees, pixels, degrees, zoom factors, flip flags."""
  rotation: jax.Array
  shift_x: jax.Array
  shift_y: jax.Array
  shear: jax.Array
  zoom_x: jax.Array
  zoom_y: jax.Array
  flip_horizontal: jax.Array
  flip_vertical: jax.Array


@dataclasses.dataclass(frozen=True)
class ImageDataGenerator:
  """The geometric arguments of Keras' ImageDataGenerator; defaults are the book's (Listing 5.11).

  Attributes:
    rotation_range: degrees.
    width_shift_range: fraction of the width if < 1, else pixels.
    height_shift_range: fraction of the height if < 1, else pixels.
    shear_range: degrees.
    zoom_range: z for [1 - z, 1 + z], or a pair (lo, hi).
    horizontal_flip: flip half the images left-right.
    vertical_flip: flip half the images upside down.
    fill_mode: 'nearest', 'reflect', 'wrap' or 'constant' (scipy.ndimage's modes).
    cval: the fill value of 'constant'.
  """
  rotation_range: float = 40.0
  width_shift_range: float = 0.2
  height_shift_range: float = 0.2
  shear_range: float = 0.2
  zoom_range: float | tuple[float, float] = 0.2
  horizontal_flip: bool = True
  vertical_flip: bool = False
  fill_mode: str = 'nearest'
  cval: float = 0.0

  def __post_init__(self):
    where = 'augment.image_data_generator'
    for name in ('rotation_range', 'width_shift_range', 'height_shift_range', 'shear_range'):
      if getattr(self, name) < 0:
        raise ConfigError(f'{where}.{name}={getattr(self, name)!r} is negative: give the '
                          'half-width of the range (the draw is symmetric about 0)')
    low, high = self.zoom_bounds
    if not 0 < low <= high:
      raise ConfigError(f'{where}.zoom_range={self.zoom_range!r} gives zoom factors [{low}, '
                        f'{high}]: use z in [0, 1) for [1 - z, 1 + z], or a pair 0 < lo <= hi')
    if self.fill_mode not in FILL_MODES:
      raise ConfigError(f'{where}.fill_mode={self.fill_mode!r} is not one of {FILL_MODES}')

  @property
  def zoom_bounds(self) -> tuple[float, float]:
    if isinstance(self.zoom_range, (tuple, list)):
      return float(self.zoom_range[0]), float(self.zoom_range[1])
    return 1.0 - self.zoom_range, 1.0 + self.zoom_range

  def sample(self, key: jax.Array, height: int, width: int) -> ImageDataGeneratorParams:
    """Draws one image's transform."""
    # One draw of uniforms for the whole transform: a single random-bits computation to compile.
    u = jax.random.uniform(key, (8,), jnp.float32)

    def symmetric(i, half_width):
      return (2 * u[i] - 1) * half_width

    def shift(i, shift_range, size):
      return symmetric(i, shift_range) * (size if shift_range < 1 else 1)

    low, high = self.zoom_bounds
    return ImageDataGeneratorParams(
        rotation=symmetric(0, self.rotation_range),
        shift_x=shift(1, self.width_shift_range, width),
        shift_y=shift(2, self.height_shift_range, height),
        shear=symmetric(3, self.shear_range),
        zoom_x=low + (high - low) * u[4],
        zoom_y=low + (high - low) * u[5],
        flip_horizontal=(u[6] < 0.5) & self.horizontal_flip,
        flip_vertical=(u[7] < 0.5) & self.vertical_flip)

  def matrix(self, params: ImageDataGeneratorParams, height: int, width: int) -> jax.Array:
    """The output-to-input map of one draw: the affine part, then the flips."""
    affine = (geometry.rotation(params.rotation)
              @ geometry.translation(params.shift_x, params.shift_y)
              @ keras_shear(params.shear)
              @ geometry.scaling(params.zoom_x, params.zoom_y))
    return (geometry.about_center(affine, height, width)
            @ geometry.flip(params.flip_horizontal, params.flip_vertical, height, width))

  def apply(self, image: jax.Array, params: ImageDataGeneratorParams) -> jax.Array:
    """Applies one draw (e.g. fixed parameters) to one image with a single resample."""
    height, width = image.shape[:2]
    return affine_resample(image, self.matrix(params, height, width), fill_mode=self.fill_mode,
                           cval=self.cval)

  def __call__(self, key: jax.Array, image: jax.Array) -> jax.Array:
    """Augments one (height, width, channels) image."""
    height, width = image.shape[:2]
    return self.apply(image, self.sample(key, height, width))


def keras_shear(degrees) -> jax.Array:
  """Keras' shear matrix: x reads x - sin(s) y, y reads cos(s) y."""
  s = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
  return geometry.from_rows([[1, -jnp.sin(s), 0], [0, jnp.cos(s), 0], [0, 0, 1]])

