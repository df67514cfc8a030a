"""Intermediate activations and reaching a named layer: feature maps, channel grids, probes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.config import base_config
from cnnjax.errors import ConfigError
from cnnjax.models import create_model, layer_outputs
from cnnjax.visualize import activations, layer_probe


@pytest.fixture(scope='module')
def convnet():
  model = create_model(base_config().model)  # The main job's small convnet, Flatten head.
  variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  image = jax.random.uniform(jax.random.key(1), (28, 28, 1))
  return model, variables, image


def reference_grid(feature_map, images_per_row=16):
  """The reference's tiling loop (listing 5.31), every row filled, in NumPy."""
  size, channels = feature_map.shape[0], feature_map.shape[-1]
  rows = channels // images_per_row
  grid = np.zeros((size * rows, images_per_row * size))
  for row in range(rows):
    for col in range(images_per_row):
      channel = feature_map[:, :, row * images_per_row + col].astype(np.float64).copy()
      channel -= channel.mean()
      channel /= channel.std()
      channel *= 64
      channel += 128
      grid[row * size:(row + 1) * size, col * size:(col + 1) * size] = np.clip(
          channel, 0, 255).astype('uint8')
  return grid


def test_feature_maps_are_the_conv_and_pool_outputs(convnet):
  model, variables, image = convnet
  maps = activations.feature_maps(model, variables, image)
  assert {name: m.shape for name, m in maps.items()} == {
      'conv1': (26, 26, 32), 'pool1': (13, 13, 32), 'conv2': (11, 11, 64), 'pool2': (5, 5, 64),
      'conv3': (3, 3, 64)}
  assert list(maps) == ['conv1', 'pool1', 'conv2', 'pool2', 'conv3']  # Call order.
  everything = layer_outputs(model, variables, image[None])
  for name, feature_map in maps.items():
    np.testing.assert_array_equal(feature_map, everything[name][0])
  chosen = activations.feature_maps(model, variables, image, names=['pool2'])
  assert list(chosen) == ['pool2']
  with pytest.raises(ValueError, match='one image'):
    activations.feature_maps(model, variables, jnp.stack([image, image]))


def test_activation_grid_is_the_references(convnet):
  model, variables, image = convnet
  feature_map = np.asarray(activations.feature_maps(model, variables, image)['conv2'])
  live = feature_map[..., feature_map.std(axis=(0, 1)) > 0]  # The reference NaNs dead channels.
  live = live[..., :32]
  grid = np.asarray(activations.activation_grid(live))
  assert grid.dtype == np.uint8 and grid.shape == (2 * 11, 16 * 11)
  # Truncation after float32 vs float64 standardization may differ by one level.
  assert np.abs(grid.astype(int) - reference_grid(live)).max() <= 1


def test_constant_channels_are_flat_tiles_not_nan():
  feature_map = np.zeros((4, 4, 3), np.float32)
  feature_map[..., 1] = 0.3  # Constant but not zero: rounding must not make noise of it.
  feature_map[..., 2] = np.arange(16).reshape(4, 4)
  grid = np.asarray(activations.activation_grid(feature_map))
  assert grid.shape == (4, 12)
  np.testing.assert_array_equal(grid[:, :8], 128)
  assert grid[:, 8:].min() < 128 < grid[:, 8:].max()


def test_grid_layout_sixteen_per_row():
  channels = np.arange(20, dtype=np.float32)
  feature_map = np.zeros((2, 2, 20), np.float32) + channels  # Constant tiles...
  feature_map[0, 0] += 1  # ... made distinct: pixel (0, 0) is the bright one.
  grid = np.asarray(activations.activation_grid(feature_map))
  assert grid.shape == (4, 32)
  assert grid[2, 6] == grid[0, 0] > 128  # Channel 16 starts the second row.
  np.testing.assert_array_equal(grid[2:, 8:], 0)  # Missing tiles of the last row stay black.
  assert activations.activation_grid(feature_map[..., :4]).shape == (2, 8)
  tiles = jnp.arange(3 * 2 * 2).reshape(3, 2, 2)
  spaced = np.asarray(activations.tile_images(tiles, columns=2, margin=1, fill=-1))
  assert spaced.shape == (5, 5)
  np.testing.assert_array_equal(spaced[:, 2], -1)
  np.testing.assert_array_equal(spaced[3:, 3:], -1)


def test_apply_until_stops_at_the_layer(convnet):
  model, variables, image = convnet
  images = image[None]
  np.testing.assert_array_equal(layer_probe.apply_until(model, variables, images, 'pool2'),
                                layer_outputs(model, variables, images)['pool2'])
  # The Flatten head would reject 40x40 inputs; stopping at conv3 never reaches it.
  big = jnp.ones((2, 40, 40, 1))
  assert layer_probe.apply_until(model, variables, big, 'conv3').shape == (2, 6, 6, 64)
  with pytest.raises(Exception):
    model.apply(variables, big)
  grads = jax.jit(jax.grad(lambda x: layer_probe.apply_until(model, variables, x, 'conv2').sum()))(
      big)
  assert grads.shape == big.shape and jnp.any(grads != 0)
  with pytest.raises(ConfigError, match="no layer named 'conv9'.*conv1"):
    layer_probe.apply_until(model, variables, images, 'conv9')


def test_pre_activation_is_the_output_before_the_relu(convnet):
  model, variables, image = convnet
  images = image[None]
  before = layer_probe.apply_until(model, variables, images, 'conv2', pre_activation=True)
  after = layer_probe.apply_until(model, variables, images, 'conv2')
  assert jnp.any(before < 0)
  np.testing.assert_allclose(jax.nn.relu(before), after, atol=1e-6)
  with pytest.raises(ConfigError, match='no activation'):
    layer_probe.apply_until(model, variables, images, 'pool1', pre_activation=True)


def test_apply_perturbed_adds_to_the_layer_output(convnet):
  model, variables, image = convnet
  images = image[None]
  delta = jnp.zeros((1, 11, 11, 64)).at[0, 5, 5, 3].set(2.0)
  logits, features = layer_probe.apply_perturbed(model, variables, images, 'conv2', delta)
  np.testing.assert_array_equal(features, layer_outputs(model, variables, images)['conv2'])
  untouched, _ = layer_probe.apply_perturbed(model, variables, images, 'conv2')
  np.testing.assert_allclose(untouched, model.apply(variables, images), atol=1e-6)
  assert not np.allclose(logits, untouched)
  assert layer_probe.zeros_like_layer(model, variables, images, 'conv2').shape == delta.shape


def test_a_layer_called_twice_has_no_single_output():

  class Shared(nn.Module):

    @nn.compact
    def __call__(self, x):
      dense = nn.Dense(2, name='shared')
      return dense(dense(x))

  model = Shared()
  variables = model.init(jax.random.key(0), jnp.ones((1, 2)))
  with pytest.raises(ConfigError, match='called 2 times'):
    layer_probe.apply_perturbed(model, variables, jnp.ones((1, 2)), 'shared')
