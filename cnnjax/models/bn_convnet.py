"""A VGG-style convnet with BatchNorm for small images: the model of the Fashion-MNIST speed run.

Each stage is airbench's `ConvGroup` (Keller Jordan's CIFAR-10 speed runs): a 3x3 'same'
convolution without bias, 2x2 max-pooling, BatchNorm, ReLU, then [3x3 convolution - BatchNorm -
ReLU] x (n - 1); after the stages Flatten, optional Dropout and the logits (a Dense layer).
BatchNorm after every convolution (as in torchvision's `vgg*_bn`) lets SGD take large steps from
the first epoch, which a run of a few epochs needs; pooling right after the first convolution
runs BatchNorm and ReLU on a 4x smaller tensor, which made the jitted train step 8-17% faster
than pooling last on the 2-core Intel Xeon (2026-11-30; timed by a scratch script that is not in
the repository).

Layers are named conv{stage}_{i}, pool{stage}, bn{stage}_{i}, flatten, dropout and predictions
(stages and convolutions counted from 1), so any layer's output can be asked for by name.
BatchNorm is `layers.BatchNorm` (Flax's), called as `bn(x, use_running_average=not train)`
so that the train step can freeze it (`cnnjax.training.steps.frozen_batch_norm`), with
`axis_name` for pmap (`Parallel.adapt_model`).

The defaults (widths 24, 48, 96, one convolution per stage: 61,042 trainable parameters and 336
moving statistics), registered as `bn_convnet`, are the speed run's model
(configs/fashion_mnist_speedrun.py, whose docstring says how they were chosen). Its runs train
at 2,437-3,043 images/s at batch 64 on the 2-core Intel Xeon (the whole of each run's epochs,
compilation included, 5 seeds), against 3,750-4,923 for the main job's small_convnet in the same
benchmark (benchmarks/fashion_mnist_speedrun.py,
benchmarks/results/fashion-mnist-speedrun-2026-11-30.json, 2026-11-30).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.models import layers


class BNConvNet(nn.Module):
  """Stages of Conv3x3 same - MaxPool2x2 - BatchNorm - ReLU [- (Conv - BatchNorm - ReLU)^(n-1)],
  then Flatten, [Dropout], Dense.

  Attributes:
    widths: output channels of each stage's convolutions.
    convs_per_stage: convolutions per stage (one number for all stages, or one per stage).
    num_outputs: units of the logit layer.
    dropout_rate: dropout before the logit layer; 0 leaves the layer out.
    bn_momentum, bn_epsilon: BatchNorm's, in Flax's convention (torch's momentum 0.1 is 0.9).
    dtype: compute dtype of the convolutions and the dense layer (parameters stay float32).
    axis_name: BatchNorm's `axis_name` (set under pmap by `Parallel.adapt_model`).
    conv_implementation: how each Conv2D computes (`cnnjax.models.convolution`; 'auto' takes
      'taps' for the one-channel input layer on the CPU).
    first_stride: 1 pools after the first convolution (airbench's ConvGroup); 2 makes the first
      convolution strided instead and leaves out the first stage's pooling (the same output size
      for even inputs, a quarter of the first stage's work).
  """

  widths: Sequence[int] = (24, 48, 96)
  convs_per_stage: int | Sequence[int] = 1
  num_outputs: int = 10
  dropout_rate: float = 0.0
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Any = jnp.float32
  axis_name: str | None = None
  conv_implementation: str | None = 'auto'
  first_stride: int = 1

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    counts = (self.convs_per_stage if not isinstance(self.convs_per_stage, int)
              else (self.convs_per_stage,) * len(self.widths))
    if len(counts) != len(self.widths):
      raise ValueError(f'convs_per_stage={self.convs_per_stage} gives {len(counts)} stages for '
                       f'{len(self.widths)} widths')
    if self.first_stride not in (1, 2):
      raise ValueError(f'first_stride must be 1 (pool after the first convolution) or 2 (a '
                       f'strided first convolution), not {self.first_stride}')
    x = images
    for stage, (width, count) in enumerate(zip(self.widths, counts), start=1):
      for i in range(1, count + 1):
        strided = stage == 1 and i == 1 and self.first_stride == 2
        x = layers.Conv2D(width, padding='SAME', strides=(2, 2) if strided else (1, 1),
                          activation=None, use_bias=False,
                          dtype=self.dtype, implementation=self.conv_implementation,
                          name=f'conv{stage}_{i}')(x)
        if i == 1 and not strided:
          x = layers.MaxPooling2D(name=f'pool{stage}')(x)
        x = layers.BatchNorm(momentum=self.bn_momentum, epsilon=self.bn_epsilon, dtype=self.dtype,
                         axis_name=self.axis_name,
                         name=f'bn{stage}_{i}')(x, use_running_average=not train)
        x = nn.relu(x)
    x = layers.Flatten(name='flatten')(x)
    if self.dropout_rate:
      x = layers.Dropout(self.dropout_rate, deterministic=not train, name='dropout')(x)
    logits = layers.Dense(self.num_outputs, dtype=self.dtype, name='predictions')(x)
    return logits.astype(jnp.float32)

