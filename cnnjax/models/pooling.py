"""Max pooling over overlapping or padded windows as the maximum of the window's strided taps.

ResNet's stem pools 3x3 windows with stride 2 (and torch's padding 1), InceptionV3 and Keras'
ResNet50 3x3 with stride 2: windows that overlap. XLA computes that pooling as a `reduce_window`
and its gradient as a `select_and_scatter`, which XLA:CPU expands into a scatter whose indices are
built from four iotas of the input's size, concatenated. `benchmarks/max_pool_taps.py`
(`benchmarks/results/max-pool-taps-2026-11-30.json`, 2-core Intel Xeon, load 1.6-1.9 with itself)
on ResNet18's stem (16 x 112 x 112 x 64, float32): forward and gradient 159 ms as XLA's, 113 ms
as below; the whole ResNet18 train step at 224 (batch 16) 1,305 against 1,169 ms (1.12x).

`max_pool_taps` takes the elementwise maximum of the kh*kw strided views of the (-inf) padded
input, one per window position (tap), which XLA fuses into one loop, and records for each output
the first tap (row-major window order) holding the maximum: the element `select_and_scatter`
picks with its >= comparison, and the one torch's `max_pool2d` picks. The gradient is written by
hand (`jax.custom_vjp`) to send each output's gradient to that tap, so results and gradients are
equal, up to the order in which overlapping windows' contributions are added (float rounding).
It is built phase by phase: the padded input's pixels (r, c) with (r % sh, c % sw) = (a, b) take
only the taps i = a + q * sh, j = b + v * sw, of the outputs (r // sh - q, c // sw - v), so each
phase is a sum of shifted copies of those taps' shares on the output's grid, and the sh * sw
phases are interleaved by padding each with stride - 1 zeros between elements and summing. (A
variant that pads all kh * kw shares to the input's size and sums them took a third of the time
on the pooling alone but none less in the train step, where XLA fused it worse; 2026-11-30,
scratch comparison.)

`layers.MaxPooling2D` uses it on the CPU; on accelerators it keeps `reduce_window` (XLA's GPU and
TPU backends lower it to their own pooling kernels).
"""

import functools
from typing import Sequence

import jax
from jax import lax
import jax.numpy as jnp

Pads = Sequence[tuple[int, int]]


def _output_size(x: jax.Array, window: Sequence[int], strides: Sequence[int],
                 padding: Pads) -> tuple[int, int]:
  return tuple((x.shape[1 + a] + sum(padding[a]) - window[a]) // strides[a] + 1 for a in (0, 1))


def _padded(x: jax.Array, padding: Pads) -> jax.Array:
  return jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=-jnp.inf)


def _taps(padded: jax.Array, window: Sequence[int], strides: Sequence[int],
          out: tuple[int, int]) -> list[tuple[int, int, jax.Array]]:
  """(row, column, view) for each window position: the view holds that tap of every window."""
  (kh, kw), (sh, sw), (oh, ow) = window, strides, out
  return [(i, j, padded[:, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw, :])
          for i in range(kh) for j in range(kw)]


def max_pool_taps(x: jax.Array, window: Sequence[int], strides: Sequence[int],
                  padding: Pads) -> jax.Array:
  """Max pooling of NHWC `x` over `window` with `strides` after padding with -inf.

  Args:
    x: (N, H, W, C).
    window: (kh, kw).
    strides: (sh, sw).
    padding: explicit ((top, bottom), (left, right)).
  """
  return _max_pool(x, tuple(window), tuple(strides), tuple(map(tuple, padding)), x.shape[1:3])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _max_pool(x, window, strides, padding, size):
  del size  # The backward pass's: the input's height and width.
  return _forward(x, window, strides, padding, None)[0]


def _forward(x, window, strides, padding, size):
  del size
  out = _output_size(x, window, strides, padding)
  taps = _taps(_padded(x, padding), window, strides, out)
  y, first = taps[0][2], jnp.zeros(taps[0][2].shape, jnp.int8)
  for t, (_, _, view) in enumerate(taps[1:], 1):
    # Strictly greater: on ties the earlier tap keeps the maximum.
    first = jnp.where(view > y, jnp.int8(t), first)
    y = jnp.maximum(y, view)
  return y, first


def _backward(window, strides, padding, size, first, dy):
  (kh, kw), (sh, sw) = window, strides
  out_h, out_w = dy.shape[1:3]
  height, width = size[0] + sum(padding[0]), size[1] + sum(padding[1])
  # The padded input's pixel (r, c) is tap (i, j) of output (o, p) when r = o * sh + i and
  # c = p * sw + j. Pixels of one phase (r % sh, c % sw) = (a, b) take the taps i = a + q * sh,
  # j = b + v * sw, from output (r // sh - q, c // sw - v): each phase is a sum of shifted
  # copies of the taps' shares, on the output's grid, and the phases are then interleaved.
  rows, cols = -(-height // sh), -(-width // sw)
  zero = jnp.zeros((), dy.dtype)
  gradient = jnp.zeros((dy.shape[0], rows * sh, cols * sw, dy.shape[3]), dy.dtype)
  for a in range(sh):
    for b in range(sw):
      phase = jnp.zeros((dy.shape[0], rows, cols, dy.shape[3]), dy.dtype)
      for q in range(-(-(kh - a) // sh)):
        for v in range(-(-(kw - b) // sw)):
          share = jnp.where(first == (a + q * sh) * kw + b + v * sw, dy, zero)
          phase = phase + lax.pad(share, zero, ((0, 0, 0), (q, rows - q - out_h, 0),
                                                (v, cols - v - out_w, 0), (0, 0, 0)))
      # The phase's pixels, every sh-th row from a and sw-th column from b.
      gradient = gradient + lax.pad(phase, zero, ((0, 0, 0), (a, sh - 1 - a, sh - 1),
                                                  (b, sw - 1 - b, sw - 1), (0, 0, 0)))
  (top, _), (left, _) = padding
  return (gradient[:, top:top + size[0], left:left + size[1], :],)


_max_pool.defvjp(_forward, _backward)
