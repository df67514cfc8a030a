"""The visualize job on the zoo's GAP + dense models: ResNet50 (Keras' and torchvision's layouts)
and InceptionV3, and the top-channels figure they share.

The default tests use tiny models: the top channels against the dense kernel and the layer's
outputs, the figure's titles, the configs' layer names against the real architectures (traced,
never run), the choice of the model from the weight file and every error a config can run into.
The slow tests run the job on full-size random-weight files written by Keras 3 (ResNet50,
InceptionV3, BatchNorm statistics randomized) and by a torch.nn ResNet50 saved as a state dict,
and check that the job's top classes and top channels are the reference framework's.
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from cnnjax.errors import ConfigError, DataError
from cnnjax.models import MODELS, create_model, layer_outputs, resnet
from cnnjax.models.convnet import ConvNet
from cnnjax.models.layer_outputs import layer_types
from cnnjax.visualize import cam, figures, job
from cnnjax.weights import registry
from cnnjax.weights.registry import WeightTable

from test_summary import load_config
from test_visualize_job import TINY_PRETRAINED, TINY_TABLE, assert_pngs, tiny_weights
from keras_files import (import_keras, randomize_keras_model, tf_keras_names, write_keras_file,
                         write_weights_h5)

pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning:keras.*')

# A GAP + dense convnet: conv1 - pool1 - conv2 (12 channels) - GAP - dense (5 classes).
TINY_GAP = functools.partial(ConvNet, conv_features=(4, 12), num_outputs=5, head='gap')
# A torchvision-layout ResNet, one bottleneck block per stage and ImageNet's 1,000 classes.
TINY_RESNET = functools.partial(resnet.ResNet, stage_sizes=(1, 1, 1, 1), block='bottleneck')
INCEPTION_SIZE = 299
TABLES = registry._TABLES  # pylint: disable=protected-access


def write_photo(path, size, seed=0):
  """A size x size RGB photo: random pixels, so that no resizing changes them."""
  pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
  Image.fromarray(pixels).save(path)
  return str(path), pixels


def assert_top_classes(workdir, logits):
  """The job's top-5 classes are those of the reference's `logits`, with the same logits: a
  random-weight net's ranking can survive a wrong input preparation, its logits cannot."""
  with open(os.path.join(workdir, job.PREDICTIONS_FILE)) as f:
    predictions = json.load(f)
  expected = np.argsort(-logits, kind='stable')[:5]
  tolerance = 1e-4 * np.max(np.abs(logits))
  assert np.min(-np.diff(logits[expected])) > tolerance  # A ranking that rounding cannot swap.
  assert [entry['class'] for entry in predictions] == expected.tolist()
  np.testing.assert_allclose([entry['logit'] for entry in predictions], logits[expected],
                             rtol=0, atol=tolerance)
  return expected.tolist()


def highest(weights, count=8):
  """The `count` channels with the highest weights, highest first."""
  return np.argsort(-np.asarray(weights), kind='stable')[:count].tolist()


def printed_top_channels(out):
  line = next(line for line in out.splitlines() if line.startswith('top channels of'))
  return json.loads(line.split(': ', 1)[1].rsplit(' (', 1)[0])


# ---------------------------------------------------------------------------------------------
# The top channels of a GAP + dense model


@pytest.fixture(scope='module')
def tiny_gap():
  model = TINY_GAP()
  variables = model.init(jax.random.key(3), jnp.zeros((1, 16, 16, 1)))
  images = jax.random.uniform(jax.random.key(4), (3, 16, 16, 1))
  return model, variables, images


def test_top_channels_are_the_highest_weights_for_the_class(tiny_gap):
  model, variables, images = tiny_gap
  result = cam.top_channels(model, variables, images, count=4)
  assert (result.layer, result.dense_layer) == ('conv2', 'predictions')
  kernel = np.asarray(variables['params']['predictions']['kernel'])  # (12, 5)
  features = np.asarray(layer_outputs(model, variables, images, names=['conv2'])['conv2'])
  predicted = np.argmax(np.asarray(model.apply(variables, images)), axis=-1)
  np.testing.assert_array_equal(result.targets, predicted)
  for n, c in enumerate(predicted):
    expected = np.argsort(-kernel[:, c], kind='stable')[:4]
    np.testing.assert_array_equal(result.channels[n], expected)
    np.testing.assert_array_equal(result.weights[n], kernel[expected, c])
    assert np.all(np.diff(np.asarray(result.weights[n])) <= 0)  # Highest first.
    np.testing.assert_allclose(result.maps[n], np.moveaxis(features[n][..., expected], -1, 0),
                               rtol=1e-6)
  # Chosen classes: each image's own column of the kernel.
  chosen = np.array([4, 0, 2])
  result = cam.top_channels(model, variables, images, chosen, count=12)
  for n, c in enumerate(chosen):
    np.testing.assert_array_equal(result.channels[n], np.argsort(-kernel[:, c], kind='stable'))
  # CAM is the sum of every channel's map times its weight.
  maps = cam.class_activation_maps(model, variables, images, chosen, method='cam').maps
  np.testing.assert_allclose(np.einsum('nk,nkhw->nhw', result.weights, result.maps), maps,
                             rtol=1e-5, atol=1e-6)


def test_top_channels_of_a_one_unit_model_weigh_class_0_by_minus_the_kernel():
  model = functools.partial(ConvNet, conv_features=(3, 6), num_outputs=1, head='gap')()
  variables = model.init(jax.random.key(0), jnp.zeros((1, 12, 12, 1)))
  images = jax.random.uniform(jax.random.key(1), (2, 12, 12, 1))
  kernel = np.asarray(variables['params']['predictions']['kernel'])[:, 0]
  for target, weights in ((0, -kernel), (1, kernel)):
    result = cam.top_channels(model, variables, images, np.array([target, target]), count=3)
    np.testing.assert_array_equal(result.channels[0], np.argsort(-weights, kind='stable')[:3])


def test_top_channels_need_a_gap_dense_model_and_a_count_that_fits(tiny_gap):
  model, variables, images = tiny_gap
  with pytest.raises(ConfigError, match=r"count=13 channels.*'predictions' weighs 12 channels of "
                     r"'conv2'; ask for 1 to 12"):
    cam.top_channels(model, variables, images, count=13)
  with pytest.raises(ConfigError, match='one class per image'):
    cam.top_channels(model, variables, images, np.zeros((3, 2), int))
  flat = functools.partial(ConvNet, conv_features=(4,), num_outputs=3, head='flatten')()
  flat_variables = flat.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
  with pytest.raises(ConfigError, match=r'global average pooling.*conv1.*Grad-CAM'):
    cam.top_channels(flat, flat_variables, jnp.zeros((1, 8, 8, 1)))


def test_the_top_channels_figure_titles_each_map_with_its_weight(tmp_path, monkeypatch):
  drawn = {}
  save = figures._save  # pylint: disable=protected-access

  def keep(fig, path, dpi=100):
    drawn['titles'] = [ax.get_title() for ax in fig.axes if ax.get_title()]
    drawn['images'] = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    drawn['suptitle'] = fig.get_suptitle()
    return save(fig, path, dpi)

  monkeypatch.setattr(figures, '_save', keep)
  maps = np.random.default_rng(0).uniform(0, 3, (6, 5, 5)).astype(np.float32)
  channels, weights = [7, 2, 40, 3, 1, 9], [0.5, 0.25, 0.125, -0.01, -0.02, -0.5]
  path = figures.plot_top_channels(np.full((20, 20, 3), 0.5), maps, channels, weights,
                                   'six channels', str(tmp_path / 'top.png'))
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  assert drawn['titles'] == ['image'] + [figures.channel_title(c, w, 4)
                                         for c, w in zip(channels, weights)]
  # Every weight with the decimals that give the largest four significant digits.
  assert drawn['titles'][1:3] == ['channel 7\nweight +0.5000', 'channel 2\nweight +0.2500']
  assert drawn['titles'][-1] == 'channel 9\nweight -0.5000'
  assert figures.weight_decimals([0.02205, 0.022]) == 5
  assert drawn['suptitle'] == 'six channels'
  for shown, expected in zip(drawn['images'][1:], maps):  # Each map in its channel's panel.
    np.testing.assert_array_equal(shown, expected)


# ---------------------------------------------------------------------------------------------
# The configs and the job's choices


def stage_names(config, model_name):
  entry = config.visualize.per_model[model_name]
  return set(entry.activation_layers) | set(entry.filter_layers) | {entry.cam_layer}


@pytest.mark.parametrize('config_name, model_name, size, dense_layer', [
    ('visualize_resnet50', 'resnet50_keras', 224, 'predictions'),
    ('visualize_resnet50', 'resnet50', 224, 'fc'),
    ('visualize_inception_v3', 'inception_v3', 299, 'predictions'),
])
def test_the_zoo_configs_name_layers_of_each_model(config_name, model_name, size, dense_layer):
  config = load_config(config_name)
  config.lock()
  v = config.visualize
  assert config.job == 'visualize' and v.model_from_weights and v.top_channels == 8
  assert 'cam' in v.cam_methods and v.image_size == size == config.model.input_shape[0]
  assert not v.activation_layers and not v.filter_layers and not v.cam_layer  # From per_model.
  model = create_model(_named(config.model, model_name))
  images = jax.ShapeDtypeStruct((1, 75, 75, 3), jnp.float32)  # Traced, never run.
  variables = jax.eval_shape(model.init, jax.random.key(0), images)
  layers = list(layer_types(model, variables, images))
  assert stage_names(config, model_name) <= set(layers)
  # CAM reads the layer the config names, and the top channels the dense layer after it.
  entry = v.per_model[model_name]
  assert cam.cam_layers(model, variables, images, entry.cam_layer) == (entry.cam_layer,
                                                                       dense_layer)


def _named(model_config, name):
  model_config = model_config.copy_and_resolve_references()
  model_config.name = name
  return model_config


def tiny_table(architecture):
  """The tiny model's weight table, whose files identify as `architecture`."""
  return WeightTable(
      family='tiny', models=('tiny_pretrained',), to_variables=TINY_TABLE.to_variables,
      identify=lambda f: architecture if 'conv1' in f.names else None, where_to_get='the test',
      preprocess={'keras_legacy_h5': 'caffe'})


@pytest.fixture
def tiny_job(tmp_path, monkeypatch, tiny_config):
  """The ResNet50 config on the tiny pretrained model: its file, a 32x32 photo, fast settings."""
  monkeypatch.setitem(MODELS, 'tiny_pretrained', TINY_PRETRAINED)
  monkeypatch.setitem(TABLES, 'tiny_pretrained', tiny_table('tiny_pretrained'))
  config = load_config('visualize_resnet50')
  config.data = tiny_config.data
  config.model.num_outputs = 5
  v = config.visualize
  v.weights = write_weights_h5(str(tmp_path / 'tiny.h5'), tiny_weights())
  v.image, _ = write_photo(tmp_path / 'photo.png', 32)
  v.image_size = 32
  v.preprocess = 'none'
  v.sections = ('activations',)
  v.per_model.tiny_pretrained = {'activation_layers': ('conv2',), 'cam_layer': 'conv2'}
  config.lock()
  return config


def test_the_weight_file_chooses_the_model_and_its_layers(tiny_job, tmp_path, capsys):
  written = job.run(tiny_job, str(tmp_path / 'visualize'))
  out = capsys.readouterr().out
  assert "holds tiny_pretrained weights: visualizing model.name='tiny_pretrained'" in out
  # activation_layers came from per_model.tiny_pretrained.
  assert [os.path.basename(p) for p in written['activations']] == [
      '00_input.png', '01_conv2.png', 'conv2_channel_3.png']
  assert tiny_job.model.name == 'resnet50_keras'  # The config itself is left as it was.
  # A value given on the command line wins over per_model's.
  tiny_job.visualize.activation_layers = ('pool1',)
  written = job.run(tiny_job, str(tmp_path / 'visualize_pool1'))
  assert [os.path.basename(p) for p in written['activations']][1] == '01_pool1.png'


def test_a_file_of_another_architecture_is_an_error_naming_both(tiny_job, tmp_path, monkeypatch):
  monkeypatch.setitem(TABLES, 'tiny_pretrained', tiny_table('vgg16'))
  with pytest.raises(ConfigError, match=r"holds vgg16 weights, but this config draws resnet50 or "
                     r"resnet50_keras or tiny_pretrained.*configs/visualize_\*.py for vgg16"):
    job.run(tiny_job, str(tmp_path / 'visualize'))
  # A torchvision ResNet18 state dict (tiny arrays under its keys) is named as what it is.
  torch = pytest.importorskip('torch')
  keys = ['conv1.weight', 'bn1.weight', 'fc.weight'] + [
      f'layer{stage}.{block}.conv1.weight' for stage in range(1, 5) for block in range(2)]
  torch.save({key: torch.zeros(1, 1, 1, 1) for key in keys}, str(tmp_path / 'resnet18.pth'))
  tiny_job.visualize.weights = str(tmp_path / 'resnet18.pth')
  with pytest.raises(ConfigError, match=r"resnet18.pth' holds resnet18 weights, but this config "
                     r'draws resnet50 or resnet50_keras'):
    job.run(tiny_job, str(tmp_path / 'visualize'))
  write_weights_h5(str(tmp_path / 'unknown.h5'), {'dense_9': {'kernel': np.ones((2, 2)),
                                                              'bias': np.ones(2)}})
  tiny_job.visualize.weights = str(tmp_path / 'unknown.h5')
  with pytest.raises(DataError, match=r"does not look like the weights of any architecture"):
    job.run(tiny_job, str(tmp_path / 'visualize'))
  tiny_job.visualize.weights = str(tmp_path / 'missing.h5')
  with pytest.raises(DataError, match=r"visualize.weights='.*missing.h5' is not a file"):
    job.run(tiny_job, str(tmp_path / 'visualize'))


def test_a_layer_not_in_the_model_is_an_error_listing_its_layers(tiny_job, tmp_path):
  v = tiny_job.visualize
  v.sections = ('activations', 'filter_patterns', 'class_activation_maps')
  v.cam_layer = 'conv5_block3_out'
  v.filter_layers = ('conv1', 'layer4')
  with pytest.raises(ConfigError) as error:
    job.run(tiny_job, str(tmp_path / 'visualize'))
  message = str(error.value)
  assert ("visualize.filter_layers has 'layer4'; visualize.cam_layer has 'conv5_block3_out': no "
          "such layer in tiny_pretrained, whose layers are ['conv1', 'pool1', 'conv2', "
          "'global_average_pooling', 'predictions']") in message
  assert not os.path.exists(tmp_path / 'visualize' / 'filter_patterns')  # Checked before drawing.


def test_per_model_sets_visualize_fields_only(tiny_job, tmp_path):
  with tiny_job.unlocked():
    tiny_job.visualize.per_model.resnet50.cam_layr = 'layer4'
  with pytest.raises(ConfigError, match=r"visualize.per_model.resnet50 sets \['cam_layr'\]"):
    job.run(tiny_job, str(tmp_path / 'visualize'))
  with tiny_job.unlocked():
    del tiny_job.visualize.per_model.resnet50['cam_layr']
    tiny_job.visualize.per_model.resnet50.top_channels = 4  # A number: never empty, never filled.
  with pytest.raises(ConfigError, match=r"per_model.resnet50 sets \['top_channels'\].*layer "
                     'names'):
    job.run(tiny_job, str(tmp_path / 'visualize'))


@pytest.fixture(scope='module')
def tiny_resnet_file(tmp_path_factory):
  """A torch.nn ResNet in torchvision's layout, one bottleneck per stage, BatchNorm randomized."""
  torch = pytest.importorskip('torch')
  import torch_resnet  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  net = torch_resnet.randomize_batch_norms(
      torch_resnet.ResNet(torch_resnet.Bottleneck, [1, 1, 1, 1]), seed=0).eval()
  path = str(tmp_path_factory.mktemp('tiny_resnet') / 'tiny_resnet.pth')
  torch.save(net.state_dict(), path)
  return net, path


def torch_logits(net, pixels):
  """The torch model's logits for 0..255 RGB pixels, 'torch' preprocessed."""
  import torch  # pylint: disable=import-outside-toplevel
  x = (pixels.astype(np.float32) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
  with torch.no_grad():
    return net(torch.from_numpy(np.moveaxis(x, -1, 0)[None].astype(np.float32)))[0].numpy()


def test_the_job_on_a_tiny_torchvision_resnet(tiny_resnet_file, tmp_path, monkeypatch, capsys,
                                              tiny_config):
  """The torchvision path: per_model's layer names, CAM on layer4, the top channels through fc,
  the photo's top classes as torch computes them."""
  net, weights = tiny_resnet_file
  monkeypatch.setitem(MODELS, 'resnet_tiny', TINY_RESNET)
  monkeypatch.setitem(TABLES, 'resnet_tiny', registry.weight_table('resnet50'))
  config = load_config('visualize_resnet50')
  config.data = tiny_config.data
  config.model.name = 'resnet_tiny'
  v = config.visualize
  v.model_from_weights = False  # The file is a ResNet-14; the config names the model.
  v.per_model.resnet_tiny = v.per_model.resnet50.to_dict()
  v.weights = weights
  v.image, pixels = write_photo(tmp_path / 'photo.png', 32)
  v.image_size = 32
  v.sections = ('activations', 'class_activation_maps')
  v.cam_methods = ('cam',)  # Exact for this head; the gradient methods are tested at full size.
  v.cam_top_classes = 2
  config.lock()
  workdir = str(tmp_path / 'visualize')
  written = job.run(config, workdir)
  out = capsys.readouterr().out
  assert "('torch' preprocessing)" in out and 'skipping' not in out
  logits = torch_logits(net, pixels)
  expected = assert_top_classes(workdir, logits)
  kernel = net.fc.weight.detach().numpy()  # (classes, 2048)
  assert printed_top_channels(out) == highest(kernel[expected[0]])
  assert [os.path.basename(p) for p in written['activations']] == [
      '00_input.png', '01_maxpool.png', '02_layer1.png', '03_layer2.png', '04_layer3.png',
      '05_layer4.png', 'maxpool_channel_3.png']
  assert [os.path.basename(p) for p in written['class_activation_maps']] == [
      'methods.png', 'cam_reference.png', 'cam_per_class.png', 'top_8_channels.png']
  assert_pngs(workdir, written)
  # Every figure is in TensorBoard too, tagged by its path.
  from tensorboard.backend.event_processing.event_accumulator import (  # pylint: disable=import-outside-toplevel
      EventAccumulator)
  events = EventAccumulator(os.path.join(workdir, 'tensorboard'), size_guidance={'images': 0})
  events.Reload()
  assert sorted(events.Tags()['images']) == sorted(
      os.path.splitext(os.path.relpath(p, workdir))[0] for paths in written.values()
      for p in paths if p.endswith('.png'))
  top = events.Images('class_activation_maps/top_8_channels')[0]
  with open(os.path.join(workdir, 'class_activation_maps', 'top_8_channels.png'), 'rb') as f:
    assert (top.width, top.height) == Image.open(f).size


# ---------------------------------------------------------------------------------------------
# Full size, on files written by the reference frameworks


def quick_zoo_config(name, weights, photo, size, data_config):
  """A zoo visualize config made to run in about a minute: few filters, cheap CAM methods."""
  config = load_config(name)
  config.data = data_config
  v = config.visualize
  v.weights, v.image, v.image_size = weights, photo, size
  v.filter_count, v.filter_size, v.filter_steps, v.lucid = 2, 32, 2, False
  v.cam_methods = ('cam', 'grad_cam')  # Score-CAM: 2,048 forward passes; others: compiles.
  v.cam_top_classes = 3
  return config


@pytest.mark.slow  # Keras builds and saves ResNet50, the job draws 12 figures: 70-110 s.
def test_resnet50_job_on_a_keras_file(tmp_path, capsys, tiny_config):
  keras = import_keras()
  keras.utils.set_random_seed(0)
  model = randomize_keras_model(keras, keras.applications.ResNet50(
      weights=None, classifier_activation=None), seed=0)
  weights = write_keras_file(tmp_path / 'resnet50_weights_tf_dim_ordering_tf_kernels.h5', model,
                             'imagenet.h5', tf_keras_names)
  photo, pixels = write_photo(tmp_path / 'photo.png', 224, seed=1)
  caffe = keras.applications.resnet50.preprocess_input(pixels[None].astype(np.float32))
  logits = np.asarray(model.predict(caffe, verbose=0))[0]
  kernel = np.asarray(model.get_layer('predictions').kernel)  # (2048, classes)

  config = quick_zoo_config('visualize_resnet50', weights, photo, 224, tiny_config.data)
  config.visualize.filter_layers = ('conv2_block3_out',)
  workdir = str(tmp_path / 'visualize')
  written = job.run(config, workdir)
  out = capsys.readouterr().out
  assert 'visualizing resnet50_keras with the weights' in out and 'skipping' not in out
  assert "('caffe' preprocessing)" in out
  expected = assert_top_classes(workdir, logits)
  assert printed_top_channels(out) == highest(kernel[:, expected[0]])
  assert [os.path.basename(p) for p in written['activations']] == [
      '00_input.png', '01_pool1_pool.png', '02_conv2_block3_out.png', '03_conv3_block4_out.png',
      '04_conv4_block6_out.png', '05_conv5_block3_out.png', 'pool1_pool_channel_3.png']
  assert [os.path.basename(p) for p in written['class_activation_maps']] == [
      'methods.png', 'grad_cam_reference.png', 'grad_cam_per_class.png', 'top_8_channels.png']
  assert_pngs(workdir, written)


@pytest.mark.slow  # A torch.nn ResNet50 saved as a state dict, the job's 12 figures: 25-85 s.
def test_resnet50_job_on_a_torchvision_file(tmp_path, capsys, tiny_config):
  torch = pytest.importorskip('torch')
  import torch_resnet  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  net = torch_resnet.randomize_batch_norms(torch_resnet.resnet50(), seed=0).eval()
  weights = str(tmp_path / 'resnet50-0676ba61.pth')
  torch.save(net.state_dict(), weights)
  photo, pixels = write_photo(tmp_path / 'photo.png', 224, seed=2)
  logits = torch_logits(net, pixels)

  config = quick_zoo_config('visualize_resnet50', weights, photo, 224, tiny_config.data)
  config.visualize.filter_layers = ('layer1',)
  workdir = str(tmp_path / 'visualize')
  written = job.run(config, workdir)
  out = capsys.readouterr().out
  assert "holds resnet50 weights: visualizing model.name='resnet50'" in out
  assert "('torch' preprocessing)" in out and 'skipping' not in out
  expected = assert_top_classes(workdir, logits)
  kernel = net.fc.weight.detach().numpy()
  assert printed_top_channels(out) == highest(kernel[expected[0]])
  assert [os.path.basename(p) for p in written['activations']] == [
      '00_input.png', '01_maxpool.png', '02_layer1.png', '03_layer2.png', '04_layer3.png',
      '05_layer4.png', 'maxpool_channel_3.png']
  assert [os.path.basename(p) for p in written['filter_patterns']] == ['layer1.png']
  assert_pngs(workdir, written)


@pytest.mark.slow  # Keras builds and saves InceptionV3 (slowly), the job draws 11 figures:
# 85 s with the machine shared, 5 min under a load average of 9 on 2 cores.
def test_inception_v3_job_on_a_keras_file(tmp_path, capsys, tiny_config):
  keras = import_keras()
  keras.utils.set_random_seed(0)
  model = randomize_keras_model(keras, keras.applications.InceptionV3(
      weights=None, classifier_activation=None, input_shape=(INCEPTION_SIZE,) * 2 + (3,)), seed=0)
  weights = write_keras_file(tmp_path / 'inception_v3_weights_tf_dim_ordering_tf_kernels.h5',
                             model, 'imagenet.h5', tf_keras_names)
  photo, pixels = write_photo(tmp_path / 'photo.png', INCEPTION_SIZE, seed=3)
  tf_mode = keras.applications.inception_v3.preprocess_input(pixels[None].astype(np.float32))
  logits = np.asarray(model.predict(tf_mode, verbose=0))[0]
  kernel = np.asarray(model.get_layer('predictions').kernel)

  config = quick_zoo_config('visualize_inception_v3', weights, photo, INCEPTION_SIZE,
                            tiny_config.data)
  config.visualize.filter_layers = ('mixed2',)
  config.visualize.filter_size = 75
  workdir = str(tmp_path / 'visualize')
  written = job.run(config, workdir)
  out = capsys.readouterr().out
  assert 'visualizing inception_v3 with the weights' in out and 'skipping' not in out
  assert "('tf' preprocessing)" in out
  expected = assert_top_classes(workdir, logits)
  assert printed_top_channels(out) == highest(kernel[:, expected[0]])
  assert [os.path.basename(p) for p in written['activations']] == [
      '00_input.png', '01_max_pooling2d_1.png', '02_mixed2.png', '03_mixed7.png', '04_mixed10.png',
      'max_pooling2d_1_channel_3.png']
  assert [os.path.basename(p) for p in written['class_activation_maps']] == [
      'methods.png', 'grad_cam_reference.png', 'grad_cam_per_class.png', 'top_8_channels.png']
  assert_pngs(workdir, written)
