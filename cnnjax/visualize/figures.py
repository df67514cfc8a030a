"""Matplotlib figures of the visualizations, written to PNG files.

Each function takes computed arrays (NumPy or JAX) and a path, draws one figure the way the
lectures show it, writes it and returns the path. Nothing here computes a visualization: that is
the other modules' job, so the figures can be redrawn from saved arrays.
"""

import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use('Agg')  # Files only: no display is needed, or wanted, on a training machine.
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
from matplotlib import patches  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position


def _save(fig, path: str, dpi: int = 100) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=dpi, bbox_inches='tight')
  plt.close(fig)
  return path


def _image(array) -> np.ndarray:
  """(H, W, 1) -> (H, W) so matplotlib draws a grayscale image; anything else unchanged."""
  array = np.asarray(array)
  return array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array


def _kernel_panel(ax, kernel: np.ndarray, title: str) -> None:
  kernel = np.asarray(kernel)
  limit = max(np.abs(kernel).max(), 1e-12)
  ax.imshow(kernel, cmap='gray_r', vmin=-limit, vmax=limit)
  if kernel.shape[0] <= 5 and kernel.shape[1] <= 5:
    for (i, j), value in np.ndenumerate(kernel):
      # gray_r draws large values dark: write on them in white.
      ax.text(j, i, f'{value:g}', ha='center', va='center', fontsize=10,
              color='white' if value > limit / 3 else 'black')
  ax.set_title(title, fontsize=9)
  ax.set_xticks([])
  ax.set_yticks([])


def plot_kernel_demo(image, kernels: Mapping[str, np.ndarray], filtered: Mapping[str, np.ndarray],
                     path: str, vmin: float = -4.0, vmax: float = 4.0) -> str:
  """One row per kernel: the image, the kernel (values written in), the filtered image.

  As in the lecture's figure, images are drawn with the reversed gray colormap and the filtered
  images on a fixed -4..4 scale, so that strong responses of either sign stand out.
  """
  rows = len(kernels)
  fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False)
  for row, name in zip(axes, kernels):
    row[0].imshow(_image(image), cmap='gray_r', vmin=0, vmax=1)
    row[0].set_title('Image', fontsize=9)
    _kernel_panel(row[1], kernels[name], name.replace('_', ' ').capitalize() + ' filter')
    row[2].imshow(np.asarray(filtered[name]), cmap='gray_r', vmin=vmin, vmax=vmax)
    row[2].set_title('Filtered image', fontsize=9)
    for ax in (row[0], row[2]):
      ax.set_xticks([])
      ax.set_yticks([])
  fig.tight_layout()
  return _save(fig, path)


def plot_gabor_kernels(kernels: Sequence[np.ndarray], labels: Sequence[str], path: str) -> str:
  """The real parts of Gabor kernels side by side, each titled with its parameters."""
  fig, axes = plt.subplots(1, len(kernels), figsize=(3 * len(kernels), 3.3), squeeze=False)
  for ax, kernel, label in zip(axes[0], kernels, labels):
    ax.imshow(np.real(kernel), cmap='gray', interpolation='nearest')
    ax.set_title(label.replace('\n', ', '), fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.tight_layout()
  return _save(fig, path)


def plot_gabor_response(image, kernel: np.ndarray, magnitude, label: str, path: str) -> str:
  """Original / Gabor kernel (real part) / response magnitude, as in the lecture's demo."""
  fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
  axes[0].imshow(_image(image), cmap='viridis')
  axes[0].set_title('Original')
  axes[1].imshow(np.real(kernel), cmap='gray', interpolation='nearest')
  axes[1].set_title('Gabor kernel')
  axes[2].imshow(np.asarray(magnitude), cmap='viridis')
  axes[2].set_title('Response magnitude')
  for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(label.replace('\n', ', '), fontsize=10)
  fig.tight_layout()
  return _save(fig, path)


def plot_filter_bank(images: Sequence, image_names: Sequence[str], kernels: Sequence[np.ndarray],
                     labels: Sequence[str], magnitudes, path: str) -> str:
  """The lecture's filter-bank figure: a row per kernel (kernel, then its response on each image).

  `magnitudes` is (num_images, num_kernels, H, W); each row shares one contrast scale, so the
  responses of one filter to different images compare.
  """
  magnitudes = np.asarray(magnitudes)
  rows, cols = len(kernels) + 1, len(images) + 1
  fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.5 * rows), squeeze=False)
  axes[0][0].axis('off')
  for ax, image, name in zip(axes[0][1:], images, image_names):
    ax.imshow(_image(image), cmap='gray')
    ax.set_title(name, fontsize=9)
    ax.axis('off')
  for k, (kernel, label, row) in enumerate(zip(kernels, labels, axes[1:])):
    row[0].imshow(np.real(kernel), cmap='gray', interpolation='nearest')
    row[0].set_ylabel(label, fontsize=7, rotation=0, ha='right', va='center')
    row[0].set_xticks([])
    row[0].set_yticks([])
    low, high = magnitudes[:, k].min(), magnitudes[:, k].max()
    for ax, response in zip(row[1:], magnitudes[:, k]):
      ax.imshow(response, cmap='gray', vmin=low, vmax=high)
      ax.axis('off')
  fig.tight_layout()
  return _save(fig, path)


def plot_pooling_example(matrix, window: int, pooled: Mapping[str, np.ndarray], path: str) -> str:
  """A small matrix with its pooling windows outlined, next to each pooled result, values written.

  The keys of `pooled` title the panels (a newline splits a long one).
  """
  matrix = np.asarray(matrix)
  widths = [matrix.shape[1]] + [np.asarray(p).shape[1] for p in pooled.values()]
  fig, axes = plt.subplots(1, 1 + len(pooled), figsize=(0.62 * sum(widths) + 1.2 * len(pooled),
                                                        3.8),
                           gridspec_kw={'width_ratios': widths, 'wspace': 0.35})

  def draw(ax, values, title, fmt):
    ax.imshow(values, cmap='Blues', vmin=0, vmax=matrix.max() * 1.3)
    for (i, j), value in np.ndenumerate(values):
      ax.text(j, i, format(value, fmt), ha='center', va='center', fontsize=10)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])

  draw(axes[0], matrix, f'input {matrix.shape[0]}x{matrix.shape[1]}\n{window}x{window} windows',
       'g')
  for top in range(0, matrix.shape[0] - window + 1, window):
    for left in range(0, matrix.shape[1] - window + 1, window):
      axes[0].add_patch(patches.Rectangle((left - 0.5, top - 0.5), window, window, fill=False,
                                          lw=2, ec='tab:red'))
  for ax, (name, values) in zip(axes[1:], pooled.items()):
    values = np.asarray(values)
    draw(ax, values, name, 'g' if np.all(values == np.round(values)) else '.2f')
  return _save(fig, path)


def plot_activation_grid(grid, layer: str, path: str, tile: tuple[int, int] | None = None) -> str:
  """One layer's channel grid (viridis), one inch per channel as in the reference.

  `tile` is the (height, width) of one channel's map; thin white lines then separate the channels,
  which small maps (3x3) otherwise run into each other. The grid's pixels are not changed.
  """
  grid = np.asarray(grid)
  height, width = grid.shape
  tile_h, tile_w = tile or (height, width)
  rows, cols = height // tile_h, width // tile_w
  fig, ax = plt.subplots(figsize=(max(cols, 4), rows + 0.4))
  ax.imshow(grid, aspect='auto', cmap='viridis', vmin=0, vmax=255, interpolation='nearest')
  for r in range(1, rows):
    ax.axhline(r * tile_h - 0.5, color='white', lw=1)
  for c in range(1, cols):
    ax.axvline(c * tile_w - 0.5, color='white', lw=1)
  ax.set_title(layer)
  ax.grid(False)
  ax.set_xticks([])
  ax.set_yticks([])
  return _save(fig, path)


def plot_channel(feature_map, channel: int, layer: str, path: str) -> str:
  """One channel of one layer as an image (the reference's matshow)."""
  fig, ax = plt.subplots(figsize=(4, 4))
  ax.matshow(np.asarray(feature_map)[..., channel], cmap='viridis')
  ax.set_title(f'{layer}, channel {channel}')
  ax.set_xticks([])
  ax.set_yticks([])
  return _save(fig, path)


def plot_image(image, title: str, path: str) -> str:
  """An input image on its own, grayscale or colour, in [0, 1]."""
  fig, ax = plt.subplots(figsize=(3, 3))
  ax.imshow(_image(image), cmap='gray' if _image(image).ndim == 2 else None, vmin=0, vmax=1)
  ax.set_title(title, fontsize=10)
  ax.set_xticks([])
  ax.set_yticks([])
  return _save(fig, path)


def plot_filter_patterns(grid, title: str, path: str, inches: float = 10.0) -> str:
  """An 8x8 grid of uint8 filter patterns (black margins), with the layer as the title."""
  grid = np.asarray(grid)
  fig, ax = plt.subplots(figsize=(inches, inches))
  ax.imshow(grid, cmap='gray' if grid.ndim == 2 else None, vmin=0, vmax=255,
            interpolation='nearest')
  ax.set_title(title, fontsize=14)
  ax.set_xticks([])
  ax.set_yticks([])
  return _save(fig, path)


def plot_cam_methods(images, overlays: Mapping[str, np.ndarray], titles: Sequence[str],
                     path: str) -> str:
  """A row per image: the image, then its heatmap overlay by each method (columns titled)."""
  images = np.asarray(images)
  rows, cols = images.shape[0], 1 + len(overlays)
  fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.0 * rows + 0.3), squeeze=False)
  for n in range(rows):
    axes[n][0].imshow(_image(images[n]), cmap='gray' if images.shape[-1] == 1 else None,
                      vmin=0, vmax=1)
    axes[n][0].set_ylabel(titles[n], fontsize=8, rotation=0, ha='right', va='center')
    for ax, (method, overlay) in zip(axes[n][1:], overlays.items()):
      ax.imshow(np.asarray(overlay[n]), interpolation='bilinear')
      if n == 0:
        ax.set_title(method, fontsize=9)
    if n == 0:
      axes[n][0].set_title('image', fontsize=9)
    for ax in axes[n]:
      ax.set_xticks([])
      ax.set_yticks([])
  fig.tight_layout()
  return _save(fig, path)


def plot_heatmap_and_overlay(heatmap, overlay, title: str, path: str,
                             overlay_title: str = 'superimposed') -> str:
  """The reference's two Grad-CAM pictures: the map at the layer's resolution, then overlaid."""
  fig, axes = plt.subplots(1, 2, figsize=(8, 4))
  axes[0].matshow(np.asarray(heatmap), cmap='viridis')
  axes[0].set_title(f'heatmap {np.asarray(heatmap).shape[0]}x{np.asarray(heatmap).shape[1]}')
  axes[1].imshow(np.asarray(overlay), interpolation='bilinear')
  axes[1].set_title(overlay_title)
  for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(title)
  fig.tight_layout()
  return _save(fig, path)


def probability_text(p: float) -> str:
  """A probability for a title: 3 decimals, or 2 significant digits below 0.001 (not '0.000')."""
  p = float(p)
  return f'{p:.3f}' if p >= 1e-3 or p == 0 else f'{p:.1e}'


def plot_class_maps(image, overlays, class_names: Sequence[str], probabilities, title: str,
                    path: str) -> str:
  """One image's heatmap for each class, titled with the class and its probability."""
  overlays = np.asarray(overlays)
  count = overlays.shape[0]
  cols = min(count, 5) + 1
  rows = -(-count // (cols - 1))
  fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.5 * rows + 0.4), squeeze=False,
                           layout='constrained')
  axes[0][0].imshow(_image(image), cmap='gray' if np.asarray(image).shape[-1] == 1 else None,
                    vmin=0, vmax=1)
  axes[0][0].set_title('image', fontsize=9)
  for r in range(rows):
    for c in range(cols):
      axes[r][c].set_xticks([])
      axes[r][c].set_yticks([])
      if (c == 0 and r > 0) or (c > 0 and r * (cols - 1) + c - 1 >= count):
        axes[r][c].axis('off')  # The empty panels of a last, partial row.
  for k in range(count):
    ax = axes[k // (cols - 1)][1 + k % (cols - 1)]
    ax.imshow(overlays[k], interpolation='bilinear')
    ax.set_title(f'{class_names[k]}\np={probability_text(probabilities[k])}', fontsize=8)
  fig.suptitle(title, fontsize=10)
  return _save(fig, path)


def channel_title(channel: int, weight: float, decimals: int = 4) -> str:
  """A top-channel panel's title: the channel and its weight for the class."""
  return f'channel {int(channel)}\nweight {float(weight):+.{decimals}f}'


def weight_decimals(weights: Sequence[float], digits: int = 4) -> int:
  """Decimals that give the largest weight `digits` significant digits, the same for every panel
  (so that 0.02200 and 0.02205 line up, where '%.4g' would write 0.022 and 0.02205)."""
  largest = float(np.max(np.abs(np.asarray(weights, np.float64))))
  if largest == 0:
    return digits
  return max(0, digits - 1 - int(np.floor(np.log10(largest))))


def plot_top_channels(image, maps, channels: Sequence[int], weights: Sequence[float],
                      title: str, path: str, columns: int = 4) -> str:
  """The image, then the activation map of each channel, titled with its weight for the class.

  `maps` is (K, h, w) at the layer's resolution, drawn pixel for pixel on one shared colour scale
  (one colour bar), so that the channels' strengths compare as the weights do.
  """
  maps = np.asarray(maps, np.float32)
  count = maps.shape[0]
  columns = min(columns, count)
  rows = -(-count // columns)
  fig, axes = plt.subplots(rows, columns + 1, figsize=(2.2 * (columns + 1), 2.4 * rows + 0.6),
                           squeeze=False, layout='constrained')
  image = np.asarray(image)
  axes[0][0].imshow(_image(image), cmap='gray' if image.shape[-1] == 1 else None, vmin=0, vmax=1)
  axes[0][0].set_title('image', fontsize=9)
  for r in range(rows):
    for c in range(columns + 1):
      axes[r][c].set_xticks([])
      axes[r][c].set_yticks([])
      if (c == 0 and r > 0) or (c > 0 and r * columns + c - 1 >= count):
        axes[r][c].axis('off')
  low, high = float(min(maps.min(), 0.0)), float(max(maps.max(), 1e-12))
  decimals = weight_decimals(weights)
  shown = None
  for k in range(count):
    ax = axes[k // columns][1 + k % columns]
    shown = ax.imshow(maps[k], cmap='viridis', vmin=low, vmax=high, interpolation='nearest')
    ax.set_title(channel_title(channels[k], weights[k], decimals), fontsize=8)
  fig.colorbar(shown, ax=[axes[r][c] for r in range(rows) for c in range(1, columns + 1)],
               shrink=0.8, label='activation')
  fig.suptitle(title, fontsize=10)
  return _save(fig, path)
