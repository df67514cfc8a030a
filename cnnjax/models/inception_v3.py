"""InceptionV3 (Szegedy et al., 2015) as Keras builds it, so Keras' ImageNet weights load.

The architecture is written once, in `architecture`, as `keras.applications.InceptionV3`
(`keras/src/applications/inception_v3.py`) writes it: a stem of plain convolutions and two max
pools, then eleven Inception blocks whose parallel branches are concatenated as `mixed0` ..
`mixed10`:

- mixed0-2 (35x35): a 1x1 branch, a 1x1 -> 5x5 branch, a 1x1 -> 3x3 -> 3x3 branch and an average
  pool -> 1x1 branch;
- mixed3 (to 17x17): a 3x3/2 branch, a 1x1 -> 3x3 -> 3x3/2 branch and a 3x3/2 max pool;
- mixed4-7 (17x17): the lecture's factorized convolutions: a 7x7 as a 1x7 then a 7x1 (and twice
  that in the double branch), beside a 1x1 and a pool branch;
- mixed8 (to 8x8), then mixed9-10 (8x8), whose 3x3 branches split into a 1x3 and a 3x1 side by
  side (`mixed9_0`, `mixed9_1` and two unnamed concatenations).

Every convolution has no bias and is followed by BatchNormalization without a scale (no gamma:
the ReLU after it makes one redundant) with epsilon 1e-3, then a ReLU (`conv_bn`). Convolutions
pad 'same' unless the stem or a stride-2 reduction says 'valid'; the branch average pools are 3x3,
stride 1, 'same', and divide by the number of cells inside the image, as Keras does
(`layers.AveragePooling2D`). The top is a global average pool (`avg_pool`) and the dense
`predictions` (logits); without it, `pooling` None / 'avg' / 'max' as in Keras. Inputs are 'tf'
preprocessed (x / 127.5 - 1), 299x299 by default, at least 75x75.

Layer names are the ones a fresh Keras process gives (Keras numbers unnamed layers per class as it
creates them): conv2d, conv2d_1, ..., conv2d_93; batch_normalization .. batch_normalization_93;
activation .. activation_93; max_pooling2d, max_pooling2d_1, max_pooling2d_2; average_pooling2d ..
average_pooling2d_8; mixed0 .. mixed10, mixed9_0, mixed9_1, concatenate, concatenate_1. A second
InceptionV3 built in the same Keras process numbers on (conv2d_94, ...), so Keras files cannot be
matched by those names: `cnnjax.weights.inception_v3` matches them by the order Keras lists the
layers (`keras_order`), which `keras_layer_order` computes from the same `architecture`.

At 299x299x3 with 1,000 classes: 23,851,784 parameters, 23,817,352 trainable and 34,432
non-trainable (the moving means and variances, the 'batch_stats' collection), as Keras prints.
"""

import collections
import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.errors import ConfigError
from cnnjax.models import layers
from cnnjax.models.keras_order import LayerGraph, keras_order
from cnnjax.models.vgg_classifier import PREPROCESS_MODES, Preprocess

POOLINGS = (None, 'avg', 'max')
MIN_SIZE = 75
FEATURES = 2048


def architecture(net, x, include_top: bool = True, pooling: str | None = None):
  """InceptionV3 in terms of `net`'s layer builders (the Flax model's, or a graph recorder's)."""
  x = net.conv_bn(x, 32, 3, 3, strides=2, padding='valid')
  x = net.conv_bn(x, 32, 3, 3, padding='valid')
  x = net.conv_bn(x, 64, 3, 3)
  x = net.max_pool(x)
  x = net.conv_bn(x, 80, 1, 1, padding='valid')
  x = net.conv_bn(x, 192, 3, 3, padding='valid')
  x = net.max_pool(x)

  # mixed0, 1, 2: 35 x 35 x 256, 288, 288.
  for i, pool_features in enumerate((32, 64, 64)):
    branch1x1 = net.conv_bn(x, 64, 1, 1)
    branch5x5 = net.conv_bn(x, 48, 1, 1)
    branch5x5 = net.conv_bn(branch5x5, 64, 5, 5)
    branch3x3dbl = net.conv_bn(x, 64, 1, 1)
    branch3x3dbl = net.conv_bn(branch3x3dbl, 96, 3, 3)
    branch3x3dbl = net.conv_bn(branch3x3dbl, 96, 3, 3)
    branch_pool = net.conv_bn(net.avg_pool(x), pool_features, 1, 1)
    x = net.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], f'mixed{i}')

  # mixed3: 17 x 17 x 768.
  branch3x3 = net.conv_bn(x, 384, 3, 3, strides=2, padding='valid')
  branch3x3dbl = net.conv_bn(x, 64, 1, 1)
  branch3x3dbl = net.conv_bn(branch3x3dbl, 96, 3, 3)
  branch3x3dbl = net.conv_bn(branch3x3dbl, 96, 3, 3, strides=2, padding='valid')
  branch_pool = net.max_pool(x)
  x = net.concatenate([branch3x3, branch3x3dbl, branch_pool], 'mixed3')

  # mixed4 .. 7: 17 x 17 x 768, 7x7 convolutions factorized as 1x7 and 7x1.
  for i, width in zip(range(4, 8), (128, 160, 160, 192)):
    branch1x1 = net.conv_bn(x, 192, 1, 1)
    branch7x7 = net.conv_bn(x, width, 1, 1)
    branch7x7 = net.conv_bn(branch7x7, width, 1, 7)
    branch7x7 = net.conv_bn(branch7x7, 192, 7, 1)
    branch7x7dbl = net.conv_bn(x, width, 1, 1)
    branch7x7dbl = net.conv_bn(branch7x7dbl, width, 7, 1)
    branch7x7dbl = net.conv_bn(branch7x7dbl, width, 1, 7)
    branch7x7dbl = net.conv_bn(branch7x7dbl, width, 7, 1)
    branch7x7dbl = net.conv_bn(branch7x7dbl, 192, 1, 7)
    branch_pool = net.conv_bn(net.avg_pool(x), 192, 1, 1)
    x = net.concatenate([branch1x1, branch7x7, branch7x7dbl, branch_pool], f'mixed{i}')

  # mixed8: 8 x 8 x 1280.
  branch3x3 = net.conv_bn(x, 192, 1, 1)
  branch3x3 = net.conv_bn(branch3x3, 320, 3, 3, strides=2, padding='valid')
  branch7x7x3 = net.conv_bn(x, 192, 1, 1)
  branch7x7x3 = net.conv_bn(branch7x7x3, 192, 1, 7)
  branch7x7x3 = net.conv_bn(branch7x7x3, 192, 7, 1)
  branch7x7x3 = net.conv_bn(branch7x7x3, 192, 3, 3, strides=2, padding='valid')
  branch_pool = net.max_pool(x)
  x = net.concatenate([branch3x3, branch7x7x3, branch_pool], 'mixed8')

  # mixed9, 10: 8 x 8 x 2048, the 3x3s split into a 1x3 and a 3x1 side by side.
  for i in range(2):
    branch1x1 = net.conv_bn(x, 320, 1, 1)
    branch3x3 = net.conv_bn(x, 384, 1, 1)
    branch3x3 = net.concatenate([net.conv_bn(branch3x3, 384, 1, 3),
                                 net.conv_bn(branch3x3, 384, 3, 1)], f'mixed9_{i}')
    branch3x3dbl = net.conv_bn(x, 448, 1, 1)
    branch3x3dbl = net.conv_bn(branch3x3dbl, 384, 3, 3)
    branch3x3dbl = net.concatenate([net.conv_bn(branch3x3dbl, 384, 1, 3),
                                    net.conv_bn(branch3x3dbl, 384, 3, 1)])
    branch_pool = net.conv_bn(net.avg_pool(x), 192, 1, 1)
    x = net.concatenate([branch1x1, branch3x3, branch3x3dbl, branch_pool], f'mixed{9 + i}')

  if include_top:
    return net.predictions(net.global_pool(x, 'avg', name='avg_pool'))
  if pooling is not None:
    return net.global_pool(x, pooling)
  return x


class _Names:
  """Keras' automatic layer names: the class's snake-case name, numbered from the second on."""

  def __init__(self):
    self._counts = collections.Counter()

  def __call__(self, kind: str) -> str:
    count = self._counts[kind]
    self._counts[kind] += 1
    return f'{kind}_{count}' if count else kind


@dataclasses.dataclass
class _FlaxBuilders:
  """`architecture`'s layer builders as cnnjax layers, created inside the model's __call__."""

  model: 'InceptionV3'
  train: bool
  names: _Names = dataclasses.field(default_factory=_Names)

  def conv_bn(self, x, filters, rows, cols, strides=1, padding='same'):
    m = self.model
    x = layers.Conv2D(filters, (rows, cols), strides=(strides, strides), padding=padding.upper(),
                      activation=None, use_bias=False, dtype=m.dtype,
                      name=self.names('conv2d'))(x)
    x = layers.BatchNorm(use_scale=False, momentum=m.bn_momentum, epsilon=m.bn_epsilon,
                     axis_name=m.axis_name, dtype=m.dtype, use_fast_variance=False,
                     name=self.names('batch_normalization'))(x, use_running_average=not self.train)
    return layers.Activation('relu', name=self.names('activation'))(x)

  def max_pool(self, x):
    return layers.MaxPooling2D((3, 3), strides=(2, 2), name=self.names('max_pooling2d'))(x)

  def avg_pool(self, x):
    return layers.AveragePooling2D((3, 3), strides=(1, 1), padding='SAME',
                                   name=self.names('average_pooling2d'))(x)

  def concatenate(self, branches, name=None):
    return layers.Concatenate(name=name or self.names('concatenate'))(branches)

  def global_pool(self, x, pooling, name=None):
    if pooling == 'avg':
      return layers.GlobalAveragePooling2D(name=name or self.names('global_average_pooling2d'))(x)
    return layers.GlobalMaxPooling2D(name=name or self.names('global_max_pooling2d'))(x)

  def predictions(self, features):
    logits = layers.Dense(self.model.num_outputs, dtype=self.model.dtype,
                          name='predictions')(features)
    return logits.astype(jnp.float32)


@dataclasses.dataclass
class _GraphBuilders:
  """`architecture`'s layer builders as a graph recorder: each returns its layer's name, and
  `shapes` collects the weight shapes of the layers that have weights."""

  graph: LayerGraph = dataclasses.field(default_factory=LayerGraph)
  names: _Names = dataclasses.field(default_factory=_Names)
  channels: dict[str, int] = dataclasses.field(default_factory=dict)
  shapes: dict[str, tuple[tuple[int, ...], ...]] = dataclasses.field(default_factory=dict)
  num_outputs: int = 1000

  def _add(self, kind_or_name, inputs, channels, shapes=None, named=False):
    name = kind_or_name if named else self.names(kind_or_name)
    self.graph.add(name, inputs)
    self.channels[name] = channels
    if shapes:
      self.shapes[name] = shapes
    return name

  def conv_bn(self, x, filters, rows, cols, strides=1, padding='same'):
    del strides, padding
    x = self._add('conv2d', [x], filters, ((rows, cols, self.channels[x], filters),))
    x = self._add('batch_normalization', [x], filters, ((filters,),) * 3)
    return self._add('activation', [x], filters)

  def max_pool(self, x):
    return self._add('max_pooling2d', [x], self.channels[x])

  def avg_pool(self, x):
    return self._add('average_pooling2d', [x], self.channels[x])

  def concatenate(self, branches, name=None):
    channels = sum(self.channels[b] for b in branches)
    return self._add(name or 'concatenate', branches, channels, named=name is not None)

  def global_pool(self, x, pooling, name=None):
    kind = 'global_average_pooling2d' if pooling == 'avg' else 'global_max_pooling2d'
    return self._add(name or kind, [x], self.channels[x], named=name is not None)

  def predictions(self, features):
    c = self.channels[features]
    return self._add('predictions', [features], self.num_outputs,
                     ((c, self.num_outputs), (self.num_outputs,)), named=True)


@functools.cache
def keras_layer_order(include_top: bool = True,
                      num_outputs: int = 1000) -> tuple[tuple[str, tuple[tuple[int, ...], ...]], ...]:
  """The layers with weights, in the order Keras' `model.layers` lists them, with the shapes of
  their weights in Keras' order: a conv2d's (kernel,), a batch_normalization's (beta,
  moving_mean, moving_variance), predictions' (kernel, bias)."""
  builders = _GraphBuilders(num_outputs=num_outputs)
  builders.graph.add('input_layer')
  builders.channels['input_layer'] = 3
  output = architecture(builders, 'input_layer', include_top=include_top)
  return tuple((name, builders.shapes[name]) for name in keras_order(builders.graph, output)
               if name in builders.shapes)


class InceptionV3(nn.Module):
  """Keras' InceptionV3 with its layer names and `include_top` / `pooling` / `classes` semantics.

  Attributes:
    include_top: whether to end with avg_pool and the 'predictions' dense layer.
    pooling: without the top, None returns mixed10's (N, h, w, 2048) feature map, 'avg' its global
      average and 'max' its global maximum. Ignored with the top, as in Keras.
    num_outputs: units of 'predictions' (Keras' `classes`); 1000 for the ImageNet weights.
    preprocess: a `cnnjax.imagenet.preprocess_input` mode applied first, as a layer named
      'preprocess_input' ('tf' for Keras' weights, which then take RGB pixels in 0..255); None or
      'none' applies nothing.
    dtype: compute dtype of the convolutions, BatchNorms and the dense layer (parameters and
      statistics stay float32).
    bn_momentum, bn_epsilon: BatchNormalization's, Keras' values by default.
    axis_name: the mapped axis over which BatchNorm averages batch statistics (pmap / shard_map).
  """

  include_top: bool = True
  pooling: str | None = None
  num_outputs: int = 1000
  preprocess: str | None = None
  dtype: Any = jnp.float32
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  axis_name: str | None = None

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False, *, features_only: bool = False,
               from_features: bool = False) -> jax.Array:
    """Logits (N, num_outputs) with the top; feature maps or pooled features without it.

    Args:
      images: (N, H, W, 3) images, H and W at least 75, preprocessed as the weights expect (or
        pixels in 0..255 with `preprocess`); with `from_features`, (N, 2048) features.
      train: whether BatchNorm normalizes with the batch's statistics and updates its moving ones
        (apply with `mutable=['batch_stats']`), or uses the moving ones.
      features_only: return avg_pool's (N, 2048) features, whatever `include_top`.
      from_features: run 'predictions' alone on features from `features_only`.
    """
    if self.pooling not in POOLINGS:
      raise ConfigError(f"InceptionV3 pooling={self.pooling!r} is not supported; use None, "
                        "'avg' or 'max'")
    if self.preprocess not in PREPROCESS_MODES:
      raise ConfigError(f'model.preprocess={self.preprocess!r} is not supported; use one of '
                        f'{PREPROCESS_MODES}')
    builders = _FlaxBuilders(self, train)
    if from_features:
      if not self.include_top:
        raise ConfigError('from_features runs the top; this InceptionV3 has include_top=False')
      return builders.predictions(images)
    if images.ndim != 4 or min(images.shape[1:3]) < MIN_SIZE:
      raise ConfigError(f'InceptionV3 needs (N, H, W, C) images of at least {MIN_SIZE}x{MIN_SIZE}, '
                        f'got shape {images.shape}')
    x = images
    if self.preprocess not in (None, 'none'):
      x = Preprocess(self.preprocess, name='preprocess_input')(x)
    if features_only:
      x = architecture(builders, x, include_top=False, pooling=None)
      return layers.GlobalAveragePooling2D(name='avg_pool')(x).astype(jnp.float32)
    x = architecture(builders, x, include_top=self.include_top, pooling=self.pooling)
    return x.astype(jnp.float32)
