"""--mode predict: photos -> top-5 ImageNet classes, prepared as each weights source prepares them.

No network and no real ImageNet weights: the tests write random weights in real formats (a
torchvision state dict, Keras' ImageNet HDF5 layout) from variables they made, and check the
printed and saved probabilities against the model applied here by hand to photos prepared
independently (Pillow calls with the expected sizes and crop boxes written out).
"""

import json
import os
import re
import subprocess
import sys

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from cnnjax import predict as predict_lib
from cnnjax.errors import ConfigError, DataError
from cnnjax.models import MODELS, create_model
from cnnjax.weights import files, registry

torch = pytest.importorskip('torch')

pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning:keras.*')

TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
LINE = re.compile(r'^  (\d)\. (n\d{8}) (\S+)  (\d\.\d{4})$')


def _registered(name):
  try:
    registry.weight_table(name)
  except DataError:
    return False
  return name in MODELS


# The torchvision-layout model of the end-to-end run: ResNet-18 (BatchNorm statistics included)
# where it is registered, else VGG16 (138M parameters: slower).
TORCH_MODEL = 'resnet18' if _registered('resnet18') else 'vgg16'


def launch(*args):
  return subprocess.run([sys.executable, os.path.join(REPO, 'launch.py'), '--config',
                         'configs/imagenet_predict.py', '--mode', 'predict', *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


# ---------------------------------------------------------------------------------------------
# Photos and weight files


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
  """A 400x300 PNG, a 300x410 JPEG, a palette PNG with transparency and a 256x180 RGBA PNG."""
  directory = tmp_path_factory.mktemp('photos')
  rng = np.random.default_rng(0)
  # Smooth random images, so that resampling filters make a difference but JPEG keeps them.
  def smooth(height, width, channels=3):
    small = rng.integers(0, 256, (height // 20 + 2, width // 20 + 2, channels), dtype=np.uint8)
    image = Image.fromarray(small.squeeze()).resize((width, height), Image.Resampling.BICUBIC)
    noise = rng.integers(-20, 21, (height, width, channels)).squeeze()
    return np.clip(np.asarray(image, np.int16) + noise, 0, 255).astype(np.uint8)
  paths = {'png': str(directory / 'wide.png'), 'jpeg': str(directory / 'tall.jpg'),
           'palette': str(directory / 'palette.png'), 'rgba': str(directory / 'rgba.png')}
  Image.fromarray(smooth(300, 400)).save(paths['png'])
  Image.fromarray(smooth(410, 300)).save(paths['jpeg'], quality=90)
  palette = Image.fromarray(smooth(120, 90)).quantize(16)
  palette.info['transparency'] = 3
  palette.save(paths['palette'])
  Image.fromarray(smooth(180, 256, 4), 'RGBA').save(paths['rgba'])
  return paths


def init_variables(model_name, mode, seed=0):
  """(model, random variables at 224x224, its jitted forward pass), BatchNorm statistics random.

  The 1000-class layer is then scaled so that the logits of random photos spread over about 2
  around their mean: neither a one-hot softmax nor a uniform one, so that any change in how a
  photo is prepared shows in the probabilities.
  """
  model = create_model(predict_lib_config(model_name).model)
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    names = [p.key for p in path]
    shape = leaf.shape
    if names[-1] == 'kernel':
      return (rng.standard_normal(shape, np.float32) *
              np.float32(np.sqrt(2.0 / np.prod(shape[:-1])))).astype(np.float32)
    if names[-1] == 'var':
      return rng.uniform(0.5, 2.0, shape).astype(np.float32)
    if names[-1] == 'scale':
      return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return (rng.standard_normal(shape, np.float32) * 0.05).astype(np.float32)

  variables = jax.tree_util.tree_map_with_path(draw, shapes)
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  pixels = rng.uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
  spread = float(np.asarray(forward(variables, preprocess(pixels, mode))).std(axis=1).mean())
  for layer in variables['params'].values():
    kernel = layer.get('kernel')
    if kernel is not None and kernel.ndim == 2 and kernel.shape[-1] == 1000:
      layer['kernel'] *= np.float32(2.0 / spread)
      layer['bias'] *= np.float32(2.0 / spread)
  return model, variables, forward


def torchvision_state_dict(model_name, variables):
  """The variables under torchvision's keys and layouts (OIHW kernels, (out, in) dense)."""
  state = {}
  if model_name == 'vgg16':
    from cnnjax.weights.vgg16 import TORCHVISION_KEYS  # pylint: disable=import-outside-toplevel
    for name, layer in variables['params'].items():
      kernel = np.asarray(layer['kernel'])
      if kernel.ndim == 4:
        weight = kernel.transpose(3, 2, 0, 1)
      else:
        if name == 'fc1':  # cnnjax flattens (row, column, channel), torchvision (channel, ...).
          kernel = kernel.reshape(7, 7, 512, -1).transpose(2, 0, 1, 3).reshape(25088, -1)
        weight = kernel.T
      state[f'{TORCHVISION_KEYS[name]}.weight'] = weight
      state[f'{TORCHVISION_KEYS[name]}.bias'] = np.asarray(layer['bias'])
  else:  # torchvision's ResNet layout: the variable path joined by '.' is the key.
    renames = {('params', 'kernel'): 'weight', ('params', 'scale'): 'weight',
               ('params', 'bias'): 'bias', ('batch_stats', 'mean'): 'running_mean',
               ('batch_stats', 'var'): 'running_var'}
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
      names = [p.key for p in path]
      value = np.asarray(leaf)
      if value.ndim == 4:
        value = value.transpose(3, 2, 0, 1)
      elif value.ndim == 2:
        value = value.T
      module = '.'.join(names[1:-1])
      state[f'{module}.{renames[(names[0], names[-1])]}'] = value
      if names[0] == 'batch_stats' and names[-1] == 'mean':
        state[f'{module}.num_batches_tracked'] = np.array(100, np.int64)
  return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in state.items()}


@pytest.fixture(scope='module')
def torch_weights(tmp_path_factory):
  """(forward pass, variables, path of their torchvision-layout .pth) for TORCH_MODEL."""
  model, variables, forward = init_variables(TORCH_MODEL, 'torch')
  path = str(tmp_path_factory.mktemp('weights') / f'{TORCH_MODEL}.pth')
  torch.save(torchvision_state_dict(TORCH_MODEL, variables), path)
  return forward, variables, path


def predict_lib_config(model_name, **predict):
  from configs import imagenet_predict  # pylint: disable=import-outside-toplevel
  config = imagenet_predict.get_config()
  config.model.name = model_name
  for key, value in predict.items():
    if key == 'init_from':
      config.model.init_from = value
    else:
      config.predict[key] = value
  return config


# ---------------------------------------------------------------------------------------------
# Independent photo preparation: Pillow calls with the sizes written out


def torchvision_reference(path):
  """Resize(256) + CenterCrop(224) for the two test photos, sizes and boxes computed by hand."""
  with Image.open(path) as image:
    image = image.convert('RGB')
    boxes = {  # (width, height) -> (resized width, height), crop (left, top, right, bottom).
        # 400x300: short 300 -> 256, long int(256 * 400 / 300) = 341; left round(58.5) = 58.
        (400, 300): ((341, 256), (58, 16, 282, 240)),
        # 300x410: long int(256 * 410 / 300) = int(349.9) = 349; top round(62.5) = 62.
        (300, 410): ((256, 349), (16, 62, 240, 286)),
    }
    size, box = boxes[image.size]
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR).crop(box), np.float32)


def preprocess(pixels, mode):
  if mode == 'torch':
    return jnp.asarray((pixels / 255.0 - TORCH_MEAN) / TORCH_STD)
  return jnp.asarray(pixels[..., ::-1] - CAFFE_MEAN_BGR)


def probabilities_by_hand(forward, variables, pixels, mode):
  logits = forward(variables, preprocess(pixels, mode))
  return np.asarray(jax.nn.softmax(logits.astype(jnp.float32), axis=-1))


def parse_blocks(stdout):
  """{photo path: [(wnid, name, probability)]} from the printed blocks."""
  blocks, current = {}, None
  for line in stdout.splitlines():
    match = LINE.match(line)
    if match:
      blocks[current].append((match[2], match[3], float(match[4])))
    elif line and not line.startswith(' ') and os.path.isfile(line):
      current = line
      blocks[current] = []
  return blocks


# ---------------------------------------------------------------------------------------------
# End to end


def test_launch_predict_torchvision_weights(tmp_path, photos, torch_weights):
  forward, variables, weights = torch_weights
  images = [photos['png'], photos['jpeg']]
  run = launch(f'--config.model.name={TORCH_MODEL}', f'--config.model.init_from={weights}',
               f'--config.predict.images={",".join(images)}', '--workdir', str(tmp_path / 'wd'))
  assert run.returncode == 0, run.stderr
  printed = parse_blocks(run.stdout)
  assert list(printed) == images
  with open(tmp_path / 'wd' / 'predictions.json') as f:
    saved = json.load(f)
  assert [r['image'] for r in saved] == images

  pixels = np.stack([torchvision_reference(p) for p in images])
  expected = probabilities_by_hand(forward, variables, pixels, 'torch')
  classes = [(wnid, name) for wnid, name, _ in predict_lib.imagenet.imagenet_classes()]
  for row, path, result in zip(expected, images, saved):
    best = np.argsort(-row, kind='stable')[:5]
    assert [c[:2] for c in printed[path]] == [classes[i] for i in best]
    assert [(c['wnid'], c['name']) for c in result['top']] == [classes[i] for i in best]
    np.testing.assert_allclose([c[2] for c in printed[path]], row[best], atol=6e-5)
    np.testing.assert_allclose([c['probability'] for c in result['top']], row[best], atol=2e-5)
    assert sum(c['probability'] for c in result['top']) <= 1.0
  # Different photos, different predictions.
  assert saved[0]['top'] != saved[1]['top']


def write_keras_imagenet_layout(path, variables):
  """Keras' ImageNet .h5 layout: `layer_names`, each layer's arrays listed in `weight_names`."""
  params, stats = variables['params'], variables.get('batch_stats', {})
  with h5py.File(path, 'w') as f:
    f.attrs['layer_names'] = np.array(list(params), dtype='S')
    for name, layer in params.items():
      if name in stats:  # BatchNormalization: gamma, beta, moving mean, moving variance.
        arrays = {'gamma': layer['scale'], 'beta': layer['bias'],
                  'moving_mean': stats[name]['mean'], 'moving_variance': stats[name]['var']}
      else:
        arrays = {'kernel': layer['kernel'], 'bias': layer['bias']}
      group = f.create_group(name)
      for key, value in arrays.items():
        group.create_dataset(f'{name}/{key}:0', data=np.asarray(value))
      group.attrs['weight_names'] = np.array([f'{name}/{key}:0' for key in arrays], dtype='S')


KERAS_MODEL = 'resnet50_keras' if _registered('resnet50_keras') else 'vgg16'


def test_predict_keras_weights_in_process(tmp_path, photos):
  """A Keras ImageNet-layout HDF5 file: whole photo resized (nearest), 'caffe' preprocessing."""
  _, variables, forward = init_variables(KERAS_MODEL, 'caffe', seed=1)
  path = str(tmp_path / f'{KERAS_MODEL}_imagenet_layout.h5')
  write_keras_imagenet_layout(path, variables)
  images = [photos['jpeg'], photos['palette']]
  config = predict_lib_config(KERAS_MODEL, init_from=path, images=','.join(images), top=3)
  results = predict_lib.predict(config)
  pixels = []
  for image_path in images:
    with Image.open(image_path) as image:
      pixels.append(np.asarray(image.convert('RGB').resize((224, 224), Image.Resampling.NEAREST),
                               np.float32))
  expected = probabilities_by_hand(forward, variables, np.stack(pixels), 'caffe')
  for row, result in zip(expected, results):
    best = np.argsort(-row, kind='stable')[:3]
    assert [c['wnid'] for c in result['top']] == [
        predict_lib.imagenet.imagenet_classes()[i][0] for i in best]
    np.testing.assert_allclose([c['probability'] for c in result['top']], row[best], atol=2e-5)
  assert not (tmp_path / 'predictions.json').exists()  # No workdir, no file.


# ---------------------------------------------------------------------------------------------
# Photo preparation


def test_torchvision_recipe_matches_pillow_reference(photos):
  recipe = predict_lib.photo_recipe(files.TORCH, TORCH_MODEL)
  for key in ('png', 'jpeg'):
    prepared = recipe.prepare(predict_lib.read_photo(photos[key]))
    np.testing.assert_array_equal(prepared, torchvision_reference(photos[key]))


def test_torchvision_resize_edge_cases():
  square = Image.new('RGB', (256, 256), (10, 20, 30))
  assert predict_lib.resize_short_side(square, 256) is square  # Already the size: untouched.
  small = predict_lib.resize_short_side(Image.new('RGB', (100, 150)), 256)
  assert small.size == (256, 384)  # Enlarged: 256 * 150 / 100.
  assert predict_lib.center_crop(small, 224).size == (224, 224)


def test_keras_recipe_matches_load_img(photos):
  os.environ.setdefault('KERAS_BACKEND', 'jax')
  keras = pytest.importorskip('keras')
  recipe = predict_lib.photo_recipe(files.KERAS_WEIGHTS_H5, 'vgg16')
  assert recipe is predict_lib.photo_recipe(files.KERAS_LEGACY_H5, 'resnet50')
  for path in photos.values():
    expected = keras.utils.img_to_array(keras.utils.load_img(path, target_size=(224, 224)))
    prepared = recipe.prepare(predict_lib.read_photo(path))
    assert prepared.dtype == np.float32 and prepared.shape == (224, 224, 3)
    np.testing.assert_array_equal(prepared, expected, err_msg=path)


def test_a_model_specific_recipe_is_one_table_entry():
  inception = predict_lib.PHOTO_RECIPES[(predict_lib.KERAS, 'inception_v3')]
  assert predict_lib.photo_recipe(files.KERAS_LEGACY_H5, 'inception_v3') is inception
  assert predict_lib.photo_recipe(files.KERAS_WEIGHTS_H5, 'inception_v3').size == 299
  assert predict_lib.photo_recipe(files.TORCH, 'inception_v3').size == 224
  assert predict_lib.photo_recipe(files.KERAS_LEGACY_H5, 'vgg16').size == 224
  photo = Image.new('RGB', (500, 400))
  assert inception.prepare(photo).shape == (299, 299, 3)


# ---------------------------------------------------------------------------------------------
# Bad input


def test_bad_photos_are_all_listed_before_the_model_runs(tmp_path, photos, torch_weights):
  corrupt = tmp_path / 'corrupt.jpg'
  with open(photos['jpeg'], 'rb') as f:
    corrupt.write_bytes(f.read()[:400])  # Truncated JPEG.
  text = tmp_path / 'notes.png'
  text.write_text('not an image')
  missing = tmp_path / 'missing.jpg'
  run = launch(f'--config.model.name={TORCH_MODEL}', f'--config.model.init_from={torch_weights[2]}',
               f'--config.predict.images={photos["png"]},{corrupt},{missing},{text}')
  assert run.returncode == 2, run.stderr
  assert 'Traceback' not in run.stderr
  assert run.stderr.startswith('error: 3 of the 4 photos')
  for path in (corrupt, missing, text):
    assert str(path) in run.stderr
  assert photos['png'] not in run.stderr
  assert 'n0' not in run.stdout  # Nothing was classified.


def test_weights_of_another_architecture_name_it(tmp_path, photos):
  # A Keras file with ResNet50's layer names, given for VGG16.
  path = tmp_path / 'resnet50_weights.h5'
  layer = {'kernel': np.zeros((1, 1, 3, 4), np.float32), 'bias': np.zeros(4, np.float32)}
  write_keras_imagenet_layout(path, {'params': {
      name: layer for name in ('conv1_conv', 'conv4_block6_3_conv', 'conv5_block3_3_conv')}})
  run = launch('--config.model.name=vgg16', f'--config.model.init_from={path}',
               f'--config.predict.images={photos["png"]}')
  assert run.returncode == 2, run.stderr
  assert 'Traceback' not in run.stderr
  assert f"error: {str(path)!r} does not hold VGG16 weights for model.name='vgg16'" in run.stderr
  if _registered('resnet50_keras'):
    assert 'it looks like resnet50_keras weights' in run.stderr


def test_no_weights_file_says_to_pass_one(photos):
  run = launch(f'--config.predict.images={photos["png"]}')
  assert run.returncode == 2
  assert 'Traceback' not in run.stderr
  assert 'model.init_from is empty' in run.stderr and '--config.model.init_from=FILE' in run.stderr


def test_missing_weights_file_says_where_to_get_it(tmp_path, photos):
  path = tmp_path / 'vgg16.h5'
  with pytest.raises(DataError, match=re.escape(str(path))) as error:
    predict_lib.predict(predict_lib_config('vgg16', init_from=str(path), images=photos['png']))
  assert 'vgg16_weights_tf_dim_ordering_tf_kernels.h5' in str(error.value)


def test_empty_images_and_bad_top(torch_weights):
  for images in ('', ' , '):
    with pytest.raises(ConfigError, match='predict.images is empty'):
      predict_lib.predict(predict_lib_config(TORCH_MODEL, init_from=torch_weights[2],
                                             images=images))
  with pytest.raises(ConfigError, match='predict.top=0'):
    predict_lib.predict(predict_lib_config(TORCH_MODEL, init_from=torch_weights[2], images='a.jpg',
                                           top=0))


def test_model_without_imagenet_top_is_refused(photos, torch_weights):
  config = predict_lib_config('vgg16_base', init_from=torch_weights[2], images=photos['png'])
  with pytest.raises(ConfigError, match=r"model.name='vgg16_base'.*not 1000 ImageNet class"):
    predict_lib.predict(config)
  config = predict_lib_config('vgg16', init_from=torch_weights[2], images=photos['png'])
  config.model.num_outputs = 10
  with pytest.raises(ConfigError, match=r'num_outputs=10\).*\(1, 10\)'):
    predict_lib.predict(config)
