"""Hand-made convolution kernels and Gabor filter banks: the intuition before learned filters.

The lectures start from kernels designed by hand (a horizontal edge filter, a diagonal filter, an
edge detector, Sobel) and from families of kernels run over every image, Gabor filters above all.
This module only *defines* kernels; `cnnjax.visualize.convolution` runs them over images.

Kernels are small NumPy arrays built once at trace time: a kernel's size depends on its parameters
(a Gabor kernel spans three standard deviations), so it must be static for `jax.lax` convolutions.
`stack_kernels` centres kernels of different sizes in one (K, S, S) array so that a whole bank runs
as a single convolution.
"""

import dataclasses
import itertools
import math
from typing import Iterable, Sequence

import numpy as np


def _constant(rows: Sequence[Sequence[float]]) -> np.ndarray:
  kernel = np.asarray(rows, dtype=np.float32)
  kernel.setflags(write=False)  # Shared module constants must not be modified in place.
  return kernel


# The three kernels of the lecture's demonstration, as its notebook defines them.
HORIZONTAL_EDGE = _constant([[1, 2, 1],
                             [0, 0, 0],
                             [-1, -2, -1]])
DIAGONAL_EDGE = _constant([[1, 0, 0],
                           [0, 1, 0],
                           [0, 0, 1]])
EDGE_DETECT = _constant([[-1, -1, -1],
                         [-1, 8, -1],
                         [-1, -1, -1]])
# The horizontal edge filter turned a quarter: it responds to vertical edges.
VERTICAL_EDGE = _constant(np.asarray(HORIZONTAL_EDGE).T)
# Sobel's pair: derivative along one axis, smoothing along the other. SOBEL_Y responds to
# horizontal edges (intensity changing down the rows), SOBEL_X to vertical ones.
SOBEL_X = _constant([[-1, 0, 1],
                     [-2, 0, 2],
                     [-1, 0, 1]])
SOBEL_Y = _constant([[-1, -2, -1],
                     [0, 0, 0],
                     [1, 2, 1]])

HAND_MADE_KERNELS: dict[str, np.ndarray] = {
    'horizontal_edge': HORIZONTAL_EDGE,
    'vertical_edge': VERTICAL_EDGE,
    'diagonal_edge': DIAGONAL_EDGE,
    'edge_detect': EDGE_DETECT,
    'sobel_x': SOBEL_X,
    'sobel_y': SOBEL_Y,
}


def hand_made_kernel(name: str) -> np.ndarray:
  """One of `HAND_MADE_KERNELS` by name; an unknown name is an error listing the known ones."""
  if name not in HAND_MADE_KERNELS:
    raise ValueError(f'no hand-made kernel named {name!r}; choose one of '
                     f'{sorted(HAND_MADE_KERNELS)}')
  return HAND_MADE_KERNELS[name]


def _sigma_for_bandwidth(frequency: float, bandwidth: float) -> float:
  """The Gaussian's standard deviation giving a half-response bandwidth of `bandwidth` octaves."""
  octaves = 2.0 ** bandwidth
  return math.sqrt(math.log(2) / 2) / math.pi * (octaves + 1) / (octaves - 1) / frequency


def gabor_kernel(frequency: float, theta: float = 0.0, sigma_x: float | None = None,
                 sigma_y: float | None = None, *, bandwidth: float = 1.0, n_stds: float = 3.0,
                 offset: float = 0.0) -> np.ndarray:
  """The complex Gabor kernel: a Gaussian envelope times a complex sinusoid.

  Follows `skimage.filters.gabor_kernel`, which the lecture calls with
  `sigma_x = sigma_y = sigma`. With x along the columns and y down the rows, both centred on the
  middle pixel, and (x', y') = (x cos(theta) + y sin(theta), -x sin(theta) + y cos(theta)):

      g(x, y) = exp(-(x'^2 / sigma_x^2 + y'^2 / sigma_y^2) / 2 + i (2 pi frequency x' + offset))
                / (2 pi sigma_x sigma_y)

  The kernel spans `n_stds` standard deviations of the rotated envelope on each side (at least one
  pixel), so its shape is (2 y0 + 1, 2 x0 + 1), odd in both directions.

  Args:
    frequency: spatial frequency of the sinusoid in cycles per pixel.
    theta: orientation in radians; 0 makes the wave run along x (vertical stripes).
    sigma_x: envelope standard deviation along x' (before rotation); None derives it from
      `bandwidth`.
    sigma_y: the same along y'.
    bandwidth: half-response spatial-frequency bandwidth in octaves, used only for a missing sigma.
    n_stds: half-width of the kernel in standard deviations.
    offset: phase of the sinusoid in radians.

  Returns:
    A complex128 array: the real part is the even (cosine) filter, the imaginary part the odd
    (sine) one.
  """
  if frequency <= 0:
    raise ValueError(f'the Gabor frequency must be positive, not {frequency}')
  if sigma_x is None:
    sigma_x = _sigma_for_bandwidth(frequency, bandwidth)
  if sigma_y is None:
    sigma_y = _sigma_for_bandwidth(frequency, bandwidth)
  if sigma_x <= 0 or sigma_y <= 0:
    raise ValueError(f'Gabor sigmas must be positive, not sigma_x={sigma_x}, sigma_y={sigma_y}')
  cos, sin = math.cos(theta), math.sin(theta)
  half_x = math.ceil(max(abs(n_stds * sigma_x * cos), abs(n_stds * sigma_y * sin), 1))
  half_y = math.ceil(max(abs(n_stds * sigma_y * cos), abs(n_stds * sigma_x * sin), 1))
  y, x = np.mgrid[-half_y:half_y + 1, -half_x:half_x + 1].astype(np.float64)
  x_rot = x * cos + y * sin
  y_rot = -x * sin + y * cos
  envelope = np.exp(-0.5 * (x_rot ** 2 / sigma_x ** 2 + y_rot ** 2 / sigma_y ** 2))
  carrier = np.exp(1j * (2 * np.pi * frequency * x_rot + offset))
  return envelope * carrier / (2 * np.pi * sigma_x * sigma_y)


@dataclasses.dataclass(frozen=True)
class GaborParams:
  """One Gabor filter of a bank, as the lecture labels it: frequency, orientation and size."""

  frequency: float
  theta: float
  sigma: float

  def kernel(self) -> np.ndarray:
    return gabor_kernel(self.frequency, self.theta, self.sigma, self.sigma)

  def label(self) -> str:
    return f'theta={self.theta:.2f}\nfrequency={self.frequency:.2f}\nsigma={self.sigma:.2f}'


# The three kernels the lecture shows side by side.
LECTURE_GABORS = (GaborParams(0.16, 1.2, 4.0), GaborParams(0.31, 0.0, 3.6),
                  GaborParams(0.36, 1.6, 1.3))


def gabor_bank(thetas: Iterable[float] = (0.0, math.pi / 4),
               frequencies: Iterable[float] = (0.1, 0.2),
               sigmas: Iterable[float] = (1.0, 3.0)) -> list[GaborParams]:
  """Every combination of the given orientations, frequencies and sizes, in that nesting order.

  The defaults are the lecture's bank: two orientations (0 and 45 degrees), two frequencies and two
  sizes, eight filters.
  """
  return [GaborParams(frequency, theta, sigma)
          for theta, frequency, sigma in itertools.product(thetas, frequencies, sigmas)]


def stack_kernels(kernels: Sequence[np.ndarray]) -> np.ndarray:
  """Centres odd-sized kernels in zeros of the largest size: (K, S, S), one bank, one convolution.

  Zero-padding a kernel symmetrically leaves its response unchanged (with 'same' output size), so
  kernels of different sizes can share one `jax.lax` convolution.
  """
  if not kernels:
    raise ValueError('stack_kernels needs at least one kernel')
  for kernel in kernels:
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
      raise ValueError(f'kernels must be 2-D with odd sizes to be centred, got {kernel.shape}')
  size = max(max(kernel.shape) for kernel in kernels)
  dtype = np.result_type(*kernels)
  stacked = np.zeros((len(kernels), size, size), dtype)
  for i, kernel in enumerate(kernels):
    top, left = (size - kernel.shape[0]) // 2, (size - kernel.shape[1]) // 2
    stacked[i, top:top + kernel.shape[0], left:left + kernel.shape[1]] = kernel
  return stacked
