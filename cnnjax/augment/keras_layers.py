"""Keras 3's random preprocessing layers (2nd edition of the book), fused into one resample.

The book's stack is `RandomFlip('horizontal'), RandomRotation(0.1), RandomZoom(0.2)`; this module
also has `RandomTranslation`, `RandomContrast` and `RandomErasing`. Units and signs are those of
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
- RandomErasing(factor, scale, fill_value, value_range), last in the stack: per image a
  probability drawn uniform in `factor` = (low, high) and a coin with that probability, so an
  image is erased with chance (low + high) / 2 (Keras' single-float factor f is (0, f): its
  default factor=1.0 erases half the images). The box: each side independently
  sqrt(uniform(scale)) x its length (floats), at start uniform(0, 1) x (side - length); pixels
  whose index lies in [start, start + length) on both axes take the fill, clipped to value_range:
  `fill_value`, or None for Keras' default, standard normal noise x value_range[1] per pixel and
  channel (clipped, so about half of it is value_range[0] when that is 0). See
  `cnnjax.augment.erasing`. Note Keras' own value_range default is (0, 255); here the vocabulary's
  `value_range` (default (0, 1)) serves RandomContrast and RandomErasing alike.

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
from cnnjax.augment import erasing as erasing_ops
from cnnjax.augment.resample import affine_resample
from cnnjax.errors import ConfigError

FLIP_MODES = ('', 'horizontal', 'vertical', 'horizontal_and_vertical')
# Keras layer fill modes -> the resampler's (scipy) names.
FILL_MODES = {'reflect': 'reflect', 'nearest': 'nearest', 'wrap': 'grid-wrap',
              'constant': 'grid-constant'}


class KerasLayersParams(NamedTuple):
  """One image's draw: flip flag, degrees, zoom factors, pixels, contrast factor.

  The last fields (defaults: off) are RandomErasing's: the flag `erase`, the box [erase_y0,
  erase_y1) x [erase_x0, erase_x1) in (float) pixel indices, and the key of the noise fill
  (used when `fill_value` is None).
  """
  flip: jax.Array
  rotation: jax.Array
  zoom_x: jax.Array
  zoom_y: jax.Array
  shift_x: jax.Array
  shift_y: jax.Array
  contrast: jax.Array
  erase: jax.Array | bool = False
  erase_x0: jax.Array | float = 0.0
  erase_x1: jax.Array | float = 0.0
  erase_y0: jax.Array | float = 0.0
  erase_y1: jax.Array | float = 0.0
  erase_noise_key: jax.Array | None = None


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
    erasing: RandomErasing factor as (low, high): the per-image probability is drawn in it, so
      the chance of erasing is (low + high) / 2; Keras' single float f is (0, f); (0, 0) for none.
    erasing_scale: RandomErasing scale: each side of the box is sqrt(uniform(scale)) x the side.
    erasing_fill_value: RandomErasing fill_value (clipped to value_range); None for Keras'
      default, normal noise x value_range[1].
    fill_mode: 'reflect', 'wrap', 'nearest' or 'constant', with Keras 3's meaning.
    fill_value: the fill value of 'constant'.
    value_range: (low, high) of the pixel values, where RandomContrast and RandomErasing's fill
      clip.
  """
  flip: str = 'horizontal'
  rotation: float = 0.1
  zoom_height: float = 0.2
  zoom_width: float | None = None
  translation_height: float = 0.0
  translation_width: float = 0.0
  contrast: float = 0.0
  erasing: tuple[float, float] = (0.0, 0.0)
  erasing_scale: tuple[float, float] = (0.02, 0.33)
  erasing_fill_value: float | None = None
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
    for name in ('erasing', 'erasing_scale'):
      value = getattr(self, name)
      if len(value) != 2 or not 0 <= value[0] <= value[1] <= 1:
        raise ConfigError(f'{where}.{name}={value!r}: use a pair 0 <= low <= high <= 1 (Keras\' '
                          'single float f is (0, f))')

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
        contrast=1 + symmetric(6, self.contrast),
        **self._sample_erasing(key, height, width))

  def _sample_erasing(self, key: jax.Array, height: int, width: int) -> dict:
    """RandomErasing's fields of the draw, from uniforms of their own (others unchanged)."""
    if not self.erasing[1] > 0:
      return {}
    v = jax.random.uniform(jax.random.fold_in(key, 1), (2 + erasing_ops.KERAS_UNIFORMS,),
                           jnp.float32)
    low, high = self.erasing
    x0, x1, y0, y1 = erasing_ops.keras_box_from_uniforms(v[2:], height, width,
                                                         self.erasing_scale)
    return dict(erase=v[1] < low + (high - low) * v[0], erase_x0=x0, erase_x1=x1, erase_y0=y0,
                erase_y1=y1, erase_noise_key=jax.random.fold_in(key, 2))

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
    return self.erase(image, params)

  def erase(self, image: jax.Array, params: KerasLayersParams) -> jax.Array:
    """RandomErasing: the draw's box set to the (clipped) fill when `params.erase`."""
    if not self.erasing[1] > 0:
      return image
    height, width = image.shape[:2]
    if self.erasing_fill_value is None:
      fill = jax.random.normal(params.erase_noise_key, image.shape, image.dtype)
      fill = fill * self.value_range[1]
    else:
      fill = jnp.asarray(self.erasing_fill_value, image.dtype)
    fill = jnp.clip(fill, *self.value_range)
    mask = erasing_ops.box_mask(params.erase_y0, params.erase_x0, params.erase_y1,
                                params.erase_x1, height, width)
    return erasing_ops.erase(image, mask & params.erase, fill)

  def __call__(self, key: jax.Array, image: jax.Array) -> jax.Array:
    """Augments one (height, width, channels) image."""
    height, width = image.shape[:2]
    return self.apply(image, self.sample(key, height, width))
