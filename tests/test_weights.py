"""Pretrained-weight loading: VGG16 ported from Keras and PyTorch files gives the same outputs.

No network: Keras 3 (JAX backend) and torch build randomly initialized VGG16s with fixed seeds,
save them in every format cnnjax reads (Keras 3 .weights.h5, Keras' legacy HDF5 writer, a whole
model's .h5, a file written here in the ImageNet files' layout, torch zip and legacy .pth), and
cnnjax's VGG16 must reproduce their outputs from those files. The fast tests run the base at
64x64 (2x2 final maps, so spatial order matters) and a torchvision-layout model with its top at
64x64 (fc1 takes 2x2x512); the 224x224 with-top comparisons are marked slow.
"""

import pickle

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.errors import DataError
from cnnjax.models.vgg16 import TOP_LAYERS, VGG16
from cnnjax.weights import detect_format, load_vgg16_weights, merge_params, read_state_dict
from cnnjax.weights import files
from cnnjax.weights.vgg16 import (KERAS_NO_TOP_URL, KERAS_URL, TORCHVISION_URL,
                                  nchw_to_nhwc_rows, params_from_torchvision)

from keras_files import LAYOUTS, import_keras, write_keras_file
from ports import relative_difference

torch = pytest.importorskip('torch')

# Keras' JAX backend converts arrays in a way NumPy 2 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning:keras.*')

SIZE = 64
TOLERANCE = 1e-4  # Largest difference relative to the largest reference output.


def images(size, seed=0):
  # Inputs in the range of caffe-preprocessed pixels, so the ReLUs see realistic values.
  return np.random.default_rng(seed).uniform(-120, 150, (2, size, size, 3)).astype(np.float32)


def abstract_params(model, size):
  return jax.eval_shape(model.init, jax.random.key(0),
                        jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))['params']


def port(model, path, x, **load_kwargs):
  """cnnjax's output on `x` with the weights of `path` merged into `model`."""
  params = merge_params(abstract_params(model, x.shape[1]), load_vgg16_weights(path, **load_kwargs),
                        source=str(path))
  return model.apply({'params': params}, x)


# ---------------------------------------------------------------------------------------------
# Files written in every format




@pytest.fixture(scope='module')
def keras_base(tmp_path_factory):
  """Keras' VGG16 base at 64x64: its output on `images(SIZE)` and its weights in every layout."""
  keras = import_keras()
  keras.utils.set_random_seed(0)
  model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
  directory = tmp_path_factory.mktemp('keras_base')
  paths = {layout: write_keras_file(directory / f'vgg16_notop_{layout}', model, layout)
           for layout in LAYOUTS}
  return np.asarray(model(images(SIZE))), paths


class TorchVGG16(torch.nn.Module):
  """torchvision's VGG16 layout (same state dict keys), with `side` for the adaptive pooling.

  torchvision pools the last feature map to 7x7 before the classifier; here it pools to
  side x side, the identity when the input is 32 * side pixels square, as Keras' top assumes.
  """

  def __init__(self, side=7, num_classes=1000):
    super().__init__()
    layers, channels = [], 3
    for v in (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512,
              'M'):
      if v == 'M':
        layers.append(torch.nn.MaxPool2d(2, 2))
      else:
        layers += [torch.nn.Conv2d(channels, v, 3, padding=1), torch.nn.ReLU(inplace=True)]
        channels = v
    self.features = torch.nn.Sequential(*layers)
    self.avgpool = torch.nn.AdaptiveAvgPool2d((side, side))
    self.classifier = torch.nn.Sequential(
        torch.nn.Linear(512 * side * side, 4096), torch.nn.ReLU(True), torch.nn.Dropout(),
        torch.nn.Linear(4096, 4096), torch.nn.ReLU(True), torch.nn.Dropout(),
        torch.nn.Linear(4096, num_classes))

  def forward(self, x):
    return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def torch_outputs(model, x):
  """The model's logits and base feature maps (as NHWC) on NHWC images."""
  with torch.no_grad():
    nchw = torch.from_numpy(x.transpose(0, 3, 1, 2))
    return model(nchw).numpy(), model.features(nchw).numpy().transpose(0, 2, 3, 1)


@pytest.fixture(scope='module')
def torch_top(tmp_path_factory):
  """A torchvision-layout VGG16 with its top at 64x64, saved in the zip and the legacy format."""
  torch.manual_seed(0)
  model = TorchVGG16(side=SIZE // 32).eval()
  directory = tmp_path_factory.mktemp('torch_top')
  paths = {'zip': str(directory / 'vgg16.pth'), 'legacy': str(directory / 'vgg16_legacy.pth')}
  torch.save(model.state_dict(), paths['zip'])
  torch.save(model.state_dict(), paths['legacy'], _use_new_zipfile_serialization=False)
  logits, features = torch_outputs(model, images(SIZE))
  return logits, features, paths


# ---------------------------------------------------------------------------------------------
# The port is exact


@pytest.mark.parametrize('layout', LAYOUTS)
def test_keras_base_matches_keras(keras_base, layout):
  reference, paths = keras_base
  output = port(VGG16(include_top=False), paths[layout], images(SIZE))
  assert relative_difference(output, reference) < TOLERANCE


@pytest.mark.parametrize('kind', ['zip', 'legacy'])
def test_torchvision_layout_matches_torch(torch_top, kind):
  logits, features, paths = torch_top
  x = images(SIZE)
  assert relative_difference(port(VGG16(), paths[kind], x), logits) < TOLERANCE
  base = port(VGG16(include_top=False), paths[kind], x, include_top=False)
  assert relative_difference(base, features) < TOLERANCE


def test_naive_flatten_order_does_not_match(torch_top):
  # torch flattens (channel, row, column); without reordering fc1's rows the logits are wrong.
  logits, _, paths = torch_top
  state_dict = read_state_dict(paths['zip'])
  params = params_from_torchvision(state_dict)
  params['fc1']['kernel'] = state_dict['classifier.0.weight'].T
  naive = VGG16().apply({'params': params}, images(SIZE))
  assert relative_difference(naive, logits) > 1e-2


def test_nchw_to_nhwc_rows():
  channels, side, outputs = 3, 2, 5
  kernel = np.arange(channels * side * side * outputs, dtype=np.float32).reshape(-1, outputs)
  reordered = nchw_to_nhwc_rows(kernel, channels)
  for c in range(channels):
    for h in range(side):
      for w in range(side):
        np.testing.assert_array_equal(reordered[(h * side + w) * channels + c],
                                      kernel[(c * side + h) * side + w])
  with pytest.raises(DataError, match='square feature map'):
    nchw_to_nhwc_rows(np.zeros((3 * 6, 1)), channels)


@pytest.mark.slow
def test_keras_with_top_at_224_matches_keras(tmp_path):
  keras = import_keras()
  keras.utils.set_random_seed(1)
  model = keras.applications.VGG16(weights=None, classifier_activation=None)
  x = images(224, seed=1)
  reference = np.asarray(model(x))
  # One 528 MiB file at a time, to keep the disk and the run time in bounds.
  for layout in ('keras3.weights.h5', 'legacy.h5', 'imagenet.h5'):
    path = write_keras_file(tmp_path / f'vgg16_{layout}', model, layout)
    assert relative_difference(port(VGG16(), path, x), reference) < TOLERANCE, layout
  # The with-top file also serves the base.
  base = load_vgg16_weights(path, include_top=False)
  merge_params(abstract_params(VGG16(include_top=False), 224), base)
  for path in tmp_path.iterdir():
    path.unlink()  # pytest keeps the last runs' directories; these files are 528 MiB each.


@pytest.mark.slow
def test_torchvision_with_top_at_224_matches_torch(tmp_path):
  torch.manual_seed(1)
  model = TorchVGG16(side=7).eval()
  path = tmp_path / 'vgg16-397923af.pth'
  torch.save(model.state_dict(), path)
  x = images(224, seed=1)
  logits, _ = torch_outputs(model, x)
  del model
  assert relative_difference(port(VGG16(), path, x), logits) < TOLERANCE
  path.unlink()


# ---------------------------------------------------------------------------------------------
# Mismatches fail loudly, listing everything


def assert_lists(message, heading, items, separator=', '):
  """The message has one line `heading: ...` naming exactly `items`, in any order."""
  lines = [line.strip() for line in message.splitlines() if line.strip().startswith(heading)]
  assert len(lines) == 1, message
  assert sorted(lines[0][len(heading) + 2:].split(separator)) == sorted(items), message


def test_merge_lists_missing_extra_and_wrong_shapes_in_one_error():
  target = {'conv': {'kernel': jnp.zeros((3, 3, 1, 8)), 'bias': jnp.zeros(8)},
            'head': {'kernel': jnp.zeros((8, 2)), 'bias': jnp.zeros(2)}}
  loaded = {'conv': {'kernel': np.ones((3, 3, 3, 8))},
            'fc9': {'kernel': np.ones((8, 8)), 'bias': np.ones(8)}}
  with pytest.raises(DataError) as error:
    merge_params(target, loaded, source='weights.h5')
  message = str(error.value)
  assert message.startswith('the weights from weights.h5 do not fit the model:')
  assert_lists(message, 'missing from the weights (3)', ['conv/bias', 'head/kernel', 'head/bias'])
  assert_lists(message, 'not in the model (2)', ['fc9/kernel', 'fc9/bias'])
  assert_lists(message, 'wrong shapes (1)',
               ['conv/kernel: (3, 3, 3, 8) loaded, (3, 3, 1, 8) in the model'], '; ')


def test_merge_keeps_allowed_missing_parameters_and_casts():
  target = {'conv': {'kernel': jnp.zeros((2, 2)), 'bias': jnp.zeros(2)},
            'head': {'kernel': jnp.full((2, 1), 7.0), 'bias': jnp.zeros(1)}}
  loaded = {'conv': {'kernel': np.ones((2, 2), np.float64), 'bias': np.ones(2, np.float64)}}
  for allow in (['head'], ['he.*'], ['head/kernel', 'head/bias']):
    merged = merge_params(target, loaded, allow_missing=allow)
    assert merged['conv']['kernel'].dtype == jnp.float32
    np.testing.assert_array_equal(merged['conv']['bias'], [1, 1])
    np.testing.assert_array_equal(merged['head']['kernel'], [[7], [7]])
  with pytest.raises(DataError, match='missing from the weights'):
    merge_params(target, loaded, allow_missing=['hea'])  # Patterns match whole path parts.
  shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), target)
  assert merge_params(shapes, {**loaded, 'head': target['head']})['head']['bias'].shape == (1,)
  with pytest.raises(ValueError, match='pass initialized parameters'):
    merge_params(shapes, loaded, allow_missing=['head'])


def test_no_top_weights_into_a_model_with_a_top(keras_base):
  _, paths = keras_base
  # Stand-in initial values: initializing 43M parameters at random would only cost time.
  initial = jax.tree.map(lambda s: jnp.full(s.shape, 0.5, s.dtype),
                         abstract_params(VGG16(num_outputs=2), SIZE))
  loaded = load_vgg16_weights(paths['imagenet.h5'])
  with pytest.raises(DataError) as error:
    merge_params(initial, loaded)
  assert_lists(str(error.value), 'missing from the weights (6)',
               [f'{name}/{kind}' for name in TOP_LAYERS for kind in ('kernel', 'bias')])
  # The documented way: the new top trains from scratch, keeping its initial values.
  params = merge_params(initial, loaded, allow_missing=TOP_LAYERS)
  np.testing.assert_array_equal(params['predictions']['kernel'], initial['predictions']['kernel'])
  np.testing.assert_array_equal(params['block1_conv1']['kernel'], loaded['block1_conv1']['kernel'])
  with pytest.raises(DataError, match='include_top=False'):
    load_vgg16_weights(paths['imagenet.h5'], include_top=True)


def test_weights_file_with_missing_extra_and_misshapen_layers(keras_base, tmp_path):
  _, paths = keras_base
  path = tmp_path / 'edited.h5'
  with h5py.File(paths['imagenet.h5'], 'r') as source, h5py.File(path, 'w') as f:
    names = [n.decode() for n in source.attrs['layer_names']]
    names.remove('block2_conv1')
    names.append('block6_conv1')
    f.attrs['layer_names'] = np.array(names, dtype='S')
    for name in names:
      group = f.create_group(name)
      if name == 'block6_conv1':
        group.create_dataset('block6_conv1_W_1:0', data=np.zeros((3, 3, 512, 512), np.float32))
        group.create_dataset('block6_conv1_b_1:0', data=np.zeros(512, np.float32))
        group.attrs['weight_names'] = np.array([b'block6_conv1_W_1:0', b'block6_conv1_b_1:0'])
        continue
      for key in source[name]:
        data = source[name][key][()]
        if name == 'block5_conv3':
          data = data[..., :256]
        group.create_dataset(key, data=data)
      group.attrs['weight_names'] = source[name].attrs['weight_names']
  with pytest.raises(DataError) as error:
    port(VGG16(include_top=False), path, images(SIZE))
  message = str(error.value)
  assert_lists(message, 'missing from the weights (2)',
               ['block2_conv1/kernel', 'block2_conv1/bias'])
  assert_lists(message, 'not in the model (2)', ['block6_conv1/kernel', 'block6_conv1/bias'])
  assert_lists(message, 'wrong shapes (2)',
               ['block5_conv3/kernel: (3, 3, 512, 256) loaded, (3, 3, 512, 512) in the model',
                'block5_conv3/bias: (256,) loaded, (512,) in the model'], '; ')


def test_model_with_other_input_channels(keras_base):
  _, paths = keras_base
  target = jax.eval_shape(VGG16(include_top=False).init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 32, 32, 1), jnp.float32))['params']
  with pytest.raises(DataError, match=r'block1_conv1/kernel: \(3, 3, 3, 64\) loaded, '
                                      r'\(3, 3, 1, 64\) in the model'):
    merge_params(target, load_vgg16_weights(paths['keras3.weights.h5']))


def test_missing_file_names_it_and_where_to_get_weights(tmp_path):
  path = tmp_path / 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5'
  with pytest.raises(DataError) as error:
    load_vgg16_weights(path)
  message = str(error.value)
  assert str(path) in message and 'never downloads' in message
  for url in (KERAS_URL, KERAS_NO_TOP_URL, TORCHVISION_URL):
    assert url in message
  with pytest.raises(DataError, match='never downloads'):
    detect_format(path)


def test_files_that_are_not_weights(tmp_path):
  text = tmp_path / 'vgg16.h5'
  text.write_text('<html>404</html>')
  with pytest.raises(DataError, match='check that the download completed'):
    load_vgg16_weights(text)
  empty_h5 = tmp_path / 'empty.h5'
  with h5py.File(empty_h5, 'w') as f:
    f.create_group('something')
  with pytest.raises(DataError, match="top-level entries are \\['something'\\]"):
    load_vgg16_weights(empty_h5)


def test_detect_format(keras_base, torch_top):
  _, paths = keras_base
  assert detect_format(paths['keras3.weights.h5']) == files.KERAS_WEIGHTS_H5
  for layout in ('legacy.h5', 'model.h5', 'imagenet.h5', 'imagenet_chunked.h5'):
    assert detect_format(paths[layout]) == files.KERAS_LEGACY_H5
  for path in torch_top[2].values():
    assert detect_format(path) == files.TORCH


# ---------------------------------------------------------------------------------------------
# The torch-free state dict reader


@pytest.mark.parametrize('zip_format', [True, False])
def test_read_state_dict_dtypes_strides_and_shared_storage(tmp_path, zip_format):
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  state = {'float': base, 'transposed': base.t(), 'slice': base[1:3, ::2],
           'half': torch.linspace(-1, 1, 5, dtype=torch.float16),
           'bfloat16': torch.linspace(-1, 1, 5, dtype=torch.bfloat16),
           'double': torch.tensor([1.5, -2.0], dtype=torch.float64),
           'long': torch.tensor(7), 'bool': torch.tensor([True, False]),
           'empty': torch.zeros(0, 3)}
  path = tmp_path / 'state.pth'
  torch.save(state, path, _use_new_zipfile_serialization=zip_format)
  loaded = read_state_dict(path)
  assert list(loaded) == list(state)
  for key, tensor in state.items():
    expected = tensor.float().numpy() if key == 'bfloat16' else tensor.numpy()
    value = loaded[key].astype(np.float32) if key == 'bfloat16' else loaded[key]
    assert loaded[key].shape == tuple(tensor.shape), key
    assert str(loaded[key].dtype) == str(tensor.dtype).removeprefix('torch.'), key
    np.testing.assert_array_equal(value, expected, err_msg=key)


class Storage2017:
  def __init__(self, key, data, view=None):
    self.key, self.data, self.view = key, data, view


class Tensor2017:
  """Pickles as torch 0.1.12-0.3 pickled tensors: torch._utils._rebuild_tensor, no v2 fields."""

  def __init__(self, storage, offset, size, stride):
    self.args = (storage, offset, size, stride)

  def __reduce__(self):
    return (torch._utils._rebuild_tensor, self.args)


class Pickler2017(pickle.Pickler):
  def persistent_id(self, obj):
    if isinstance(obj, Storage2017):
      return ('storage', torch.FloatStorage, obj.key, 'cpu', obj.data.size, obj.view)
    return None


def test_read_state_dict_in_the_2017_layout_of_torchvision_vgg16(tmp_path):
  # vgg16-397923af.pth predates torch's zip format and _rebuild_tensor_v2; this file is written
  # the way torch wrote it then, including a storage view, and torch itself must read it alike.
  root = np.arange(10, dtype=np.float32)
  other = -np.arange(6, dtype=np.float32)
  state = {'a.weight': Tensor2017(Storage2017('1400', other), 0, (2, 3), (3, 1)),
           'a.bias': Tensor2017(Storage2017('1399', root, ('1500', 4, 6)), 1, (2, 2), (1, 2))}
  path = tmp_path / 'old.pth'
  with open(path, 'wb') as f:
    for obj in (0x1950a86a20f9469cfc6c, 1001, {'protocol_version': 1001, 'little_endian': True}):
      pickle.dump(obj, f, protocol=2)
    Pickler2017(f, protocol=2).dump(state)
    pickle.dump(['1399', '1400'], f, protocol=2)
    for data in (root, other):
      f.write(np.int64(data.size).astype('<i8').tobytes() + data.astype('<f4').tobytes())
  loaded = read_state_dict(path)
  np.testing.assert_array_equal(loaded['a.weight'], [[0, -1, -2], [-3, -4, -5]])
  np.testing.assert_array_equal(loaded['a.bias'], [[5, 7], [6, 8]])
  for key, tensor in torch.load(path, weights_only=False).items():
    np.testing.assert_array_equal(loaded[key], tensor.numpy())


def test_read_state_dict_of_a_module_keeps_torch_keys(torch_top):
  state_dict = read_state_dict(torch_top[2]['legacy'])
  assert list(state_dict)[:4] == ['features.0.weight', 'features.0.bias', 'features.2.weight',
                                  'features.2.bias']
  assert state_dict['classifier.0.weight'].shape == (4096, 512 * 2 * 2)


class RunsCode:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (open, (self.marker, 'w'))


def test_reader_refuses_objects_that_could_run_code(tmp_path):
  marker = tmp_path / 'marker'
  path = tmp_path / 'evil.pth'
  # The legacy layout: magic number, protocol version, system info, then the payload.
  with open(path, 'wb') as f:
    for obj in (0x1950a86a20f9469cfc6c, 1001, {}, {'weight': RunsCode(str(marker))}):
      pickle.dump(obj, f, protocol=2)
  with pytest.raises(DataError, match=r'pickles (io|builtins)\.open'):
    read_state_dict(path)
  assert not marker.exists()


def test_truncated_files(tmp_path):
  for zip_format in (True, False):
    path = tmp_path / f'truncated_{zip_format}.pth'
    torch.save({'w': torch.ones(1000)}, path, _use_new_zipfile_serialization=zip_format)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match='truncated|not a readable PyTorch file'):
      load_vgg16_weights(path)


def test_reader_refuses_checkpoints_that_are_not_state_dicts(tmp_path):
  path = tmp_path / 'checkpoint.pth'
  torch.save({'epoch': 3, 'state_dict': {'w': torch.ones(2)}}, path)
  with pytest.raises(DataError, match=r"entries \['epoch', 'state_dict'\] are not tensors"):
    read_state_dict(path)
