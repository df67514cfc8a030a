"""ResNet (He et al., 2015) in torchvision's layout, so torchvision's weight files load by name.

The modules carry torchvision's names, so every variable's path is torch's state-dict key split on
'.': `conv1`, `bn1`, `layer1`..`layer4` (blocks '0', '1', ...; each with `conv1`/`bn1`,
`conv2`/`bn2`[, `conv3`/`bn3`] and, where the block changes the stride or the channels,
`downsample` holding '0' (1x1 convolution) and '1' (BatchNorm)), `fc`. So torch's
`layer1.0.downsample.1.running_mean` is `batch_stats['layer1']['0']['downsample']['1']['mean']`
and `layer2.0.conv1.weight` (OIHW) is `params['layer2']['0']['conv1']['kernel']` (HWIO, the
transpose (2, 3, 1, 0)); `fc.weight` is `params['fc']['kernel']` transposed
(`cnnjax.weights.resnet`).

As torchvision builds it:

- "ResNet v1.5": a Bottleneck puts its stride on the 3x3 `conv2` (and on `downsample.0`), not on
  the first 1x1 convolution as the paper's v1 (and Keras' ResNet50) does.
- Symmetric zero padding as torch pads: the 7x7 stride-2 stem `padding=3` -> ((3, 3), (3, 3)),
  the 3x3 stride-2 max-pooling `padding=1` -> ((1, 1), (1, 1)) padded with -inf, every 3x3
  convolution ((1, 1), (1, 1)). lax's 'SAME' would pad the stem (2, 3) and the pooling (0, 1) on
  an even input: same shapes, different outputs.
- Every convolution is bias-free; BatchNorm (`layers.BatchNorm`, Flax's) epsilon 1e-5 and momentum
  0.9 in Flax's convention, `ra = m * ra + (1 - m) * batch`: torch's `momentum=0.1` is 1 - m.
- Convolution kernels start from He-normal on the fan-out (torch's `kaiming_normal_(mode=
  'fan_out', nonlinearity='relu')`), BatchNorm from scale 1, offset 0; `fc` from Glorot-uniform
  (torch's Linear starts otherwise; pretrained or retrained tops make that moot).

BatchNorm: `train=True` normalizes with the batch's statistics and (with
`mutable=['batch_stats']`) updates the moving averages; `train=False` uses the moving averages.
Each BatchNorm is called as `bn(x, use_running_average=not train)`, so a training step can force
frozen layers into inference mode through that keyword. One difference from torch in training:
both normalize with the biased batch variance, but torch's `running_var` averages in the
UNBIASED one (times n / (n - 1), n = batch * height * width) while Flax's `var` averages in the
biased one. After one step from the same statistics, Flax's `var` equals torch's `running_var`
minus (1 - m) * (unbiased - biased) batch variance; the means agree. Inference is unaffected.

Parameters at 224x224x3 with the 1000-class top (trainable, as torchvision counts; the moving
means and variances are non-trainable `batch_stats`):

  resnet18  11,689,512 trainable +  9,600 non-trainable
  resnet34  21,797,672 trainable + 17,024 non-trainable
  resnet50  25,557,032 trainable + 53,120 non-trainable

`resnet_small` is the same class, a ResNet-8 for 28x28x1 Fashion-MNIST (its design and speed are
described where it is defined, at the end of this module).

The model returns float32 logits. `features_only=True` returns the globally averaged features
right before `fc` (512 for the basic-block nets, 2048 for resnet50) and `from_features=True` runs
`fc` alone on them: a head trained on cached features is the whole model's head.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.errors import ConfigError
from cnnjax.models import layers
from cnnjax.models.vgg_classifier import PREPROCESS_MODES, Preprocess

BLOCKS = ('basic', 'bottleneck')
STEMS = ('imagenet', 'small')
POOLINGS = (None, 'avg', 'max')
EXPANSION = {'basic': 1, 'bottleneck': 4}
IMAGENET_WIDTHS = (64, 128, 256, 512)
# torch's kaiming_normal_(mode='fan_out', nonlinearity='relu'): N(0, 2 / (kh * kw * out)).
CONV_INIT = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _same(size: int) -> tuple[tuple[int, int], tuple[int, int]]:
  """torch's symmetric `padding=size // 2` for an odd size x size window."""
  return ((size // 2, size // 2),) * 2


class _Layer(nn.Module):
  """The settings every convolution and BatchNorm of a ResNet shares, and their constructors."""

  dtype: Any = jnp.float32
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  axis_name: str | None = None
  conv_implementation: str | None = None

  def conv(self, features: int, size: int, strides: int, name: str) -> layers.Conv2D:
    """A bias-free size x size convolution padded as torch pads it (none for 1x1)."""
    return layers.Conv2D(features, (size, size), (strides, strides),
                         padding=_same(size) if size > 1 else 'VALID', activation=None,
                         use_bias=False, dtype=self.dtype, kernel_init=CONV_INIT,
                         implementation=self.conv_implementation, name=name)

  def batch_norm(self, name: str) -> layers.BatchNorm:
    """`layers.BatchNorm` (Flax's); call it as `bn(x, use_running_average=not train)`."""
    return layers.BatchNorm(momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                            axis_name=self.axis_name, dtype=self.dtype, name=name)

  def settings(self) -> dict[str, Any]:
    return dict(dtype=self.dtype, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                axis_name=self.axis_name, conv_implementation=self.conv_implementation)


class Downsample(_Layer):
  """The shortcut's projection: '0' a 1x1 convolution with the block's stride, '1' BatchNorm."""

  features: int = 0
  strides: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = self.conv(self.features, 1, self.strides, '0')(x)
    return self.batch_norm('1')(x, use_running_average=not train)


class BasicBlock(_Layer):
  """conv1 3x3 (stride) - bn1 - ReLU - conv2 3x3 - bn2, plus the shortcut, then ReLU."""

  features: int = 64
  strides: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    shortcut = x
    y = self.conv(self.features, 3, self.strides, 'conv1')(x)
    y = nn.relu(self.batch_norm('bn1')(y, use_running_average=not train))
    y = self.conv(self.features, 3, 1, 'conv2')(y)
    y = self.batch_norm('bn2')(y, use_running_average=not train)
    if self.strides != 1 or x.shape[-1] != self.features:
      shortcut = Downsample(features=self.features, strides=self.strides, **self.settings(),
                            name='downsample')(x, train)
    return nn.relu(y + shortcut)


class Bottleneck(_Layer):
  """conv1 1x1 - bn1 - ReLU - conv2 3x3 (stride; v1.5) - bn2 - ReLU - conv3 1x1 (4x the width) -
  bn3, plus the shortcut, then ReLU."""

  features: int = 64  # The width of the 3x3 convolution; the block outputs 4x as many channels.
  strides: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    out_features = self.features * EXPANSION['bottleneck']
    shortcut = x
    y = self.conv(self.features, 1, 1, 'conv1')(x)
    y = nn.relu(self.batch_norm('bn1')(y, use_running_average=not train))
    y = self.conv(self.features, 3, self.strides, 'conv2')(y)
    y = nn.relu(self.batch_norm('bn2')(y, use_running_average=not train))
    y = self.conv(out_features, 1, 1, 'conv3')(y)
    y = self.batch_norm('bn3')(y, use_running_average=not train)
    if self.strides != 1 or x.shape[-1] != out_features:
      shortcut = Downsample(features=out_features, strides=self.strides, **self.settings(),
                            name='downsample')(x, train)
    return nn.relu(y + shortcut)


class Stage(_Layer):
  """torchvision's `layerN`: blocks named '0', '1', ...; the first one carries the stride."""

  block: str = 'basic'
  blocks: int = 2
  features: int = 64
  strides: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    block = BasicBlock if self.block == 'basic' else Bottleneck
    for i in range(self.blocks):
      x = block(features=self.features, strides=self.strides if i == 0 else 1,
                **self.settings(), name=str(i))(x, train)
    return x


class ResNet(_Layer):
  """ResNet with torchvision's module names (see the module docstring).

  Attributes:
    stage_sizes: blocks in each stage (layer1, layer2, ...); (2, 2, 2, 2) is resnet18.
    block: 'basic' (two 3x3 convolutions) or 'bottleneck' (1x1 - 3x3 - 1x1, 4x expansion).
    include_top: whether to end with `avgpool` (global average) and `fc`.
    pooling: without the top, None returns the last stage's feature map, 'avg' ('avgpool') and
      'max' ('global_max_pool') a global pooling of it, as Keras' `pooling`. Ignored with the top.
    num_outputs: units of `fc` (1000 for ImageNet weights).
    preprocess: a `cnnjax.imagenet.preprocess_input` mode applied first, as a layer named
      'preprocess_input' ('torch' for torchvision's weights: pixels in 0..255 in); None or
      'none' applies nothing.
    stem: 'imagenet' (conv1 7x7 stride 2 - bn1 - ReLU - maxpool 3x3 stride 2) or 'small'
      (conv1 3x3 stride 1 - bn1 - ReLU, no pooling, for small images).
    stem_features: channels of the stem's conv1 (64 in torchvision).
    widths: the (bottleneck) width of each stage's blocks; stage 1 has stride 1, the others 2.
    dtype: compute dtype of the convolutions, BatchNorms and `fc` (parameters stay float32).
    bn_momentum, bn_epsilon: BatchNorm's, in Flax's convention (torch momentum 0.1 is 0.9 here).
    axis_name: BatchNorm's `axis_name`, to average the batch statistics over devices under pmap
      / shard_map (None: the statistics of the batch the model sees).
    conv_implementation: how every convolution computes (`layers.Conv2D`'s `implementation`);
      None is `layers.CONV_IMPLEMENTATION`.
  """

  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block: str = 'basic'
  include_top: bool = True
  pooling: str | None = None
  num_outputs: int = 1000
  preprocess: str | None = None
  stem: str = 'imagenet'
  stem_features: int = 64
  widths: Sequence[int] = IMAGENET_WIDTHS

  def _check(self) -> None:
    for field, value, allowed in (('block', self.block, BLOCKS), ('stem', self.stem, STEMS),
                                  ('pooling', self.pooling, POOLINGS),
                                  ('preprocess', self.preprocess, PREPROCESS_MODES)):
      if value not in allowed:
        raise ConfigError(f'ResNet {field}={value!r} is not supported; use one of {allowed}')
    if len(self.widths) != len(self.stage_sizes):
      raise ConfigError(f'ResNet widths={tuple(self.widths)} and stage_sizes='
                        f'{tuple(self.stage_sizes)} must have one entry per stage')

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False, *, features_only: bool = False,
               from_features: bool = False) -> jax.Array:
    """Logits (N, num_outputs); without the top, the feature map or its global pooling.

    Args:
      images: (N, H, W, C) images (preprocessed, unless `preprocess` is set); with
        `from_features`, (N, C) features from `features_only`.
      train: BatchNorm normalizes with the batch's statistics and updates the moving averages
        (apply with `mutable=['batch_stats']`); else it uses the moving averages.
      features_only: return the globally averaged features right before `fc`.
      from_features: run `fc` alone on features computed by `features_only`.
    """
    self._check()
    if from_features:
      if not self.include_top:
        raise ConfigError('ResNet from_features runs the top (fc); build it with include_top=True')
      return self._fc(images)
    x = images
    if self.preprocess not in (None, 'none'):
      x = Preprocess(self.preprocess, name='preprocess_input')(x)
    if self.stem == 'imagenet':
      x = self.conv(self.stem_features, 7, 2, 'conv1')(x)
    else:
      x = self.conv(self.stem_features, 3, 1, 'conv1')(x)
    x = nn.relu(self.batch_norm('bn1')(x, use_running_average=not train))
    if self.stem == 'imagenet':
      x = layers.MaxPooling2D((3, 3), (2, 2), padding=_same(3), name='maxpool')(x)
    for i, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths)):
      x = Stage(block=self.block, blocks=blocks, features=width, strides=1 if i == 0 else 2,
                **self.settings(), name=f'layer{i + 1}')(x, train)
    if features_only or self.include_top or self.pooling == 'avg':
      x = layers.GlobalAveragePooling2D(name='avgpool')(x)
    elif self.pooling == 'max':
      x = layers.GlobalMaxPooling2D(name='global_max_pool')(x)
    if self.include_top and not features_only:
      return self._fc(x)
    return x.astype(jnp.float32)

  def _fc(self, features: jax.Array) -> jax.Array:
    logits = layers.Dense(self.num_outputs, dtype=self.dtype, name='fc')(features)
    return logits.astype(jnp.float32)


resnet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block='basic')
resnet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block='basic')
resnet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block='bottleneck')

# resnet_small: a ResNet-8 for 28x28x1 Fashion-MNIST (0..1 pixels, no preprocessing): conv1 3x3
# stride 1 (16) - bn1 - ReLU, then one BasicBlock per stage at 16 (28x28), 32 (14x14, stride 2,
# projected shortcut) and 64 channels (7x7, stride 2, projected), global average, fc 10: 77,754
# trainable parameters and 672 moving statistics. One block per stage for speed: XLA counts 6.8
# GFLOP and 1.0 GB of memory traffic per train step at batch 128 (14.5 GFLOP and 1.8 GB with two
# blocks per stage, the CIFAR ResNet-14). Measured 2026-11-29 on the 2-core CPU as launch.py runs
# (YNNPACK fusions off, huge pages), jitted value-and-grad + SGD step, batch 128, with other jobs
# loading the machine (load average 5-6): 255-520 ms per step wall, 10-11x the time of
# small_convnet's step at batch 64 measured alongside, which takes 11.1 ms alone (README); so about
# 110-125 ms per step, 42-47 s per epoch of 48,000 images, on an unloaded machine (not measured
# unloaded). Two blocks per stage took 17-24x small_convnet's step: 70-100 s per epoch.
# Convolutions 'auto' (taps for the one-channel stem, lax after; 'lax' alone measured the same).
resnet_small = functools.partial(
    ResNet, stage_sizes=(1, 1, 1), block='basic', stem='small', stem_features=16,
    widths=(16, 32, 64), num_outputs=10, conv_implementation='auto')
