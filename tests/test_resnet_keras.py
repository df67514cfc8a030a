"""ResNet50 in Keras' layout: Keras 3's own ResNet50, saved in both Keras formats, gives the same
outputs in cnnjax.

No network: Keras 3 (JAX backend) builds randomly initialized ResNet50s with a fixed seed, whose
BatchNormalization gammas, betas and moving statistics and whose biases are randomized first
(Keras initializes them to 1, 0, 0, 1 and 0, which would make BatchNorm nearly the identity and
prove nothing). Their weights are saved as a Keras 3 `.weights.h5` (with and without the layer
names newer Keras versions store), with Keras' legacy HDF5 writer and in a layout like the ImageNet
files', and cnnjax's ResNet50Keras must reproduce Keras' outputs from each. The default tests run
at 64x64 (batch 2; conv5's maps are 2x2); the 224x224 comparison is marked slow.
"""

import importlib.util
import os

import h5py
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cnnjax.errors import ConfigError, DataError
from cnnjax.models import create_model, layer_outputs
from cnnjax.models.layer_outputs import layer_types
from cnnjax.models.resnet_keras import BN_LAYERS, CONV_LAYERS, ResNet50Keras
from cnnjax.models.vgg16 import CONV_LAYERS as VGG16_CONV_LAYERS
from cnnjax.summary import summary
from cnnjax.weights import (identify_architecture, load_weights, merge_variables, read_weights,
                            weight_table)
from cnnjax.weights import files
from cnnjax.weights.resnet_keras import KERAS_NO_TOP_URL, KERAS_URL, identify

import ports
from ports import abstract_variables, relative_difference
from keras_files import import_keras, tf_keras_names, write_keras_file

# Keras' JAX backend converts arrays in a way NumPy 2 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning:keras.*')

MODEL = 'resnet50_keras'
SIZE = 64
TOLERANCE = 1e-4  # Largest difference relative to the largest reference output.


def images(size, seed=0):
  # Inputs in the range of caffe-preprocessed pixels, as the ImageNet weights see them.
  return np.random.default_rng(seed).uniform(-120, 150, (2, size, size, 3)).astype(np.float32)


def randomize(keras, model, seed):
  """Random BatchNorm gammas, betas and moving statistics (variances positive), random biases."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      c = layer.gamma.shape[0]
      layer.set_weights([rng.uniform(0.5, 1.5, c), rng.uniform(-0.5, 0.5, c),
                         rng.uniform(-0.5, 0.5, c), rng.uniform(0.5, 2.0, c)])
    elif getattr(layer, 'bias', None) is not None:
      layer.bias.assign(rng.normal(0.0, 0.1, layer.bias.shape).astype(np.float32))
  return model


RESNET_LAYOUTS = ('keras3.weights.h5', 'keras3_unnamed.weights.h5', 'legacy.h5',
                  'imagenet.h5')


@pytest.fixture(scope='module')
def keras_top(tmp_path_factory):
  """Keras' ResNet50 with its top (logits) at 64x64: the model and its weights in every layout."""
  keras = import_keras()
  keras.utils.set_random_seed(0)
  model = randomize(keras, keras.applications.ResNet50(
      weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None), seed=0)
  directory = tmp_path_factory.mktemp('resnet50_top')
  paths = {layout: write_keras_file(directory / f'resnet50_{layout}', model, layout,
                                    tf_keras_names)
           for layout in RESNET_LAYOUTS}
  return model, paths


@pytest.fixture(scope='module')
def keras_base(tmp_path_factory):
  """Keras' ResNet50 without the top (pooling None) at 64x64, saved as the no-top files are."""
  keras = import_keras()
  keras.utils.set_random_seed(1)
  model = randomize(keras, keras.applications.ResNet50(
      weights=None, include_top=False, input_shape=(SIZE, SIZE, 3)), seed=1)
  directory = tmp_path_factory.mktemp('resnet50_notop')
  paths = {layout: write_keras_file(directory / f'resnet50_notop_{layout}', model, layout,
                                    tf_keras_names)
           for layout in ('keras3.weights.h5', 'imagenet.h5')}
  return model, paths


def port(model, path, size=SIZE):
  """`model`'s variables with the weights of `path` (every variable must come from the file)."""
  return ports.port(model, path, MODEL, size)


# ---------------------------------------------------------------------------------------------
# The port is exact


def test_with_top_matches_keras_in_every_layout(keras_top):
  keras_model, paths = keras_top
  x = images(SIZE)
  reference = keras_model.predict(x, verbose=0)
  model = ResNet50Keras()
  apply = jax.jit(model.apply)
  for layout in RESNET_LAYOUTS:
    variables = port(model, paths[layout])
    difference = relative_difference(apply(variables, x), reference)
    print(f'with top, {layout}: max relative difference {difference:.2e}')
    assert difference < TOLERANCE, layout


def test_without_top_matches_keras(keras_base):
  keras = import_keras()
  keras_model, paths = keras_base
  x = images(SIZE, seed=1)
  feature_map = keras_model.predict(x, verbose=0)
  references = {None: feature_map,
                'avg': np.asarray(keras.layers.GlobalAveragePooling2D()(feature_map)),
                'max': np.asarray(keras.layers.GlobalMaxPooling2D()(feature_map))}
  for layout, pooling in (('imagenet.h5', None), ('imagenet.h5', 'avg'),
                          ('keras3.weights.h5', None), ('keras3.weights.h5', 'max')):
    model = ResNet50Keras(include_top=False, pooling=pooling)
    difference = relative_difference(model.apply(port(model, paths[layout]), x),
                                     references[pooling])
    print(f'no top, pooling {pooling}, {layout}: max relative difference {difference:.2e}')
    assert difference < TOLERANCE, (layout, pooling)


def test_training_mode_matches_keras(keras_base):
  # train=True normalizes with the batch's (biased) statistics and moves the moving ones with
  # momentum 0.99, as Keras' training=True call does.
  keras_model, paths = keras_base
  model = ResNet50Keras(include_top=False)
  variables = port(model, paths['keras3.weights.h5'])
  x = images(SIZE, seed=2)
  output, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  saved = keras_model.get_weights()
  try:
    reference = np.asarray(keras_model(x, training=True))
    names = ('conv1_bn', 'conv3_block1_0_bn', 'conv5_block3_3_bn')
    moved = {name: [np.asarray(v) for v in keras_model.get_layer(name).weights[2:]]
             for name in names}
  finally:
    keras_model.set_weights(saved)  # The training call moved Keras' statistics; other tests
                                    # compare with the file's.
  # Normalizing by the statistics of 2 images (8 values per channel at conv5) amplifies float
  # rounding in channels of small spread: 1.6e-4 measured, so this output gets 1e-3. The moving
  # statistics agree to 1e-6.
  assert relative_difference(output, reference) < 1e-3
  for name, (mean, variance) in moved.items():
    assert relative_difference(updates['batch_stats'][name]['mean'], mean) < TOLERANCE, name
    assert relative_difference(updates['batch_stats'][name]['var'], variance) < TOLERANCE, name
    assert not np.allclose(mean, variables['batch_stats'][name]['mean'])


def test_preprocess_and_feature_split(keras_top):
  keras = import_keras()
  keras_model, paths = keras_top
  pixels = np.random.default_rng(3).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
  reference = keras_model.predict(keras.applications.resnet.preprocess_input(pixels.copy()),
                                  verbose=0)
  assert weight_table(MODEL).preprocess[files.detect_format(paths['imagenet.h5'])] == 'caffe'
  model = ResNet50Keras(preprocess='caffe')
  variables = port(model, paths['keras3.weights.h5'])
  logits = model.apply(variables, pixels)
  assert relative_difference(logits, reference) < TOLERANCE
  features = model.apply(variables, pixels, features_only=True)
  assert features.shape == (2, 2048)
  assert relative_difference(model.apply(variables, features, from_features=True), logits) < 1e-6


def test_layer_outputs_match_keras_layers(keras_top):
  keras = import_keras()
  keras_model, paths = keras_top
  names = ['conv1_relu', 'conv3_block4_out', 'avg_pool']
  x = images(SIZE, seed=4)
  model = ResNet50Keras()
  outputs = layer_outputs(model, port(model, paths['legacy.h5']), x, names=names)
  assert list(outputs) == names
  probe = keras.Model(keras_model.input, [keras_model.get_layer(n).output for n in names])
  for name, reference in zip(names, probe(x)):
    assert outputs[name].shape[1:] == tuple(keras_model.get_layer(name).output.shape[1:]), name
    assert relative_difference(outputs[name], reference) < TOLERANCE, name


def test_layers_are_keras_layers_in_keras_order(keras_top):
  keras_model, _ = keras_top
  model = ResNet50Keras()
  types = layer_types(model, abstract_variables(model, SIZE),
                      jax.ShapeDtypeStruct((1, SIZE, SIZE, 3), jnp.float32))
  assert list(types) == [layer.name for layer in keras_model.layers[1:]]
  # The Keras 3 class-key table (for files without names) is Keras' order of the layers.
  assert CONV_LAYERS == tuple(layer.name for layer in keras_model.layers
                              if type(layer).__name__ == 'Conv2D')
  assert BN_LAYERS == tuple(layer.name for layer in keras_model.layers
                            if type(layer).__name__ == 'BatchNormalization')


@pytest.mark.slow
def test_with_top_at_224_matches_keras(tmp_path):
  keras = import_keras()
  keras.utils.set_random_seed(2)
  keras_model = randomize(keras, keras.applications.ResNet50(weights=None,
                                                             classifier_activation=None), seed=2)
  x = images(224, seed=5)
  reference = keras_model.predict(x, verbose=0)
  model = ResNet50Keras()
  for layout in ('keras3.weights.h5', 'imagenet.h5'):
    path = write_keras_file(tmp_path / f'resnet50_{layout}', keras_model, layout,
                            tf_keras_names)
    difference = relative_difference(model.apply(port(model, path, 224), x), reference)
    print(f'with top at 224, {layout}: max relative difference {difference:.2e}')
    assert difference < TOLERANCE, layout
    os.unlink(path)


# ---------------------------------------------------------------------------------------------
# The model


def test_summary_totals_are_keras():
  text = summary(ResNet50Keras(), (224, 224, 3))
  assert 'Total params: 25,636,712' in text
  assert 'Trainable params: 25,583,592' in text
  assert 'Non-trainable params: 53,120' in text
  for line in ('conv1_pad (ZeroPadding2D)', 'conv1_bn (BatchNorm)', 'pool1_pool (MaxPooling2D)',
               'conv2_block1_add (Add)', 'conv5_block3_out (Activation)',
               'avg_pool (GlobalAveragePooling2D)', 'predictions (Dense)'):
    assert line in text


def test_registered_and_configurable():
  config = ml_collections.ConfigDict({'name': MODEL, 'num_outputs': 2, 'preprocess': 'caffe',
                                      'dtype': 'bfloat16'})
  model = create_model(config)
  assert isinstance(model, ResNet50Keras)
  assert (model.num_outputs, model.preprocess, model.dtype) == (2, 'caffe', jnp.bfloat16)
  output = jax.eval_shape(model.init_with_output, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, SIZE, SIZE, 3), jnp.float32))[0]
  assert (output.shape, output.dtype) == ((1, 2), jnp.float32)
  with pytest.raises(ConfigError, match='pooling'):
    jax.eval_shape(ResNet50Keras(include_top=False, pooling='sum').init, jax.random.key(0),
                   jnp.zeros((1, SIZE, SIZE, 3)))


# ---------------------------------------------------------------------------------------------
# Loading


def test_no_top_file_under_a_new_head(keras_base):
  _, paths = keras_base
  model = ResNet50Keras(num_outputs=2)
  # Stand-in initial values: initializing 23M parameters at random would only cost time.
  initial = jax.tree.map(lambda s: jnp.full(s.shape, 0.5, s.dtype),
                         abstract_variables(model, SIZE))
  loaded = load_weights(paths['imagenet.h5'], MODEL)
  with pytest.raises(DataError, match=r'missing from the weights \(2\): '
                                      r'params/predictions/(kernel|bias), '
                                      r'params/predictions/(kernel|bias)\n'):
    merge_variables(initial, loaded)
  variables = merge_variables(initial, loaded, allow_missing=('predictions',))
  np.testing.assert_array_equal(variables['params']['predictions']['kernel'],
                                initial['params']['predictions']['kernel'])
  np.testing.assert_array_equal(variables['params']['conv1_conv']['kernel'],
                                loaded['params']['conv1_conv']['kernel'])
  np.testing.assert_array_equal(variables['batch_stats']['conv5_block3_3_bn']['var'],
                                loaded['batch_stats']['conv5_block3_3_bn']['var'])


def test_loader_maps_batchnorm_by_weight_order(keras_top):
  keras_model, paths = keras_top
  layer = keras_model.get_layer('conv4_block2_2_bn')
  gamma, beta, mean, variance = (np.asarray(v) for v in layer.weights)
  for layout in RESNET_LAYOUTS:
    loaded = load_weights(paths[layout], MODEL)
    np.testing.assert_array_equal(loaded['params']['conv4_block2_2_bn']['scale'], gamma)
    np.testing.assert_array_equal(loaded['params']['conv4_block2_2_bn']['bias'], beta)
    np.testing.assert_array_equal(loaded['batch_stats']['conv4_block2_2_bn']['mean'], mean)
    np.testing.assert_array_equal(loaded['batch_stats']['conv4_block2_2_bn']['var'], variance)


def test_with_top_file_into_a_model_without_the_top(keras_top):
  _, paths = keras_top
  model = ResNet50Keras(include_top=False)
  loaded = load_weights(paths['keras3.weights.h5'], MODEL)
  with pytest.raises(DataError, match=r'not in the model \(2\): params/predictions/(kernel|bias), '
                                      r'params/predictions/(kernel|bias)\n'):
    merge_variables(abstract_variables(model, SIZE), loaded)
  del loaded['params']['predictions']
  merge_variables(abstract_variables(model, SIZE), loaded)


def _torchvision_resnet50_state_dict():
  """Zeros under torchvision's ResNet50 keys and shapes (torchvision itself is not installed)."""
  state = {'conv1.weight': (64, 3, 7, 7)}
  bn = lambda prefix, c: {f'{prefix}.{k}': (c,) for k in ('weight', 'bias', 'running_mean',
                                                          'running_var')}
  state.update(bn('bn1', 64))
  channels = 64
  for stage, (blocks, width) in enumerate(((3, 64), (4, 128), (6, 256), (3, 512)), start=1):
    for b in range(blocks):
      prefix = f'layer{stage}.{b}'
      shapes = ((width, channels, 1, 1), (width, width, 3, 3), (4 * width, width, 1, 1))
      for k, shape in enumerate(shapes, start=1):
        state[f'{prefix}.conv{k}.weight'] = shape
        state.update(bn(f'{prefix}.bn{k}', shape[0]))
      if b == 0:
        state[f'{prefix}.downsample.0.weight'] = (4 * width, channels, 1, 1)
        state.update(bn(f'{prefix}.downsample.1', 4 * width))
      channels = 4 * width
  state.update({'fc.weight': (1000, 2048), 'fc.bias': (1000,)})
  return state


def test_other_architectures_files_name_what_they_look_like(tmp_path):
  torch = pytest.importorskip('torch')
  torch_path = tmp_path / 'resnet50-0676ba61.pth'
  torch.save({k: torch.zeros(shape) for k, shape in _torchvision_resnet50_state_dict().items()},
             torch_path)
  vgg_path = tmp_path / 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5'
  with h5py.File(vgg_path, 'w') as f:  # VGG16's layer names; identification needs no more.
    f.attrs['layer_names'] = np.array(VGG16_CONV_LAYERS, dtype='S')
    for name in VGG16_CONV_LAYERS:
      f.create_group(name).create_dataset(f'{name}_W_1:0', data=np.zeros((1, 1, 1, 1)))
      f[name].attrs['weight_names'] = np.array([f'{name}_W_1:0'], dtype='S')
  with pytest.raises(DataError, match='it looks like vgg16 weights') as error:
    load_weights(vgg_path, MODEL)
  assert 'does not hold ResNet50 (Keras) weights' in str(error.value)
  assert KERAS_URL in str(error.value) and KERAS_NO_TOP_URL in str(error.value)
  other = identify_architecture(read_weights(torch_path))
  if importlib.util.find_spec('cnnjax.weights.resnet') is not None:
    assert other is not None and 'resnet' in other  # torchvision's table is registered.
  expected = (f'it looks like {other} weights' if other else
              'it does not look like any architecture cnnjax knows')
  with pytest.raises(DataError, match=expected):
    load_weights(torch_path, MODEL)


def test_identify_tells_resnet50_from_deeper_and_v2_resnets():
  def weight_file(names, kind=files.KERAS_LEGACY_H5):
    return files.WeightFile('x.h5', kind, {name: [np.zeros(1)] for name in names})

  names = list(CONV_LAYERS) + list(BN_LAYERS)
  assert identify(weight_file(names)) == MODEL
  assert identify(weight_file(names + ['conv4_block7_1_conv'])) is None  # ResNet101 / 152.
  assert identify(weight_file(names + ['post_bn'])) is None  # ResNet50V2.
  assert identify(weight_file([n for n in names if n != 'conv1_conv'])) is None
  keys = [f'conv2d_{i}' if i else 'conv2d' for i in range(len(CONV_LAYERS))]
  assert identify(weight_file(keys, files.KERAS_WEIGHTS_H5)) == MODEL  # Unnamed Keras 3 file.
