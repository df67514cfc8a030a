"""ResNet50 (He et al., 2015) as Keras builds it, so Keras' ImageNet weights load layer by layer.

The layout of `keras.applications.ResNet50` (`keras/src/applications/resnet.py`), with its layer
names, all of them direct children of the model as in Keras' functional model, so that
`layer_outputs` and the summary see each one:

- stem: conv1_pad (ZeroPadding2D 3) - conv1_conv (7x7/2, 'valid') - conv1_bn - conv1_relu -
  pool1_pad (ZeroPadding2D 1) - pool1_pool (3x3/2 max, 'valid'). Padding explicitly keeps the
  borders symmetric; `lax`'s 'SAME' would pad the 7x7/2 conv on 224 as (2, 3), not (3, 3).
- four stages conv2..conv5 of 3, 4, 6, 3 bottleneck blocks with 64, 128, 256, 512 filters (out:
  4x as many). Block `convS_blockB` is _1_conv 1x1 - _1_bn - _1_relu - _2_conv 3x3 'same' - _2_bn -
  _2_relu - _3_conv 1x1 - _3_bn, added to the shortcut (_add) then ReLU (_out). The first block of
  each stage has a projection shortcut _0_conv 1x1 - _0_bn; the others the identity.
  Layers run in the order Keras lists them (_0_conv after _2_relu), so the summaries agree.
- top: avg_pool (global average pooling) - predictions (Dense, logits). Without the top,
  `pooling` None returns conv5_block3_out's feature map, 'avg' avg_pool's and 'max' max_pool's
  2048-vector.

This is ResNet "v1", as Keras and the original Caffe model have it: a stage's stride 2 sits on the
first block's first 1x1 convolution (_1_conv) and on its projection (_0_conv). torchvision's
ResNet50 is "v1.5": the stride sits on the 3x3 convolution instead, its convolutions have no bias
and its BatchNorm epsilon is 1e-5, so the two families' weights are not interchangeable. Here every
convolution has a bias and BatchNormalization uses Keras' epsilon 1.001e-5 and momentum 0.99.
In training, BatchNorm computes the batch variance in two passes, E[(x - mean)^2], as Keras does
(`jnp.var`), not Flax's default one-pass E[x^2] - mean^2, which loses digits when a channel's mean
is large against its spread (the train-mode outputs then differed from Keras' twice as much).

At 224x224x3 with 1,000 classes: 25,636,712 parameters, 25,583,592 trainable and 53,120
non-trainable (the moving means and variances, the 'batch_stats' collection), as Keras prints.
The model returns float32 logits (Keras' default `classifier_activation='softmax'` aside).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.errors import ConfigError
from cnnjax.models import layers
from cnnjax.models.vgg_classifier import PREPROCESS_MODES, Preprocess

# (stage, blocks, filters) of ResNet50; a stage's first block strides by 2 except conv2's.
STAGES = ((2, 3, 64), (3, 4, 128), (4, 6, 256), (5, 3, 512))
POOLINGS = (None, 'avg', 'max')
MIN_SIZE = 32
FEATURES = 2048


# Layers with weights in Keras' `model.layers` order (which Keras 3 .weights.h5 class keys follow:
# conv2d, conv2d_1, ... in this order of the convolutions). In a first block Keras lists _1_, _2_,
# then _0_conv, _3_conv, _0_bn, _3_bn.
def _keras_order(stage: int, block: int) -> tuple[str, ...]:
  prefix = f'conv{stage}_block{block}'
  order = ['1_conv', '1_bn', '2_conv', '2_bn']
  order += ['0_conv', '3_conv', '0_bn', '3_bn'] if block == 1 else ['3_conv', '3_bn']
  return tuple(f'{prefix}_{name}' for name in order)


WEIGHTED_LAYERS = ('conv1_conv', 'conv1_bn') + tuple(
    name for stage, blocks, _ in STAGES for block in range(1, blocks + 1)
    for name in _keras_order(stage, block)) + ('predictions',)
CONV_LAYERS = tuple(name for name in WEIGHTED_LAYERS if name.endswith('_conv'))
BN_LAYERS = tuple(name for name in WEIGHTED_LAYERS if name.endswith('_bn'))


class ResNet50Keras(nn.Module):
  """Keras' ResNet50 with its layer names and `include_top` / `pooling` / `classes` semantics.

  Attributes:
    include_top: whether to end with avg_pool and the 'predictions' dense layer.
    pooling: without the top, None returns conv5_block3_out's (N, h, w, 2048) feature map, 'avg'
      its global average (layer avg_pool) and 'max' its global maximum (layer max_pool).
      Ignored with the top, as in Keras.
    num_outputs: units of 'predictions' (Keras' `classes`); 1000 for the ImageNet weights.
    preprocess: a `cnnjax.imagenet.preprocess_input` mode applied first, as a layer named
      'preprocess_input' ('caffe' for Keras' weights, which then take RGB pixels in 0..255);
      None or 'none' applies nothing.
    dtype: compute dtype of the convolutions, BatchNorms and the dense layer (parameters and
      statistics stay float32).
    bn_momentum, bn_epsilon: BatchNormalization's, Keras' values by default (Flax's momentum
      has Keras' convention: moving = momentum * moving + (1 - momentum) * batch).
    axis_name: the mapped axis over which BatchNorm averages batch statistics (pmap /
      shard_map); None under jit, where a sharded batch's statistics are global already.
  """

  include_top: bool = True
  pooling: str | None = None
  num_outputs: int = 1000
  preprocess: str | None = None
  dtype: Any = jnp.float32
  bn_momentum: float = 0.99
  bn_epsilon: float = 1.001e-5
  axis_name: str | None = None

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False, *, features_only: bool = False,
               from_features: bool = False) -> jax.Array:
    """Logits (N, num_outputs) with the top; feature maps or pooled features without it.

    Args:
      images: (N, H, W, 3) images, H and W at least 32, preprocessed as the weights expect
        (or pixels in 0..255 with `preprocess`); with `from_features`, (N, 2048) features.
      train: whether BatchNorm normalizes with the batch's statistics and updates its moving
        ones (apply with `mutable=['batch_stats']`), or uses the moving ones.
      features_only: return avg_pool's (N, 2048) features, whatever `include_top`.
      from_features: run 'predictions' alone on features from `features_only`.
    """
    if self.pooling not in POOLINGS:
      raise ConfigError(f"ResNet50Keras pooling={self.pooling!r} is not supported; use None, "
                        "'avg' or 'max'")
    if self.preprocess not in PREPROCESS_MODES:
      raise ConfigError(f'model.preprocess={self.preprocess!r} is not supported; use one of '
                        f'{PREPROCESS_MODES}')

    def predictions(features):
      logits = layers.Dense(self.num_outputs, dtype=self.dtype, name='predictions')(features)
      return logits.astype(jnp.float32)

    if from_features:
      if not self.include_top:
        raise ConfigError('from_features runs the top; this ResNet50Keras has include_top=False')
      return predictions(images)
    if images.ndim != 4 or min(images.shape[1:3]) < MIN_SIZE:
      raise ConfigError(f'ResNet50Keras needs (N, H, W, C) images of at least '
                        f'{MIN_SIZE}x{MIN_SIZE}, got shape {images.shape}')

    def conv(x, features, kernel, name, strides=1, padding='VALID'):
      return layers.Conv2D(features, (kernel, kernel), strides=(strides, strides),
                           padding=padding, activation=None, use_bias=True, dtype=self.dtype,
                           name=name)(x)

    def batch_norm(x, name):
      bn = layers.BatchNorm(momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                        axis_name=self.axis_name, dtype=self.dtype,
                        use_fast_variance=False, name=name)
      return bn(x, use_running_average=not train)

    def relu(x, name):
      return layers.Activation('relu', name=name)(x)

    def block(x, filters, name, strides=1, projection=False):
      # Keras' order of the layers: the residual path's first two convolutions, then the
      # projection and the last convolution, then their BatchNorms.
      y = relu(batch_norm(conv(x, filters, 1, f'{name}_1_conv', strides), f'{name}_1_bn'),
               f'{name}_1_relu')
      y = relu(batch_norm(conv(y, filters, 3, f'{name}_2_conv', padding='SAME'), f'{name}_2_bn'),
               f'{name}_2_relu')
      shortcut = conv(x, 4 * filters, 1, f'{name}_0_conv', strides) if projection else x
      y = conv(y, 4 * filters, 1, f'{name}_3_conv')
      if projection:
        shortcut = batch_norm(shortcut, f'{name}_0_bn')
      y = batch_norm(y, f'{name}_3_bn')
      return relu(layers.Add(name=f'{name}_add')([shortcut, y]), f'{name}_out')

    x = images
    if self.preprocess not in (None, 'none'):
      x = Preprocess(self.preprocess, name='preprocess_input')(x)
    x = layers.ZeroPadding2D(3, name='conv1_pad')(x)
    x = relu(batch_norm(conv(x, 64, 7, 'conv1_conv', strides=2), 'conv1_bn'), 'conv1_relu')
    x = layers.ZeroPadding2D(1, name='pool1_pad')(x)
    x = layers.MaxPooling2D((3, 3), strides=(2, 2), name='pool1_pool')(x)
    for stage, blocks, filters in STAGES:
      for b in range(1, blocks + 1):
        x = block(x, filters, f'conv{stage}_block{b}', strides=2 if b == 1 and stage > 2 else 1,
                  projection=b == 1)
    if self.include_top or features_only or self.pooling == 'avg':
      x = layers.GlobalAveragePooling2D(name='avg_pool')(x)
      if features_only:
        return x.astype(jnp.float32)
      if self.include_top:
        return predictions(x)
    elif self.pooling == 'max':
      x = layers.GlobalMaxPooling2D(name='max_pool')(x)
    return x.astype(jnp.float32)
