"""The im2col and taps convolutions and their hand-written gradients against XLA's convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.models import convolution


def _value_and_grads(implementation, x, kernel, strides, padding):
  """The value and both gradients of a nonlinear function of the convolution."""
  def f(x, kernel):
    return jnp.sum(jnp.sin(convolution.convolve(x, kernel, strides, padding, implementation)))
  return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(x, kernel)


def _check_against_lax(implementation, x, kernel, strides, padding):
  """The named formulation's output and both gradients equal lax.conv's (up to rounding)."""
  reference = convolution.conv_lax(x, kernel, strides, padding)
  ours = convolution.convolve(x, kernel, strides, padding, implementation)
  assert ours.shape == reference.shape
  np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)
  (value, grads), (ref_value, ref_grads) = (
      _value_and_grads(impl, x, kernel, strides, padding) for impl in (implementation, 'lax'))
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  for ours, reference in zip(grads, ref_grads):
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('padding', ['VALID', 'SAME'])
@pytest.mark.parametrize('strides', [(1, 1), (2, 2), (2, 1)])
@pytest.mark.parametrize('channels', [1, 5])
@pytest.mark.parametrize('chunk_pixels', [1, convolution.MIN_CHUNK_PIXELS])
def test_im2col_matches_lax(padding, strides, channels, chunk_pixels, monkeypatch):
  """With one input channel (taps-first layout) or several, and with the kernel gradient summed
  over chunks of examples or in one product."""
  monkeypatch.setattr(convolution, 'MIN_CHUNK_PIXELS', chunk_pixels)
  x = jax.random.normal(jax.random.key(0), (8, 10, 7, channels))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, channels, 4))
  _check_against_lax('im2col', x, kernel, strides, padding)


@pytest.mark.parametrize('padding', ['VALID', 'SAME'])
@pytest.mark.parametrize('strides', [(1, 1), (2, 2), (2, 1)])
@pytest.mark.parametrize('channels', [1, 3])
def test_taps_matches_lax(padding, strides, channels):
  """The per-tap sum, with one input channel or several and a non-square kernel."""
  x = jax.random.normal(jax.random.key(0), (4, 9, 7, channels))
  kernel = jax.random.normal(jax.random.key(1), (3, 2, channels, 5))
  _check_against_lax('taps', x, kernel, strides, padding)


def test_kernel_gradient_chunks():
  """Chunks of at least MIN_CHUNK_PIXELS output pixels, a divisor of the batch, at most 8."""
  assert convolution._chunks(64, 11 * 11) == 1  # 7,744 pixels: halves would be under 4,096.
  assert convolution._chunks(32, 72 * 72) == 8
  assert convolution._chunks(6, 5_000) == 2
  assert convolution._chunks(7, 10_000) == 1  # No divisor of 7.


@pytest.mark.parametrize('conv', [convolution.conv_im2col, convolution.conv_taps])
def test_in_bfloat16(conv):
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 3, 2))
  out = conv(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), (1, 1), 'VALID')
  assert out.dtype == jnp.bfloat16
  grad = jax.grad(lambda k: jnp.sum(conv(
      x.astype(jnp.bfloat16), k, (1, 1), 'VALID').astype(jnp.float32)))(
          kernel.astype(jnp.bfloat16))
  assert grad.dtype == jnp.bfloat16
  np.testing.assert_allclose(
      grad.astype(jnp.float32),
      jax.grad(lambda k: jnp.sum(convolution.conv_lax(x, k, (1, 1), 'VALID')))(kernel),
      rtol=0.05, atol=0.1)


def test_unknown_implementation_and_padding():
  x, kernel = jnp.zeros((1, 5, 5, 1)), jnp.zeros((3, 3, 1, 1))
  with pytest.raises(ValueError, match="'fft' is not one of"):
    convolution.convolve(x, kernel, (1, 1), 'VALID', 'fft')
  with pytest.raises(ValueError, match="padding must be 'SAME' or 'VALID', not 'FULL'"):
    convolution.convolve(x, kernel, (1, 1), 'full', 'im2col')
