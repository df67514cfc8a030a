"""Convolution, padding, strides and pooling on plain images: the lectures' worked examples.

Functions here treat the last two axes of an array as the image (rows, columns) and every leading
axis as a batch, so one call filters a single image, a batch of images or a batch of feature maps.
They run on `jax.lax` convolutions and `reduce_window`, with full float32 precision so that the
results match the hand computations and SciPy to the last digits.

Border handling follows SPEC.md section 1: 'valid' keeps only the positions where the kernel fits
(a 3x3 kernel on 5x5 gives 3x3), 'same' pads so that the output keeps the input's size (5x5), and
a stride of 2 skips every other position (3x3 with stride 2 on 5x5 gives 2x2). What the padding is
filled with is the `border` mode, named as in `scipy.ndimage`: 'constant' (zeros, what a
convolution layer does), 'wrap', 'reflect', 'mirror' or 'nearest'.

Factorized convolutions (the lecture's, and InceptionV3's 1x7 then 7x1): a kernel of rank one, the
outer product of a column and a row vector (Sobel's [1, 2, 1]^T [-1, 0, 1]), gives the same
result as a 1xk row pass followed by a kx1 column pass (`separate`, `correlate_separable`), with
2k instead of k^2 multiplies per output: 6 against 9 for 3x3, a third saved. `factorization_flops`
measures both with XLA's cost analysis.
"""

import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# scipy.ndimage border names -> jnp.pad modes.
BORDERS = {
    'constant': 'constant',
    'wrap': 'wrap',
    'reflect': 'symmetric',  # d c b a | a b c d | d c b a
    'mirror': 'reflect',     # d c b | a b c d | c b a
    'nearest': 'edge',
}

_HIGHEST = jax.lax.Precision.HIGHEST


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
  pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
  if len(pair) != 2 or any(int(v) < 1 for v in pair):
    raise ValueError(f'{what} must be a positive int or a pair of them, not {value!r}')
  return int(pair[0]), int(pair[1])


def output_size(size: int, kernel_size: int, padding: str | int = 'valid', stride: int = 1) -> int:
  """The length of a convolution's or pooling's output along one axis.

  'valid': floor((size - kernel_size) / stride) + 1; 'same': ceil(size / stride); an int p pads p
  on both sides and is then 'valid'.
  """
  if isinstance(padding, str):
    padding = padding.lower()
    if padding == 'same':
      return math.ceil(size / stride)
    if padding != 'valid':
      raise ValueError(f"padding must be 'valid', 'same' or an int, not {padding!r}")
    padding = 0
  return max((size + 2 * padding - kernel_size) // stride + 1, 0)


def _pads(shape: tuple[int, int], window: tuple[int, int], strides: tuple[int, int],
          padding: str | int) -> list[tuple[int, int]]:
  """(low, high) padding per spatial axis; 'same' splits as TensorFlow/Keras do (extra at end)."""
  if isinstance(padding, str):
    padding = padding.lower()
    if padding not in ('valid', 'same'):
      raise ValueError(f"padding must be 'valid', 'same' or an int, not {padding!r}")
    return list(jax.lax.padtype_to_pads(shape, window, strides, padding.upper()))
  if int(padding) < 0:
    raise ValueError(f'padding must not be negative, got {padding}')
  return [(int(padding), int(padding))] * 2


def pad(images: jax.Array, pads: Sequence[tuple[int, int]], border: str = 'constant') -> jax.Array:
  """Pads the last two axes by `pads` ((top, bottom), (left, right)) in a `BORDERS` mode."""
  if border not in BORDERS:
    raise ValueError(f'border must be one of {sorted(BORDERS)}, not {border!r}')
  widths = [(0, 0)] * (images.ndim - 2) + [tuple(p) for p in pads]
  return jnp.pad(images, widths, mode=BORDERS[border])


def correlate(images: jax.Array, kernels: jax.Array, *, padding: str | int = 'valid',
              strides: int | Sequence[int] = 1, border: str = 'constant') -> jax.Array:
  """Slides each kernel over each image: out[i, j] = sum(kernel * patch at (i, j)).

  This is what a convolution layer computes (cross-correlation: the kernel is not flipped).

  Args:
    images: (..., H, W): one image or any batch of them.
    kernels: (kh, kw) for one kernel or (K, kh, kw) for a bank.
    padding: 'valid', 'same' or a number of pixels added on every side.
    strides: distance between two kernel positions, per axis or for both.
    border: what the padding is filled with (see `BORDERS`).

  Returns:
    (..., H', W') for one kernel, (..., K, H', W') for a bank.
  """
  images = jnp.asarray(images, jnp.float32)
  kernels = jnp.asarray(kernels, jnp.float32)
  if images.ndim < 2:
    raise ValueError(f'images must have at least 2 axes (H, W), got shape {images.shape}')
  if kernels.ndim not in (2, 3):
    raise ValueError(f'kernels must be (kh, kw) or (K, kh, kw), got shape {kernels.shape}')
  single = kernels.ndim == 2
  bank = kernels[None] if single else kernels
  strides = _pair(strides, 'strides')
  window = tuple(bank.shape[1:])
  lead, (height, width) = images.shape[:-2], images.shape[-2:]
  pads = _pads((height, width), window, strides, padding)
  flat = pad(images.reshape(-1, 1, height, width), pads, border)
  out = jax.lax.conv_general_dilated(flat, bank[:, None], window_strides=strides,
                                     padding='VALID', dimension_numbers=('NCHW', 'OIHW', 'NCHW'),
                                     precision=_HIGHEST)
  out = out.reshape(*lead, *out.shape[1:])
  return out[..., 0, :, :] if single else out


def convolve(images: jax.Array, kernels: jax.Array, **kwargs) -> jax.Array:
  """True convolution (the kernel flipped in both axes), as `scipy.ndimage.convolve` computes it.

  Takes the arguments of `correlate`. For symmetric kernels the two agree; for the odd part of a
  Gabor pair they differ in sign, which the response magnitude does not see.
  """
  return correlate(images, jnp.flip(jnp.asarray(kernels), axis=(-2, -1)), **kwargs)


def response_magnitude(images: jax.Array, complex_kernels: np.ndarray, *, border: str = 'wrap',
                       standardize: bool = True) -> jax.Array:
  """|response| of complex kernels (Gabor pairs): sqrt(real response^2 + imaginary response^2).

  As in the lecture, each image is first standardized (zero mean, unit standard deviation) and the
  kernels are applied by true convolution with a wrapped border, keeping the image's size. The real
  and imaginary parts of the whole bank run as one convolution with 2K output channels.

  Args:
    images: (..., H, W).
    complex_kernels: (kh, kw) or (K, kh, kw) complex array, odd-sized (see `stack_kernels`).
    border: border mode of the 'same' padding.
    standardize: whether to standardize each image first.

  Returns:
    (..., H, W) for one kernel, (..., K, H, W) for a bank.
  """
  images = jnp.asarray(images, jnp.float32)
  if standardize:
    mean = images.mean(axis=(-2, -1), keepdims=True)
    std = images.std(axis=(-2, -1), keepdims=True)
    images = (images - mean) / jnp.where(std > 0, std, 1.0)  # A blank image stays blank.
  complex_kernels = np.asarray(complex_kernels)
  single = complex_kernels.ndim == 2
  bank = complex_kernels[None] if single else complex_kernels
  pair = np.concatenate([bank.real, bank.imag]).astype(np.float32)
  responses = convolve(images, pair, padding='same', border=border)
  real, imag = jnp.split(responses, 2, axis=-3)
  magnitude = jnp.sqrt(real ** 2 + imag ** 2)
  return magnitude[..., 0, :, :] if single else magnitude


def pool(images: jax.Array, window: int | Sequence[int], strides: int | Sequence[int] | None = None,
         *, kind: str = 'max', padding: str = 'valid') -> jax.Array:
  """Max- or mean-pooling over the last two axes with any window and stride.

  A stride smaller than the window gives overlapping pooling. With 'same' padding the mean counts
  only the real pixels of a window, as Keras' AveragePooling2D does.

  Args:
    images: (..., H, W).
    window: the pooling window, per axis or for both.
    strides: the step between windows; None means the window (non-overlapping pooling).
    kind: 'max' or 'mean'.
    padding: 'valid' or 'same'.

  Returns:
    (..., H', W') with H' = output_size(H, window, padding, stride).
  """
  images = jnp.asarray(images, jnp.float32)
  window = _pair(window, 'window')
  strides = window if strides is None else _pair(strides, 'strides')
  if kind not in ('max', 'mean'):
    raise ValueError(f"kind must be 'max' or 'mean', not {kind!r}")
  pads = _pads(images.shape[-2:], window, strides, padding)
  lead = images.ndim - 2
  dims, steps = (1,) * lead + window, (1,) * lead + strides
  full_pads = [(0, 0)] * lead + pads
  if kind == 'max':
    return jax.lax.reduce_window(images, -jnp.inf, jax.lax.max, dims, steps, full_pads)
  sums = jax.lax.reduce_window(images, 0.0, jax.lax.add, dims, steps, full_pads)
  counts = jax.lax.reduce_window(jnp.ones(images.shape[-2:]), 0.0, jax.lax.add, window, strides,
                                 pads)
  return sums / counts


def separate(kernel: np.ndarray, rtol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
  """(column, row) with `np.outer(column, row) == kernel`, for a kernel of rank one.

  The column is the kernel's column through its largest entry and the row that entry's row divided
  by it, so integer kernels such as Sobel's factor into integers ([-1, -2, -1] and [1, 0, -1] for
  SOBEL_X) and the factorized correlation is exact. A kernel of higher rank (EDGE_DETECT has rank
  two) is a ValueError: it is a sum of that many separable kernels, not one.
  """
  kernel = np.asarray(kernel, np.float64)
  if kernel.ndim != 2 or not np.any(kernel):
    raise ValueError(f'separate needs a non-zero (kh, kw) kernel, got shape {kernel.shape}')
  i, j = np.unravel_index(np.argmax(np.abs(kernel)), kernel.shape)
  column, row = kernel[:, j], kernel[i, :] / kernel[i, j]
  if not np.allclose(np.outer(column, row), kernel, rtol=rtol, atol=rtol * abs(kernel[i, j])):
    raise ValueError(f'the kernel has rank {np.linalg.matrix_rank(kernel)}, not one: it is no '
                     f'outer product of a column and a row\n{kernel}')
  return column, row


def correlate_separable(images: jax.Array, column: Sequence[float], row: Sequence[float], *,
                        padding: str = 'valid', border: str = 'constant') -> jax.Array:
  """`correlate(images, np.outer(column, row))` as a 1xk row pass, then a kx1 column pass.

  Equal because sum_a sum_b column[a] row[b] x[i + a, j + b] = sum_a column[a] (sum_b row[b]
  x[i + a, j + b]): the inner sums are the row pass, computed once for every row that the column
  pass reads. 'same' pads each pass along its own axis only, which for every border mode gives the
  2-D padding's values (a padded pixel's value depends on its row and its column separately).
  Integer data is reproduced exactly; other floats to rounding (the terms are added in another
  order).
  """
  row = np.asarray(row, np.float32)[None, :]
  column = np.asarray(column, np.float32)[:, None]
  rows_done = correlate(images, row, padding=padding, border=border)
  return correlate(rows_done, column, padding=padding, border=border)


class FactorizationFlops(NamedTuple):
  """The flops XLA counts for one correlation, by a kh x kw kernel and factorized."""

  full: float
  factorized: float
  outputs: int  # Pixels of the result.

  @property
  def ratio(self) -> float:
    """factorized / full: 6 / 9 for 3x3 'same', a little more 'valid' (`factorization_flops`)."""
    return self.factorized / self.full


def _compiled_flops(function, *args) -> float:
  analysis = jax.jit(function).lower(*args).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):  # One entry per computation in older JAX versions.
    analysis = analysis[0]
  return float(analysis['flops'])


def factorization_flops(image_shape: Sequence[int], column: Sequence[float],
                        row: Sequence[float], *, padding: str = 'valid') -> FactorizationFlops:
  """The flops of `correlate` with `np.outer(column, row)` and of `correlate_separable`, measured.

  Both are compiled for `image_shape` (..., H, W) and read from XLA's cost analysis
  (`jax.jit(f).lower(...).compile().cost_analysis()['flops']`); the kernels are arguments, so XLA
  cannot fold their zeros away. XLA counts a multiply-add as 2 flops and counts by shape: every
  output of a kh x kw correlation costs 2 * kh * kw, padded zeros included, and padding itself
  costs nothing. So, for a k x k kernel on H x W (k = 3: 18 against 12 per output):

  - 'same': both passes give H x W outputs: full = 2 k^2 H W, factorized = 2 (k + k) H W; the ratio
    is exactly 2 / k (6 / 9 = 0.667 for 3x3).
  - 'valid': the row pass must also compute the k - 1 rows that only the column pass's border
    outputs read: full = 2 k^2 (H - k + 1)(W - k + 1), factorized = 2 k H (W - k + 1) +
    2 k (H - k + 1)(W - k + 1); the ratio is (2 H - k + 1) / (k (H - k + 1)), 0.677 on 64 x 64 and
    0.669 on 256 x 256, tending to 2 / k.
  """
  images = jax.ShapeDtypeStruct(tuple(image_shape), jnp.float32)
  column = np.asarray(column, np.float32)
  row = np.asarray(row, np.float32)
  kernel = np.outer(column, row)
  full = _compiled_flops(lambda x, k: correlate(x, k, padding=padding), images, kernel)

  def factorized(x, c, r):
    rows_done = correlate(x, r[None, :], padding=padding)
    return correlate(rows_done, c[:, None], padding=padding)

  outputs = jax.eval_shape(lambda x: correlate(x, kernel, padding=padding), images)
  return FactorizationFlops(full=full, factorized=_compiled_flops(factorized, images, column, row),
                            outputs=math.prod(outputs.shape))
