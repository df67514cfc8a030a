"""The layers cnnjax models are built from, named after their Keras counterparts.

Each layer is a Flax Linen module, so `capture_intermediates` records its output under the name the
model gives it: that is how `layer_outputs` and the summary see inside a model. Convolution and dense
layers apply their activation inside the module so that a recorded output is the activated one, as
in Keras. Kernels start from Glorot-uniform and biases from zeros, as Keras initializes them.
"""

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.rng import example_keys

Dtype = Any

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'sigmoid': nn.sigmoid,
    'softmax': nn.softmax,
    'linear': lambda x: x,
}


def _activation(name: str | None) -> Callable[[jax.Array], jax.Array]:
  if name is None:
    return ACTIVATIONS['linear']
  if name not in ACTIVATIONS:
    raise ValueError(f'unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}')
  return ACTIVATIONS[name]


# How a Conv2D that names no `implementation` computes its convolution (see `Conv2D`).
CONV_IMPLEMENTATIONS = ('lax', 'im2col', 'im2col_on_cpu')
CONV_IMPLEMENTATION = 'lax'


def _same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
  """(before, after) padding of one axis for 'SAME', as `lax.conv` and Keras pad."""
  out = -(-size // stride)
  total = max((out - 1) * stride + window - size, 0)
  return total // 2, total - total // 2


def conv_im2col(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                padding: str) -> jax.Array:
  """The convolution of `lax.conv_general_dilated` (NHWC, HWIO) as shifted slices and one matmul.

  The kh*kw shifted (strided) views of the input are concatenated along the channels, in the
  (row, column, channel) order of the kernel's first three axes, so that one dot with the kernel
  reshaped to (kh*kw*Cin, Cout) computes every output pixel.
  """
  kh, kw, cin, cout = kernel.shape
  sh, sw = strides
  if padding == 'SAME':
    x = jnp.pad(x, ((0, 0), _same_padding(x.shape[1], kh, sh), _same_padding(x.shape[2], kw, sw),
                    (0, 0)))
  elif padding != 'VALID':
    raise ValueError(f"padding must be 'SAME' or 'VALID', not {padding!r}")
  oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  views = [x[:, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw, :]
           for i in range(kh) for j in range(kw)]
  patches = views[0] if len(views) == 1 else jnp.concatenate(views, axis=-1)
  return jax.lax.dot_general(patches, kernel.reshape(kh * kw * cin, cout),
                             (((3,), (0,)), ((), ())))


class Conv2D(nn.Module):
  """2-D convolution over NHWC images with an HWIO kernel, then an optional activation.

  `implementation` chooses how the convolution is computed; the parameters and the result (up to
  float rounding) are the same either way: 'lax' is `lax.conv_general_dilated`, 'im2col' the
  shifted slices and one matmul of `conv_im2col`; 'im2col_on_cpu' is 'im2col' when JAX runs on
  the CPU and 'lax' on accelerators (whose convolution libraries beat a 9x larger im2col operand);
  None takes the module default `CONV_IMPLEMENTATION`, chosen by `benchmarks/speed_suite.py` on
  XLA:CPU.
  """

  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  padding: str = 'VALID'
  activation: str | None = 'relu'
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  implementation: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel_shape = (*self.kernel_size, x.shape[-1], self.features)
    kernel = self.param('kernel', nn.initializers.glorot_uniform(), kernel_shape,
                        self.param_dtype)
    implementation = self.implementation or CONV_IMPLEMENTATION
    if implementation == 'im2col_on_cpu':
      implementation = 'im2col' if jax.default_backend() == 'cpu' else 'lax'
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if implementation == 'im2col':
      y = conv_im2col(x, kernel, tuple(self.strides), self.padding.upper())
    elif implementation == 'lax':
      y = jax.lax.conv_general_dilated(
          x, kernel, window_strides=tuple(self.strides), padding=self.padding.upper(),
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    else:
      raise ValueError(f'Conv2D implementation={implementation!r} is not one of '
                       f'{CONV_IMPLEMENTATIONS}')
    if self.use_bias:
      bias = self.param('bias', nn.initializers.zeros, (self.features,), self.param_dtype)
      y = y + bias.astype(self.dtype)
    return _activation(self.activation)(y)


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
  are dropped. Written this way because the gradient of `reduce_window` max is slow on XLA:CPU,
  while the gradient of a plain reduction is cheap on every backend.
  """
  ph, pw = pool
  n, h, w, c = x.shape
  oh, ow = h // ph, w // pw
  x = x[:, :oh * ph, :ow * pw, :].reshape(n, oh, ph, ow, pw, c)
  return reducer(x, axis=(2, 4))


class MaxPooling2D(nn.Module):
  """Max pooling; stride defaults to the window and the border is 'valid', as in Keras."""

  pool_size: Sequence[int] = (2, 2)
  strides: Sequence[int] | None = None

  def __call__(self, x: jax.Array) -> jax.Array:
    strides = tuple(self.strides or self.pool_size)
    if strides == tuple(self.pool_size):
      return _pool_window(x, self.pool_size, jnp.max)
    # Overlapping pooling has no reshape form.
    return nn.max_pool(x, tuple(self.pool_size), strides=strides, padding='VALID')


class AveragePooling2D(nn.Module):
  """Average pooling; stride defaults to the window and the border is 'valid', as in Keras."""

  pool_size: Sequence[int] = (2, 2)
  strides: Sequence[int] | None = None

  def __call__(self, x: jax.Array) -> jax.Array:
    strides = tuple(self.strides or self.pool_size)
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
