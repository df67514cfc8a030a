"""Keras 3's random preprocessing layers (2nd edition of the book), fused into one resample.

The book's stack is `RandomFlip('horizontal'), RandomRotation(0.1), RandomZoom(0.2)`; this module
also has `RandomTranslation` and `RandomContrast`. Units and signs are those of
`keras/src/layers/preprocessing/image_preprocessing/*.py` (Keras 3.15):
- RandomFlip: one draw per image with probability 1/2; in 'horizontal_and_vertical' mode that
  ONE draw flips both axes (so it is a half turn half of the time), as Keras 3 does;
- RandomRotation(factor): angle uniform in [-factor, factor] x 360 degrees (0.1 -> +-36),
  positive = counter-clockwise;
- RandomZoom(height_factor, width_factor): zoom = 1 + uniform(-f, f), NEGATIVE = zoom in,
  positive = zoom out; width_factor None uses the height's draw for both axes (aspect kept);
- RandomTranslation(height_factor, width_factor): shift = uniform(-f, f) x height / width pixels,
  positive = down / right;
- RandomContrast(factor): contrast factor uniform in [1 - factor, 1 + factor] per image,
  `(x - channel mean) * factor + channel mean`, clipped to value_range. (Keras 3.15's code turns a
  single float f into [1, 1 + f], contradicting its own docstring and Keras 2; a pair (f, f)
  gives the documented [1 - f, 1 + f], which is what this module draws.)

Keras resamples once per geometric layer (bilinear, `jax.scipy.ndimage.map_coordinates` with its
'reflect' default). Here flip, rotation, zoom and translation, in that order, are composed into
one matrix and one gather. Alone, each matches its Keras layer exactly (tests compare them);
stacked, the image is interpolated once instead of three times, and the area a transform brings
in from outside the frame shows the reflected original, not a reflection of an already rotated
image. Keras' fill modes map to `resample`'s as 'constant' -> 'grid-constant', 'wrap' ->
'grid-wrap' ('reflect' and 'nearest' are the same).
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from cnnjax.augment import color, geometry
from cnnjax.augment.resample import affine_resample
from cnnjax.errors import ConfigError

FLIP_MODES = ('', 'horizontal', 'vertical', 'horizontal_and_vertical')
# Keras layer fill modes -> the resampler's (scipy) names.
FILL_MODES = {'reflect': 'reflect', 'nearest': 'nearest', 'wrap': 'grid-wrap',
              'constant': 'grid-constant'}


class KerasLayersParams(NamedTuple):
  """One image's draw: flip flag, degrees, zoom factors, pixels, contrast factor."""
  flip: jax.Array
  rotation: jax.Array
  zoom_x: jax.Array
  zoom_y: jax.Array
  shift_x: jax.Array
  shift_y: jax.Array
  contrast: jax.Array


@dataclasses.dataclass(frozen=True)
class KerasLayers:
  """A Sequential of Keras 3 random layers; defaults are the book's (flip, rotation 0.1, zoom 0.2).

  Attributes:
    flip: RandomFlip mode, or '' for no flip.
    rotation: RandomRotation factor (fraction of a full turn).
    zoom_height: RandomZoom height_factor (negative = zoom in).
    zoom_width: RandomZoom width_factor; None zooms both axes by the height's draw.
    translation_height: RandomTranslation height_factor (fraction of the height).
    translation_width: RandomTranslation width_factor (fraction of the width).
    contrast: RandomContrast factor; 0 for none.
    fill_mode: 'reflect', 'wrap', 'nearest' or 'constant', with Keras 3's meaning.
    fill_value: the fill value of 'constant'.
    value_range: (low, high) of the pixel values, where RandomContrast clips.
  """
  flip: str = 'horizontal'
  rotation: float = 0.1
  zoom_height: float = 0.2
  zoom_width: float | None = None
  translation_height: float = 0.0
  translation_width: float = 0.0
  contrast: float = 0.0
  fill_mode: str = 'reflect'
  fill_value: float = 0.0
  value_range: tuple[float, float] = (0.0, 1.0)

  def __post_init__(self):
    where = 'augment.keras_layers'
    if self.flip not in FLIP_MODES:
      raise ConfigError(f'{where}.flip={self.flip!r} is not one of {FLIP_MODES}')
    if self.fill_mode not in FILL_MODES:
      raise ConfigError(f'{where}.fill_mode={self.fill_mode!r} is not one of {tuple(FILL_MODES)}')
    for name in ('rotation', 'translation_height', 'translation_width', 'contrast'):
      if getattr(self, name) < 0:
        raise ConfigError(f'{where}.{name}={getattr(self, name)!r} is negative: give the '
                          'half-width of the range (the draw is symmetric about 0)')
    for name in ('zoom_height', 'zoom_width'):
      factor = getattr(self, name)
      if factor is not None and not 0 <= factor < 1:
        raise ConfigError(f'{where}.{name}={factor!r}: zoom factors are drawn in [1 - f, 1 + f], '
                          'so f must be in [0, 1)')
    if self.contrast > 1:
      raise ConfigError(f'{where}.contrast={self.contrast!r}: Keras allows factors in [0, 1]')

  def sample(self, key: jax.Array, height: int, width: int) -> KerasLayersParams:
    """Draws one image's transform."""
    u = jax.random.uniform(key, (7,), jnp.float32)  # One random-bits computation per image.

    def symmetric(i, half_width):
      return (2 * u[i] - 1) * half_width

    zoom_y = 1 + symmetric(2, self.zoom_height)
    zoom_x = zoom_y if self.zoom_width is None else 1 + symmetric(3, self.zoom_width)
    return KerasLayersParams(
        flip=(u[0] < 0.5) & bool(self.flip),
        rotation=symmetric(1, self.rotation) * 360,
        zoom_x=zoom_x,
        zoom_y=zoom_y,
        shift_x=symmetric(4, self.translation_width) * width,
        shift_y=symmetric(5, self.translation_height) * height,
        contrast=1 + symmetric(6, self.contrast))

  def matrix(self, params: KerasLayersParams, height: int, width: int) -> jax.Array:
    """The output-to-input map of flip, rotation, zoom and translation applied in that order."""
    flip = geometry.flip(params.flip & (self.flip in ('horizontal', 'horizontal_and_vertical')),
                         params.flip & (self.flip in ('vertical', 'horizontal_and_vertical')),
                         height, width)
    rotation = geometry.about_center(geometry.rotation(params.rotation), height, width)
    zoom = geometry.about_center(geometry.scaling(params.zoom_x, params.zoom_y), height, width)
    translation = geometry.translation(-params.shift_x, -params.shift_y)
    return flip @ rotation @ zoom @ translation

  def apply(self, image: jax.Array, params: KerasLayersParams) -> jax.Array:
    """Applies one draw (e.g. fixed parameters) to one image: one resample, then the contrast."""
    height, width = image.shape[:2]
    image = affine_resample(image, self.matrix(params, height, width),
                            fill_mode=FILL_MODES[self.fill_mode], cval=self.fill_value)
    if self.contrast > 0:
      image = color.keras_contrast(image, params.contrast, self.value_range)
    return image

  def __call__(self, key: jax.Array, image: jax.Array) -> jax.Array:
    """Augments one (height, width, channels) image."""
    height, width = image.shape[:2]
    return self.apply(image, self.sample(key, height, width))
