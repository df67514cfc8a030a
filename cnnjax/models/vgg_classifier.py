"""A VGG-style convolutional base with a new classifier head: the model of transfer learning.

`VGGClassifier` is [preprocess_input] - blocks of 3x3 'same' convolutions (ReLU) each closed by a
2x2 max-pooling - Flatten (or global average pooling) - Dense ReLU - Dropout - Dense logits. The
base's layers carry Keras' VGG16 names (block1_conv1 ... blockN_pool), so one set of freeze
patterns (`train.param_groups`, e.g. 'block[1-4]_.*=frozen') serves VGG16 and the small nets, and
VGG16's pretrained files load into the base by name (`model.init_from`). The head is Keras'
reference head for the cats-vs-dogs transfer: Flatten - Dense(256) - Dropout(0.5) - Dense(1).

Registered variants (`cnnjax.models`):

- `vgg16_transfer`: VGG16's base (14,714,688 parameters) with Keras' 'caffe' preprocessing built
  in, so it takes RGB pixels in 0..255 (`data.pixel_scale = 1.0`); at 150x150x3 the head adds
  2,097,665 parameters (4x4x512 -> 256 -> 1), 16,812,353 in all.
- `vgg_small`: three VGG blocks (block1_conv1 32, block2_conv1 64, block3_conv1..2 64 filters)
  for 28x28x1 images in [0, 1], 92,672 parameters in the base (28x28 -> 3x3x64); the offline
  stand-in for VGG16 in the Fashion-MNIST transfer experiment (`cnnjax.transfer.experiment`),
  small enough to pretrain on two CPU cores in minutes.

Two keyword arguments split the model where the base ends, for fast feature extraction
(`cnnjax.transfer.features`): `features_only=True` returns the base's feature maps and
`from_features=True` runs the head alone on them. Both use the same parameter tree as the whole
model, so a head trained on cached features is the head of the whole model.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax import imagenet
from cnnjax.errors import ConfigError
from cnnjax.models import layers
from cnnjax.models import vgg16

HEADS = ('flatten', 'gap')
PREPROCESS_MODES = (None, 'none', *imagenet.MODES)


class Preprocess(nn.Module):
  """`cnnjax.imagenet.preprocess_input` as a layer: pixels in 0..255 -> what the weights expect."""

  mode: str

  def __call__(self, x: jax.Array) -> jax.Array:
    return imagenet.preprocess_input(x, self.mode)


class VGGClassifier(nn.Module):
  """VGG blocks with Keras' VGG16 layer names, then a new dense head.

  Attributes:
    blocks: (convolutions, filters) of each block; block b's layers are blockb_conv1.. and
      blockb_pool.
    num_outputs: units of the 'predictions' layer: classes, or 1 for a binary problem.
    hidden_units: ReLU dense layers of the head (dense1, dense2, ...).
    dropout_rate: dropout after the hidden dense layers (0 leaves it out).
    head: 'flatten' (Flatten, as the reference) or 'gap' (GlobalAveragePooling2D).
    preprocess: `cnnjax.imagenet.preprocess_input` mode applied first ('caffe' for Keras' VGG16
      weights, 'torch' for torchvision's); None or 'none' applies nothing.
    dtype: compute dtype of the convolutions and dense layers (parameters stay float32).
  """

  blocks: Sequence[tuple[int, int]]
  num_outputs: int = 1
  hidden_units: Sequence[int] = (256,)
  dropout_rate: float = 0.5
  head: str = 'flatten'
  preprocess: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False, *, features_only: bool = False,
               from_features: bool = False) -> jax.Array:
    """Logits (N, num_outputs), or the base's feature maps with `features_only`.

    Args:
      images: (N, H, W, C) images; with `from_features`, the base's (N, h, w, c) feature maps.
      train: whether dropout is on.
      features_only: run the base alone and return its last pooling's output.
      from_features: run the head alone on feature maps computed by `features_only`.
    """
    if self.head not in HEADS:
      raise ConfigError(f'VGGClassifier head={self.head!r} is not supported; use one of {HEADS}')
    if self.preprocess not in PREPROCESS_MODES:
      raise ConfigError(f'model.preprocess={self.preprocess!r} is not supported; use one of '
                        f'{PREPROCESS_MODES}')
    x = images
    if not from_features:
      if self.preprocess not in (None, 'none'):
        x = Preprocess(self.preprocess, name='preprocess_input')(x)
      for block, (convs, features) in enumerate(self.blocks, start=1):
        for i in range(1, convs + 1):
          x = layers.Conv2D(features, (3, 3), padding='SAME', activation='relu',
                            dtype=self.dtype, name=f'block{block}_conv{i}')(x)
        x = layers.MaxPooling2D((2, 2), name=f'block{block}_pool')(x)
      if features_only:
        return x.astype(jnp.float32)
    if self.head == 'flatten':
      x = layers.Flatten(name='flatten')(x)
    else:
      x = layers.GlobalAveragePooling2D(name='global_average_pooling2d')(x)
    for i, units in enumerate(self.hidden_units, start=1):
      x = layers.Dense(units, activation='relu', dtype=self.dtype, name=f'dense{i}')(x)
    if self.dropout_rate:
      x = layers.Dropout(self.dropout_rate, deterministic=not train, name='dropout')(x)
    logits = layers.Dense(self.num_outputs, dtype=self.dtype, name='predictions')(x)
    return logits.astype(jnp.float32)


VGG16_BLOCKS = tuple((convs, features) for _, convs, features in vgg16.BLOCKS)
VGG_SMALL_BLOCKS = ((1, 32), (1, 64), (2, 64))

vgg16_transfer = functools.partial(VGGClassifier, blocks=VGG16_BLOCKS, preprocess='caffe')
vgg_small = functools.partial(VGGClassifier, blocks=VGG_SMALL_BLOCKS, num_outputs=10)

