"""Tests of the TFDS source, with mocked data and with a tiny data set prepared offline."""

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnnjax import data
from cnnjax.data.tfds_source import load_tfds_split, tfds_class_names
from cnnjax.errors import ConfigError, DataError

TRAIN_SIZE, TEST_SIZE = 10, 4


class CnnjaxTinyDigits(tfds.core.GeneratorBasedBuilder):
  """An 8x8 grayscale data set whose pixels all equal the example's id; prepared offline."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    # A Tensor, not an Image, feature: encoding PNGs to prepare a data set needs TensorFlow.
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(8, 8), dtype=np.uint8),
            'label': tfds.features.ClassLabel(num_classes=3),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {
        'train': self._generate_examples(0, TRAIN_SIZE),
        'test': self._generate_examples(100, TEST_SIZE),
    }

  def _generate_examples(self, start, n):
    for i in range(start, start + n):
      yield i, {'image': np.full((8, 8), i, np.uint8), 'label': i % 3}


PHOTOS = 10


class CnnjaxTinyPhotos(tfds.core.GeneratorBasedBuilder):
  """RGB images of different sizes, like cats_vs_dogs; every pixel of example i equals i."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    # Images of varying shape need an encoded Tensor feature (an Image one needs TensorFlow).
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8,
                                          encoding='zlib'),
            'label': tfds.features.ClassLabel(names=['cat', 'dog']),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    for i in range(PHOTOS):
      yield i, {'image': np.full((5 + i, 9 + 2 * i, 3), i, np.uint8), 'label': i % 2}


@pytest.fixture(scope='module')
def tiny_data_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  CnnjaxTinyDigits(data_dir=str(data_dir), file_format='array_record').download_and_prepare()
  CnnjaxTinyPhotos(data_dir=str(data_dir), file_format='array_record').download_and_prepare()
  return str(data_dir)


def mock_data(num_examples):
  return tfds.testing.mock_data(
      num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE)


@pytest.mark.parametrize('name', ['mnist', 'fashion_mnist'])
@pytest.mark.parametrize('split', ['train', 'train[:90%]', 'train[90%:]', 'test'])
def test_mocked_mnist(name, split):
  with mock_data(num_examples=12):
    images, labels = load_tfds_split(name, split)
  # The mock serves `num_examples` examples for every split string: it replaces the ArrayRecord
  # reader, so split slicing is parsed but does not change the size.
  assert images.shape == (12, 28, 28, 1) and images.dtype == np.uint8
  assert labels.shape == (12,) and labels.dtype == np.int32
  assert labels.min() >= 0 and labels.max() < 10


def test_split_slicing_on_a_prepared_data_set(tiny_data_dir):
  name = 'cnnjax_tiny_digits'
  images, labels = load_tfds_split(name, 'train', tiny_data_dir)
  # Grayscale (H, W) images get a channel axis.
  assert images.shape == (TRAIN_SIZE, 8, 8, 1) and images.dtype == np.uint8
  np.testing.assert_array_equal(labels, images[:, 0, 0, 0] % 3)
  head, _ = load_tfds_split(name, 'train[:80%]', tiny_data_dir)
  tail, _ = load_tfds_split(name, 'train[80%:]', tiny_data_dir)
  assert (len(head), len(tail)) == (8, 2)
  ids = np.concatenate([head, tail])[:, 0, 0, 0]
  np.testing.assert_array_equal(np.sort(ids), np.arange(TRAIN_SIZE))
  test_images, _ = load_tfds_split(name, 'test', tiny_data_dir)
  np.testing.assert_array_equal(np.sort(test_images[:, 0, 0, 0]), 100 + np.arange(TEST_SIZE))


def test_data_set_not_prepared(tmp_path):
  with pytest.raises(DataError) as info:
    load_tfds_split('mnist', 'train[:90%]', str(tmp_path))
  message = str(info.value)
  assert "'mnist'" in message and "'train[:90%]'" in message and str(tmp_path) in message
  assert 'not prepared' in message and 'cannot download' in message
  assert 'tfds build mnist --file_format=array_record' in message
  assert "data.source = 'idx'" in message


def test_unknown_data_set_gets_a_short_message(tmp_path):
  with pytest.raises(DataError) as info:
    load_tfds_split('no_such_data_set', 'train', str(tmp_path))
  message = str(info.value)
  assert 'no_such_data_set' in message and 'data.name' in message
  assert 'mnist' not in message  # Not TFDS's list of every data set it knows.


@pytest.mark.parametrize('split, problem', [
    ('trian', "Unknown split 'trian'"),
    ('train[20:]', 'incompatible with 10 examples'),
])
def test_bad_split_string(tiny_data_dir, split, problem):
  with pytest.raises(DataError) as info:
    load_tfds_split('cnnjax_tiny_digits', split, tiny_data_dir)
  message = str(info.value)
  assert problem in message and tiny_data_dir in message and 'data.train_split' in message


def test_missing_feature_is_named(tiny_data_dir):
  with pytest.raises(DataError, match="no feature 'img'.*'image', 'label'"):
    load_tfds_split('cnnjax_tiny_digits', 'test', tiny_data_dir, image_key='img')


def tfds_config(**overrides):
  config = ml_collections.ConfigDict({
      'source': 'tfds',
      'name': 'fashion_mnist',
      'dir': '',
      'train_split': 'train',
      'test_split': 'test',
      'val_split': '',
      'val_fraction': 0.25,
      'seed': 0,
      'num_classes': 10,
      'limit_train': 0,
      'limit_test': 0,
      'image_size': (0, 0),
      'color_mode': 'rgb',
      'pixel_scale': 255.0,
      'decode_workers': 2,
  })
  config.update(overrides)
  return config


def test_load_datasets_with_mocked_tfds():
  with mock_data(num_examples=16):
    datasets = data.load_datasets(tfds_config(limit_test=5))
  assert (len(datasets.train), len(datasets.validation), len(datasets.test)) == (12, 4, 5)
  assert datasets.image_shape == (28, 28, 1) and datasets.name == 'fashion_mnist'
  assert datasets.train.images.dtype == np.float32 and datasets.train.images.max() <= 1.0


def test_load_datasets_with_a_tfds_validation_split(tiny_data_dir):
  config = tfds_config(
      name='cnnjax_tiny_digits', dir=tiny_data_dir, train_split='train[:80%]',
      val_split='train[80%:]', num_classes=3)
  datasets = data.load_datasets(config)
  assert (len(datasets.train), len(datasets.validation), len(datasets.test)) == (8, 2, 4)
  assert datasets.image_shape == (8, 8, 1)
  with pytest.raises(DataError) as info:
    data.load_datasets(tfds_config(
        name='cnnjax_tiny_digits', dir=tiny_data_dir, val_split='train[80%:]', num_classes=2))
  assert "split 'train'" in str(info.value) and 'label 2' in str(info.value)


def test_mocked_cats_vs_dogs_is_resized():
  # cats_vs_dogs has no metadata in TFDS's testing directory, so only MockPolicy.USE_CODE (or
  # AUTO, which falls back to it) mocks it offline; its random images differ in size.
  with mock_data(num_examples=6):
    images, labels = load_tfds_split('cats_vs_dogs', 'train[:4]', image_size=(10, 12))
    gray, _ = load_tfds_split('cats_vs_dogs', 'train', image_size=(10, 12),
                              color_mode='grayscale', workers=1)
    with pytest.raises(DataError) as info:
      load_tfds_split('cats_vs_dogs', 'train')
    assert tfds_class_names('cats_vs_dogs') == ('cat', 'dog')
  assert images.shape == (6, 10, 12, 3) and images.dtype == np.uint8
  assert gray.shape == (6, 10, 12, 1)
  assert set(labels) <= {0, 1}
  assert 'data.image_size' in str(info.value) and 'cats_vs_dogs' in str(info.value)


def test_load_datasets_with_mocked_cats_vs_dogs():
  config = tfds_config(name='cats_vs_dogs', num_classes=2, train_split='train[:2000]',
                       test_split='train[2000:2500]', image_size=(16, 16), pixel_scale=1.0)
  with mock_data(num_examples=8):
    datasets = data.load_datasets(config)
  assert datasets.image_shape == (16, 16, 3) and datasets.class_names == ('cat', 'dog')
  assert len(datasets.train) + len(datasets.validation) == 8
  assert datasets.train.stored_images.dtype == np.uint8 and datasets.train.images.max() > 1


def test_photos_of_different_sizes_with_split_slicing(tiny_data_dir):
  name = 'cnnjax_tiny_photos'
  head, head_labels = load_tfds_split(name, 'train[:6]', tiny_data_dir, image_size=(4, 5))
  tail, tail_labels = load_tfds_split(name, 'train[6:]', tiny_data_dir, image_size=(4, 5),
                                      color_mode='grayscale')
  assert head.shape == (6, 4, 5, 3) and tail.shape == (4, 4, 5, 1)
  # A constant image stays constant through the conversion and the resize.
  ids = np.concatenate([head[:, 0, 0, 0], tail[:, 0, 0, 0]])
  assert (head == head[:, :1, :1, :1]).all() and (tail == tail[:, :1, :1, :1]).all()
  np.testing.assert_array_equal(np.sort(ids), np.arange(PHOTOS))
  np.testing.assert_array_equal(np.concatenate([head_labels, tail_labels]), ids % 2)
  assert tfds_class_names(name, tiny_data_dir) == ('cat', 'dog')
  with pytest.raises(DataError, match='all of one shape'):
    load_tfds_split(name, 'train', tiny_data_dir)
  with pytest.raises(ConfigError, match='data.image_size'):
    load_tfds_split(name, 'train', tiny_data_dir, image_size=(4,))


def test_load_datasets_keeps_tfds_label_names(tiny_data_dir):
  config = tfds_config(name='cnnjax_tiny_photos', dir=tiny_data_dir, num_classes=2,
                       train_split='train[:6]', val_split='train[6:8]', test_split='train[8:]',
                       image_size=(3, 3))
  datasets = data.load_datasets(config)
  assert (len(datasets.train), len(datasets.validation), len(datasets.test)) == (6, 2, 2)
  assert datasets.class_names == ('cat', 'dog') and datasets.image_shape == (3, 3, 3)
  digits = data.load_datasets(tfds_config(name='cnnjax_tiny_digits', dir=tiny_data_dir,
                                          num_classes=3))
  assert digits.class_names == ('0', '1', '2')  # TFDS names ClassLabel(num_classes=3) so.
