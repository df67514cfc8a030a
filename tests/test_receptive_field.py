"""Receptive fields: `cnnjax.receptive_field`'s jaxpr walk against gradients, and known values.

The independent check: the input pixels with a nonzero gradient of one unit are the pixels that
unit depends on. For that set to be the whole receptive field, no operation may zero a gradient
for the weights and images used, so the checked models get

- positive weights, biases and BatchNorm scales and offsets (BatchNorm in inference mode with
  its initial statistics, mean 0 and variance 1) and positive images: every pre-activation is
  positive, every ReLU passes its gradient and no sum cancels;
- max pooling replaced by sum pooling of the same window, strides and padding (a flax method
  interceptor): max's gradient goes to one input per window (the maximum), sum's to all, and the
  window, hence the field, is the same. The walk itself runs on the real model, max and all.

A field is the bounding box of what the unit depends on; with dilations and strides that set can
have holes (a single 3x3 convolution with dilation 2 reads 9 pixels of a 5x5 box), so the check is
that the gradient's support has exactly the field's bounding box, and for every layer whose field
is dense (all but `SPARSE`) that it fills it.
"""

import importlib.util
import os
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import receptive_field
from cnnjax.models import MODELS, layers, resnet, resnet_keras, vgg_classifier

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DilatedStack(nn.Module):
  """3x3 convolutions conv1, conv2, ... with the given dilations."""

  dilations: Sequence[int]
  padding: str = 'VALID'
  implementation: str = 'lax'

  @nn.compact
  def __call__(self, x):
    for i, d in enumerate(self.dilations, start=1):
      x = layers.Conv2D(2, (3, 3), padding=self.padding, dilation=(d, d),
                        implementation=self.implementation, name=f'conv{i}')(x)
    return x


class Branches(nn.Module):
  """An Inception-style block on a 5x5 stride-2 stem: parallel branches with different fields (1x1,
  1x3 then 3x1, a dilated 3x3, a 'same' average pool and a 'same' max pool) concatenated, added
  to a 1x1 shortcut; then a 5x1 convolution (rows and columns differ), a 2x2 pooling and a head."""

  @nn.compact
  def __call__(self, x):
    x = layers.Conv2D(2, (5, 5), strides=(2, 2), padding='SAME', name='stem')(x)
    b1 = layers.Conv2D(2, (1, 1), name='branch_1x1')(x)
    b2 = layers.Conv2D(2, (1, 3), padding='SAME', name='branch_1x3')(x)
    b2 = layers.Conv2D(2, (3, 1), padding='SAME', name='branch_3x1')(b2)
    b3 = layers.Conv2D(2, (3, 3), padding='SAME', dilation=(2, 2), name='branch_dilated')(x)
    b4 = layers.AveragePooling2D((3, 3), (1, 1), padding='SAME', name='branch_average')(x)
    b5 = layers.MaxPooling2D((3, 3), (1, 1), padding='SAME', name='branch_max')(x)
    joined = layers.Concatenate(name='mixed')([b1, b2, b3, b4, b5])
    shortcut = layers.Conv2D(10, (1, 1), name='shortcut')(x)
    x = layers.Add(name='add')([joined, shortcut])
    x = layers.Conv2D(2, (5, 1), name='tall')(x)
    x = layers.MaxPooling2D((2, 2), name='pool')(x)
    x = layers.GlobalAveragePooling2D(name='gap')(x)
    return layers.Dense(1, name='logit')(x)


BRANCHES_FIELDS = {  # (rows, cols) field and jump, worked out by hand from the layers above.
    'stem': ((5, 5), 2), 'branch_1x1': ((5, 5), 2), 'branch_1x3': ((5, 9), 2),
    'branch_3x1': ((9, 9), 2), 'branch_dilated': ((13, 13), 2), 'branch_average': ((9, 9), 2),
    'branch_max': ((9, 9), 2), 'mixed': ((13, 13), 2), 'shortcut': ((5, 5), 2),
    'add': ((13, 13), 2), 'tall': ((21, 13), 2), 'pool': ((23, 15), 4)}


def positive_variables(model, image_shape, seed=0):
  """Variables for `model` with every parameter drawn from U(0.5, 1.5), kernels divided by their
  fan-in (so activations stay near 1 through deep stacks), and BatchNorm's initial statistics
  (mean 0, variance 1). Drawn with NumPy from the shapes alone: nothing is compiled."""
  shapes = jax.eval_shape(model.init, jax.random.key(seed), jax.ShapeDtypeStruct(image_shape,
                                                                                 jnp.float32))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if path[0].key != 'params':
      return jnp.full(leaf.shape, 1.0 if name == 'var' else 0.0, leaf.dtype)
    value = rng.uniform(0.5, 1.5, leaf.shape)
    if name == 'kernel':
      value = value / np.prod(leaf.shape[:-1])
    return jnp.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def _sum_pooling(next_fun, args, kwargs, context):
  """Max pooling as sum pooling of the same window, strides and padding (see the module doc)."""
  module = context.module
  if not (isinstance(module, layers.MaxPooling2D) and context.method_name == 'pool'):
    return next_fun(*args, **kwargs)
  (x,) = args
  window = tuple(module.pool_size)
  strides = tuple(module.strides or window)
  padding = module.padding
  if not isinstance(padding, str):
    padding = ((0, 0), *(tuple(p) for p in padding), (0, 0))
  return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, *window, 1), (1, *strides, 1), padding)


def gradient_supports(model, variables, images, units):
  """{layer: the input pixels (H, W) with a nonzero gradient of its unit}, max pooling as sums."""
  with nn.intercept_methods(_sum_pooling):
    gradients = receptive_field.unit_gradients(model, variables, images, units)
  return {name: gradient != 0 for name, gradient in gradients.items()}


def _bounding_box(mask):
  rows, cols = np.nonzero(mask)
  return rows.min(), rows.max(), cols.min(), cols.max()


def check_fields_against_gradients(model, image_shape, names, sparse=(), seed=0):
  """Each named layer's computed field of its central unit against the gradient's support."""
  variables = positive_variables(model, image_shape, seed)
  images = jnp.asarray(np.random.default_rng(seed + 1).uniform(0.5, 1.5, image_shape), jnp.float32)
  fields = receptive_field.receptive_fields(model, variables, images, depth=None)
  units = {name: (fields[name].rows.length // 2, fields[name].cols.length // 2) for name in names}
  supports = gradient_supports(model, variables, images, units)
  for name in names:
    expected = fields[name].mask(units[name], image_shape[1:3])
    assert _bounding_box(supports[name]) == _bounding_box(expected), name
    if name in sparse:
      assert not np.all(supports[name][expected]), f'{name}: expected holes in the field'
    else:
      np.testing.assert_array_equal(supports[name], expected, err_msg=name)
  return fields


@pytest.mark.parametrize('padding', ['VALID', 'SAME'])
@pytest.mark.parametrize('implementation', ['lax', 'im2col', 'taps'])
def test_dilated_stack_fields(implementation, padding):
  """3x3 with dilations 1, 2, 4: fields 3, 7, 15 (1 + 2 * (1 + 2 + 4)); jump 1. The walk follows
  each implementation's computation (XLA's convolution, stacked views, per-tap products)."""
  model = DilatedStack((1, 2, 4), padding, implementation)
  fields = check_fields_against_gradients(model, (1, 23, 23, 1), ['conv1', 'conv2', 'conv3'])
  assert [fields[f'conv{i}'].rows.size for i in (1, 2, 3)] == [3, 7, 15]
  assert all(f.rows.jump == f.cols.jump == 1 for f in fields.values())
  plain = receptive_field.receptive_fields(DilatedStack((1, 1, 1), padding), None, (1, 23, 23, 1))
  assert [plain[f'conv{i}'].cols.size for i in (1, 2, 3)] == [3, 5, 7]


def test_a_single_dilated_layer_has_holes():
  """One 3x3 with dilation 2: a 5x5 field of which 9 pixels are read."""
  model = DilatedStack((2,))
  fields = check_fields_against_gradients(model, (1, 9, 9, 1), ['conv1'], sparse=['conv1'])
  assert (fields['conv1'].rows.size, fields['conv1'].cols.size) == (5, 5)


def test_branches_concatenation_and_residual_fields():
  """Parallel branches join with the union of their fields (here the dilated branch's 13x13: its
  taps, 4 pixels apart, fall on stem units whose 5-pixel fields overlap, so it has no holes), a
  residual Add likewise, a 5x1 convolution grows the rows alone."""
  model = Branches()
  fields = check_fields_against_gradients(model, (1, 40, 40, 1), list(BRANCHES_FIELDS))
  for name, ((rows, cols), jump) in BRANCHES_FIELDS.items():
    field = fields[name]
    assert (field.rows.size, field.cols.size, field.rows.jump, field.cols.jump) == (
        rows, cols, jump, jump), name
  # After global pooling every unit sees the same pixels: all of the image's, here.
  assert fields['gap'].rows.jump is None and fields['gap'].rows.length is None
  assert fields['gap'].mask((0, 0), (40, 40)).all()


def test_seed_convnet_fields():
  """small_convnet, and cats_vs_dogs_150 on a smaller image: valid 3x3 convolutions and 2x2
  max pooling. The walk gives the same fields whichever implementation computes the
  convolutions (with im2col and taps the model pools by the maximum of strided slices)."""
  names = ['conv1', 'pool1', 'conv2', 'pool2', 'conv3']
  fields = check_fields_against_gradients(MODELS['small_convnet'](conv_implementation='lax'),
                                          (1, 28, 28, 1), names)
  assert [(fields[n].rows.size, fields[n].rows.jump) for n in names] == [
      (3, 1), (4, 2), (8, 2), (10, 4), (18, 4)]
  for implementation in ('im2col', 'taps'):
    assert receptive_field.receptive_fields(
        MODELS['small_convnet'](conv_implementation=implementation), None,
        (1, 28, 28, 1)) == receptive_field.receptive_fields(
            MODELS['small_convnet'](conv_implementation='lax'), None, (1, 28, 28, 1))
  fields = check_fields_against_gradients(MODELS['cats_vs_dogs_150'](conv_implementation='lax'),
                                          (1, 62, 62, 3), ['conv3', 'pool3', 'conv4', 'pool4'])
  assert (fields['pool4'].rows.size, fields['pool4'].rows.jump) == (46, 16)


def test_resnet_small_fields_through_nested_blocks():
  """torchvision's layout: nested blocks, BatchNorm, projected shortcuts with stride 2."""
  model = MODELS['resnet_small']()
  names = ['conv1', 'layer1', 'layer2/0/conv1', 'layer2/0/downsample', 'layer2', 'layer3']
  fields = check_fields_against_gradients(model, (1, 40, 40, 1), names)
  assert [fields[n].rows.size for n in names] == [3, 7, 9, 7, 13, 25]
  assert fields['layer3'].rows.jump == 4


def test_vgg16_geometry_against_gradients():
  """VGG16's convolutions and poolings with one channel per layer (the same geometry, cheap):
  block5_conv3's 196 and block5_pool's 212 at a 256x256 input, where the central unit's field
  lies inside the image."""
  blocks = tuple((convs, 1) for convs, _ in vgg_classifier.VGG16_BLOCKS)
  model = vgg_classifier.VGGClassifier(blocks, head='gap', hidden_units=(), dropout_rate=0.0)
  fields = check_fields_against_gradients(model, (1, 256, 256, 1),
                                          ['block3_pool', 'block5_conv3', 'block5_pool'])
  assert (fields['block5_conv3'].rows.size, fields['block5_pool'].rows.size) == (196, 212)


@pytest.mark.slow
def test_resnet50_geometry_against_gradients():
  """torchvision's ResNet50 with one-channel-wide blocks (the same geometry): layer4's 427 at
  448x448, the stem's max pooling checked as a sum."""
  model = resnet.ResNet(stage_sizes=(3, 4, 6, 3), block='bottleneck', widths=(1, 1, 1, 1),
                        stem_features=1, include_top=False)
  fields = check_fields_against_gradients(model, (1, 448, 448, 1), ['maxpool', 'layer3', 'layer4'])
  assert [fields[n].rows.size for n in ('maxpool', 'layer3', 'layer4')] == [11, 267, 427]


@pytest.mark.slow
def test_resnet50_keras_geometry_against_gradients(monkeypatch):
  """Keras' ResNet50 (v1: the stride on the first 1x1 convolution) with one-filter stages: 483."""
  monkeypatch.setattr(resnet_keras, 'STAGES', tuple((s, b, 1) for s, b, _ in resnet_keras.STAGES))
  model = resnet_keras.ResNet50Keras(include_top=False)
  fields = check_fields_against_gradients(model, (1, 512, 512, 1),
                                          ['conv3_block1_out', 'conv5_block3_out'])
  assert [fields[n].rows.size for n in ('conv3_block1_out', 'conv5_block3_out')] == [51, 483]


def _field(fields, name):
  f = fields[name]
  return (f.rows.size, f.cols.size), (f.rows.jump, f.cols.jump), (f.rows.length, f.cols.length)


@pytest.mark.parametrize('name, size, channels, expected', [
    ('small_convnet', 28, 1, {'conv3': ((18, 18), (4, 4), (3, 3))}),
    ('mnist_convnet', 28, 1, {'pool2': ((10, 10), (4, 4), (5, 5)),
                              'conv3': ((18, 18), (4, 4), (3, 3))}),
    ('cats_vs_dogs_150', 150, 3, {'conv4': ((38, 38), (8, 8), (15, 15)),
                                  'pool4': ((46, 46), (16, 16), (7, 7))}),
    ('vgg16', 224, 3, {'block5_conv3': ((196, 196), (16, 16), (14, 14)),
                       'block5_pool': ((212, 212), (32, 32), (7, 7))}),
    # github.com/samson-wang's table (gist a6073c18...: conv1 7, maxpool 11, layer1..4 35, 91,
    # 267, 427), which the recurrence r += (k - 1) * jump gives by hand.
    ('resnet50', 224, 3, {'conv1': ((7, 7), (2, 2), (112, 112)),
                          'maxpool': ((11, 11), (4, 4), (56, 56)),
                          'layer1': ((35, 35), (4, 4), (56, 56)),
                          'layer2': ((91, 91), (8, 8), (28, 28)),
                          'layer3': ((267, 267), (16, 16), (14, 14)),
                          'layer4': ((427, 427), (32, 32), (7, 7))}),
    ('resnet50_keras', 224, 3, {'conv5_block3_out': ((483, 483), (32, 32), (7, 7))}),
])
def test_known_fields_of_the_zoo(name, size, channels, expected):
  """Shapes only: each model is traced at its input size, never run."""
  fields = receptive_field.receptive_fields(MODELS[name](), None, (1, size, size, channels))
  for layer, values in expected.items():
    assert _field(fields, layer) == values, layer


def test_fields_are_centred_on_their_units():
  """VGG16's 'same' padding centres block5_pool's unit i on pixel 32 i + 15.5, the centre of its
  32x32 cell; ResNet50's symmetric padding centres layer4's unit i on 32 i."""
  vgg = receptive_field.receptive_fields(MODELS['vgg16'](), None, (1, 224, 224, 3))
  first, last = vgg['block5_pool'].rows.pixels(3)
  assert (first + last) / 2 == 32 * 3 + 15.5
  resnet50 = receptive_field.receptive_fields(MODELS['resnet50'](), None, (1, 224, 224, 3))
  first, last = resnet50['layer4'].cols.pixels(2)
  assert (first + last) / 2 == 32 * 2


def test_depth_and_call_order():
  fields = receptive_field.receptive_fields(MODELS['resnet_small'](), None, (1, 28, 28, 1))
  assert list(fields) == ['conv1', 'bn1', 'layer1', 'layer2', 'layer3', 'avgpool', 'fc']
  nested = receptive_field.receptive_fields(MODELS['resnet_small'](), None, (1, 28, 28, 1),
                                            depth=2)
  assert list(nested)[:4] == ['conv1', 'bn1', 'layer1', 'layer1/0']
  every = receptive_field.receptive_fields(MODELS['resnet_small'](), None, (1, 28, 28, 1),
                                           depth=None)
  assert 'layer2/0/downsample/0' in every


def test_table_and_command_line(capsys):
  fields = receptive_field.receptive_fields(MODELS['small_convnet'](), None, (1, 28, 28, 1))
  table = receptive_field.format_table(fields)
  assert table.splitlines()[0] == '| layer | output | field | jump | start |'
  assert '| conv3 | 3x3 | 18x18 | 4x4 | 0,0 |' in table
  assert '| flatten | - | 26x26 | - | 0,0 |' in table
  receptive_field.main(['--model', 'vgg16', '--size', '224', '--text'])
  out = capsys.readouterr().out
  assert 'vgg16 at 224x224x3' in out
  assert any(line.split() == ['block5_pool', '7x7', '212x212', '32x32', '-90,-90']
             for line in out.splitlines())


def test_unknown_operations_are_errors():
  """A cumulative sum along the rows is not local: the walk says so instead of guessing."""

  class Cumulative(nn.Module):
    @nn.compact
    def __call__(self, x):
      return layers.Activation('linear', name='cumsum')(jnp.cumsum(x, axis=1))

  with pytest.raises(receptive_field.UnsupportedOperation, match="no rule for 'cumsum'"):
    receptive_field.receptive_fields(Cumulative(), None, (1, 8, 8, 1))


def test_dilation_figure(tmp_path):
  """scripts/receptive_field_figure.py draws its PNG (fields 7 and 15 drawn from the same walk)."""
  spec = importlib.util.spec_from_file_location(
      'receptive_field_figure', os.path.join(REPO, 'scripts', 'receptive_field_figure.py'))
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  path = script.draw(str(tmp_path / 'figure.png'))
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
