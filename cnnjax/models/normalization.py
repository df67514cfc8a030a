"""Batch normalization in training mode with its per-channel sums as matrix products.

A BatchNorm layer in training reduces its input over every axis but the channels: the batch's
mean and mean square forward, and the sums of dy and dy * x_hat backward. XLA:CPU compiles such a
reduction of an NHWC tensor over (N, H, W) to a loop far below memory speed, while the same sums
as a product with a vector of ones run at the speed of its matrix-vector kernel: 36 against
4.4 ms for the sums of a 51 MB activation (16x112x112x64), and ResNet18's train step at 224 1.42x
faster (`benchmarks/batch_norm_sums.py`, 2-core Intel Xeon, jax 0.10.2, 2026-11-30; its output
benchmarks/results/batch-norm-sums-2026-11-30.json).

`batch_normalize` computes what Flax's `nn.BatchNorm` computes in training (the mean and the fast
variance E[x^2] - E[x]^2 clipped at 0, in float32; averaged over the devices of `axis_name` with
one `pmean`), with its gradient written out (`jax.custom_vjp`) so that the backward sums are
products too:

  x_hat = (x - mean) * rsqrt(var + eps),  y = x_hat * scale + bias,
  d_bias = sum(dy),  d_scale = sum(dy * x_hat),
  dx = scale * rsqrt(var + eps) * (dy - mean(dy) - x_hat * mean(dy * x_hat))

where the means run over the whole (multi-device) batch. `layers.BatchNorm` uses it on the CPU.
"""

import functools

import jax
import jax.numpy as jnp


def channel_sums(x: jax.Array) -> jax.Array:
  """The sums over the rows of `x` (M, C): a product with a vector of ones."""
  return jnp.dot(jnp.ones((x.shape[0],), x.dtype), x, precision=jax.lax.Precision.HIGHEST)


def _global_means(values: list[jax.Array], count: int, axis_name: str | None) -> list[jax.Array]:
  """Each of `values` (per-channel sums over this device's `count` rows) divided by the count:
  over the devices of `axis_name` too when given (equal counts: the mean of the means)."""
  means = jnp.stack(values) / count
  if axis_name is not None:
    means = jax.lax.pmean(means, axis_name)
  return list(means)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_normalize(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float,
                    axis_name: str | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(y, mean, var) of float32 rows `x` (M, C) normalized with their own statistics.

  `scale` and `bias` are (C,); `axis_name` averages the statistics over a mapped axis (pmap).
  """
  outputs, _ = _forward(x, scale, bias, epsilon, axis_name)
  return outputs


def _statistics(x, axis_name):
  mean, mean_square = _global_means([channel_sums(x), channel_sums(x * x)], x.shape[0],
                                    axis_name)
  return mean, jnp.maximum(0.0, mean_square - mean * mean)


def _forward(x, scale, bias, epsilon, axis_name):
  mean, var = _statistics(x, axis_name)
  inverse = jax.lax.rsqrt(var + epsilon)
  # The order of Flax's `_normalize`: (x - mean) * (rsqrt(var + eps) * scale) + bias.
  y = (x - mean) * (inverse * scale) + bias
  return (y, mean, var), (x, mean, inverse, scale)


def _backward(epsilon, axis_name, residuals, cotangents):
  del epsilon
  x, mean, inverse, scale = residuals
  dy, d_mean, d_var = cotangents
  x_hat = (x - mean) * inverse
  d_bias, d_scale = channel_sums(dy), channel_sums(dy * x_hat)
  mean_dy, mean_dy_x_hat = _global_means([d_bias, d_scale], x.shape[0], axis_name)
  dx = (scale * inverse) * (dy - mean_dy - x_hat * mean_dy_x_hat)
  # The statistics' own cotangents (zero when they only feed the moving averages).
  count = x.shape[0] if axis_name is None else jax.lax.psum(x.shape[0], axis_name)
  if axis_name is not None:
    d_mean, d_var = jax.lax.psum(d_mean, axis_name), jax.lax.psum(d_var, axis_name)
  dx = dx + (d_mean + 2.0 * d_var * (x - mean)) / count
  return dx, d_scale, d_bias


batch_normalize.defvjp(_forward, _backward)
