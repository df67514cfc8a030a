"""Dilated convolutions: `layers.Conv2D(dilation=...)` against torch.nn.functional.conv2d, for every
implementation and both paddings, and the gradients of 'im2col' and 'taps' against 'lax'."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnjax.models import convolution, layers

# (dilation, strides, input channels, kernel size): square and unequal dilations, a stride with a
# dilation (torch allows it), one channel (im2col's taps-first layout) and several, a 3x2 kernel.
CASES = [((2, 2), (1, 1), 1, (3, 3)), ((1, 3), (1, 1), 3, (3, 2)), ((3, 2), (2, 2), 2, (3, 3))]
IMPLEMENTATIONS = ('lax', 'im2col', 'taps')


def keras_same_padding(size, kernel, stride, dilation):
  """(before, after) of Keras' / TensorFlow's 'same' for one axis: the output has ceil(size /
  stride) pixels, the effective kernel (k - 1) * d + 1 fits, the odd pixel goes after."""
  effective = (kernel - 1) * dilation + 1
  total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
  return total // 2, total - total // 2


def torch_conv(x, kernel, bias, strides, padding, dilation):
  """torch's conv2d of NHWC `x` with the HWIO `kernel`, back in NHWC."""
  xt = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2)
  wt = torch.from_numpy(np.array(kernel)).permute(3, 2, 0, 1)
  bt = torch.from_numpy(np.array(bias))
  if padding == 'VALID':
    out = F.conv2d(xt, wt, bt, stride=strides, padding=0, dilation=dilation)
  elif strides == (1, 1):
    out = F.conv2d(xt, wt, bt, padding='same', dilation=dilation)  # torch's own 'same'.
  else:  # torch has no 'same' with strides: pad as Keras does.
    rows = keras_same_padding(x.shape[1], kernel.shape[0], strides[0], dilation[0])
    cols = keras_same_padding(x.shape[2], kernel.shape[1], strides[1], dilation[1])
    out = F.conv2d(F.pad(xt, (*cols, *rows)), wt, bt, stride=strides, dilation=dilation)
  return out.permute(0, 2, 3, 1).numpy()


def _layer(implementation, kernel_size, strides, padding, dilation):
  return layers.Conv2D(4, kernel_size, strides, padding=padding, activation=None,
                       implementation=implementation, dilation=dilation)


def _inputs(channels, kernel_size):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 13, 11, channels)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(*kernel_size, channels, 4)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=4), jnp.float32)
  return x, {'params': {'kernel': kernel, 'bias': bias}}


@pytest.mark.parametrize('padding', ['VALID', 'SAME'])
@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
@pytest.mark.parametrize('dilation, strides, channels, kernel_size', CASES)
def test_conv2d_dilation_matches_torch(implementation, padding, dilation, strides, channels,
                                       kernel_size):
  x, variables = _inputs(channels, kernel_size)
  layer = _layer(implementation, kernel_size, strides, padding, dilation)
  shapes = jax.eval_shape(layer.init, jax.random.key(3), x)
  # The parameters do not depend on the dilation.
  assert jax.tree.map(jnp.shape, shapes) == jax.tree.map(jnp.shape, variables)
  ours = layer.apply(variables, x)
  expected = torch_conv(x, variables['params']['kernel'], variables['params']['bias'], strides,
                        padding, dilation)
  assert ours.shape == expected.shape
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('padding', ['VALID', 'SAME', ((2, 1), (0, 3))])
@pytest.mark.parametrize('implementation', ['im2col', 'taps'])
@pytest.mark.parametrize('dilation, strides, channels, kernel_size', CASES)
def test_dilated_gradients_agree_across_implementations(implementation, padding, dilation,
                                                        strides, channels, kernel_size):
  """The hand-written backward passes of 'im2col' and 'taps' against JAX's gradient of 'lax'."""
  x, variables = _inputs(channels, kernel_size)

  def loss(implementation, variables, x):
    layer = _layer(implementation, kernel_size, strides, padding, dilation)
    return jnp.sum(jnp.sin(layer.apply(variables, x)))

  ours = jax.grad(loss, argnums=(1, 2))(implementation, variables, x)
  reference = jax.grad(loss, argnums=(1, 2))('lax', variables, x)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_dilated_gradient_matches_torch():
  """'lax''s gradients of a dilated, strided 'SAME' convolution against torch's autograd."""
  dilation, strides, channels, kernel_size = CASES[2]
  x, variables = _inputs(channels, kernel_size)
  layer = _layer('lax', kernel_size, strides, 'SAME', dilation)
  d_variables, d_x = jax.grad(lambda v, x: jnp.sum(jnp.sin(layer.apply(v, x))), argnums=(0, 1))(
      variables, x)
  xt = torch.tensor(np.asarray(x), requires_grad=True)
  kt = torch.tensor(np.asarray(variables['params']['kernel']), requires_grad=True)
  rows = keras_same_padding(x.shape[1], kernel_size[0], strides[0], dilation[0])
  cols = keras_same_padding(x.shape[2], kernel_size[1], strides[1], dilation[1])
  out = F.conv2d(F.pad(xt.permute(0, 3, 1, 2), (*cols, *rows)), kt.permute(3, 2, 0, 1),
                 torch.from_numpy(np.array(variables['params']['bias'])), stride=strides,
                 dilation=dilation)
  torch.sin(out).sum().backward()
  np.testing.assert_allclose(d_x, xt.grad.numpy(), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(d_variables['params']['kernel'], kt.grad.numpy(), rtol=1e-4,
                             atol=1e-4)


def test_same_padding_is_for_the_effective_kernel():
  """A 3x3 kernel with dilation 3 spans 7x7: 'SAME' pads 3 on each side, as Keras does, and the
  output keeps the input's size."""
  assert convolution.effective_size(3, 3) == 7
  assert keras_same_padding(12, 3, 1, 3) == (3, 3)
  x = jnp.ones((1, 12, 12, 1))
  y = _layer('taps', (3, 3), (1, 1), 'SAME', (3, 3)).apply(
      {'params': {'kernel': jnp.ones((3, 3, 1, 4)), 'bias': jnp.zeros(4)}}, x)
  assert y.shape == (1, 12, 12, 4)
  # The corner sees the 4 taps of its window that fall inside the image; the centre all 9.
  assert y[0, 0, 0, 0] == 4 and y[0, 6, 6, 0] == 9


def test_bad_dilation_names_the_layer_and_value():
  x = jnp.ones((1, 8, 8, 1))
  for bad in ((0, 1), (2,), 'two', (1.5, 1)):
    layer = layers.Conv2D(2, dilation=bad, name='conv_dilated')
    with pytest.raises(ValueError, match=r'Conv2D conv_dilated: dilation must be .*'
                       + repr(bad).replace('(', r'\(').replace(')', r'\)').replace('.', r'\.')):
      layer.init(jax.random.key(0), x)
  with pytest.raises(ValueError, match='spans 7x7 pixels, more than the 5x5 input'):
    convolution.convolve(jnp.ones((1, 5, 5, 1)), jnp.ones((3, 3, 1, 1)), (1, 1), 'VALID', 'taps',
                         (3, 3))


def test_an_int_dilation_means_both_axes():
  assert convolution.dilation_pair(2) == (2, 2)
  assert convolution.dilation_pair([1, 3]) == (1, 3)
