"""The plain convnets of the reference material: stacks of 3x3 convolutions and 2x2 max-pooling.

One module, `ConvNet`, covers them all; the named variants below fix its fields to the exact
architectures of SPEC.md section 2 (parameter counts in brackets):

- `small_convnet_base`, `small_convnet`, `small_convnet_gap`: Conv32-Pool-Conv64-Pool-Conv64 on 28x28x1 [55,744], with a Flatten-Dense64-Dense10
  head [93,322] or a GlobalAveragePooling-Dense10 head [56,394];
- `mnist_convnet`: the 2nd-edition MNIST convnet, Conv32-P-Conv64-P-Conv128-Flatten-Dense10 [104,202];
- `cats_vs_dogs_150`: Conv32/64/128/128 each pooled, Flatten-[Dropout]-Dense512-Dense1 [3,453,121];
- `cats_vs_dogs_180`: Rescaling(1/255), Conv32/64/128/256 pooled, Conv256, Flatten-[Dropout]-Dense1
  [991,041].

Layers are named conv1.., pool1.., flatten / global_average_pooling, dropout, dense1.., predictions,
so any layer's output can be asked for by name. The model returns logits: the losses take logits.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.models import convolution, layers


class ConvNet(nn.Module):
  """[Rescaling] - (Conv3x3 ReLU - MaxPool2x2)* - head.

  Attributes:
    conv_features: output channels of each 3x3 'valid' convolution.
    num_outputs: units of the final (logit) layer: classes, or 1 for a binary problem.
    pool_after_last_conv: whether the last convolution is followed by a pooling layer too.
    head: 'flatten' (Flatten then dense layers), 'gap' (GlobalAveragePooling then dense layers) or
      'none' (the convolutional base alone: the model returns its feature maps).
    hidden_units: ReLU dense layers between the flattened features and the logits.
    dropout_rate: dropout before the dense layers; 0 leaves the layer out.
    rescale: a Rescaling factor applied to the input first (1/255 for raw pixels); None: none.
    dtype: compute dtype of the convolutions and dense layers (parameters stay float32).
    conv_implementation: how every Conv2D computes ('lax', 'im2col', 'taps', 'auto'; see
      `cnnjax.models.convolution`); None takes `layers.CONV_IMPLEMENTATION`. Same parameters and,
      up to float rounding, same outputs and gradients. The default, 'auto', takes per layer
      the formulation measured fastest on this machine for its shapes (`cnnjax.tuning`), or
      where measuring is off the rules of `convolution.resolve`: on the CPU as `launch.py` runs
      it (XLA's YNNPACK fusions off) 'taps' for a one-channel input layer, which made
      small_convnet's train step 1.12x faster, and 'lax' for the others; with the fusions on,
      im2col (1.35x small_convnet and 1.7x cats_vs_dogs_150 against 'lax' there); 'lax' on
      accelerators (2-core AMD EPYC, 2026-11-24).

  In training (`train=True`) each pooled convolution max-pools before its bias and ReLU
  (`layers.Conv2D`'s `pool`): the same values, with the bias, the ReLU and their gradients on a
  4x smaller tensor, which made the train steps of small_convnet and cats_vs_dogs_150 6% and 8%
  faster on XLA:CPU (2026-11-24). The output recorded for such a conv layer (`layer_outputs`) is
  then the pooled one; inspection runs with `train=False`, where every layer records its own
  output as in Keras.
  """

  conv_features: Sequence[int]
  num_outputs: int
  pool_after_last_conv: bool = False
  head: str = 'flatten'
  hidden_units: Sequence[int] = ()
  dropout_rate: float = 0.0
  rescale: float | None = None
  dtype: Any = jnp.float32
  conv_implementation: str | None = 'auto'

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    x = images
    if self.rescale is not None:
      x = layers.Rescaling(self.rescale, name='rescaling')(x)
    conv = self.conv_implementation or layers.CONV_IMPLEMENTATION
    for i, features in enumerate(self.conv_features, start=1):
      layer = layers.Conv2D(features, dtype=self.dtype, implementation=conv, name=f'conv{i}')
      if i == len(self.conv_features) and not self.pool_after_last_conv:
        x = layer(x)
        continue
      # The pooling formulation that XLA:CPU runs fastest next to this layer's convolution (see
      # `layers.MaxPooling2D`): max of slices after the fused formulations, reshape after lax.
      fused = convolution.choose(
          conv, x.shape, (*layer.kernel_size, x.shape[-1], features), layer.strides,
          layer.padding, layer.dilation, self.dtype, differentiated=train,
          measure=not self.is_initializing() and isinstance(x, jax.core.Tracer)) != 'lax'
      pooling = layers.MaxPooling2D(implementation='slices' if fused else 'reshape',
                                    name=f'pool{i}')
      # In training, pooled before the bias and ReLU: same values, a 6-8% faster train step (see
      # the class docstring).
      x = layer(x, pool=pooling.pool) if train else pooling(layer(x))
    if self.head == 'none':
      return x
    if self.head == 'flatten':
      x = layers.Flatten(name='flatten')(x)
    elif self.head == 'gap':
      x = layers.GlobalAveragePooling2D(name='global_average_pooling')(x)
    else:
      raise ValueError(f"head must be 'flatten', 'gap' or 'none', not {self.head!r}")
    if self.dropout_rate:
      x = layers.Dropout(self.dropout_rate, deterministic=not train, name='dropout')(x)
    for i, units in enumerate(self.hidden_units, start=1):
      x = layers.Dense(units, activation='relu', dtype=self.dtype, name=f'dense{i}')(x)
    logits = layers.Dense(self.num_outputs, dtype=self.dtype, name='predictions')(x)
    return logits.astype(jnp.float32)


small_convnet_base_features = (32, 64, 64)

small_convnet_base = functools.partial(
    ConvNet, conv_features=small_convnet_base_features, num_outputs=0, head='none')
small_convnet = functools.partial(
    ConvNet, conv_features=small_convnet_base_features, num_outputs=10, head='flatten',
    hidden_units=(64,))
small_convnet_gap = functools.partial(
    ConvNet, conv_features=small_convnet_base_features, num_outputs=10, head='gap')
mnist_convnet = functools.partial(
    ConvNet, conv_features=(32, 64, 128), num_outputs=10, head='flatten')
cats_vs_dogs_150 = functools.partial(
    ConvNet, conv_features=(32, 64, 128, 128), pool_after_last_conv=True, num_outputs=1,
    head='flatten', hidden_units=(512,))
cats_vs_dogs_180 = functools.partial(
    ConvNet, conv_features=(32, 64, 128, 256, 256), num_outputs=1, head='flatten',
    rescale=1 / 255)
