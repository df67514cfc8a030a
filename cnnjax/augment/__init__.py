"""Data augmentation on the device: pure functions of (key, images), jit-able inside a train step.

Three vocabularies, each with the units and sign conventions of the library it comes from:
- `ImageDataGenerator` (Keras' generator, the book's 1st edition): rotation_range in degrees,
  width/height shifts as fractions or pixels, shear in degrees, zoom [1 - z, 1 + z] per axis,
  flips, fill modes nearest | reflect | wrap | constant as in `scipy.ndimage`;
- `KerasLayers` (Keras 3 RandomFlip, RandomRotation, RandomZoom, RandomTranslation,
  RandomContrast; the 2nd edition);
- `TorchvisionTransforms` (RandomRotation, RandomResizedCrop, RandomHorizontalFlip, RandomAffine
  shear, ColorJitter, Normalize; the PyTorch lecture), and, off by default, RandomCrop with
  padding (an exact integer translation) and RandomErasing (`erasing`: torchvision's box
  sampling; Keras 3's RandomErasing in the Keras-layer vocabulary).
Each draws one set of parameters per image (`sample`), turns every geometric part into a 3x3
matrix (`geometry`), multiplies them and resamples the image ONCE (`resample.affine_resample`,
bilinear like Keras' `order=1`); photometric changes (`color`) follow. `make_augmenter` builds
the batch function from an ml_collections config (`default_config()`), vmapping the one-image
function over `jax.random.split(key, batch)`. `preview_grid` draws a 3x3 PNG of variants.

Why not a library. dm_pix (DeepMind, maintained) has flips, rotation, `affine_transform` and
colour ops, but no random-parameter vocabulary of Keras or torchvision to reuse, its fast
interpolation covers only the 'nearest' and 'constant' fills and defers the others to
`jax.scipy.ndimage.map_coordinates`, whose 'wrap' and 'constant' are scipy's 'grid-wrap' and
'grid-constant', not the modes Keras' ImageDataGenerator uses; its colour ops follow
`tf.image` (saturation in HSV) where the lecture uses torchvision's (blend with grey); and it
brings chex along. augmax composes geometric transforms into one coordinate warp, which is the
right design and the one used here, but its transforms have their own parametrizations (one
zoom for both axes, no ImageDataGenerator shear, a RandomSizedCrop that is not torchvision's),
few fill modes, and a small, rarely released code base. The part that must match the references
exactly is the parameter sampling and the matrix conventions, so cnnjax writes them (and a
60-line gather) itself, golden-tested against `scipy.ndimage.affine_transform` and Keras 3; no
dependency is added.
"""

from cnnjax.augment import color, geometry
from cnnjax.augment.augmenter import (KINDS, Augmenter, ImageAugmenter, augment_batch,
                                      default_config, make_augmenter, make_image_augmenter,
                                      vocabulary)
from cnnjax.augment.color import (adjust_brightness, adjust_contrast, adjust_hue,
                                  adjust_saturation, keras_contrast, normalize, rgb_to_grayscale)
from cnnjax.augment.image_data_generator import ImageDataGenerator, ImageDataGeneratorParams
from cnnjax.augment.keras_layers import KerasLayers, KerasLayersParams
from cnnjax.augment.preview import preview_grid
from cnnjax.augment.resample import FILL_MODES, affine_resample
from cnnjax.augment.torchvision_transforms import (TorchvisionParams, TorchvisionTransforms,
                                                   random_resized_crop_box)

__all__ = [
    'FILL_MODES', 'KINDS', 'Augmenter', 'ImageAugmenter', 'ImageDataGenerator',
    'ImageDataGeneratorParams', 'KerasLayers', 'KerasLayersParams', 'TorchvisionParams',
    'TorchvisionTransforms', 'adjust_brightness', 'adjust_contrast', 'adjust_hue',
    'adjust_saturation', 'affine_resample', 'augment_batch', 'color', 'default_config',
    'geometry', 'keras_contrast', 'make_augmenter', 'make_image_augmenter', 'normalize',
    'preview_grid', 'random_resized_crop_box', 'rgb_to_grayscale', 'vocabulary',
]
