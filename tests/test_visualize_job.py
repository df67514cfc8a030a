"""The visualize job end to end: a tiny trained run's figures, a pretrained file with a photo."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from cnnjax.errors import ConfigError, DataError
from cnnjax.models import MODELS
from cnnjax.models.convnet import ConvNet
from cnnjax.training.train import train_and_evaluate
from cnnjax.visualize import figures, job, overlay
from cnnjax.weights import keras_h5, registry
from cnnjax.weights.registry import WeightTable

from keras_files import write_weights_h5
from test_summary import load_config

PNG = b'\x89PNG\r\n\x1a\n'
TINY_PRETRAINED = functools.partial(ConvNet, conv_features=(4, 6), num_outputs=5, head='gap')


def quick(config, data_config):
  """The visualize config made fast: the tiny run's data slice, few filters, few steps."""
  config.data = data_config
  v = config.visualize
  v.num_examples = 3
  v.filter_count = 8
  v.filter_steps = 5
  v.lucid_steps = 4
  v.lucid_size = 28
  return config


def decode_png(path):
  """A figure's pixels, (H, W, 3) uint8, decoded by PIL."""
  with open(path, 'rb') as f:
    assert f.read(8) == PNG, path
  with Image.open(path) as image:
    assert image.format == 'PNG', path
    return np.asarray(image.convert('RGB'))


def assert_drawn(path):
  """The PNG decodes to a figure of some size, and not a blank one: beyond its titles, at least a
  tenth of it differs from the background (its corner's colour). Returns its pixels."""
  pixels = decode_png(path)
  assert min(pixels.shape[:2]) >= 100, (path, pixels.shape)
  drawn = np.any(pixels != pixels[0, 0], axis=-1).mean()
  assert drawn > 0.1, f'{path} is blank: {drawn:.1%} drawn'
  return pixels


def assert_pngs(workdir, written):
  with open(os.path.join(workdir, 'figures.json')) as f:
    listed = json.load(f)
  assert listed == {section: [os.path.relpath(p, workdir) for p in paths]
                    for section, paths in written.items()}
  for paths in written.values():
    for path in paths:
      assert_drawn(path)


@pytest.mark.slow  # Trains for an epoch, then draws 21 figures: about 1.5 min on 2 CPU cores.
def test_the_job_draws_every_figure_of_a_trained_run(tiny_config, tmp_path, capsys):
  run_dir = str(tmp_path / 'fashion_mnist_gap')
  tiny_config.model.name = 'small_convnet_gap'  # Global average pooling: CAM applies too.
  tiny_config.train.epochs = 1  # Any trained checkpoint will do: the figures' contents are not
  tiny_config.data.limit_train = 320  # checked (the section tests do that).
  train_and_evaluate(tiny_config, run_dir)
  config = quick(load_config('visualize_fashion_mnist'), tiny_config.data)
  assert config.job == 'visualize'
  config.visualize.checkpoint_dir = run_dir
  workdir = str(tmp_path / 'visualize')
  written = job.run(config, workdir)
  out = capsys.readouterr().out
  assert 'visualizing small_convnet_gap from the checkpoint of epoch' in out
  assert 'skipping CAM' not in out
  names = {section: [os.path.basename(p) for p in paths] for section, paths in written.items()}
  assert names == {
      'convolution': ['hand_made_kernels.png', 'gabor_kernels.png', 'gabor_response.png',
                      'gabor_filter_bank.png', 'pooling.png'],
      'activations': ['00_input.png', '01_conv1.png', '02_pool1.png', '03_conv2.png',
                      '04_pool2.png', '05_conv3.png', 'conv1_channel_3.png'],
      'filter_patterns': ['conv1.png', 'conv1_lucid.png', 'conv2.png', 'conv2_lucid.png',
                          'conv3.png', 'conv3_lucid.png'],
      'class_activation_maps': ['methods.png', 'grad_cam_reference.png',
                                'grad_cam_per_class.png'],
  }
  assert_pngs(workdir, written)
  # Sections can be left out.
  config.visualize.sections = ('activations',)
  assert list(job.run(config, str(tmp_path / 'only_activations'))) == ['activations']


def test_a_missing_checkpoint_says_to_run_the_main_job(tmp_path, tiny_config):
  config = quick(load_config('visualize_fashion_mnist'), tiny_config.data)
  config.visualize.checkpoint_dir = str(tmp_path / 'never_trained')
  with pytest.raises(ConfigError, match='run the main job first.*configs/fashion_mnist.py'):
    job.run(config, str(tmp_path / 'visualize'))
  assert not os.path.exists(tmp_path / 'never_trained')  # Looking created nothing there.
  config.visualize.checkpoint_dir = ''
  with pytest.raises(ConfigError, match='checkpoint_dir is empty'):
    job.run(config, str(tmp_path / 'visualize'))


def tiny_weights():
  """The parameters of a fixed initialization of the tiny model: the 'pretrained' weights."""
  variables = TINY_PRETRAINED().init(jax.random.key(5), jnp.zeros((1, 32, 32, 3)))
  return jax.tree.map(np.asarray, variables['params'])


TINY_TABLE = WeightTable(
    family='tiny', models=('tiny_pretrained',),
    to_variables=lambda f, name: {'params': keras_h5.to_flax_params(f.arrays)},
    identify=lambda f: 'tiny' if 'conv1' in f.names else None, where_to_get='the test',
    preprocess={'keras_legacy_h5': 'caffe'})


def known_answer_weights():
  """The tiny model with a known answer: a red and a green detector feed the classes.

  conv1's channel 0 is R - G - B at the kernel's centre (1 on red, 0 after the ReLU on grey or
  green), channel 1 is G - R - B; conv2's channels 0 and 1 pass them on, unchanged. Class 0 scores
  10 (mean red - mean green), class 1 the opposite, and classes 2-4 weigh nothing (bias -5). The
  other channels keep `tiny_weights`' random values, which no class reads.
  """
  params = tiny_weights()
  for layer, inputs in (('conv1', ((1, -1, -1), (-1, 1, -1))),
                        ('conv2', ((1, 0, 0, 0), (0, 1, 0, 0)))):
    kernel, bias = params[layer]['kernel'].copy(), params[layer]['bias'].copy()
    kernel[..., :2], bias[:2] = 0, 0
    kernel[1, 1, :, 0], kernel[1, 1, :, 1] = inputs
    params[layer] = {'kernel': kernel, 'bias': bias}
  kernel = np.zeros((6, 5), np.float32)
  kernel[:2, :2] = [[10, -10], [-10, 10]]
  params['predictions'] = {'kernel': kernel, 'bias': np.array([0, 0, -5, -5, -5], np.float32)}
  return params


def known_answer_photo(path):
  """A grey 64x64 photo with a red square in the top-right quadrant and a smaller green one in
  the bottom-left (the job resizes it to 32x32: red rows 2-13, cols 18-29)."""
  pixels = np.full((64, 64, 3), 128, np.uint8)
  pixels[4:28, 36:60] = (255, 0, 0)
  pixels[40:56, 8:24] = (0, 255, 0)
  Image.fromarray(pixels).save(path)
  return str(path)


def centroid(heat):
  """The (row, column) of a map's centre of heat, in fractions of its height and width."""
  heat = np.asarray(heat, np.float64)
  assert heat.ndim == 2 and heat.sum() > 0
  rows, cols = np.indices(heat.shape) + 0.5
  return (float((rows * heat).sum() / heat.sum() / heat.shape[0]),
          float((cols * heat).sum() / heat.sum() / heat.shape[1]))


def assert_top_right(heat):
  row, col = centroid(heat)
  assert row < 0.4 and col > 0.6, f'heat centred at ({row:.2f}, {col:.2f}), not top right'


def assert_bottom_left(heat):
  row, col = centroid(heat)
  assert row > 0.6 and col < 0.4, f'heat centred at ({row:.2f}, {col:.2f}), not bottom left'


def tiles(grid, size, count, margin=0):
  """The first `count` size x size tiles of a row of tiles `margin` pixels apart."""
  return [grid[:size, k * (size + margin):k * (size + margin) + size] for k in range(count)]


def test_pretrained_weights_and_a_photo(tmp_path, monkeypatch, capsys, tiny_config):
  """The pretrained path on a model and photo with a known answer: the arrays behind each figure
  and the decoded figures put the class evidence where the weights do (red: class 0, top right;
  green: class 1, bottom left), the activation grids hold the channels asked for, the filter
  patterns are patterns."""
  monkeypatch.setitem(MODELS, 'tiny_pretrained', TINY_PRETRAINED)
  monkeypatch.setitem(registry._TABLES, 'tiny_pretrained', TINY_TABLE)  # pylint: disable=protected-access
  drawn = {}  # The arrays the figures are drawn from, by figure function.

  def recorded(module, name):
    original = getattr(module, name)

    def record(*args, **kwargs):
      drawn.setdefault(name, []).append((args, kwargs))
      return original(*args, **kwargs)
    monkeypatch.setattr(module, name, record)

  for name in ('plot_activation_grid', 'plot_filter_patterns', 'plot_heatmap_and_overlay',
               'plot_class_maps'):
    recorded(figures, name)
  recorded(overlay, 'superimpose')  # Its heatmaps: those of the CAM figures.
  config = quick(load_config('visualize_vgg16'), tiny_config.data)
  config.model.name = 'tiny_pretrained'
  config.model.num_outputs = 5
  v = config.visualize
  v.weights = str(tmp_path / 'weights.h5')
  write_weights_h5(v.weights, known_answer_weights())
  v.image = photo = known_answer_photo(tmp_path / 'photo.png')
  v.image_size = 32
  v.preprocess = 'none'
  v.activation_layers = ()
  v.activation_channels = 3
  v.filter_layers = ('conv2',)
  v.filter_count, v.filter_size, v.lucid = 4, 0, False
  v.cam_layer = ''
  v.cam_methods = ('cam', 'grad_cam', 'score_cam')
  v.sections = ('convolution', 'activations', 'filter_patterns', 'class_activation_maps')
  workdir = str(tmp_path / 'visualize')
  written = job.run(config, workdir)
  out = capsys.readouterr().out
  assert 'skipping the convolution demos' not in out  # Switched off in the VGG16 config.
  assert f'with the weights of {v.weights} on {photo}' in out
  assert sorted(written) == ['activations', 'class_activation_maps', 'filter_patterns']
  assert [os.path.basename(p) for p in written['activations']] == [
      '00_input.png', '01_conv1.png', '02_pool1.png', '03_conv2.png', 'conv1_channel_3.png']
  assert_pngs(workdir, written)

  # Activations: 3 channels a layer, as asked; the red detector lights the top right, the green
  # one the bottom left.
  grids = drawn['plot_activation_grid']
  assert [args[1].split(' (')[0] for args, _ in grids] == ['conv1', 'pool1', 'conv2']
  for (grid, title, _), kwargs in grids:
    size = {'conv1': 30, 'pool1': 15, 'conv2': 13}[title.split(' ')[0]]
    assert kwargs['tile'] == (size, size) and np.asarray(grid).shape == (size, 3 * size), title
    red, green, other = tiles(np.asarray(grid, np.float64), size, 3)
    assert other.max() > 0, title  # Drawn, not the black of a missing tile.
    assert_top_right(red - red.min())
    assert_bottom_left(green - green.min())

  # Filter patterns: 4 tiles (of a row of 8) that are patterns, each its own; the rest black.
  ((grid, title, _), _), = drawn['plot_filter_patterns']
  assert title.startswith('tiny_pretrained conv2: filters 0-3, gradient ascent')
  grid = np.asarray(grid)
  assert grid.shape == (32, 8 * 32 + 7 * 5, 3)
  patterns = tiles(grid, 32, 8, margin=5)
  assert all(np.ptp(pattern) > 0 for pattern in patterns[:4])
  assert len({pattern.tobytes() for pattern in patterns[:4]}) == 4
  assert all(not pattern.any() for pattern in patterns[4:])

  # Class activation maps: every method's heat on the red square (class 0, predicted), none on
  # the green one for CAM and Grad-CAM (negative evidence there: zero after the ReLU).
  heat = [np.asarray(args[1]) for args, _ in drawn['superimpose']]
  assert [h.shape for h in heat] == [(1, 32, 32)] * 3 + [(1, 5, 32, 32)]
  for method, maps in zip(v.cam_methods, heat):
    assert 0 <= maps.min() and 0.5 < maps.max() <= 1 + 1e-6, method  # Scaled to [0, 1].
    assert_top_right(maps[0])
    if method != 'score_cam':
      assert not maps[0, 16:, :16].any(), method
  ((reference, _, title, path), _), = drawn['plot_heatmap_and_overlay']
  assert title.startswith('Grad-CAM of conv2') and title.endswith('class 0 (0.78)')
  reference = np.asarray(reference)
  assert reference.shape == (13, 13)  # conv2's resolution.
  assert_top_right(reference)
  assert reference.min() == 0 and not reference[7:, :6].any()
  # One map per class: class 1's on the green square; classes 2-4 weigh nothing, and show none.
  ((_, _, names, probabilities, _, _), _), = drawn['plot_class_maps']
  assert list(names) == [f'class {c}' for c in range(5)]
  assert probabilities[0] > probabilities[1] > max(probabilities[2:])
  per_class = heat[3][0]
  assert_top_right(per_class[0])
  assert_bottom_left(per_class[1])
  assert not per_class[2:].any()
  # The reference figure as decoded: the heatmap panel (the viridis colours of the left half) is
  # yellow, its maximum, in its top right.
  pixels = decode_png(path).astype(int)
  left = pixels[:, :pixels.shape[1] // 2]
  panel = np.argwhere(left.max(-1) - left.min(-1) > 40)
  (top, first), (bottom, last) = panel.min(0), panel.max(0) + 1
  yellow = np.all(np.abs(left[top:bottom, first:last] - (253, 231, 37)) < 30, axis=-1)
  assert 0.1 < yellow.mean() < 0.4  # The red square's share of conv2's map: 6 x 6 of 13 x 13.
  assert_top_right(yellow)

  variables = job.pretrained_variables(TINY_PRETRAINED(), 'tiny_pretrained', v.weights,
                                       (32, 32, 3))
  jax.tree.map(np.testing.assert_array_equal, variables['params'], known_answer_weights())
  with pytest.raises(DataError, match='no pretrained-weight loader'):
    job.pretrained_variables(TINY_PRETRAINED(), 'resnet', v.weights, (32, 32, 3))


def test_the_vgg16_config_needs_its_weights_and_photo(tmp_path):
  config = load_config('visualize_vgg16')
  assert config.job == 'visualize' and config.model.name == 'vgg16'
  assert config.visualize.filter_layers == ('block1_conv1', 'block2_conv1', 'block3_conv1',
                                            'block4_conv1', 'block5_conv1')
  with pytest.raises(ConfigError, match='checkpoint_dir is empty.*visualize.weights'):
    job.run(config, str(tmp_path / 'visualize'))
  config.visualize.weights = str(tmp_path / 'vgg16.h5')
  with pytest.raises(ConfigError, match='visualize.image is empty'):
    job.run(config, str(tmp_path / 'visualize'))


def test_vgg16_layers_are_reachable_by_name():
  vgg16 = pytest.importorskip('cnnjax.models.vgg16')
  model = vgg16.VGG16(include_top=False)
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  from cnnjax.visualize import filter_patterns  # pylint: disable=import-outside-toplevel
  images, losses = filter_patterns.filter_patterns(model, variables, 'block3_conv1', jnp.arange(2),
                                                   jax.random.key(0), size=32, channels=3,
                                                   steps=2)
  assert images.shape == (2, 32, 32, 3) and losses.shape == (2, 2)
  # The Lucid mode feeds VGG16 its Keras ('caffe') preprocessing of images in [0, 1].
  images, objective = filter_patterns.lucid_filter_patterns(
      model, variables, 'block2_conv1', jnp.arange(1), jax.random.key(0), size=32, channels=3,
      steps=2, preprocess=job.UNIT_PREPROCESS['caffe'])
  assert images.shape == (1, 32, 32, 3) and np.all(np.isfinite(objective))


def test_distinct_class_examples():
  labels = np.array([9, 2, 2, 1, 9, 0, 1])
  assert job.distinct_class_examples(labels, 3) == [0, 1, 3]
  assert job.distinct_class_examples(labels, 10, classes=(1, 9)) == [3, 0]
  with pytest.raises(Exception, match='no example of class 4'):
    job.distinct_class_examples(labels, 3, classes=(4,))


@pytest.mark.slow  # Builds Keras' VGG16 and writes its 528 MiB weight file: about 1 min.
def test_vgg16_job_on_a_file_in_the_imagenet_layout(tmp_path, capsys, tiny_config):
  """The VGG16 path of the job on a Keras-made weight file laid out like the ImageNet file."""
  from keras_files import import_keras, write_imagenet_layout  # pylint: disable=import-outside-toplevel
  keras = import_keras()
  keras.utils.set_random_seed(0)
  keras_model = keras.applications.VGG16(weights=None)
  weights = str(tmp_path / 'vgg16_weights_tf_dim_ordering_tf_kernels.h5')
  write_imagenet_layout(weights, keras_model)
  photo = str(tmp_path / 'photo.png')
  pixels = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
  Image.fromarray(pixels).save(photo)
  caffe = keras.applications.vgg16.preprocess_input(pixels[None].astype(np.float32))
  keras_top = np.argsort(np.asarray(keras_model.predict(caffe, verbose=0))[0])[::-1][:3]

  config = quick(load_config('visualize_vgg16'), tiny_config.data)
  v = config.visualize
  v.weights, v.image = weights, photo
  v.activation_layers = ('block1_conv1', 'block5_pool')
  v.filter_layers = ('block1_conv1',)
  v.filter_count, v.filter_size, v.filter_steps = 2, 32, 2
  v.lucid, v.cam_methods = False, ('grad_cam', 'eigen_cam')
  workdir = str(tmp_path / 'visualize')
  written = job.run(config, workdir)
  out = capsys.readouterr().out
  from cnnjax.imagenet import imagenet_classes  # pylint: disable=import-outside-toplevel
  names = [name for _, name, _ in imagenet_classes()]
  # The job's prediction line names Keras' top-3 classes for the same file and photo.
  predicted = next(line for line in out.splitlines() if line.startswith('predicted:'))
  assert [part.split()[0] for part in predicted[len('predicted: '):].split(', ')] == [
      names[i] for i in keras_top]
  assert "('caffe' preprocessing)" in out
  assert sorted(written) == ['activations', 'class_activation_maps', 'filter_patterns']
  assert_pngs(workdir, written)
