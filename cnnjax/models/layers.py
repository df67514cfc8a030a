"""The layers cnnjax models are built from, named after their Keras counterparts.

Each layer is a Flax Linen module, so `capture_intermediates` records its output under the name the
model gives it: that is how `layer_outputs` and the summary see inside a model. Convolution and dense
layers apply their activation inside the module so that a recorded output is the activated one, as
in Keras. Kernels start from Glorot-uniform and biases from zeros, as Keras initializes them.
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.models import convolution
from cnnjax.models import normalization
from cnnjax.models import pooling
from cnnjax.rng import example_keys

Dtype = Any

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'sigmoid': nn.sigmoid,
    'softmax': nn.softmax,
    'linear': lambda x: x,
}


# Activations that commute with max pooling (see `Conv2D`'s `pool`); None is linear.
NON_DECREASING = frozenset({'relu', 'sigmoid', 'linear', None})


def _activation(name: str | None) -> Callable[[jax.Array], jax.Array]:
  if name is None:
    return ACTIVATIONS['linear']
  if name not in ACTIVATIONS:
    raise ValueError(f'unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}')
  return ACTIVATIONS[name]


# How a Conv2D that names no `implementation` computes its convolution (see `Conv2D`).
CONV_IMPLEMENTATIONS = convolution.IMPLEMENTATIONS
CONV_IMPLEMENTATION = 'lax'


class Conv2D(nn.Module):
  """2-D convolution over NHWC images with an HWIO kernel, then an optional activation.

  `implementation` chooses how the convolution is computed (`cnnjax.models.convolution`); the
  parameters, the result and the gradients (up to float rounding) are the same either way: 'lax'
  is `lax.conv_general_dilated`, 'im2col' shifted slices and matrix products and 'taps' a sum of
  per-tap products, both with hand-written backward passes; 'auto' takes the one measured fastest
  on this machine for the layer's shapes (`convolution.choose`, `cnnjax.tuning`); None takes the
  module default `CONV_IMPLEMENTATION`.

  `padding` is 'VALID', 'SAME' or explicit zero padding ((top, bottom), (left, right)), e.g.
  ((3, 3), (3, 3)) for torch's 7x7 stride-2 `padding=3` (lax's 'SAME' pads that (2, 3) on an even
  input). `kernel_init` defaults to Keras' Glorot-uniform.

  `dilation` (rows, columns; Keras' `dilation_rate`, torch's `dilation`) puts the kernel's taps
  that many pixels apart: a 3x3 kernel with dilation 2 sees a 5x5 window through 9 taps, the
  effective size being (k - 1) * d + 1, which is what 'SAME' pads for (as Keras does). The
  parameters do not depend on it, so weight files load whatever the dilation. Every
  implementation supports it, with strides too (as torch; Keras refuses strides > 1 with it).
  """

  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  padding: str | Sequence[tuple[int, int]] = 'VALID'
  activation: str | None = 'relu'
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  implementation: str | None = None
  kernel_init: Callable = nn.initializers.glorot_uniform()
  dilation: Sequence[int] = (1, 1)

  @nn.compact
  def __call__(self, x: jax.Array,
               pool: Callable[[jax.Array], jax.Array] | None = None) -> jax.Array:
    """The activated convolution of `x`.

    Args:
      x: (N, H, W, Cin) images or feature maps.
      pool: a max pooling to apply to the convolution before the bias and the activation: the
        same values as pooling the activated output, since the maximum commutes with adding a
        per-channel bias and with a non-decreasing activation, but the bias and activation (and
        their gradients) run on the pooled, smaller tensor. Same gradients up to ties.
    """
    try:
      dilation = convolution.dilation_pair(self.dilation)
    except ValueError as error:
      raise ValueError(f'Conv2D {self.name}: {error}') from None
    kernel_shape = (*self.kernel_size, x.shape[-1], self.features)
    kernel = self.param('kernel', self.kernel_init, kernel_shape, self.param_dtype)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    # Initialization computes once: its convolutions are not worth measuring (cnnjax.tuning).
    y = convolution.convolve(x, kernel, self.strides, self.padding,
                             self.implementation or CONV_IMPLEMENTATION, dilation,
                             measure=not self.is_initializing())
    if pool is not None:
      if self.activation not in NON_DECREASING:
        raise ValueError(f'Conv2D {self.name}: pooling before the activation needs a '
                         f'non-decreasing activation (relu, sigmoid, linear or None), not '
                         f'{self.activation!r}')
      y = pool(y)
    if self.use_bias:
      bias = self.param('bias', nn.initializers.zeros, (self.features,), self.param_dtype)
      y = y + bias.astype(self.dtype)
    return _activation(self.activation)(y)


# Whether `BatchNorm` computes its training-mode sums as matrix products on the CPU
# (`cnnjax.models.normalization`); False runs Flax's own code everywhere (read when a model is
# traced; benchmarks/batch_norm_sums.py compares the two).
BATCH_NORM_SUMS_AS_PRODUCTS = True


class BatchNorm(nn.BatchNorm):
  """Flax's `nn.BatchNorm`: the same fields, variables and results; on the CPU, training mode
  computes its per-channel sums as matrix products (`cnnjax.models.normalization`), which
  XLA:CPU runs many times faster than its reductions over (N, H, W).

  Inference mode, masks, feature axes other than the last, `axis_index_groups`, the exact
  variance and accelerators take Flax's own code.
  """

  @nn.compact
  def __call__(self, x, use_running_average=None, *, mask=None):
    use_running_average = nn.merge_param('use_running_average', self.use_running_average,
                                         use_running_average)
    if (use_running_average or mask is not None or self.is_initializing()
        or not BATCH_NORM_SUMS_AS_PRODUCTS or jax.default_backend() != 'cpu'
        or self.axis not in (-1, x.ndim - 1)
        or self.axis_index_groups is not None or not self.use_fast_variance
        or not self.force_float32_reductions):
      return super().__call__(x, use_running_average, mask=mask)
    features = x.shape[-1]
    moving_mean = self.variable('batch_stats', 'mean', lambda s: jnp.zeros(s, jnp.float32),
                                (features,))
    moving_var = self.variable('batch_stats', 'var', lambda s: jnp.ones(s, jnp.float32),
                               (features,))
    params = []
    scale = jnp.ones((features,), jnp.float32)
    if self.use_scale:
      scale = self.param('scale', self.scale_init, (features,), self.param_dtype)
      params.append(scale)
    bias = jnp.zeros((features,), jnp.float32)
    if self.use_bias:
      bias = self.param('bias', self.bias_init, (features,), self.param_dtype)
      params.append(bias)
    rows = x.reshape(-1, features).astype(jnp.promote_types(x.dtype, jnp.float32))
    y, mean, var = normalization.batch_normalize(rows, scale, bias, self.epsilon, self.axis_name)
    moving_mean.value = self.momentum * moving_mean.value + (1 - self.momentum) * mean
    moving_var.value = self.momentum * moving_var.value + (1 - self.momentum) * var
    dtype = nn.dtypes.canonicalize_dtype(x, *params, dtype=self.dtype)
    return y.reshape(x.shape).astype(dtype)


class Dense(nn.Module):
  """Fully connected layer, then an optional activation."""

  features: int
  activation: str | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', nn.initializers.glorot_uniform(),
                        (x.shape[-1], self.features), self.param_dtype)
    bias = self.param('bias', nn.initializers.zeros, (self.features,), self.param_dtype)
    y = jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype)) + bias.astype(self.dtype)
    return _activation(self.activation)(y)


def _pool_window(x: jax.Array, pool: Sequence[int], reducer: Callable) -> jax.Array:
  """Non-overlapping pooling (stride == window) as a reshape and a reduction.

  Equivalent to `reduce_window` with 'VALID' padding: rows and columns that do not fill a window
  are dropped. Written this way because the gradient of `reduce_window` is slow on XLA:CPU, while
  the gradient of a plain reduction is cheap on every backend.
  """
  ph, pw = pool
  n, h, w, c = x.shape
  oh, ow = h // ph, w // pw
  x = x[:, :oh * ph, :ow * pw, :].reshape(n, oh, ph, ow, pw, c)
  return reducer(x, axis=(2, 4))


def _max_of_window_slices(x: jax.Array, pool: Sequence[int]) -> jax.Array:
  """Non-overlapping max pooling as the elementwise maximum of the ph*pw strided slices.

  The same result as `_pool_window(x, pool, jnp.max)`; its gradient is a chain of elementwise
  selects, where the reduction's gradient compares the input with the broadcast maximum, counts
  the ties and divides. Tied maxima share the gradient, as in the reduction, though not always
  equally (maxima are taken pairwise).
  """
  ph, pw = pool
  oh, ow = x.shape[1] // ph, x.shape[2] // pw
  slices = [x[:, i:oh * ph:ph, j:ow * pw:pw, :] for i in range(ph) for j in range(pw)]
  return functools.reduce(jnp.maximum, slices)


class MaxPooling2D(nn.Module):
  """Max pooling; stride defaults to the window and the border is 'valid', as in Keras.

  Non-overlapping windows are pooled as a reshape and a maximum ('reshape') or as the maximum of
  strided slices ('slices'): same result and, without ties, same gradient. Which one XLA:CPU runs
  faster depends on the neighbours: measured on 2 cores (2026-11-24, train steps),
  'slices' is 5-7% faster between im2col convolutions (small_convnet, cats_vs_dogs_150), whose
  patches are built from the pooled slices, and 'reshape' 14% faster between `lax` convolutions
  (vgg_small). After a 'taps' convolution, 'slices' lets XLA fuse the taps, the pooling, the bias
  and the ReLU into one loop: small_convnet's conv1 with its pooling, forward and gradient, took
  1.5 ms against 4.4 ms with 'reshape' (batch 64).

  `padding` other than 'VALID' ('SAME', or explicit ((top, bottom), (left, right)) as torch's
  `MaxPool2d(padding=...)`) pads with -inf. Overlapping or padded windows (ResNet's and
  InceptionV3's 3x3 stride 2) are pooled on the CPU as the maximum of the window's strided taps
  with a hand-written gradient (`pooling.max_pool_taps`: XLA:CPU's `select_and_scatter` gradient
  was 4x slower), elsewhere with `nn.max_pool` (`reduce_window`); equal results and gradients.
  """

  pool_size: Sequence[int] = (2, 2)
  strides: Sequence[int] | None = None
  implementation: str = 'reshape'
  padding: str | Sequence[tuple[int, int]] = 'VALID'

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.pool(x)

  def pool(self, x: jax.Array) -> jax.Array:
    """The pooling itself, as a method that records no output (for `Conv2D`'s `pool`)."""
    window, strides = tuple(self.pool_size), tuple(self.strides or self.pool_size)
    padding = convolution.explicit_padding(self.padding)
    if padding == 'VALID' and strides == window:
      if self.implementation == 'slices':
        return _max_of_window_slices(x, window)
      if self.implementation != 'reshape':
        raise ValueError(f"MaxPooling2D implementation must be 'reshape' or 'slices', not "
                         f"{self.implementation!r}")
      return _pool_window(x, window, jnp.max)
    # Overlapping or padded windows.
    if jax.default_backend() == 'cpu':
      pads = convolution.explicit_pads(x.shape[1:3], window, strides, padding)
      return pooling.max_pool_taps(x, window, strides, pads)
    return nn.max_pool(x, window, strides=strides, padding=padding)


class AveragePooling2D(nn.Module):
  """Average pooling; stride defaults to the window and the border is 'valid', as in Keras.

  With `padding='SAME'` (Keras' 'same', e.g. InceptionV3's 3x3 stride-1 branch pools) a window at
  the border averages only the cells inside the image, dividing by their number, as Keras does
  (torch's `AvgPool2d` default, `count_include_pad=True`, divides by the whole window instead).
  """

  pool_size: Sequence[int] = (2, 2)
  strides: Sequence[int] | None = None
  padding: str = 'VALID'

  def __call__(self, x: jax.Array) -> jax.Array:
    strides = tuple(self.strides or self.pool_size)
    padding = self.padding.upper()
    if padding not in ('VALID', 'SAME'):
      raise ValueError(f"AveragePooling2D padding must be 'valid' or 'same', not {self.padding!r}")
    if padding == 'SAME':
      return nn.avg_pool(x, tuple(self.pool_size), strides=strides, padding='SAME',
                         count_include_pad=False)
    if strides == tuple(self.pool_size):
      return _pool_window(x, self.pool_size, jnp.mean)
    return nn.avg_pool(x, tuple(self.pool_size), strides=strides, padding='VALID')


class GlobalAveragePooling2D(nn.Module):
  """Mean over the spatial axes: (N, H, W, C) -> (N, C)."""

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.mean(x, axis=(1, 2))


class GlobalMaxPooling2D(nn.Module):
  """Maximum over the spatial axes: (N, H, W, C) -> (N, C)."""

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.max(x, axis=(1, 2))


class Flatten(nn.Module):
  """(N, ...) -> (N, prod(...)), in row-major NHWC order as Keras flattens channels-last maps."""

  def __call__(self, x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


class Rescaling(nn.Module):
  """x * scale + offset, as Keras' Rescaling layer (e.g. scale 1/255 for 0..255 pixels)."""

  scale: float
  offset: float = 0.0

  def __call__(self, x: jax.Array) -> jax.Array:
    return x * self.scale + self.offset


class Dropout(nn.Module):
  """Inverted dropout with one random key per example, derived from its index in the global batch.

  Unlike `flax.linen.Dropout`, which draws one mask for the batch it sees, the mask of an example
  does not depend on how the batch is split across devices (see `cnnjax.rng`), so single-device,
  sharded and pmap training agree. Draws from the 'dropout' random stream when `deterministic` is
  False; identity otherwise.
  """

  rate: float
  deterministic: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.deterministic or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    keys = example_keys(self.make_rng('dropout'), x.shape[0])
    mask = jax.vmap(lambda k: jax.random.bernoulli(k, keep, x.shape[1:]))(keys)
    return jnp.where(mask, x / keep, jnp.zeros_like(x))


class ZeroPadding2D(nn.Module):
  """Zeros around the spatial axes, as Keras' ZeroPadding2D: an int pads every side by it, a pair
  of pairs ((top, bottom), (left, right)) pads each side by its own amount."""

  padding: int | Sequence[Sequence[int]] = 1

  def __call__(self, x: jax.Array) -> jax.Array:
    if isinstance(self.padding, int):
      rows = columns = (self.padding, self.padding)
    else:
      rows, columns = (tuple(p) for p in self.padding)
    return jnp.pad(x, ((0, 0), rows, columns, (0, 0)))


class Activation(nn.Module):
  """An activation as a layer of its own (a name in `ACTIVATIONS`), as Keras' Activation."""

  activation: str

  def __call__(self, x: jax.Array) -> jax.Array:
    return _activation(self.activation)(x)


class Add(nn.Module):
  """The elementwise sum of a list of same-shaped tensors, as Keras' Add."""

  def __call__(self, inputs: Sequence[jax.Array]) -> jax.Array:
    return functools.reduce(jnp.add, inputs)


class Concatenate(nn.Module):
  """A list of tensors joined along the channel axis, as Keras' Concatenate (InceptionV3's
  `mixed0` .. `mixed10` join its parallel branches this way)."""

  axis: int = -1

  def __call__(self, inputs: Sequence[jax.Array]) -> jax.Array:
    return jnp.concatenate(list(inputs), axis=self.axis)
