"""Tests of the IDX reader and of `load_datasets` with the IDX source."""

import gzip
import os

import ml_collections
import numpy as np
import pytest

from cnnjax import data
from cnnjax.data import idx
from cnnjax.errors import ConfigError, DataError
from idx_files import idx_bytes, make_split, write_idx, write_idx_dir

GET_DATA = 'apt-get install dataset-fashion-mnist'


@pytest.mark.parametrize('gzipped', [False, True])
@pytest.mark.parametrize('array', [
    np.arange(60, dtype=np.uint8).reshape(3, 4, 5),
    np.array([-128, -1, 0, 127], dtype=np.int8),
    np.array([[-32768, 300], [1, 32767]], dtype=np.int16),
    np.array([-2**31, 70000, 2**31 - 1], dtype=np.int32),
    np.array([[0.5, -1.25e-3, np.inf]], dtype=np.float32),
    np.array([np.pi, -1e300, 0.0], dtype=np.float64),
    np.zeros((0, 28, 28), dtype=np.uint8),
], ids=lambda a: f'{a.dtype.name}{list(a.shape)}')
def test_read_idx_round_trips_every_type(tmp_path, array, gzipped):
  path = write_idx(tmp_path / 'array.idx', array, gzipped=gzipped)
  result = idx.read_idx(path)
  assert result.dtype == array.dtype
  assert result.dtype.isnative
  assert result.shape == array.shape
  np.testing.assert_array_equal(result, array)
  # Callers may normalise in place, so the array must not be a read-only buffer view.
  assert result.flags.writeable


def test_gzip_is_detected_by_content_not_name(tmp_path):
  array = np.arange(12, dtype=np.uint8).reshape(3, 4)
  plain_named_gz = write_idx(tmp_path / 'plain.gz', array)
  gzip_named_plain = write_idx(tmp_path / 'compressed-idx1-ubyte', array, gzipped=True)
  np.testing.assert_array_equal(idx.read_idx(plain_named_gz), array)
  np.testing.assert_array_equal(idx.read_idx(gzip_named_plain), array)


def test_missing_file_names_path_and_how_to_get_data(tmp_path):
  path = tmp_path / 'train-images-idx3-ubyte'
  with pytest.raises(DataError) as info:
    idx.read_idx(path)
  assert str(path) in str(info.value)
  assert 'does not exist' in str(info.value)
  assert GET_DATA in str(info.value)


@pytest.mark.parametrize('content, found', [
    (b'\x89PNG\r\n\x1a\n' + bytes(100), '0x89504E47'),
    (b'\x00\x00\x07\x01' + bytes(8), '0x00000701'),  # Unknown type code.
    (b'\x00\x01\x08\x01' + bytes(8), '0x00010801'),
])
def test_wrong_magic_says_what_was_found(tmp_path, content, found):
  path = tmp_path / 'not-idx'
  path.write_bytes(content)
  with pytest.raises(DataError) as info:
    idx.read_idx(path)
  message = str(info.value)
  assert str(path) in message
  assert found in message
  assert 'Is this an IDX file?' in message
  assert '0x08' in message  # The expected type codes.


@pytest.mark.parametrize('gzipped', [False, True])
def test_truncated_data_gives_expected_and_found_sizes(tmp_path, gzipped):
  data = idx_bytes(np.zeros((10, 4, 4), dtype=np.uint8))
  assert len(data) == 16 + 160
  path = tmp_path / 'short'
  path.write_bytes(gzip.compress(data[:-7]) if gzipped else data[:-7])
  with pytest.raises(DataError) as info:
    idx.read_idx(path)
  message = str(info.value)
  assert str(path) in message
  assert 'truncated' in message
  assert '176 bytes' in message and 'has 169' in message


@pytest.mark.parametrize('content', [b'\x00\x00', b'\x00\x00\x08\x03' + bytes(5)])
def test_truncated_header(tmp_path, content):
  path = tmp_path / 'short'
  path.write_bytes(content)
  with pytest.raises(DataError, match='truncated') as info:
    idx.read_idx(path)
  assert str(path) in str(info.value)


def test_extra_bytes_are_an_error(tmp_path):
  path = tmp_path / 'long'
  path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)) + b'\x00')
  with pytest.raises(DataError, match='extra bytes') as info:
    idx.read_idx(path)
  assert str(path) in str(info.value)


def test_unreadable_gzip(tmp_path):
  compressed = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)))
  path = tmp_path / 'cut.gz'
  path.write_bytes(compressed[:len(compressed) // 2])
  with pytest.raises(DataError) as info:
    idx.read_idx(path)
  message = str(info.value)
  assert str(path) in message
  assert 'gzip' in message and 'Download it again' in message


@pytest.mark.parametrize('gzipped', [False, True])
def test_load_idx_split(tmp_path, gzipped):
  written = write_idx_dir(tmp_path, n_train=30, n_test=12, gzipped=gzipped)
  for split in ('train', 'test'):
    images, labels = idx.load_idx_split(tmp_path, split)
    expected_images, expected_labels = written[split]
    assert images.dtype == np.uint8 and labels.dtype == np.int32
    assert images.shape == expected_images.shape + (1,)
    np.testing.assert_array_equal(images[..., 0], expected_images)
    np.testing.assert_array_equal(labels, expected_labels)


def test_load_idx_split_accepts_mixed_compression(tmp_path):
  write_idx_dir(tmp_path, n_train=8, gzipped=True)
  os.remove(tmp_path / 'train-labels-idx1-ubyte.gz')
  _, labels = make_split(8, seed=1)
  write_idx(tmp_path / 'train-labels-idx1-ubyte', labels)
  assert idx.load_idx_split(tmp_path, 'train')[1].shape == (8,)


def test_missing_directory(tmp_path):
  directory = tmp_path / 'nowhere'
  with pytest.raises(DataError) as info:
    idx.load_idx_split(directory, 'train')
  message = str(info.value)
  assert str(directory) in message
  assert GET_DATA in message and 'CNNJAX_DATA_DIR' in message and 'data.dir' in message


def test_missing_file_names_both_candidates(tmp_path):
  write_idx_dir(tmp_path)
  os.remove(tmp_path / 't10k-labels-idx1-ubyte.gz')
  idx.load_idx_split(tmp_path, 'train')  # The train split is still complete.
  with pytest.raises(DataError) as info:
    idx.load_idx_split(tmp_path, 'test')
  message = str(info.value)
  assert str(tmp_path / 't10k-labels-idx1-ubyte') in message
  assert str(tmp_path / 't10k-labels-idx1-ubyte.gz') in message
  assert GET_DATA in message and 'CNNJAX_DATA_DIR' in message


def test_count_mismatch_names_both_files_and_counts(tmp_path):
  write_idx_dir(tmp_path, n_train=30)
  write_idx(tmp_path / 'train-labels-idx1-ubyte.gz', np.zeros(29, np.uint8), gzipped=True)
  with pytest.raises(DataError) as info:
    idx.load_idx_split(tmp_path, 'train')
  message = str(info.value)
  assert str(tmp_path / 'train-images-idx3-ubyte.gz') in message
  assert str(tmp_path / 'train-labels-idx1-ubyte.gz') in message
  assert '30 images' in message and '29 labels' in message


def test_swapped_files_are_reported(tmp_path):
  write_idx_dir(tmp_path, n_train=6)
  write_idx(tmp_path / 'train-images-idx3-ubyte.gz', np.zeros(6, np.uint8), gzipped=True)
  with pytest.raises(DataError, match=r'\(N, H, W\)') as info:
    idx.load_idx_split(tmp_path, 'train')
  assert str(tmp_path / 'train-images-idx3-ubyte.gz') in str(info.value)


def test_unknown_split_is_a_config_error(tmp_path):
  with pytest.raises(ConfigError, match='data.train_split'):
    idx.load_idx_split(tmp_path, 'validation')


@pytest.mark.skipif(
    not os.path.isdir(idx.FASHION_MNIST_DIR),
    reason=f'Fashion-MNIST is not installed at {idx.FASHION_MNIST_DIR} '
    '(apt-get install dataset-fashion-mnist)')
def test_real_fashion_mnist():
  for split, n in (('train', 60000), ('test', 10000)):
    images, labels = idx.load_idx_split(idx.FASHION_MNIST_DIR, split)
    assert images.shape == (n, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int32
    assert set(np.unique(labels)) == set(range(10))
  dataset = data.ArrayDataset.from_uint8(images, labels)
  assert dataset.images.dtype == np.float32
  assert dataset.images.min() == 0.0 and dataset.images.max() == 1.0


def data_config(directory='', **overrides):
  config = ml_collections.ConfigDict({
      'source': 'idx',
      'name': 'fashion_mnist',
      'dir': os.fspath(directory),
      'train_split': 'train',
      'test_split': 'test',
      'val_split': '',
      'val_fraction': 0.2,
      'seed': 0,
      'num_classes': 10,
      'limit_train': 0,
      'limit_test': 0,
  })
  config.update(overrides)
  return config


def test_load_datasets_end_to_end(tmp_path):
  written = write_idx_dir(tmp_path, n_train=50, n_test=20)
  datasets = data.load_datasets(data_config(tmp_path))
  assert (len(datasets.train), len(datasets.validation), len(datasets.test)) == (40, 10, 20)
  assert datasets.image_shape == (4, 5, 1)
  assert datasets.num_classes == 10 and datasets.name == 'fashion_mnist'
  for dataset in (datasets.train, datasets.validation, datasets.test):
    assert dataset.images.dtype == np.float32 and dataset.labels.dtype == np.int32
    assert dataset.images.shape[1:] == (4, 5, 1)
    assert 0.0 <= dataset.images.min() and dataset.images.max() <= 1.0
  np.testing.assert_array_equal(datasets.test.labels, written['test'][1])
  # The carve is a partition of the training file, the same on every load.
  train_labels = np.concatenate([datasets.train.labels, datasets.validation.labels])
  np.testing.assert_array_equal(np.sort(train_labels), np.sort(written['train'][1]))
  again = data.load_datasets(data_config(tmp_path))
  np.testing.assert_array_equal(again.validation.images, datasets.validation.images)


def test_load_datasets_limits(tmp_path):
  written = write_idx_dir(tmp_path, n_train=50, n_test=20)
  datasets = data.load_datasets(data_config(tmp_path, limit_train=10, limit_test=5))
  assert (len(datasets.train), len(datasets.validation), len(datasets.test)) == (8, 2, 5)
  np.testing.assert_array_equal(datasets.test.labels, written['test'][1][:5])
  used = np.concatenate([datasets.train.images, datasets.validation.images])
  expected = written['train'][0][:10, ..., None] / np.float32(255)
  np.testing.assert_array_equal(np.sort(used.ravel()), np.sort(expected.ravel()))


def test_load_datasets_from_env_var(tmp_path, monkeypatch):
  write_idx_dir(tmp_path / 'env', n_train=10, n_test=3, gzipped=False)
  monkeypatch.setenv('CNNJAX_DATA_DIR', str(tmp_path / 'env'))
  datasets = data.load_datasets(data_config('', name='mnist'))
  assert (len(datasets.train), len(datasets.test)) == (8, 3)
  # data.dir wins over the environment variable.
  write_idx_dir(tmp_path / 'cfg', n_train=20, n_test=4)
  assert len(data.load_datasets(data_config(tmp_path / 'cfg')).test) == 4


def test_no_directory_for_mnist_asks_for_data_dir(monkeypatch):
  monkeypatch.delenv('CNNJAX_DATA_DIR', raising=False)
  with pytest.raises(ConfigError) as info:
    data.load_datasets(data_config('', name='mnist'))
  assert 'data.dir' in str(info.value) and 'CNNJAX_DATA_DIR' in str(info.value)


def test_missing_default_directory(tmp_path, monkeypatch):
  monkeypatch.delenv('CNNJAX_DATA_DIR', raising=False)
  monkeypatch.setattr(idx, 'FASHION_MNIST_DIR', str(tmp_path / 'absent'))
  with pytest.raises(DataError) as info:
    data.load_datasets(data_config(''))
  message = str(info.value)
  assert str(tmp_path / 'absent') in message and 'default directory' in message
  assert GET_DATA in message


def test_missing_configured_directory(tmp_path):
  with pytest.raises(DataError) as info:
    data.load_datasets(data_config(tmp_path / 'absent'))
  message = str(info.value)
  assert str(tmp_path / 'absent') in message and 'data.dir' in message and GET_DATA in message


def test_label_out_of_range(tmp_path):
  write_idx_dir(tmp_path, n_train=10)
  labels = np.zeros(10, np.uint8)
  labels[3] = 12
  write_idx(tmp_path / 'train-labels-idx1-ubyte.gz', labels, gzipped=True)
  with pytest.raises(DataError) as info:
    data.load_datasets(data_config(tmp_path))
  message = str(info.value)
  assert 'train split' in message and str(tmp_path / 'train-labels-idx1-ubyte.gz') in message
  assert 'label 12' in message and 'data.num_classes' in message
  config = data_config(tmp_path, num_classes=13)
  assert data.load_datasets(config).num_classes == 13


@pytest.mark.parametrize('overrides, field', [
    ({'source': 'csv'}, 'data.source'),
    ({'val_split': 'train[90%:]'}, 'data.val_split'),
    ({'val_fraction': 0.0}, 'data.val_fraction'),
    ({'val_fraction': 1.0}, 'data.val_fraction'),
    ({'limit_train': -1}, 'data.limit_train'),
    ({'num_classes': 1}, 'data.num_classes'),
    ({'train_split': 'train[:90%]'}, 'data.train_split'),
])
def test_bad_config_values(tmp_path, overrides, field):
  write_idx_dir(tmp_path, n_train=10, n_test=4)
  with pytest.raises(ConfigError) as info:
    data.load_datasets(data_config(tmp_path, **overrides))
  assert field in str(info.value)


def test_unknown_source_lists_the_allowed_ones(tmp_path):
  with pytest.raises(ConfigError) as info:
    data.load_datasets(data_config(tmp_path, source='csv'))
  assert "'idx'" in str(info.value) and "'tfds'" in str(info.value)
