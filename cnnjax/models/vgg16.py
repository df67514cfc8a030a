"""VGG16 (Simonyan & Zisserman, 2014) as Keras builds it, so Keras and torchvision weights load.

Thirteen 3x3 'same' convolutions with ReLU in five blocks, each block closed by a 2x2 max-pooling:
64-64-P, 128-128-P, 256-256-256-P, 512-512-512-P, 512-512-512-P. The layers carry Keras' names
(block1_conv1 ... block5_pool, then flatten, fc1, fc2, predictions), so `layer_outputs` returns
any of them by name and `cnnjax.weights.load_vgg16_weights` maps pretrained files onto them.

- `include_top=False`: the convolutional base, 14,714,688 parameters. Any input of at least 32x32
  works (150x150 -> 4x4x512, 224x224 -> 7x7x512); `pooling` 'avg' or 'max' reduces the feature
  map to one 512-vector per image, as Keras' `pooling` argument does.
- `include_top=True`: Flatten - fc1 4096 ReLU - fc2 4096 ReLU - predictions, 138,357,544
  parameters at 224x224x3 with 1,000 classes. As in Keras with `weights=None`, another input size
  changes the size of fc1's kernel; the pretrained ImageNet top only fits 224x224.

Unlike Keras' default `classifier_activation='softmax'`, the model returns logits (the losses take
logits); apply `jax.nn.softmax`, or pass them to `cnnjax.imagenet.decode_predictions`, for
probabilities. Kernels start from Glorot-uniform and biases from zeros, as in Keras.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.errors import ConfigError
from cnnjax.models import layers

# (block, number of convolutions, filters): the whole convolutional base.
BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
CONV_LAYERS = tuple(f'block{block}_conv{i}' for block, convs, _ in BLOCKS
                    for i in range(1, convs + 1))
TOP_LAYERS = ('fc1', 'fc2', 'predictions')
MIN_SIZE = 32
POOLINGS = (None, 'avg', 'max')


class VGG16(nn.Module):
  """VGG16 with Keras' layer names and Keras' `include_top` / `pooling` / `classes` semantics.

  Attributes:
    include_top: whether to add Flatten - fc1 - fc2 - predictions after block5_pool.
    pooling: without the top, None returns block5_pool's 4-D feature map, 'avg' and 'max' a global
      average / max pooling of it (layers named global_average_pooling2d / global_max_pooling2d, as
      Keras names them). Ignored with the top, as in Keras.
    num_outputs: classes of the 'predictions' layer (Keras' `classes`); 1000 for ImageNet weights.
    dtype: compute dtype of the convolutions and dense layers (parameters stay float32).
  """

  include_top: bool = True
  pooling: str | None = None
  num_outputs: int = 1000
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    """Logits (N, num_outputs) with the top; feature maps or pooled features without it.

    Args:
      images: (N, H, W, C) preprocessed images (see `cnnjax.imagenet.preprocess_input`), H and W
        at least 32.
      train: unused (VGG16 has no dropout or batch normalization); accepted so that the training
        loop can call every model the same way.
    """
    del train
    if self.pooling not in POOLINGS:
      raise ConfigError(f"VGG16 pooling={self.pooling!r} is not supported; use None, 'avg' or "
                        "'max'")
    if images.ndim != 4 or min(images.shape[1:3]) < MIN_SIZE:
      raise ConfigError(f'VGG16 needs (N, H, W, C) images of at least {MIN_SIZE}x{MIN_SIZE}, '
                        f'got shape {images.shape}; resize the images (e.g. to 224x224)')
    x = images
    for block, convs, features in BLOCKS:
      for i in range(1, convs + 1):
        x = layers.Conv2D(features, (3, 3), padding='SAME', activation='relu', dtype=self.dtype,
                          name=f'block{block}_conv{i}')(x)
      x = layers.MaxPooling2D((2, 2), name=f'block{block}_pool')(x)
    if self.include_top:
      x = layers.Flatten(name='flatten')(x)
      x = layers.Dense(4096, activation='relu', dtype=self.dtype, name='fc1')(x)
      x = layers.Dense(4096, activation='relu', dtype=self.dtype, name='fc2')(x)
      x = layers.Dense(self.num_outputs, dtype=self.dtype, name='predictions')(x)
    elif self.pooling == 'avg':
      x = layers.GlobalAveragePooling2D(name='global_average_pooling2d')(x)
    elif self.pooling == 'max':
      x = layers.GlobalMaxPooling2D(name='global_max_pooling2d')(x)
    return x.astype(jnp.float32)
