"""Convolution by hand: kernels, Gabor filters, padding, strides and pooling (SPEC.md section 1)."""

import math

import numpy as np
import pytest
from scipy import ndimage

from cnnjax.visualize import convolution, kernels

SPEC_POOLING_INPUT = np.array([[2, 1, 7, 1, 2, 5], [5, 0, 3, 4, 1, 2], [1, 7, 8, 3, 3, 0],
                               [0, 3, 2, 0, 1, 1], [6, 2, 5, 3, 0, 3], [3, 6, 0, 2, 1, 0]],
                              np.float32)


def naive_correlate(image, kernel, stride=1):
  """pixel_out = sum(kernel * patch), the lecture's definition, 'valid' positions only."""
  kh, kw = kernel.shape
  rows = (image.shape[0] - kh) // stride + 1
  cols = (image.shape[1] - kw) // stride + 1
  return np.array([[np.sum(kernel * image[i * stride:i * stride + kh, j * stride:j * stride + kw])
                    for j in range(cols)] for i in range(rows)])


def naive_pool(image, window, stride, reduce):
  rows = (image.shape[0] - window) // stride + 1
  cols = (image.shape[1] - window) // stride + 1
  return np.array([[reduce(image[i * stride:i * stride + window, j * stride:j * stride + window])
                    for j in range(cols)] for i in range(rows)])


def gabor_by_formula(frequency, theta, sigma, half_y, half_x):
  """The Gabor kernel pixel by pixel, x along columns, y down rows, centred."""
  out = np.zeros((2 * half_y + 1, 2 * half_x + 1), complex)
  for row in range(out.shape[0]):
    for col in range(out.shape[1]):
      x, y = col - half_x, row - half_y
      xr = x * math.cos(theta) + y * math.sin(theta)
      yr = -x * math.sin(theta) + y * math.cos(theta)
      out[row, col] = (math.exp(-(xr ** 2 + yr ** 2) / (2 * sigma ** 2)) *
                       np.exp(2j * math.pi * frequency * xr) / (2 * math.pi * sigma ** 2))
  return out


def test_the_lecture_kernels():
  np.testing.assert_array_equal(kernels.HORIZONTAL_EDGE, [[1, 2, 1], [0, 0, 0], [-1, -2, -1]])
  np.testing.assert_array_equal(kernels.DIAGONAL_EDGE, np.eye(3))
  np.testing.assert_array_equal(kernels.EDGE_DETECT, [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]])
  np.testing.assert_array_equal(kernels.VERTICAL_EDGE, kernels.HORIZONTAL_EDGE.T)
  np.testing.assert_array_equal(kernels.SOBEL_Y, kernels.SOBEL_X.T)
  assert kernels.EDGE_DETECT.sum() == 0  # A flat region gives no response.
  with pytest.raises(ValueError):
    kernels.HORIZONTAL_EDGE[0, 0] = 5  # Shared constants are read-only.
  with pytest.raises(ValueError, match='sobel_x'):
    kernels.hand_made_kernel('sobel')


def test_edge_kernels_respond_to_their_edges():
  image = np.zeros((6, 6), np.float32)
  image[3:] = 1.0  # A horizontal edge between rows 2 and 3.
  horizontal = convolution.correlate(image, kernels.HORIZONTAL_EDGE)
  vertical = convolution.correlate(image, kernels.VERTICAL_EDGE)
  assert np.abs(horizontal).max() == 4 and np.abs(vertical).max() == 0


@pytest.mark.parametrize('frequency, theta, sigma', [(0.16, 1.2, 4.0), (0.31, 0.0, 3.6),
                                                     (0.36, 1.6, 1.3), (0.81, 2.7, 0.9)])
def test_gabor_kernel_follows_its_formula(frequency, theta, sigma):
  kernel = kernels.gabor_kernel(frequency, theta, sigma, sigma)
  # Half-widths: three standard deviations of the rotated envelope, at least one pixel.
  half_x = math.ceil(max(abs(3 * sigma * math.cos(theta)), abs(3 * sigma * math.sin(theta)), 1))
  half_y = math.ceil(max(abs(3 * sigma * math.cos(theta)), abs(3 * sigma * math.sin(theta)), 1))
  assert kernel.shape == (2 * half_y + 1, 2 * half_x + 1)
  np.testing.assert_allclose(kernel, gabor_by_formula(frequency, theta, sigma, half_y, half_x),
                             rtol=1e-12, atol=1e-15)


def test_gabor_orientation_and_phase():
  vertical_stripes = kernels.gabor_kernel(0.25, 0.0, 2.0, 2.0)
  horizontal_stripes = kernels.gabor_kernel(0.25, math.pi / 2, 2.0, 2.0)
  np.testing.assert_allclose(horizontal_stripes, vertical_stripes.T, atol=1e-12)
  kernel = kernels.gabor_kernel(0.2, 0.3, 1.5, 1.5)
  centre = kernel[kernel.shape[0] // 2, kernel.shape[1] // 2]
  np.testing.assert_allclose(centre, 1 / (2 * math.pi * 1.5 ** 2))
  shifted = kernels.gabor_kernel(0.2, 0.3, 1.5, 1.5, offset=math.pi / 2)
  np.testing.assert_allclose(shifted, kernels.gabor_kernel(0.2, 0.3, 1.5, 1.5) * 1j, atol=1e-15)


def test_gabor_kernel_matches_scikit_image():
  skimage_filters = pytest.importorskip('skimage.filters')
  cases = [dict(frequency=f, theta=t, sigma_x=s, sigma_y=s)
           for f, t, s in [(0.16, 1.2, 4.0), (0.31, 0, 3.6), (0.36, 1.6, 1.3), (0.1, 0.785, 3)]]
  cases += [dict(frequency=0.2, theta=0.5, sigma_x=2.0, sigma_y=5.0),
            dict(frequency=0.2, theta=0.5, bandwidth=1.5, offset=0.3, n_stds=2.5)]
  for case in cases:
    np.testing.assert_allclose(kernels.gabor_kernel(**case), skimage_filters.gabor_kernel(**case),
                               atol=1e-14)


def test_gabor_bank_is_the_lectures():
  bank = kernels.gabor_bank()
  assert len(bank) == 8
  assert bank[0] == kernels.GaborParams(0.1, 0.0, 1.0)
  assert bank[-1] == kernels.GaborParams(0.2, math.pi / 4, 3.0)
  assert bank[0].label() == 'theta=0.00\nfrequency=0.10\nsigma=1.00'


def test_border_effects_and_strides_of_the_spec():
  image = np.arange(25, dtype=np.float32).reshape(5, 5)
  kernel = np.arange(9, dtype=np.float32).reshape(3, 3) - 4
  valid = convolution.correlate(image, kernel)
  assert valid.shape == (3, 3)
  np.testing.assert_allclose(valid, naive_correlate(image, kernel))
  same = convolution.correlate(image, kernel, padding='same')
  assert same.shape == (5, 5)
  np.testing.assert_allclose(same, naive_correlate(np.pad(image, 1), kernel))
  strided = convolution.correlate(image, kernel, strides=2)
  assert strided.shape == (2, 2)
  np.testing.assert_allclose(strided, naive_correlate(image, kernel, stride=2))
  assert convolution.output_size(5, 3, 'valid') == 3
  assert convolution.output_size(5, 3, 'same') == 5
  assert convolution.output_size(5, 3, 'valid', stride=2) == 2
  assert convolution.output_size(5, 3, 1) == 5
  assert convolution.output_size(28, 3) == 26  # The small convnet's first layer.


def test_correlate_runs_a_bank_over_a_batch():
  rng = np.random.default_rng(0)
  images = rng.random((4, 9, 11), dtype=np.float32)
  bank = np.stack(list(kernels.HAND_MADE_KERNELS.values()))
  out = convolution.correlate(images, bank, padding='same')
  assert out.shape == (4, len(bank), 9, 11)
  for n in range(4):
    for k in range(len(bank)):
      np.testing.assert_allclose(out[n, k], naive_correlate(np.pad(images[n], 1), bank[k]),
                                 atol=1e-5)


@pytest.mark.parametrize('border', ['constant', 'wrap', 'reflect', 'mirror', 'nearest'])
def test_convolve_matches_scipy(border):
  rng = np.random.default_rng(1)
  image = rng.random((12, 10))
  kernel = kernels.gabor_kernel(0.3, 0.7, 1.2, 1.2).imag  # Odd: flipping matters.
  ours = convolution.convolve(image, kernel, padding='same', border=border)
  np.testing.assert_allclose(ours, ndimage.convolve(image, kernel, mode=border), atol=1e-6)


def test_response_magnitude_is_the_lectures():
  rng = np.random.default_rng(2)
  images = rng.random((3, 28, 28)).astype(np.float32)
  params = kernels.gabor_bank()
  bank = [p.kernel() for p in params]
  out = convolution.response_magnitude(images, kernels.stack_kernels(bank))
  assert out.shape == (3, 8, 28, 28)
  for n, image in enumerate(images.astype(np.float64)):
    standardized = (image - image.mean()) / image.std()
    for k, kernel in enumerate(bank):
      expected = np.sqrt(ndimage.convolve(standardized, kernel.real, mode='wrap') ** 2 +
                         ndimage.convolve(standardized, kernel.imag, mode='wrap') ** 2)
      np.testing.assert_allclose(out[n, k], expected, atol=1e-5)
  # One kernel: no bank axis; a blank image: a blank response, not NaN.
  single = convolution.response_magnitude(np.zeros((5, 5)), bank[0])
  assert single.shape == (5, 5) and np.all(np.asarray(single) == 0)


def test_stack_kernels_centres_them():
  small, large = np.ones((3, 3)), np.full((5, 5), 2.0)
  stacked = kernels.stack_kernels([small, large])
  assert stacked.shape == (2, 5, 5)
  np.testing.assert_array_equal(stacked[0, 1:4, 1:4], small)
  assert stacked[0].sum() == 9
  with pytest.raises(ValueError, match='odd'):
    kernels.stack_kernels([np.ones((2, 2))])


def test_pooling_example_of_the_spec():
  np.testing.assert_array_equal(convolution.pool(SPEC_POOLING_INPUT, 3), [[8, 5], [6, 3]])
  mean = np.asarray(convolution.pool(SPEC_POOLING_INPUT, 3, kind='mean'))
  np.testing.assert_allclose(mean, np.array([[34, 21], [27, 11]]) / 9, rtol=1e-6)
  np.testing.assert_allclose(mean, [[3.78, 2.33], [3.00, 1.22]], atol=0.005)  # As the SPEC rounds.


def test_overlapping_pooling():
  for window, stride in [(3, 1), (3, 2), (2, 1)]:
    for kind, reduce in [('max', np.max), ('mean', np.mean)]:
      ours = convolution.pool(SPEC_POOLING_INPUT, window, stride, kind=kind)
      np.testing.assert_allclose(ours, naive_pool(SPEC_POOLING_INPUT, window, stride, reduce),
                                 rtol=1e-6)
  assert convolution.pool(SPEC_POOLING_INPUT, 3, 1).shape == (4, 4)
  # Batches pool over their last two axes.
  batch = np.stack([SPEC_POOLING_INPUT, SPEC_POOLING_INPUT + 10])
  np.testing.assert_array_equal(convolution.pool(batch, 3)[1], [[18, 15], [16, 13]])


def test_same_pooling_counts_only_real_pixels():
  ones = np.ones((5, 5), np.float32)
  np.testing.assert_array_equal(convolution.pool(ones, 2, kind='mean', padding='same'),
                                np.ones((3, 3)))
  assert convolution.pool(ones, 2, padding='same').shape == (3, 3)


def test_separate_factors_rank_one_kernels():
  column, row = convolution.separate(kernels.SOBEL_X)
  np.testing.assert_array_equal(column, [-1, -2, -1])
  np.testing.assert_array_equal(row, [1, 0, -1])
  np.testing.assert_array_equal(np.outer(column, row), kernels.SOBEL_X)
  column, row = convolution.separate(kernels.HORIZONTAL_EDGE)
  np.testing.assert_array_equal(np.outer(column, row), kernels.HORIZONTAL_EDGE)
  with pytest.raises(ValueError, match='rank 2, not one'):
    convolution.separate(kernels.EDGE_DETECT)


@pytest.mark.parametrize('padding', ['valid', 'same'])
def test_rank_one_kernel_equals_a_row_then_a_column_pass(padding):
  """1x3 then 3x1 is the 3x3 outer product: exactly on integers, to float rounding otherwise."""
  rng = np.random.default_rng(0)
  integers = rng.integers(0, 256, size=(2, 17, 19)).astype(np.float32)
  column, row = convolution.separate(kernels.SOBEL_X)
  full = convolution.correlate(integers, kernels.SOBEL_X, padding=padding)
  factorized = convolution.correlate_separable(integers, column, row, padding=padding)
  assert factorized.shape == full.shape == ((2, 15, 17) if padding == 'valid' else (2, 17, 19))
  np.testing.assert_array_equal(factorized, full)

  floats = rng.normal(size=(17, 19)).astype(np.float32)
  column, row = rng.normal(size=3), rng.normal(size=3)
  full = convolution.correlate(floats, np.outer(column, row), padding=padding)
  factorized = convolution.correlate_separable(floats, column, row, padding=padding)
  np.testing.assert_allclose(factorized, full, rtol=1e-5, atol=1e-5)


def test_factorized_same_keeps_every_border_mode():
  image = np.random.default_rng(1).normal(size=(9, 8)).astype(np.float32)
  column, row = np.array([1.0, 2.0, 1.0]), np.array([-1.0, 0.0, 1.0])
  for border in convolution.BORDERS:
    np.testing.assert_allclose(
        convolution.correlate_separable(image, column, row, padding='same', border=border),
        convolution.correlate(image, np.outer(column, row), padding='same', border=border),
        rtol=1e-5, atol=1e-5, err_msg=border)


@pytest.mark.parametrize('padding', ['valid', 'same'])
def test_factorization_saves_a_third_of_the_flops(padding):
  """XLA's cost analysis: 2 flops per multiply-add, so 18 per output for 3x3 and 12 factorized;
  'same' is exactly 6/9, 'valid' pays for the row pass's 2 extra rows (see `factorization_flops`)."""
  h, w = 256, 128
  flops = convolution.factorization_flops((h, w), [1, 2, 1], [-1, 0, 1], padding=padding)
  if padding == 'same':
    assert flops.outputs == h * w
    assert flops.full == 2 * 9 * h * w and flops.factorized == 2 * 6 * h * w
    assert flops.ratio == pytest.approx(6 / 9, abs=1e-12)
  else:
    assert flops.outputs == (h - 2) * (w - 2)
    assert flops.full == 2 * 9 * (h - 2) * (w - 2)
    assert flops.factorized == 2 * 3 * h * (w - 2) + 2 * 3 * (h - 2) * (w - 2)
    assert flops.ratio == pytest.approx(6 / 9, abs=0.003)
