"""How a 2-D convolution is computed: XLA's convolution, im2col and matrix products, or taps.

All formulations take NHWC images and HWIO kernels and give the same result and the same gradients
up to float rounding; `layers.Conv2D` picks one by name (`IMPLEMENTATIONS`).

Every formulation takes a `dilation` (rows, columns), as Keras' `dilation_rate` and torch's
`dilation`: the kernel's taps are `dilation` pixels apart, so a k-tap axis spans (k - 1) * d + 1
input pixels (its effective size) with the parameters of k taps. 'lax' passes it to XLA as
`rhs_dilation`; 'im2col' and 'taps' step their shifted views by it (tap (i, j) starts at
(i * dh, j * dw)), and their hand-written gradients use the same views and XLA's transposed
dilated convolution. 'SAME' pads for the effective size, as Keras and `lax` do; strides and
dilations may be combined (torch allows it, Keras does not).

- 'lax': `lax.conv_general_dilated`, differentiated by JAX. What accelerators should run (cuDNN
  and the like), and XLA:CPU's fastest for layers with several input channels when its YNNPACK
  fusions are off (`cnnjax.xla_cpu`).
- 'im2col': the kh*kw shifted (strided) views of the padded input are put side by side, in the
  (row, column, channel) order of the kernel's first three axes, so that one matrix product with
  the kernel reshaped to (kh*kw*Cin, Cout) computes every output pixel. Its two gradients are
  written by hand (`jax.custom_vjp`) as the forms XLA:CPU computed fastest in one-off comparisons
  on a 2-core CPU (2026-11-24; that code and its output were not kept): the kernel gradient is
  patches^T @ dy as a batch of products over chunks of the examples, summed (one product
  contracting over every pixel of the batch was slower), and the input gradient is XLA's
  transposed convolution of dy (the input gradient of 'lax'), which beat scattering the patch
  gradients back (col2im) and is left out by XLA where nothing needs it (the first layer). With a
  single input channel the views are stacked taps-first, as a (kh*kw, N*OH*OW) matrix:
  concatenating 1-channel slices along the last axis is slow on XLA:CPU, stacking them is a copy.
- 'taps': the sum over the kernel's kh*kw*Cin taps of each shifted view's channel times that
  tap's row of Cout weights: elementwise products that XLA fuses into one loop, with no matrix
  product at all. For a first layer on one-channel images (Cin = 1: 9 products per output) this
  is far cheaper than a convolution kernel built for deep inputs: on XLA:CPU (YNNPACK fusions
  off) small_convnet's conv1 as a layer with its bias and ReLU took 0.26 ms forward against 1.39
  ms for 'lax', and 1.68 ms against 2.71 for the forward and kernel gradient together (batch 64
  of 28x28; 2-core AMD EPYC, 2026-11-24: benchmarks/conv_profile.py, its output in
  benchmarks/results/conv-profile-small_convnet-2026-11-24.txt). Its kernel gradient is the taps
  stacked (kh*kw*Cin, N*OH*OW) times dy, its input gradient that of 'lax'. With three channels
  at 150x150 its gradients were slower than those of 'lax'
  (benchmarks/results/conv-profile-cats_vs_dogs_150-2026-11-30.txt), so 'auto' keeps 'lax' there.
- 'auto' (the convnets' default): 'lax' on accelerators; on the CPU the formulation measured
  fastest on this machine for the layer's shapes, dtype and whether it is trained (`choose`:
  timed at the first trace and cached, `cnnjax.tuning`), or, where measuring is off (runs of
  several processes among them), the rules measured on the 2-core AMD EPYC (`resolve`): 'im2col'
  with XLA's YNNPACK fusions on, and with them off 'taps' for one input channel and 'lax'
  otherwise.
"""

import functools
from typing import Any, Sequence

import jax
from jax import lax
import jax.numpy as jnp

from cnnjax import tuning
from cnnjax import xla_cpu

IMPLEMENTATIONS = ('lax', 'im2col', 'taps', 'auto')
DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')
# The kernel gradient is summed over chunks of at least this many output pixels (see the module
# docstring); smaller batches of pixels are one product.
MIN_CHUNK_PIXELS = 4096
NO_DILATION = (1, 1)


def resolve(implementation: str, in_channels: int) -> str:
  """'lax', 'im2col' or 'taps': the rule for `implementation` with `in_channels` input channels.

  The rules are what 'auto' takes where nothing is measured (`choose`); they were measured on
  the 2-core AMD EPYC (see the module docstring): 'lax' on
  accelerators; on the CPU 'im2col' with XLA's YNNPACK fusions on (XLA's default;
  `cnnjax.xla_cpu`), and with them off (launch.py's rule) 'taps' for one input channel and
  'lax' for more. Runs of several processes take the same choice: 'taps' there once looked at
  fault (a two-process pmap test hung, a sharded one drifted 2% from one process) but was not;
  see `train.parallel`'s section of the README (2026-11-30).
  """
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f'Conv2D implementation={implementation!r} is not one of {IMPLEMENTATIONS}')
  if implementation != 'auto':
    return implementation
  if jax.default_backend() != 'cpu':
    return 'lax'
  if xla_cpu.ynn_fusions_on():
    return 'im2col'
  return 'taps' if in_channels == 1 else 'lax'


def conv_lax(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
             padding: str | Sequence[tuple[int, int]],
             dilation: Sequence[int] = NO_DILATION) -> jax.Array:
  """XLA's convolution of NHWC `x` with an HWIO `kernel`; padding 'SAME', 'VALID' or explicit
  ((top, bottom), (left, right)); `dilation` spaces the kernel's taps (`rhs_dilation`)."""
  return jax.lax.conv_general_dilated(x, kernel, window_strides=tuple(strides), padding=padding,
                                      rhs_dilation=tuple(dilation),
                                      dimension_numbers=DIMENSION_NUMBERS)


def effective_size(size: int, dilation: int) -> int:
  """The input pixels a kernel axis of `size` taps spans with taps `dilation` apart."""
  return (size - 1) * dilation + 1


def explicit_pads(spatial_shape: Sequence[int], window: Sequence[int], strides: Sequence[int],
                  padding) -> list[tuple[int, int]]:
  """((top, bottom), (left, right)) of a window sliding over `spatial_shape`: 'VALID', 'SAME' as
  `lax` and Keras pad (the odd pixel after), or explicit pairs as given. `window` is the
  effective size (a dilated kernel's `effective_size`). Convolutions' taps and im2col use it, and
  pooling over padded windows (`pooling.max_pool_taps`)."""
  if isinstance(padding, str):
    return lax.padtype_to_pads(tuple(spatial_shape), tuple(window), tuple(strides),
                               padding.upper())
  return [tuple(pair) for pair in padding]


def _views(x: jax.Array, kernel_shape: Sequence[int], strides: Sequence[int], padding: str,
           dilation: Sequence[int] = NO_DILATION) -> list[jax.Array]:
  """The kh*kw shifted, strided views of `x` (N, OH, OW, C), one per kernel tap, row-major; tap
  (i, j) starts at (i * dh, j * dw)."""
  kh, kw = kernel_shape[:2]
  sh, sw = strides
  dh, dw = dilation
  eh, ew = effective_size(kh, dh), effective_size(kw, dw)
  if padding == 'SAME':
    x = jnp.pad(x, ((0, 0), *explicit_pads(x.shape[1:3], (eh, ew), (sh, sw), 'SAME'), (0, 0)))
  elif padding != 'VALID':
    raise ValueError(f"padding must be 'SAME' or 'VALID', not {padding!r}")
  oh, ow = (x.shape[1] - eh) // sh + 1, (x.shape[2] - ew) // sw + 1
  if oh < 1 or ow < 1:
    raise ValueError(f'a {kh}x{kw} kernel with dilation {tuple(dilation)} spans {eh}x{ew} pixels, '
                     f'more than the {x.shape[1]}x{x.shape[2]} input (padded {padding!r})')
  return [x[:, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw, :]
          for i in range(kh) for j in range(kw)]


def patches(x: jax.Array, kernel_shape: Sequence[int], strides: Sequence[int],
            padding: str, dilation: Sequence[int] = NO_DILATION) -> jax.Array:
  """im2col: (N, OH, OW, kh*kw*C), the input under every output pixel's (dilated) window."""
  views = _views(x, kernel_shape, strides, padding, dilation)
  return views[0] if len(views) == 1 else jnp.concatenate(views, axis=-1)


def _chunks(examples: int, pixels_per_example: int) -> int:
  """How many chunks of examples the kernel gradient's product is split into (1, 2, 4 or 8)."""
  fitting = [c for c in (8, 4, 2) if examples % c == 0
             and examples * pixels_per_example // c >= MIN_CHUNK_PIXELS]
  return fitting[0] if fitting else 1


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_im2col(x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: str,
                dilation: Sequence[int] = NO_DILATION) -> jax.Array:
  """The convolution of `conv_lax` as im2col and one matrix product (see the module docstring)."""
  kh, kw, cin, cout = kernel.shape
  strides, dilation = tuple(strides), tuple(dilation)
  if cin == 1:
    views = _views(x, kernel.shape, strides, padding, dilation)
    taps = jnp.stack(views).reshape(kh * kw, -1)  # Taps first (see the module docstring).
    y = jax.lax.dot_general(taps, kernel.reshape(kh * kw, cout), (((0,), (0,)), ((), ())))
    return y.reshape(*views[0].shape[:3], cout)
  return jax.lax.dot_general(patches(x, kernel.shape, strides, padding, dilation),
                             kernel.reshape(kh * kw * cin, cout), (((3,), (0,)), ((), ())))


def _taps_kernel_gradient(x, kernel, strides, padding, dilation, dy):
  """The kernel gradient as the taps (kh*kw, N, OH, OW, Cin) against dy (N, OH, OW, Cout),
  contracted over the output pixels."""
  taps = jnp.stack(_views(x, kernel.shape, strides, padding, dilation))
  return jax.lax.dot_general(taps, dy, (((1, 2, 3), (0, 1, 2)), ((), ())))


def _input_gradient(x, kernel, strides, padding, dilation, dy):
  """The gradient of `conv_lax` with respect to `x`: XLA's transposed convolution of dy."""
  transpose = jax.linear_transpose(
      functools.partial(conv_lax, kernel=kernel, strides=strides, padding=padding,
                        dilation=dilation), x)
  (d_x,) = transpose(dy)
  return d_x


def _conv_im2col_forward(x, kernel, strides, padding, dilation):
  # The patches are recomputed in the backward pass from x: inside one jit XLA shares them with
  # the forward pass's.
  return conv_im2col(x, kernel, strides, padding, dilation), (x, kernel)


def _conv_im2col_backward(strides, padding, dilation, residuals, dy):
  x, kernel = residuals
  kh, kw, cin, cout = kernel.shape
  strides, dilation = tuple(strides), tuple(dilation)
  if cin == 1:
    d_kernel = _taps_kernel_gradient(x, kernel, strides, padding, dilation, dy)
  else:
    p = patches(x, kernel.shape, strides, padding, dilation)
    n = p.shape[0]
    chunks = _chunks(n, p.shape[1] * p.shape[2])
    # A batch of products, then the sum: one einsum over (chunk, pixel) would be one product.
    d_kernel = jnp.einsum('cmk,cmo->cko', p.reshape(chunks, -1, p.shape[-1]),
                          dy.reshape(chunks, -1, cout)).sum(axis=0)
  d_x = _input_gradient(x, kernel, strides, padding, dilation, dy)
  return d_x, d_kernel.reshape(kernel.shape).astype(kernel.dtype)


conv_im2col.defvjp(_conv_im2col_forward, _conv_im2col_backward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_taps(x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: str,
              dilation: Sequence[int] = NO_DILATION) -> jax.Array:
  """The convolution of `conv_lax` as a sum of per-tap products (see the module docstring)."""
  kw, cin = kernel.shape[1], kernel.shape[2]
  views = _views(x, kernel.shape, tuple(strides), padding, tuple(dilation))
  terms = (view[..., c:c + 1] * kernel[t // kw, t % kw, c]
           for t, view in enumerate(views) for c in range(cin))
  return functools.reduce(jnp.add, terms)


def _conv_taps_forward(x, kernel, strides, padding, dilation):
  return conv_taps(x, kernel, strides, padding, dilation), (x, kernel)


def _conv_taps_backward(strides, padding, dilation, residuals, dy):
  x, kernel = residuals
  strides, dilation = tuple(strides), tuple(dilation)
  d_kernel = _taps_kernel_gradient(x, kernel, strides, padding, dilation, dy)
  d_x = _input_gradient(x, kernel, strides, padding, dilation, dy)
  return d_x, d_kernel.reshape(kernel.shape).astype(kernel.dtype)


conv_taps.defvjp(_conv_taps_forward, _conv_taps_backward)


Padding = str | Sequence[tuple[int, int]]


def explicit_padding(padding: Padding) -> str | tuple[tuple[int, int], ...]:
  """'SAME', 'VALID' or ((top, bottom), (left, right)) as a hashable tuple; a ValueError else."""
  if isinstance(padding, str):
    if padding.upper() not in ('SAME', 'VALID'):
      raise ValueError(f"padding must be 'SAME' or 'VALID', not {padding.upper()!r} (or "
                       'explicit ((top, bottom), (left, right)))')
    return padding.upper()
  try:
    pairs = tuple(tuple(int(p) for p in pair) for pair in padding)
  except TypeError:
    pairs = ()
  if len(pairs) != 2 or any(len(pair) != 2 or min(pair) < 0 for pair in pairs):
    raise ValueError(f'explicit padding must be ((top, bottom), (left, right)) of non-negative '
                     f'integers, not {padding!r}')
  return pairs


def dilation_pair(dilation: int | Sequence[int]) -> tuple[int, int]:
  """(rows, columns) dilation from an int or a pair of positive ints; a ValueError else."""
  pair = (dilation, dilation) if isinstance(dilation, int) else dilation
  try:
    pair = tuple(pair)
    valid = len(pair) == 2 and all(int(d) == d and d >= 1 for d in pair)
  except (TypeError, ValueError):
    valid = False
  if not valid:
    raise ValueError(f'dilation must be a positive int or a pair of them (rows, columns), not '
                     f'{dilation!r}')
  return int(pair[0]), int(pair[1])


def choose(implementation: str, x_shape: Sequence[int], kernel_shape: Sequence[int],
           strides: Sequence[int], padding: Padding, dilation: int | Sequence[int] = NO_DILATION,
           dtype: Any = jnp.float32, differentiated: bool = False, measure: bool = True) -> str:
  """'lax', 'im2col' or 'taps': what `convolve` computes for this layer.

  An explicit name is used as given; 'auto' on the CPU is the formulation measured fastest on
  this machine for these shapes (`cnnjax.tuning`: timed at the first trace, then cached), or
  `resolve`'s rules where measuring is off; 'lax' on accelerators. `differentiated`: whether the
  kernel is being trained (its gradient is then timed with the forward pass). `measure=False`
  takes the rules too: for initialization and eager calls, which compute once.
  """
  name = resolve(implementation, kernel_shape[2])
  if (implementation != 'auto' or not measure or jax.default_backend() != 'cpu'
      or not tuning.measuring()):
    return name
  padding = explicit_padding(padding)
  dilation = dilation_pair(dilation)
  strides = tuple(int(s) for s in strides)
  dtype = jnp.dtype(dtype)
  formulations = {
      candidate: functools.partial(_compute, candidate, strides=strides, padding=padding,
                                   dilation=dilation)
      for candidate in tuning.FORMULATIONS}
  out = jax.eval_shape(formulations['lax'], jax.ShapeDtypeStruct(tuple(x_shape), dtype),
                       jax.ShapeDtypeStruct(tuple(kernel_shape), dtype)).shape
  candidates = {candidate: formulations[candidate]
                for candidate in tuning.eligible(x_shape, kernel_shape, out[1] * out[2],
                                                 dtype.itemsize)}
  mode = 'train' if differentiated else 'predict'
  key = tuning.convolution_key(x_shape, kernel_shape, strides, padding, dilation, dtype.name,
                               mode)
  return tuning.convolution_choice(key, candidates, tuple(x_shape), tuple(kernel_shape), dtype,
                                   mode, default=name)


def _compute(name: str, x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
             padding: str | tuple[tuple[int, int], ...], dilation: tuple[int, int]) -> jax.Array:
  """`x` convolved by the formulation `name`; explicit padding pads the input for all but lax."""
  if not isinstance(padding, str):
    if name == 'lax':
      return conv_lax(x, kernel, strides, padding, dilation)
    x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    padding = 'VALID'
  formulation = {'lax': conv_lax, 'im2col': conv_im2col, 'taps': conv_taps}[name]
  return formulation(x, kernel, strides, padding, dilation)


def convolve(x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Padding,
             implementation: str, dilation: int | Sequence[int] = NO_DILATION,
             measure: bool = True) -> jax.Array:
  """`x` convolved with `kernel` by the named implementation (one of `IMPLEMENTATIONS`).

  `padding` is 'SAME', 'VALID' or explicit zero padding ((top, bottom), (left, right)), as torch
  pads (e.g. ((3, 3), (3, 3)) for a 7x7 stride-2 convolution, where 'SAME' would pad (2, 3) on
  an even input). 'lax' takes explicit padding as it is; the other formulations pad the input
  (`jnp.pad`) and convolve it 'VALID'. `dilation` (rows, columns) spaces the kernel's taps; 'SAME'
  pads for the effective kernel size (k - 1) * d + 1, as Keras does. 'auto' is `choose`'s,
  measured only for a traced call (jit's), and only with `measure` (False: the rules).
  """
  padding = explicit_padding(padding)
  dilation = dilation_pair(dilation)
  strides = tuple(int(s) for s in strides)
  name = choose(implementation, x.shape, kernel.shape, strides, padding, dilation, x.dtype,
                differentiated=tuning.is_differentiated(kernel),
                measure=measure and any(isinstance(a, jax.core.Tracer) for a in (x, kernel)))
  return _compute(name, x, kernel, strides, padding, dilation)
