"""Streaming a TFDS data set (cnnjax/data/streaming.py's TfdsSource) against loading it into memory.

Two tiny data sets are prepared offline as ArrayRecord files (no network, no TensorFlow): photos of
assorted sizes with random pixels (resized to data.image_size) and fixed-size grayscale digits
(read as stored). The streamed batches equal the in-memory batches bit for bit, whatever the
number of grain workers; each host's rows make up the global batch; a resumed epoch continues with
the same batches; data.streaming = 'auto' streams only over data.memory_budget_mb; a training run
on the streamed set matches the in-memory run.
"""

import json

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from cnnjax import data as data_lib
from cnnjax.config import base_config
from cnnjax.data import streaming
from cnnjax.errors import ConfigError, DataError

PHOTOS, TEST_PHOTOS = 26, 7


class CnnjaxStreamedPhotos(tfds.core.GeneratorBasedBuilder):
  """RGB photos of assorted sizes, random pixels seeded by the example, three classes."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    # Images of varying shape need an encoded Tensor feature (an Image one needs TensorFlow).
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8,
                                          encoding='zlib'),
            'label': tfds.features.ClassLabel(names=['ants', 'bees', 'wasps']),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {'train': self._generate_examples(0, PHOTOS),
            'test': self._generate_examples(1000, TEST_PHOTOS)}

  def _generate_examples(self, start, n):
    for i in range(start, start + n):
      rng = np.random.default_rng(i)
      image = rng.integers(0, 256, (10 + i % 4, 13 + i % 5, 3), dtype=np.uint8)
      yield i, {'image': image, 'label': i % 3}


class CnnjaxStreamedDigits(tfds.core.GeneratorBasedBuilder):
  """6x6 grayscale (H, W) images with random pixels, read as stored (no resize)."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(6, 6), dtype=np.uint8),
            'label': tfds.features.ClassLabel(num_classes=4),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {'train': self._generate_examples(0, 20), 'test': self._generate_examples(500, 5)}

  def _generate_examples(self, start, n):
    for i in range(start, start + n):
      yield i, {'image': np.random.default_rng(i).integers(0, 256, (6, 6), dtype=np.uint8),
                'label': i % 4}


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('tfds'))
  for builder in (CnnjaxStreamedPhotos, CnnjaxStreamedDigits):
    builder(data_dir=directory, file_format='array_record').download_and_prepare()
  return directory


def photos_config(data_dir, streaming_option, **overrides):
  config = base_config().data
  config.source = 'tfds'
  config.name = 'cnnjax_streamed_photos'
  config.dir = data_dir
  config.num_classes = 3
  config.image_size = (9, 11)
  config.val_fraction = 0.25
  config.seed = 3
  config.streaming = streaming_option
  config.streaming_workers = 0
  config.update(overrides)
  return config


def both(config):
  """The data sets of `config` loaded into memory and streamed."""
  config.streaming = 'false'
  memory = data_lib.load_datasets(config)
  config.streaming = 'true'
  streamed = data_lib.load_datasets(config)
  assert isinstance(memory.train, data_lib.ArrayDataset)
  assert isinstance(streamed.train, data_lib.StreamingDataset)
  return memory, streamed


def assert_same_batches(expected, actual):
  expected, actual = list(expected), list(actual)
  assert len(expected) == len(actual) > 0
  for want, got in zip(expected, actual):
    assert sorted(want) == sorted(got)
    for key in want:
      assert want[key].dtype == got[key].dtype, key
      np.testing.assert_array_equal(want[key], got[key], err_msg=key)


def test_streamed_batches_equal_the_in_memory_ones(data_dir):
  memory, streamed = both(photos_config(data_dir, 'true', limit_test=6))
  assert streamed.image_shape == memory.image_shape == (9, 11, 3)
  assert streamed.class_names == memory.class_names == ('ants', 'bees', 'wasps')
  for role, size in (('train', 20), ('validation', 6), ('test', 6)):
    want, got = getattr(memory, role), getattr(streamed, role)
    assert len(want) == len(got) == size, role
    np.testing.assert_array_equal(got.labels, want.labels)
    # Evaluation order, the last batch padded.
    assert_same_batches(data_lib.batches(want, 4), data_lib.batches(got, 4))
  for epoch in (1, 2):
    options = dict(shuffle=True, seed=11, epoch=epoch, drop_remainder=True)
    assert_same_batches(data_lib.batches(memory.train, 4, **options),
                        data_lib.batches(streamed.train, 4, **options))
  np.testing.assert_array_equal(streamed.test.take(slice(1, 4)), memory.test.take(slice(1, 4)))


def test_images_read_as_stored_and_split_slicing(data_dir):
  """No data.image_size: (H, W) images get a channel axis; sliced train / validation splits."""
  config = photos_config(data_dir, 'true', name='cnnjax_streamed_digits', num_classes=4,
                         image_size=(0, 0), color_mode='rgb', train_split='train[:15]',
                         val_split='train[15:]', pixel_scale=1.0)
  memory, streamed = both(config)
  assert streamed.image_shape == memory.image_shape == (6, 6, 1)
  assert (len(streamed.train), len(streamed.validation), len(streamed.test)) == (15, 5, 5)
  for role in ('train', 'validation', 'test'):
    assert_same_batches(data_lib.batches(getattr(memory, role), 3, shuffle=True, seed=1),
                        data_lib.batches(getattr(streamed, role), 3, shuffle=True, seed=1))


def with_workers(dataset, workers):
  return streaming.StreamingDataset(dataset.source, pixel_scale=dataset.pixel_scale,
                                    workers=workers, crop=dataset.crop)


def test_the_batches_do_not_depend_on_the_number_of_workers(data_dir):
  train = data_lib.load_datasets(photos_config(data_dir, 'true')).train
  options = dict(shuffle=True, seed=5, epoch=3, drop_remainder=False)
  assert_same_batches(with_workers(train, 0).batches(4, **options),
                      with_workers(train, 2).batches(4, **options))


def test_the_hosts_rows_make_up_the_global_batch_for_both_kinds(data_dir):
  memory, streamed = both(photos_config(data_dir, 'true'))
  options = dict(shuffle=True, seed=2, epoch=1, drop_remainder=False)
  whole = list(data_lib.batches(memory.train, 6, **options))
  for dataset in (memory.train, streamed.train):
    hosts = [list(data_lib.batches(dataset, 6, host=(index, 2), **options)) for index in (0, 1)]
    assert len(hosts[0]) == len(hosts[1]) == len(whole) == 4
    for global_batch, first, second in zip(whole, *hosts):
      for key in global_batch:
        assert len(first[key]) == len(second[key]) == 3
        np.testing.assert_array_equal(np.concatenate([first[key], second[key]]),
                                      global_batch[key], err_msg=key)
    with pytest.raises(ConfigError, match='does not split evenly across 4 processes'):
      data_lib.batches(dataset, 6, host=(0, 4))


def test_a_resumed_epoch_continues_with_the_uninterrupted_batches(data_dir):
  train = data_lib.load_datasets(photos_config(data_dir, 'true')).train
  options = dict(shuffle=True, seed=5, epoch=2, drop_remainder=True)
  whole = list(data_lib.batches(train, 3, **options))
  assert len(whole) == 6
  for k in (1, 4):
    assert_same_batches(whole[k:], data_lib.batches(train, 3, first_batch=k, **options))
  assert not list(data_lib.batches(train, 3, first_batch=6, **options))
  # Host rows of a resumed epoch: the resumed global batches' rows.
  resumed = list(data_lib.batches(train, 3, first_batch=2, host=(1, 3), **options))
  for global_batch, local in zip(whole[2:], resumed):
    np.testing.assert_array_equal(local['label'], global_batch['label'][1:2])


def test_auto_streams_over_the_memory_budget(data_dir):
  # 26 + 7 photos of 9 x 11 x 3 bytes: 9,801 bytes.
  config = photos_config(data_dir, 'auto', memory_budget_mb=9800 / 2**20)
  assert isinstance(data_lib.load_datasets(config).train, data_lib.StreamingDataset)
  config.memory_budget_mb = 9801 / 2**20
  assert isinstance(data_lib.load_datasets(config).train, data_lib.ArrayDataset)
  # Without an image size the first example's shape counts: 25 digits of 6 x 6 x 1 = 900 bytes.
  digits = photos_config(data_dir, 'auto', name='cnnjax_streamed_digits', num_classes=4,
                         image_size=(0, 0), memory_budget_mb=899 / 2**20)
  assert isinstance(data_lib.load_datasets(digits).train, data_lib.StreamingDataset)
  digits.memory_budget_mb = 900 / 2**20
  assert isinstance(data_lib.load_datasets(digits).train, data_lib.ArrayDataset)


def test_bad_input_is_named(data_dir, tmp_path):
  with pytest.raises(DataError, match="'cnnjax_streamed_photos'.*not prepared"):
    data_lib.load_datasets(photos_config(str(tmp_path), 'true'))
  with pytest.raises(DataError, match='data.train_split'):
    data_lib.load_datasets(photos_config(data_dir, 'true', train_split='trian'))
  with pytest.raises(DataError, match='label 2'):
    data_lib.load_datasets(photos_config(data_dir, 'true', num_classes=2))
  with pytest.raises(ConfigError, match='data.image_size'):
    data_lib.load_datasets(photos_config(data_dir, 'true', image_size=(0, 0),
                                         random_resized_crop=(0.5, 1.0, 0.75, 1.333)))
  with pytest.raises(ConfigError, match='data.classes'):
    data_lib.load_datasets(photos_config(data_dir, 'true', classes=(0, 1)))
  # Photos of assorted sizes without data.image_size: the first batch holding one whose shape is
  # not the first example's is the in-memory path's DataError.
  with pytest.raises(DataError, match="split 'test' has images of shape"):
    data_lib.load_datasets(photos_config(data_dir, 'true', image_size=(0, 0)))
  train = data_lib.load_datasets(photos_config(data_dir, 'true', image_size=(0, 0),
                                               test_split='train[:8]')).train
  with pytest.raises(DataError, match='all of one shape.*data.image_size'):
    list(data_lib.batches(train, 4))
  with pytest.raises(DataError, match='all of one shape.*data.image_size'):
    list(data_lib.batches(with_workers(train, 2), 4))


def test_the_random_resized_crop_of_tfds_photos(data_dir):
  config = photos_config(data_dir, 'true', random_resized_crop=(0.3, 0.9, 0.75, 1.333))
  cropped = data_lib.load_datasets(config)
  config.random_resized_crop = ()
  whole = data_lib.load_datasets(config)
  options = dict(shuffle=True, seed=4, epoch=2, drop_remainder=True)
  batch = next(iter(data_lib.batches(cropped.train, 4, **options)))
  # Each row is its photo cropped as drawn from (seed, epoch, example), then resized.
  order = np.random.default_rng([4, 2]).permutation(len(cropped.train))
  stored = tfds.data_source('cnnjax_streamed_photos', split='train', data_dir=data_dir)
  for row, index in enumerate(order[:4]):
    photo = Image.fromarray(stored[int(cropped.train.source.indices[index])]['image'])
    expected = streaming.cropped(photo, np.random.default_rng([4, 2, index]),
                                 cropped.train.crop, (9, 11), 'rgb')
    np.testing.assert_array_equal(batch['image'][row], expected / np.float32(255))
  assert not np.array_equal(batch['image'],
                            next(iter(data_lib.batches(whole.train, 4, **options)))['image'])
  # Validation and test batches are never cropped.
  assert_same_batches(data_lib.batches(whole.validation, 4),
                      data_lib.batches(cropped.validation, 4))


def test_training_on_a_streamed_tfds_set_matches_the_in_memory_run(data_dir, tmp_path):
  """`train_and_evaluate` reads both kinds through `cnnjax.data.batches`: the same history and
  test metrics, bit for bit."""
  from cnnjax.training.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
  results = {}
  for option in ('false', 'true'):
    config = base_config()
    config.data = photos_config(data_dir, option, image_size=(28, 28), color_mode='grayscale')
    config.model.num_outputs = 3
    config.train.epochs = 1
    config.train.batch_size = 4
    config.train.eval_batch_size = 8
    config.train.checkpoint_every_minutes = 0.0
    config.augment.kind = 'none'
    results[option] = train_and_evaluate(config, str(tmp_path / option))
    with open(tmp_path / option / 'history.json') as f:
      results[option + ' history'] = [
          {k: v for k, v in record.items() if k not in ('epoch_seconds', 'images_per_second')}
          for record in json.load(f)]
  assert results['false'] == results['true']
  assert results['false history'] == results['true history']
