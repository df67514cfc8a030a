"""Intermediate activations: every channel of every conv and pool layer for one input image.

The feature maps a layer outputs show how the network decomposes its input: edge detectors that
keep nearly all of the image in the first layers, sparser and more abstract maps (more and more
blank channels) deeper in. `feature_maps` collects the outputs of the conv and pool layers by name
(through `cnnjax.models.layer_outputs`), and `activation_grid` tiles one layer's channels as the
reference does: 16 per row, each channel standardized, times 64 plus 128, clipped to 0..255.
"""

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.models.layer_outputs import layer_outputs, layer_types

# Layer classes whose outputs are feature maps worth tiling: convolutions and (non-global)
# pooling, by the substring of their class name (Conv2D, MaxPooling2D, AveragePooling2D, ...).
_FEATURE_MAP_KINDS = ('conv', 'pool')


def feature_map_layers(model: nn.Module, variables: Mapping[str, Any], images: jax.Array,
                       **apply_kwargs) -> list[str]:
  """Names of the model's conv and pool layers with (N, H, W, C) outputs, in call order."""
  types = layer_types(model, variables, images, **apply_kwargs)
  shapes = jax.eval_shape(lambda v, x: layer_outputs(model, v, x, **apply_kwargs),
                          variables, images)
  return [name for name, kind in types.items()
          if any(k in kind.lower() for k in _FEATURE_MAP_KINDS) and len(shapes[name].shape) == 4]


def feature_maps(model: nn.Module, variables: Mapping[str, Any], image: jax.Array,
                 names: Sequence[str] | None = None, **apply_kwargs) -> dict[str, jax.Array]:
  """The feature maps of one image: {layer name: (H, W, C)} for each conv and pool layer.

  Args:
    model: a Flax Linen model whose layers are direct, named submodules.
    variables: its variables.
    image: one input image (H, W, C), or a batch of one.
    names: the layers wanted; None for every conv and pool layer (the reference looks at the first
      eight layers of its convnet, which are exactly these).
    **apply_kwargs: passed on to `model.apply`.

  Returns:
    An ordered dict from layer name to that layer's output for the image.
  """
  images = image[None] if image.ndim == 3 else image
  if images.shape[0] != 1:
    raise ValueError(f'feature_maps looks at one image; got a batch of {images.shape[0]}')
  if names is None:
    names = feature_map_layers(model, variables, images, **apply_kwargs)
  outputs = layer_outputs(model, variables, images, names=names, **apply_kwargs)
  return {name: output[0] for name, output in outputs.items()}


def standardize_channels(feature_map: jax.Array) -> jax.Array:
  """Each channel of an (H, W, C) map to uint8: (x - mean) / std * 64 + 128, clipped to 0..255.

  A constant channel (std 0: a filter that found nothing) becomes a flat tile of 128, not NaN.
  """
  x = jnp.asarray(feature_map, jnp.float32)
  # Tested exactly: rounding in the mean would turn a constant channel into amplified noise.
  constant = x.max(axis=(0, 1), keepdims=True) == x.min(axis=(0, 1), keepdims=True)
  std = x.std(axis=(0, 1), keepdims=True)
  centred = x - x.mean(axis=(0, 1), keepdims=True)
  x = jnp.where(constant, 0.0, centred / jnp.where(constant, 1.0, std))
  # Truncation, as NumPy's astype('uint8') in the reference, after the clip.
  return jnp.clip(x * 64 + 128, 0, 255).astype(jnp.uint8)


def activation_grid(feature_map: jax.Array, images_per_row: int = 16, margin: int = 0) -> jax.Array:
  """Tiles the channels of an (H, W, C) feature map into one uint8 image, row by row.

  Channel k goes to row k // images_per_row, column k % images_per_row; each is standardized on
  its own (`standardize_channels`). With fewer channels than `images_per_row` the grid is one row
  of C tiles; the unused tiles of a last, partial row are black (0). `margin` puts black pixels
  between tiles (the reference uses none).

  Returns:
    uint8 array of shape (rows * (H + margin) - margin, cols * (W + margin) - margin).
  """
  if feature_map.ndim != 3:
    raise ValueError(f'activation_grid takes one (H, W, C) feature map, got {feature_map.shape}')
  height, width, channels = feature_map.shape
  tiles = jnp.moveaxis(standardize_channels(feature_map), -1, 0)
  return tile_images(tiles, min(images_per_row, channels), margin)


def tile_images(tiles: jax.Array, columns: int, margin: int = 0, fill: int = 0) -> jax.Array:
  """Lays (K, H, W[, C]) tiles out row-major on a grid `columns` wide, `margin` pixels apart.

  Returns an array of the tiles' dtype, (rows * (H + margin) - margin, columns * (W + margin) -
  margin[, C]), with `fill` in the margins and in the empty tiles of a partial last row.
  """
  count, height, width = tiles.shape[:3]
  rows = -(-count // columns)
  extra = tiles.shape[3:]
  padded = jnp.full((rows * columns, height + margin, width + margin, *extra), fill, tiles.dtype)
  padded = padded.at[:count, :height, :width].set(tiles)
  grid = padded.reshape(rows, columns, height + margin, width + margin, *extra)
  grid = jnp.swapaxes(grid, 1, 2).reshape(rows * (height + margin), columns * (width + margin),
                                          *extra)
  return grid[:rows * (height + margin) - margin, :columns * (width + margin) - margin]
