"""Filter patterns by gradient ascent in input space: the reference recipe, vmapped grid, Lucid."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.models.convnet import ConvNet
from cnnjax.visualize import filter_patterns as fp
from cnnjax.visualize import image_parameterization, transform_robustness


@pytest.fixture(scope='module')
def net():
  """A small RGB convnet, randomly initialized: enough structure for the ascent to find."""
  model = ConvNet(conv_features=(8, 8), num_outputs=3, head='gap')
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  return model, variables


def reference_deprocess(x):
  """The reference's deprocess_image, in NumPy."""
  x = np.array(x, np.float32)
  x -= x.mean()
  x /= (x.std() + 1e-5)
  x *= 0.1
  x += 0.5
  x = np.clip(x, 0, 1)
  x *= 255
  return np.clip(x, 0, 255).astype('uint8')


def test_deprocess_is_the_references():
  x = np.random.default_rng(0).normal(130, 7, (9, 9, 3)).astype(np.float32)
  out = np.asarray(fp.deprocess_image(x))
  assert out.dtype == np.uint8
  assert np.abs(out.astype(int) - reference_deprocess(x)).max() <= 1
  np.testing.assert_array_equal(fp.deprocess_image(np.full((4, 4, 1), 7.0)), 127)  # No NaN.


def test_the_recipe_step_by_step(net):
  model, variables = net
  key = jax.random.key(3)
  start = fp.initial_image(key, 16, 3)
  assert start.shape == (1, 16, 16, 3)
  assert 128 <= float(start.min()) and float(start.max()) < 148
  image, losses = fp.gradient_ascent(model, variables, 'conv2', 1, key, size=16, channels=3,
                                     steps=1)
  grads = jax.grad(lambda x: fp.filter_activation(model, variables, x, 'conv2', 1))(start)
  expected = start + grads / (jnp.sqrt(jnp.mean(grads ** 2)) + 1e-5)
  np.testing.assert_allclose(image, expected[0], rtol=1e-6)
  # A step of size 1 moves the image by 1 pixel unit, root mean square (less the epsilon's share).
  rms = jnp.sqrt(jnp.mean(grads ** 2))
  np.testing.assert_allclose(jnp.sqrt(jnp.mean((image - start[0]) ** 2)), rms / (rms + 1e-5),
                             rtol=1e-4)
  np.testing.assert_allclose(losses[0], fp.filter_activation(model, variables, start, 'conv2', 1))
  scaled, _ = fp.gradient_ascent(model, variables, 'conv2', 1, key, size=16, channels=3, steps=1,
                                 input_scale=1 / 255)
  assert 0.9 / 255 < float(jnp.sqrt(jnp.mean((scaled - start[0] / 255) ** 2))) <= 1 / 255


def test_the_objective_increases(net):
  model, variables = net
  _, losses = fp.filter_patterns(model, variables, 'conv2', jnp.arange(8), jax.random.key(0),
                                 size=16, channels=3)
  assert losses.shape == (8, 40)
  live = np.asarray(losses[:, 0]) > 0  # A filter silent everywhere has no gradient to follow.
  assert live.sum() >= 4
  assert np.all(np.asarray(losses[live, -1]) > 1.5 * np.asarray(losses[live, 0]))
  assert np.all(np.diff(np.asarray(losses[live]), axis=1) > 0)  # Every step gains.


def test_the_vmapped_grid_equals_the_loop(net):
  model, variables = net
  key = jax.random.key(7)
  indices = jnp.array([0, 3, 5, 6])
  images, losses = fp.filter_patterns(model, variables, 'conv1', indices, key, size=16, channels=3,
                                      steps=10)
  for row, index in enumerate(indices):
    image, loss = fp.gradient_ascent(model, variables, 'conv1', int(index),
                                     jax.random.fold_in(key, index), size=16, channels=3, steps=10)
    np.testing.assert_allclose(images[row], image, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(losses[row], loss, rtol=1e-4, atol=1e-6)
    assert np.abs(np.asarray(fp.deprocess_image(images[row]), int) -
                  np.asarray(fp.deprocess_image(image), int)).max() <= 1
  # A filter's pattern does not depend on which other filters are computed with it.
  alone, _ = fp.filter_patterns(model, variables, 'conv1', indices[2:3], key, size=16, channels=3,
                                steps=10)
  np.testing.assert_allclose(alone[0], images[2], rtol=1e-5, atol=1e-3)


def test_pattern_grid_is_row_major_with_black_margins():
  patterns = jnp.arange(64, dtype=jnp.uint8)[:, None, None, None] * jnp.ones((1, 4, 4, 3),
                                                                             jnp.uint8)
  grid = np.asarray(fp.pattern_grid(patterns))
  assert grid.shape == (8 * 4 + 7 * 5, 8 * 4 + 7 * 5, 3)
  assert grid[0, 9 + 1, 0] == 1 and grid[9, 0, 0] == 8  # Filter 1 right of 0; 8 below it.
  np.testing.assert_array_equal(grid[4:9], 0)  # Margins are black.
  gray = fp.pattern_grid(patterns[:10, ..., :1], columns=5, margin=2)
  assert gray.shape == (2 * 4 + 2, 5 * 4 + 4 * 2)


def test_lucid_mode_raises_the_objective(net):
  model, variables = net
  images, objective = fp.lucid_filter_patterns(model, variables, 'conv2', jnp.arange(3),
                                               jax.random.key(0), size=16, channels=3, steps=25,
                                               learning_rate=0.05)
  assert images.shape == (3, 16, 16, 3)
  assert 0 <= float(images.min()) and float(images.max()) <= 1
  assert objective.shape == (3, 25)
  # Transforms make the objective noisy step to step; the trend is up.
  assert np.all(np.asarray(objective[:, -5:].mean(1)) > np.asarray(objective[:, :5].mean(1)))
  assert fp.to_uint8(images).dtype == jnp.uint8


def test_lucid_pre_activation_moves_a_silent_filter(net):
  model, variables = net
  # Filter 0 of conv1 made silent on every image in [0, 1]: a large negative bias.
  params = jax.tree.map(lambda x: x, variables['params'])
  params['conv1']['bias'] = params['conv1']['bias'].at[0].set(-100.0)
  silenced = {'params': params}
  kwargs = dict(size=12, channels=3, steps=10, transforms=False)
  _, after_relu = fp.lucid_filter_patterns(model, silenced, 'conv1', jnp.arange(1),
                                           jax.random.key(0), pre_activation=False, **kwargs)
  np.testing.assert_array_equal(after_relu, 0)  # No gradient: it never moves.
  _, before_relu = fp.lucid_filter_patterns(model, silenced, 'conv1', jnp.arange(1),
                                            jax.random.key(0), **kwargs)
  assert float(before_relu[0, -1]) > float(before_relu[0, 0])


def test_fourier_parameterization():
  spectrum = image_parameterization.init_spectrum(jax.random.key(0), 2, 10, 12, 3)
  assert spectrum.shape == (2, 3, 10, 7, 2)
  images = image_parameterization.spectrum_to_image(spectrum, 10, 12)
  assert images.shape == (2, 10, 12, 3)
  assert 0.45 < float(images.min()) and float(images.max()) < 0.55  # Grey with faint noise.
  # The DC coefficient alone gives a flat image.
  dc = jnp.zeros_like(spectrum).at[:, :, 0, 0, 0].set(1.0)
  flat = image_parameterization.spectrum_to_pixels(dc, 10, 12)
  np.testing.assert_allclose(flat, np.broadcast_to(flat[:, :1, :1], flat.shape), atol=1e-6)
  gray = jnp.ones((1, 2, 2, 1))
  np.testing.assert_array_equal(image_parameterization.decorrelate_colors(gray), gray)
  mixed = image_parameterization.decorrelate_colors(jnp.array([1.0, 0.0, 0.0]))
  np.testing.assert_allclose(mixed, image_parameterization.COLOR_MIX[:, 0], rtol=1e-6)
  assert np.isclose(np.linalg.norm(image_parameterization.COLOR_MIX, axis=0).max(), 1.0)


def test_transforms():
  images = jax.random.uniform(jax.random.key(0), (2, 9, 9, 2))
  same = transform_robustness.scale_and_rotate(images, jnp.ones(2), jnp.zeros(2))
  np.testing.assert_allclose(same, images, atol=1e-5)
  turned = transform_robustness.scale_and_rotate(images, jnp.ones(2), jnp.full(2, 90.0))
  np.testing.assert_allclose(turned, jnp.rot90(images, k=-1, axes=(1, 2)), atol=1e-4)
  assert transform_robustness.jitter(jax.random.key(1), images, 3).shape == (2, 6, 6, 2)
  out = transform_robustness.robust_transform(jax.random.key(2), images)
  assert out.shape == (2, 9 + 24 - 12, 9 + 24 - 12, 2)


def test_the_visualize_job_computes_patterns_in_steps_as_one_call_would(net):
  """The job's progress steps (8 filters a call, the last call padded): 11 filters of conv2 give
  the patterns and losses of one call over all 11, in filter order."""
  from cnnjax.visualize import job  # pylint: disable=import-outside-toplevel
  model, variables = net
  key = jax.random.key(3)
  recipe = dict(size=16, channels=3, steps=3)
  stepped = job.patterns_with_progress(SimpleNamespace(model=model, variables=variables), 'conv2',
                                       11, key, **recipe)
  whole = fp.filter_patterns(model, variables, 'conv2', jnp.arange(11), key, **recipe)
  assert job.FILTERS_PER_CALL < 11
  for ours, reference in zip(stepped, whole):
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)


class RecordedProgress:
  """Stands in for `cnnjax.progress.Progress`: records the description, total and each update;
  the last one made is `RecordedProgress.last`."""

  last = None

  def __init__(self, description, total, unit='item', **_):
    self.description, self.total, self.unit, self.updates = description, total, unit, []
    RecordedProgress.last = self

  def update(self, count=1):
    self.updates.append(count)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    pass


def test_the_visualize_job_computes_lucid_patterns_in_steps_as_one_call_would(net, monkeypatch):
  """The job's Lucid progress steps: 6 Adam steps, 2 a call (3 calls), the spectra and Adam's
  state carried from call to call, give the images and objectives of one call over 6 steps."""
  from cnnjax.visualize import job  # pylint: disable=import-outside-toplevel
  model, variables = net
  monkeypatch.setattr(job, 'LUCID_STEPS_PER_CALL', 2)
  monkeypatch.setattr(job, 'Progress', RecordedProgress)
  key = jax.random.key(5)
  recipe = dict(size=12, channels=3, steps=6, learning_rate=0.05,
                preprocess=job.UNIT_PREPROCESS['none'])
  stepped = job.lucid_with_progress(SimpleNamespace(model=model, variables=variables), 'conv2', 3,
                                    key, **recipe)
  assert RecordedProgress.last.total == 6 and RecordedProgress.last.updates == [2, 2, 2]
  whole = fp.lucid_filter_patterns(model, variables, 'conv2', jnp.arange(3), key, **recipe)
  for ours, reference in zip(stepped, whole):
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)
  # Equal calls: the largest divisor of the steps that fits, one compilation.
  assert [job.steps_per_call(s, 32) for s in (128, 512, 100, 127, 7)] == [32, 32, 25, 1, 7]
