"""VGG16: exact parameter counts, Keras layer names and shapes, pooling, and input checks.

Shapes and counts come from tracing (no 138M parameters are made); only the pooling test runs
the convolutional base, at 64x64. Numerical parity with Keras and torchvision is in
test_weights.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.errors import ConfigError
from cnnjax.models import layer_outputs
from cnnjax.models.layer_outputs import layer_types
from cnnjax.models.vgg16 import CONV_LAYERS, VGG16
from cnnjax.summary import abstract_variables, parameter_counts, summary

BASE_LAYERS = [
    'block1_conv1', 'block1_conv2', 'block1_pool',
    'block2_conv1', 'block2_conv2', 'block2_pool',
    'block3_conv1', 'block3_conv2', 'block3_conv3', 'block3_pool',
    'block4_conv1', 'block4_conv2', 'block4_conv3', 'block4_pool',
    'block5_conv1', 'block5_conv2', 'block5_conv3', 'block5_pool',
]


def output_shape(model, input_shape):
  variables = abstract_variables(model, input_shape)
  images = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)
  return jax.eval_shape(model.apply, variables, images).shape


@pytest.mark.parametrize('input_shape', [(32, 32, 3), (150, 150, 3), (224, 224, 3)])
def test_base_has_14_714_688_parameters_at_any_size(input_shape):
  counts = parameter_counts(abstract_variables(VGG16(include_top=False), input_shape))
  assert counts == {'total': 14_714_688, 'trainable': 14_714_688, 'non_trainable': 0}


def test_with_top_has_138_357_544_parameters():
  counts = parameter_counts(abstract_variables(VGG16(), (224, 224, 3)))
  assert counts['total'] == 138_357_544


def test_top_size_follows_input_size_and_classes():
  # As Keras with weights=None: fc1's kernel takes whatever block5_pool flattens to.
  counts = parameter_counts(abstract_variables(VGG16(num_outputs=2), (64, 64, 3)))
  assert counts['total'] == 14_714_688 + (2 * 2 * 512 + 1) * 4096 + 4097 * 4096 + 4097 * 2


def test_layer_names_are_keras_names_in_call_order():
  model = VGG16()
  variables = abstract_variables(model, (224, 224, 3))
  images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  types = layer_types(model, variables, images)
  assert list(types) == BASE_LAYERS + ['flatten', 'fc1', 'fc2', 'predictions']
  assert types['block1_conv1'] == 'Conv2D' and types['block1_pool'] == 'MaxPooling2D'
  assert list(variables['params']) == list(CONV_LAYERS) + ['fc1', 'fc2', 'predictions']


@pytest.mark.parametrize('size, side', [(32, 1), (150, 4), (180, 5), (224, 7)])
def test_feature_map_sizes(size, side):
  assert output_shape(VGG16(include_top=False), (size, size, 3)) == (2, side, side, 512)


@pytest.mark.parametrize('pooling, shape', [(None, (2, 4, 4, 512)), ('avg', (2, 512)),
                                            ('max', (2, 512))])
def test_pooling_output_shapes(pooling, shape):
  assert output_shape(VGG16(include_top=False, pooling=pooling), (150, 150, 3)) == shape


def test_top_returns_logits_of_num_outputs_and_ignores_pooling():
  assert output_shape(VGG16(), (224, 224, 3)) == (2, 1000)
  assert output_shape(VGG16(num_outputs=2, pooling='avg'), (224, 224, 3)) == (2, 2)


def test_global_pooling_reduces_block5_pool():
  images = jax.random.uniform(jax.random.key(1), (1, 64, 64, 3), minval=-100, maxval=150)
  # NumPy stand-ins for Glorot-initialized parameters: `init` would spend seconds on VGG16 on CPU.
  rng = np.random.default_rng(0)
  variables = jax.tree.map(
      lambda s: rng.normal(0, (2 / np.prod(s.shape[:-1])) ** 0.5, s.shape).astype(np.float32),
      abstract_variables(VGG16(include_top=False), (64, 64, 3)))
  for pooling, name, reduce in [('avg', 'global_average_pooling2d', jnp.mean),
                                ('max', 'global_max_pooling2d', jnp.max)]:
    model = VGG16(include_top=False, pooling=pooling)
    outputs = layer_outputs(model, variables, images)
    assert list(outputs) == BASE_LAYERS + [name]
    assert outputs['block5_pool'].shape == (1, 2, 2, 512)
    np.testing.assert_allclose(outputs[name], reduce(outputs['block5_pool'], axis=(1, 2)),
                               rtol=1e-6)


def test_summary_totals():
  text = summary(VGG16(include_top=False), (150, 150, 3), name='vgg16')
  assert 'block5_pool (MaxPooling2D)' in text and '(None, 4, 4, 512)' in text
  assert 'Total params: 14,714,688' in text


def test_bfloat16_compute_returns_float32():
  model = VGG16(include_top=False, dtype=jnp.bfloat16)
  variables = abstract_variables(model, (32, 32, 3))
  out = jax.eval_shape(model.apply, variables, jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
  assert out.dtype == jnp.float32
  assert jax.tree.leaves(variables)[0].dtype == jnp.float32


@pytest.mark.parametrize('shape', [(1, 31, 64, 3), (1, 16, 16, 3), (32, 32, 3)])
def test_too_small_or_unbatched_input_is_an_error(shape):
  with pytest.raises(ConfigError, match='at least 32x32'):
    jax.eval_shape(VGG16(include_top=False).init, jax.random.key(0),
                   jax.ShapeDtypeStruct(shape, jnp.float32))


def test_unknown_pooling_is_an_error():
  with pytest.raises(ConfigError, match="pooling='mean'"):
    abstract_variables(VGG16(include_top=False, pooling='mean'), (32, 32, 3))
