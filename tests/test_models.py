"""Models: exact parameter counts, layer outputs by name, pooling, dropout, and Keras parity."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cnnjax.errors import ConfigError
from cnnjax.models import MODELS, create_model, layer_outputs, layers, register_model
from cnnjax.models.convnet import ConvNet
from cnnjax.summary import abstract_variables, parameter_counts

# SPEC.md section 2.
EXPECTED = {
    'small_convnet_base': ((28, 28, 1), 55_744),
    'small_convnet': ((28, 28, 1), 93_322),
    'small_convnet_gap': ((28, 28, 1), 56_394),
    'mnist_convnet': ((28, 28, 1), 104_202),
    'cats_vs_dogs_150': ((150, 150, 3), 3_453_121),
    'cats_vs_dogs_180': ((180, 180, 3), 991_041),
    'vgg16': ((224, 224, 3), 138_357_544),
    'vgg16_base': ((150, 150, 3), 14_714_688),
    # VGG16's base + Flatten-Dense256-Dropout-Dense1 head (the reference's transfer model).
    'vgg16_transfer': ((150, 150, 3), 16_812_353),
    'vgg_small': ((28, 28, 1), 242_954),  # 10 outputs; the binary transfer task's has 240,641.
}
# BatchNorm models: (input, trainable, non-trainable = the moving statistics). torchvision's
# counts for the first three (as torchvision counts parameters), Keras' summary for
# resnet50_keras and inception_v3.
EXPECTED_BATCH_NORM = {
    'resnet18': ((224, 224, 3), 11_689_512, 9_600),
    'resnet34': ((224, 224, 3), 21_797_672, 17_024),
    'resnet50': ((224, 224, 3), 25_557_032, 53_120),
    'resnet50_keras': ((224, 224, 3), 25_583_592, 53_120),
    'resnet_small': ((28, 28, 1), 77_754, 672),  # cnnjax's own design (cnnjax/models/resnet.py).
    'bn_convnet': ((28, 28, 1), 61_042, 336),  # cnnjax's own (cnnjax/models/bn_convnet.py).
    'inception_v3': ((299, 299, 3), 23_817_352, 34_432),
}


def model_config(name, **fields):
  return ml_collections.ConfigDict({'name': name, **fields})


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_parameter_counts(name):
  shape, expected = EXPECTED[name]
  counts = parameter_counts(abstract_variables(create_model(model_config(name)), shape))
  assert counts == {'total': expected, 'trainable': expected, 'non_trainable': 0}


@pytest.mark.parametrize('name', sorted(EXPECTED_BATCH_NORM))
def test_batch_norm_parameter_counts(name):
  shape, trainable, statistics = EXPECTED_BATCH_NORM[name]
  counts = parameter_counts(abstract_variables(create_model(model_config(name)), shape))
  assert counts == {'total': trainable + statistics, 'trainable': trainable,
                    'non_trainable': statistics}


def test_every_registered_model_has_an_expected_count():
  assert sorted(MODELS) == sorted([*EXPECTED, *EXPECTED_BATCH_NORM])


def test_dropout_adds_no_parameters():
  shape, expected = EXPECTED['cats_vs_dogs_150']
  model = create_model(model_config('cats_vs_dogs_150', dropout_rate=0.5))
  assert parameter_counts(abstract_variables(model, shape))['total'] == expected


def test_layer_outputs_by_name_in_call_order():
  model = create_model(model_config('small_convnet'))
  images = jnp.ones((2, 28, 28, 1))
  variables = model.init(jax.random.key(0), images)
  outputs = layer_outputs(model, variables, images)
  assert list(outputs) == ['conv1', 'pool1', 'conv2', 'pool2', 'conv3', 'flatten', 'dense1',
                           'predictions']
  assert outputs['conv1'].shape == (2, 26, 26, 32)
  assert outputs['pool2'].shape == (2, 5, 5, 64)
  # Recorded outputs are the activated ones (ReLU), and the last one is what the model returns.
  assert float(jnp.min(outputs['conv1'])) >= 0.0
  np.testing.assert_allclose(outputs['predictions'], model.apply(variables, images), rtol=1e-6)
  picked = layer_outputs(model, variables, images, names=['conv3', 'pool1'])
  assert list(picked) == ['conv3', 'pool1']
  with pytest.raises(KeyError, match='conv9'):
    layer_outputs(model, variables, images, names=['conv9'])


@pytest.mark.parametrize('size', [(26, 26), (11, 11), (7, 9)])
@pytest.mark.parametrize('implementation', ['reshape', 'slices'])
def test_max_pooling_matches_reduce_window(size, implementation):
  x = jax.random.normal(jax.random.key(1), (2, *size, 3))
  ours = layers.MaxPooling2D(implementation=implementation).apply({}, x)
  reference = nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID')
  np.testing.assert_array_equal(ours, reference)
  # Without ties (normal samples), the gradient goes to each window's maximum, as reduce_window's.
  cotangent = jax.random.normal(jax.random.key(2), reference.shape)
  grad = lambda pool: jax.grad(lambda x: jnp.sum(pool(x) * cotangent))(x)
  np.testing.assert_array_equal(
      grad(lambda x: layers.MaxPooling2D(implementation=implementation).apply({}, x)),
      grad(lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID')))
  pool3 = lambda x: layers.MaxPooling2D((3, 3), implementation=implementation).apply({}, x)
  np.testing.assert_array_equal(pool3(x), nn.max_pool(x, (3, 3), (3, 3), padding='VALID'))
  with pytest.raises(ValueError, match="'reshape' or 'slices', not 'sum'"):
    layers.MaxPooling2D(implementation='sum').apply({}, x)
  np.testing.assert_allclose(layers.AveragePooling2D().apply({}, x),
                             nn.avg_pool(x, (2, 2), strides=(2, 2), padding='VALID'), rtol=1e-6)


@pytest.mark.parametrize('window,strides,padding', [
    ((3, 3), (2, 2), ((1, 1), (1, 1))),   # torchvision ResNet's stem
    ((3, 3), (2, 2), 'VALID'),            # Keras' ResNet50 and InceptionV3
    ((3, 3), (1, 1), 'SAME'),             # an Inception-style branch pool
    ((2, 3), (1, 2), ((0, 1), (2, 0))),   # uneven window, strides and padding
])
def test_overlapping_max_pooling_picks_the_first_maximum_as_select_and_scatter(
    window, strides, padding):
  """The CPU's strided-taps pooling (`pooling.max_pool_taps`) against XLA's `reduce_window` and
  its `select_and_scatter` gradient, on inputs full of ties (small integers): every output's
  gradient must reach the first maximum of its window in row-major order, as XLA's >= selection
  and torch's max_pool2d do. Integer cotangents keep every sum exact, so equality is exact."""
  x = jax.random.randint(jax.random.key(0), (2, 9, 11, 3), -2, 3).astype(jnp.float32)
  pool = layers.MaxPooling2D(window, strides, padding=padding)
  reference = lambda x: nn.max_pool(x, window, strides=strides,
                                    padding=padding if isinstance(padding, str) else padding)
  ours = jax.jit(lambda x: pool.apply({}, x))
  np.testing.assert_array_equal(ours(x), reference(x))
  cotangent = jax.random.randint(jax.random.key(1), reference(x).shape, 1, 9).astype(jnp.float32)
  grad = lambda f: jax.jit(jax.grad(lambda x: jnp.sum(f(x) * cotangent)))(x)
  np.testing.assert_array_equal(grad(ours), grad(reference))
  # The strided-taps form is what ran (a CPU backend), not reduce_window itself.
  assert 'reduce-window' not in ours.lower(x).as_text(dialect='hlo')


@pytest.mark.parametrize('implementation', layers.CONV_IMPLEMENTATIONS)
def test_conv_implementations_share_parameters_and_gradients(implementation):
  """Either formulation takes the same (3, 3, Cin, Cout) kernel and gives the same gradients."""
  x = jax.random.normal(jax.random.key(0), (2, 12, 12, 3))
  lax_layer = layers.Conv2D(8, padding='SAME', implementation='lax')
  layer = layers.Conv2D(8, padding='SAME', implementation=implementation)
  variables = lax_layer.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, layer.init(jax.random.key(1), x)) == jax.tree.map(
      jnp.shape, variables)

  def grads(module):
    return jax.grad(lambda v, x: jnp.sum(module.apply(v, x) ** 2), argnums=(0, 1))(variables, x)

  for ours, reference in zip(jax.tree.leaves(grads(layer)), jax.tree.leaves(grads(lax_layer))):
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match='implementation'):
    layers.Conv2D(8, implementation='fft').init(jax.random.key(1), x)


@pytest.mark.parametrize('xla_flags', ['', '--xla_cpu_experimental_ynn_fusion_type='])
@pytest.mark.parametrize('train', [False, True])
def test_auto_convnet_matches_the_lax_convnet(xla_flags, train, monkeypatch):
  """small_convnet as it picks its formulations per layer (im2col everywhere with XLA's YNNPACK
  fusions on; taps for the one-channel conv1 and lax after it with them off), and the pooling to
  go with each: the same logits and gradients as with lax.conv everywhere."""
  monkeypatch.setenv('XLA_FLAGS', xla_flags)
  images = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
  auto = create_model(model_config('small_convnet'))
  assert auto.conv_implementation == 'auto'
  reference = auto.clone(conv_implementation='lax')
  params = reference.init(jax.random.key(1), images)['params']

  def logits_and_grads(model):
    apply = lambda p: model.apply({'params': p}, images, train=train)
    return apply(params), jax.grad(lambda p: jnp.sum(apply(p) ** 2))(params)

  (logits, grads), (ref_logits, ref_grads) = logits_and_grads(auto), logits_and_grads(reference)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-5)
  for ours, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_model_conv_implementation_overrides_auto_for_every_conv():
  for name in ('small_convnet', 'bn_convnet', 'resnet18'):
    assert create_model(model_config(name, conv_implementation='taps')).conv_implementation == 'taps'
  assert create_model(model_config('small_convnet')).conv_implementation == 'auto'
  with pytest.raises(ConfigError, match=r"model.conv_implementation='fft' is not one of"):
    create_model(model_config('small_convnet', conv_implementation='fft'))
  with pytest.raises(ConfigError, match="does not apply to model.name='vgg16'"):
    create_model(model_config('vgg16', conv_implementation='lax'))


@pytest.mark.parametrize('name,shape', [('small_convnet', (3, 28, 28, 1)),
                                        ('cats_vs_dogs_180', (2, 180, 180, 3))])
def test_training_pools_before_the_bias_and_relu_with_the_same_result(name, shape):
  """Train mode pools each pooled conv before its bias and ReLU: same logits and gradients."""
  model = create_model(model_config(name))
  images = jax.random.uniform(jax.random.key(0), shape) * (255 if name.endswith('180') else 1)
  variables = model.init(jax.random.key(1), images)

  def logits_and_grads(train):
    apply = lambda p: model.apply({'params': p}, images, train=train)
    return apply(variables['params']), jax.grad(lambda p: jnp.sum(apply(p) ** 2))(
        variables['params'])

  (eval_logits, eval_grads), (train_logits, train_grads) = logits_and_grads(False), \
      logits_and_grads(True)
  np.testing.assert_allclose(train_logits, eval_logits, rtol=1e-6, atol=1e-6)
  for ours, reference in zip(jax.tree.leaves(train_grads), jax.tree.leaves(eval_grads)):
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)
  # Only a non-decreasing activation commutes with the maximum.
  with pytest.raises(ValueError, match='non-decreasing activation'):
    layers.Conv2D(2, activation='softmax').init(jax.random.key(0), images[..., :1],
                                                pool=layers.MaxPooling2D().pool)


def test_overlapping_pooling():
  x = jnp.arange(25.0).reshape(1, 5, 5, 1)
  out = layers.MaxPooling2D(pool_size=(3, 3), strides=(2, 2)).apply({}, x)
  np.testing.assert_array_equal(out[0, :, :, 0], [[12, 14], [22, 24]])


def test_dropout_only_in_training():
  model = create_model(model_config('cats_vs_dogs_180', dropout_rate=0.5))
  images = jax.random.uniform(jax.random.key(0), (2, 180, 180, 3)) * 255
  variables = model.init(jax.random.key(0), images)
  eval_a = model.apply(variables, images)
  eval_b = model.apply(variables, images, train=False)
  np.testing.assert_array_equal(eval_a, eval_b)
  train_a = model.apply(variables, images, train=True, rngs={'dropout': jax.random.key(1)})
  train_b = model.apply(variables, images, train=True, rngs={'dropout': jax.random.key(2)})
  assert not np.allclose(train_a, train_b)


def test_bfloat16_compute_keeps_float32_parameters_and_logits():
  model = create_model(model_config('small_convnet', dtype='bfloat16'))
  images = jnp.ones((2, 28, 28, 1))
  variables = model.init(jax.random.key(0), images)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  assert model.apply(variables, images).dtype == jnp.float32


def test_field_a_model_lacks_is_a_clear_error():
  with pytest.raises(ConfigError, match="model.dropout_rate=0.5 does not apply to model.name='vgg16'"):
    create_model(model_config('vgg16', dropout_rate=0.5))


def test_bad_model_config_fields_are_named():
  with pytest.raises(ConfigError, match="model.name='resnet9000'"):
    create_model(model_config('resnet9000'))
  with pytest.raises(ConfigError, match='model.dtype'):
    create_model(model_config('small_convnet', dtype='float8'))


def test_register_model():
  register_model('tiny_test_convnet', lambda **kw: ConvNet(conv_features=(4,), num_outputs=3,
                                                            **kw))
  try:
    model = create_model(model_config('tiny_test_convnet'))
    variables = abstract_variables(model, (8, 8, 1))
    assert parameter_counts(variables)['total'] == (9 * 4 + 4) + (6 * 6 * 4 * 3 + 3)
  finally:
    del MODELS['tiny_test_convnet']


def test_small_convnet_matches_keras_forward_pass():
  """The same weights give the same logits as the seed's Keras model (channels-last flatten)."""
  os.environ.setdefault('KERAS_BACKEND', 'jax')
  keras = pytest.importorskip('keras')
  keras.utils.set_random_seed(0)
  reference = keras.Sequential([
      keras.Input((28, 28, 1)),
      keras.layers.Conv2D(32, 3, activation='relu'), keras.layers.MaxPooling2D(2),
      keras.layers.Conv2D(64, 3, activation='relu'), keras.layers.MaxPooling2D(2),
      keras.layers.Conv2D(64, 3, activation='relu'),
      keras.layers.Flatten(), keras.layers.Dense(64, activation='relu'), keras.layers.Dense(10),
  ])
  assert reference.count_params() == 93_322
  names = ['conv1', 'conv2', 'conv3', 'dense1', 'predictions']
  weighted = [layer for layer in reference.layers if layer.weights]
  params = {name: {'kernel': jnp.asarray(layer.get_weights()[0]),
                   'bias': jnp.asarray(layer.get_weights()[1])}
            for name, layer in zip(names, weighted)}
  images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
  ours = create_model(model_config('small_convnet')).apply({'params': params}, images)
  np.testing.assert_allclose(ours, np.asarray(reference(images)), rtol=1e-4, atol=1e-5)


def test_bn_convnet_pools_right_after_each_stages_first_convolution():
  """airbench's ConvGroup order (conv - pool - BatchNorm - ReLU), which runs BatchNorm and ReLU
  on the pooled tensor; in evaluation BatchNorm uses the moving statistics."""
  model = create_model(model_config('bn_convnet'))
  images = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))
  variables = model.init(jax.random.key(0), images)
  outputs = layer_outputs(model, variables, images)
  assert [name for name in outputs if name.startswith(('conv', 'pool', 'bn'))] == [
      'conv1_1', 'pool1', 'bn1_1', 'conv2_1', 'pool2', 'bn2_1', 'conv3_1', 'pool3', 'bn3_1']
  assert outputs['conv1_1'].shape == (2, 28, 28, 24)
  assert outputs['bn1_1'].shape == (2, 14, 14, 24)
  assert outputs['bn3_1'].shape == (2, 3, 3, 96)
  # Fresh moving statistics (mean 0, variance 1): evaluation's BatchNorm is x / sqrt(1 + eps).
  np.testing.assert_allclose(outputs['bn1_1'], outputs['pool1'] / np.sqrt(1 + 1e-5), rtol=1e-5)


def test_bn_convnet_takes_its_shape_from_the_config():
  """model.widths / convs_per_stage / first_stride: a strided first convolution replaces the first
  stage's pooling (same output size), extra convolutions keep the stage's size; a model without
  those fields refuses them."""
  config = model_config('bn_convnet')
  config.widths, config.convs_per_stage, config.first_stride = (8, 16), (1, 2), 2
  model = create_model(config)
  images = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))
  variables = model.init(jax.random.key(0), images)
  outputs = layer_outputs(model, variables, images)
  assert [name for name in outputs if name.startswith(('conv', 'pool', 'bn'))] == [
      'conv1_1', 'bn1_1', 'conv2_1', 'pool2', 'bn2_1', 'conv2_2', 'bn2_2']
  assert outputs['conv1_1'].shape == (2, 14, 14, 8)
  assert outputs['bn2_2'].shape == (2, 7, 7, 16)
  assert variables['params']['predictions']['kernel'].shape == (7 * 7 * 16, 10)
  # The strided convolution is the stride-1 one at every other position: 'SAME' pads 28 -> 14
  # by (0, 1), so its windows centre on the odd rows and columns (TensorFlow's rule).
  kernel = variables['params']['conv1_1']['kernel']
  dense = jax.lax.conv_general_dilated(images, kernel, (1, 1), 'SAME',
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(outputs['conv1_1'], dense[:, 1::2, 1::2], rtol=1e-5, atol=1e-6)
  config.first_stride = 3
  with pytest.raises(ValueError, match='first_stride'):
    create_model(config).init(jax.random.key(0), images)
  plain = model_config('small_convnet')
  plain.widths = (8, 16)
  with pytest.raises(ConfigError, match='model.widths'):
    create_model(plain)


def test_a_resnet_takes_its_blocks_and_widths_from_the_config():
  """model.stage_sizes / widths: resnet_small (a 16-channel stem) with (2, 1) blocks of 16 and 32
  channels has exactly those blocks (a projected shortcut only where the size changes); mismatched
  lengths and a model without stage_sizes are refused."""
  config = model_config('resnet_small')
  config.stage_sizes, config.widths = (2, 1), (16, 32)
  model = create_model(config)
  images = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))
  params = model.init(jax.random.key(0), images)['params']
  assert sorted(params['layer1']) == ['0', '1'] and sorted(params['layer2']) == ['0']
  assert 'downsample' not in params['layer1']['0'] and 'downsample' in params['layer2']['0']
  assert params['layer1']['1']['conv2']['kernel'].shape == (3, 3, 16, 16)
  assert params['layer2']['0']['conv1']['kernel'].shape == (3, 3, 16, 32)
  assert params['fc']['kernel'].shape == (32, 10)
  config.stage_sizes = (2, 1, 1)
  with pytest.raises(ConfigError, match='stage_sizes'):
    create_model(config).init(jax.random.key(0), images)
  plain = model_config('bn_convnet')
  plain.stage_sizes = (1, 1, 1)
  with pytest.raises(ConfigError, match='model.stage_sizes'):
    create_model(plain)
