"""InceptionV3 in Keras' layout: Keras 3's own InceptionV3, saved in both Keras formats, gives the
same outputs in cnnjax, its files loaded by Keras' layer order, not by their names.

No network: Keras 3 (JAX backend) builds randomly initialized InceptionV3s with a fixed seed, whose
BatchNormalization betas and moving statistics are randomized first (Keras initializes them to 0,
0 and 1, which would make BatchNorm nearly the identity and prove nothing). Another model is built
in the same Keras process first, so the saved files' layer names (conv2d_94, ...) are not the ones
cnnjax uses: only loading by Keras' order can pair them. The default tests run at 107x107 (batch 2;
mixed8-10 are 2x2, so the 'same' borders of every block still matter); the 299x299 comparison
and the predict mode on a Keras file are marked slow.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from cnnjax import predict
from configs import imagenet_predict
from cnnjax.errors import ConfigError, DataError
from cnnjax.models import create_model, layer_outputs
from cnnjax.models.inception_v3 import InceptionV3, keras_layer_order
from cnnjax.models.keras_order import LayerGraph, keras_order
from cnnjax.summary import summary
from cnnjax.weights import identify_architecture, load_weights, read_weights
from cnnjax.weights.inception_v3 import KERAS_NO_TOP_URL

import ports
from ports import relative_difference
from keras_files import import_keras, tf_keras_names, write_keras_file

pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning:keras.*')

MODEL = 'inception_v3'
SIZE = 107
TOLERANCE = 1e-4  # Largest difference relative to the largest reference output.
LAYOUTS = ('keras3.weights.h5', 'keras3_unnamed.weights.h5', 'legacy.h5', 'imagenet.h5')


def images(size, seed=0):
  # Inputs in the range of 'tf'-preprocessed pixels, as the ImageNet weights see them.
  return np.random.default_rng(seed).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)


def randomize(keras, model, seed):
  """Random BatchNorm betas and moving statistics (variances positive)."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      c = layer.beta.shape[0]
      layer.set_weights([rng.uniform(-0.5, 0.5, c), rng.uniform(-0.5, 0.5, c),
                         rng.uniform(0.5, 2.0, c)])
  return model


def keras_inception(seed, **kwargs):
  keras = import_keras()
  keras.utils.set_random_seed(seed)
  keras.layers.Conv2D(1, 1)  # Shifts Keras' automatic names: this process' conv2d is taken.
  return randomize(keras, keras.applications.InceptionV3(weights=None, **kwargs), seed)


@pytest.fixture(scope='module')
def keras_top(tmp_path_factory):
  """Keras' InceptionV3 with its top (logits) at SIZE: the model and its weights in every layout."""
  model = keras_inception(0, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
  directory = tmp_path_factory.mktemp('inception_v3_top')
  paths = {layout: write_keras_file(directory / f'inception_v3_{layout}', model, layout,
                                    tf_keras_names) for layout in LAYOUTS}
  return model, paths


@pytest.fixture(scope='module')
def keras_base(tmp_path_factory):
  """Keras' InceptionV3 without the top (pooling None) at SIZE, saved as the no-top files are."""
  model = keras_inception(1, include_top=False, input_shape=(SIZE, SIZE, 3))
  directory = tmp_path_factory.mktemp('inception_v3_notop')
  paths = {layout: write_keras_file(directory / f'inception_v3_notop_{layout}', model, layout,
                                    tf_keras_names) for layout in ('keras3.weights.h5',
                                                                   'imagenet.h5')}
  return model, paths


def port(model, path, size=SIZE):
  """`model`'s variables with the weights of `path` (every variable must come from the file)."""
  return ports.port(model, path, MODEL, size)


# ---------------------------------------------------------------------------------------------
# The architecture and Keras' layer order


def test_summary_prints_keras_totals():
  lines = summary(InceptionV3(), (299, 299, 3)).splitlines()
  assert 'Total params: 23,851,784' in lines
  assert 'Trainable params: 23,817,352' in lines
  assert 'Non-trainable params: 34,432' in lines
  rows = {line.split()[0]: line for line in lines if line and line.split()[0].startswith('mixed')}
  assert '(None, 35, 35, 256)' in rows['mixed0'] and '(None, 17, 17, 768)' in rows['mixed3']
  assert '(None, 8, 8, 2048)' in rows['mixed10']
  assert ' 0' in rows['mixed10']  # A concatenation has no parameters.


def test_keras_order_of_a_branching_graph():
  # Two branches of unequal length joined: deepest first, ties in the order of a depth-first
  # walk from the output (the first input's branch first), as Keras' map_graph sorts.
  graph = LayerGraph()
  graph.add('input')
  graph.add('a1', ['input'])
  graph.add('b1', ['input'])
  graph.add('b2', ['b1'])
  graph.add('c1', ['input'])
  graph.add('join', ['a1', 'b2', 'c1'])
  assert keras_order(graph, 'join') == ['input', 'b1', 'a1', 'b2', 'c1', 'join']
  with pytest.raises(ValueError, match='not in the graph yet'):
    graph.add('late', ['missing'])


def test_layer_order_and_shapes_are_keras(keras_top):
  reference, _ = keras_top
  weighted = [layer for layer in reference.layers if layer.weights]
  order = keras_layer_order()
  assert [tuple(tuple(w.shape) for w in layer.weights) for layer in weighted] == [
      shapes for _, shapes in order]
  # Layer by layer the same kind (Keras' names end in this process' own numbers).
  assert [layer.name.rstrip('_0123456789') for layer in weighted] == [
      name.rstrip('_0123456789') for name, _ in order]


# ---------------------------------------------------------------------------------------------
# The port is exact


def test_with_top_matches_keras_in_every_layout(keras_top):
  keras_model, paths = keras_top
  assert 'conv2d' not in read_weights(paths['legacy.h5']).names  # Names shifted in the file.
  x = images(SIZE)
  reference = keras_model.predict(x, verbose=0)
  model = InceptionV3()
  apply = jax.jit(model.apply)
  for layout in LAYOUTS:
    difference = relative_difference(apply(port(model, paths[layout]), x), reference)
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
                          ('keras3.weights.h5', 'max')):
    model = InceptionV3(include_top=False, pooling=pooling)
    difference = relative_difference(model.apply(port(model, paths[layout]), x),
                                     references[pooling])
    print(f'no top, pooling {pooling}, {layout}: max relative difference {difference:.2e}')
    assert difference < TOLERANCE, (layout, pooling)


def test_training_mode_matches_keras(keras_base):
  # train=True normalizes with the batch's statistics and moves the moving ones, as Keras'
  # training=True call does.
  keras_model, paths = keras_base
  model = InceptionV3(include_top=False)
  variables = port(model, paths['keras3.weights.h5'])
  x = images(SIZE, seed=2)
  output, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  saved = keras_model.get_weights()
  try:
    reference = np.asarray(keras_model(x, training=True))
    bn = [layer for layer in keras_model.layers if 'batch_normalization' in layer.name]
    moved = [np.asarray(bn[0].moving_mean), np.asarray(bn[-1].moving_variance)]
  finally:
    keras_model.set_weights(saved)  # Other tests compare with the file's statistics.
  # Batch statistics of 2 images (8 values per channel at mixed10) amplify float rounding.
  difference = relative_difference(output, reference)
  print(f'train mode: max relative difference {difference:.2e}')
  assert difference < 1e-3
  order = keras_layer_order(include_top=False)
  first, last = order[1][0], order[-1][0]  # Keras' first and last BatchNormalization.
  assert relative_difference(updates['batch_stats'][first]['mean'], moved[0]) < TOLERANCE
  assert relative_difference(updates['batch_stats'][last]['var'], moved[1]) < TOLERANCE


def test_preprocess_features_and_layer_outputs(keras_top):
  keras = import_keras()
  keras_model, paths = keras_top
  pixels = np.random.default_rng(3).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
  preprocessed = keras.applications.inception_v3.preprocess_input(pixels.copy())
  reference = keras_model.predict(preprocessed, verbose=0)
  model = InceptionV3(preprocess='tf')
  variables = port(model, paths['keras3.weights.h5'])
  logits = model.apply(variables, pixels)
  assert relative_difference(logits, reference) < TOLERANCE
  features = model.apply(variables, pixels, features_only=True)
  assert features.shape == (2, 2048)
  assert relative_difference(model.apply(variables, features, from_features=True), logits) < 1e-6
  # Every layer's output by name: the mixed blocks are named as in Keras.
  names = ['mixed2', 'mixed9_0', 'mixed10']
  ours = layer_outputs(model, variables, pixels, names=names)
  probe = keras.Model(keras_model.input, [keras_model.get_layer(n).output for n in names])
  for name, theirs in zip(names, probe.predict(preprocessed, verbose=0)):
    assert relative_difference(ours[name], theirs) < TOLERANCE, name


# ---------------------------------------------------------------------------------------------
# Files of the wrong architecture, and config errors


def test_files_of_another_architecture_are_errors(keras_base, tmp_path):
  keras = import_keras()
  _, paths = keras_base
  assert identify_architecture(read_weights(paths['imagenet.h5'])) == MODEL
  with pytest.raises(DataError, match='looks like inception_v3 weights'):
    load_weights(paths['imagenet.h5'], 'resnet50_keras')
  # A smaller Inception-like network: same kinds of layers, not InceptionV3's shapes.
  inputs = keras.Input((32, 32, 3))
  x = keras.layers.Conv2D(32, 3, use_bias=False)(inputs)
  x = keras.layers.BatchNormalization(scale=False)(x)
  small = keras.Model(inputs, x)
  path = write_keras_file(tmp_path / 'small.weights.h5', small, 'keras3.weights.h5')
  with pytest.raises(DataError, match=r'does not hold InceptionV3 \(Keras\) weights') as error:
    load_weights(path, MODEL)
  assert KERAS_NO_TOP_URL in str(error.value)


def test_config_errors():
  with pytest.raises(ConfigError, match='at least 75x75'):
    InceptionV3().init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  with pytest.raises(ConfigError, match='pooling'):
    InceptionV3(include_top=False, pooling='sum').init(jax.random.key(0),
                                                       jnp.zeros((1, 75, 75, 3)))
  model = create_model(ml_collections.ConfigDict({'name': MODEL, 'num_outputs': 5,
                                                  'dtype': 'bfloat16'}))
  assert (model.num_outputs, model.dtype) == (5, jnp.bfloat16)


# ---------------------------------------------------------------------------------------------
# Full size


@pytest.mark.slow
def test_full_size_and_predict_mode_match_keras(tmp_path):
  """At 299x299 with the 1000-class top: the outputs, and `--mode predict` on a photo gives
  Keras' top classes (the photo resized to 299x299 as Keras' load_img does)."""
  keras = import_keras()
  keras_model = keras_inception(2, classifier_activation=None)
  path = write_keras_file(tmp_path / 'inception_v3.h5', keras_model, 'imagenet.h5',
                          tf_keras_names)
  x = images(299, seed=5)
  model = InceptionV3()
  variables = port(model, path, size=299)
  difference = relative_difference(jax.jit(model.apply)(variables, x),
                                   keras_model.predict(x, verbose=0))
  print(f'299x299 with top: max relative difference {difference:.2e}')
  assert difference < TOLERANCE

  photo = tmp_path / 'photo.png'
  rng = np.random.default_rng(6)
  Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(photo)
  pixels = np.asarray(keras.utils.load_img(photo, target_size=(299, 299)), np.float32)[None]
  probabilities = keras.activations.softmax(keras_model.predict(
      keras.applications.inception_v3.preprocess_input(pixels), verbose=0))
  expected = list(np.argsort(-np.asarray(probabilities)[0])[:5])
  config = imagenet_predict.get_config()
  config.model.name = MODEL
  config.model.init_from = path
  config.predict.images = str(photo)
  result = predict.predict(config)
  classes = predict.imagenet.imagenet_classes()
  assert [c['wnid'] for c in result[0]['top']] == [classes[i][0] for i in expected]


def test_init_from_a_no_top_file_under_a_new_head(keras_base):
  # configs/inception_v3_transfer.py's start: the no-top file fills the base, BatchNorm
  # statistics included, and the new one-unit head stays freshly initialized.
  from cnnjax.transfer.pretrained import init_from_pretrained  # pylint: disable=import-outside-toplevel
  from configs import inception_v3_transfer  # pylint: disable=import-outside-toplevel
  keras_model, paths = keras_base
  model = InceptionV3(num_outputs=1)
  fresh = model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)))
  variables = init_from_pretrained(fresh, paths['imagenet.h5'], inception_v3_transfer.BASE,
                                   MODEL, log=lambda _: None)
  x = images(SIZE, seed=7)
  features = model.apply(variables, x, features_only=True)
  reference = np.asarray(keras_model.predict(x, verbose=0)).mean(axis=(1, 2))
  assert relative_difference(features, reference) < TOLERANCE
  np.testing.assert_array_equal(variables['params']['predictions']['kernel'],
                                fresh['params']['predictions']['kernel'])
