"""Tests of exporting array data (IDX files) as an image folder and reading it back."""

import os
import subprocess
import sys

import numpy as np
import pytest

import idx_files
from cnnjax import data
from cnnjax.config import base_config
from cnnjax.data import export, image_folder
from cnnjax.data.idx import FASHION_MNIST_DIR
from cnnjax.errors import ConfigError, DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smooth_split(n, seed, height=14, width=12):
  """Smooth images (JPEG keeps them well) with labels 0..9 cycling; image i's mean encodes i."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:height, :width]
  images = np.empty((n, height, width), np.uint8)
  for i in range(n):
    a, b = rng.uniform(-3, 3, 2)
    images[i] = np.clip(120 + a * (y - height / 2) + b * (x - width / 2), 0, 255)
  return images, (np.arange(n) % 10).astype(np.uint8)


@pytest.fixture
def idx_dir(tmp_path):
  directory = tmp_path / 'idx'
  os.makedirs(directory)
  for prefix, n, seed in (('train', 60, 1), ('t10k', 30, 2)):
    images, labels = smooth_split(n, seed)
    idx_files.write_idx(directory / f'{prefix}-images-idx3-ubyte.gz', images, gzipped=True)
    idx_files.write_idx(directory / f'{prefix}-labels-idx1-ubyte.gz', labels, gzipped=True)
  return str(directory)


def folder_config(root, **overrides):
  config = base_config().data
  config.update(source='image_folder', dir=str(root), val_split='validation', num_classes=2,
                color_mode='grayscale', decode_workers=2)
  config.update(overrides)
  return config


def test_folder_names_sort_in_the_order_of_classes():
  assert export.folder_name(0, 'T-shirt/top', 2) == '0_t-shirt_top'
  assert export.folder_name(1, 'Ankle boot', 2) == '1_ankle_boot'
  assert export.folder_name(3, '???', 12) == '03_class'
  names = [export.folder_name(p, n, 11) for p, n in enumerate('kjihgfedcba')]
  assert sorted(names) == names


def test_export_and_read_back(idx_dir, tmp_path):
  train, test, names = export.load_arrays('idx', 'fashion_mnist', idx_dir)
  assert names[6] == 'Shirt'
  dest = str(tmp_path / 'folder')
  written = export.export_image_folder(train, test, dest, class_names=names, classes=[6, 0],
                                       per_class=(3, 2, 2))
  assert written == {'train': {'0_shirt': 3, '1_t-shirt_top': 3},
                     'validation': {'0_shirt': 2, '1_t-shirt_top': 2},
                     'test': {'0_shirt': 2, '1_t-shirt_top': 2}}
  # Shirts are examples 6, 16, 26, ... of the training split (labels cycle 0..9).
  assert sorted(os.listdir(os.path.join(dest, 'train', '0_shirt'))) == [
      '00006.jpg', '00016.jpg', '00026.jpg']
  assert sorted(os.listdir(os.path.join(dest, 'validation', '1_t-shirt_top'))) == [
      '00030.jpg', '00040.jpg']

  datasets = data.load_datasets(folder_config(dest, pixel_scale=1.0))
  assert datasets.class_names == ('0_shirt', '1_t-shirt_top')
  assert datasets.image_shape == (14, 12, 1)
  expected = {'train': (train, [6, 16, 26, 0, 10, 20]), 'validation': (train, [36, 46, 30, 40]),
              'test': (test, [6, 16, 0, 10])}
  for role, ((images, labels), indices) in expected.items():
    split = getattr(datasets, role)
    np.testing.assert_array_equal(split.labels, (labels[indices] == 0).astype(np.int32))
    difference = np.abs(split.stored_images.astype(int) - images[indices].astype(int))
    assert difference.mean() < 1.5 and difference.max() <= 12, role  # JPEG at quality 95.


def test_export_resized_rgb_png_is_exact(idx_dir, tmp_path):
  train, test, names = export.load_arrays('idx', 'fashion_mnist', idx_dir)
  dest = str(tmp_path / 'folder')
  export.export_image_folder(train, test, dest, class_names=names, classes=[0, 1],
                             per_class=(2, 0, 1), size=(20, 18), color='rgb', fmt='png')
  assert sorted(os.listdir(dest)) == ['test', 'train']  # No validation examples asked for.
  loaded = image_folder.load_split(os.path.join(dest, 'train'), image_size=None)
  assert loaded.files == ('0_t-shirt_top/00000.png', '0_t-shirt_top/00010.png',
                          '1_trouser/00001.png', '1_trouser/00011.png')
  expected = np.stack([image_folder.convert_array(train[0][i], (20, 18), 'rgb')
                       for i in (0, 10, 1, 11)])
  np.testing.assert_array_equal(loaded.images, expected)


def test_export_errors(idx_dir, tmp_path):
  train, test, names = export.load_arrays('idx', 'fashion_mnist', idx_dir)
  dest = str(tmp_path / 'folder')
  with pytest.raises(DataError) as info:
    export.export_image_folder(train, test, dest, class_names=names, classes=[0, 6],
                               per_class=(5, 3, 1))
  assert ("Class 0 (T-shirt/top) has 6 examples in the source's training split, but --per-class "
          'asks for 8 (train + validation)') in str(info.value)
  assert not os.path.exists(dest)  # Nothing written.
  with pytest.raises(ConfigError, match='at least two different labels'):
    export.export_image_folder(train, test, dest, classes=[0, 0])
  with pytest.raises(ConfigError, match='at least two different labels'):
    export.export_image_folder(train, test, dest, classes=[0, 12])
  with pytest.raises(ConfigError, match='--per-class'):
    export.export_image_folder(train, test, dest, classes=[0, 1], per_class=(0, 1, 1))
  export.export_image_folder(train, test, dest, classes=[0, 1], per_class=(1, 1, 1))
  with pytest.raises(DataError, match='--overwrite'):
    export.export_image_folder(train, test, dest, classes=[0, 1], per_class=(1, 1, 1))
  with pytest.raises(DataError, match='does not exist'):
    export.load_arrays('idx', 'fashion_mnist', str(tmp_path / 'nowhere'))


def test_command_line(idx_dir, tmp_path):
  dest = str(tmp_path / 'folder')
  command = [sys.executable, '-m', 'cnnjax.data.export', '--dest', dest, '--dir', idx_dir,
             '--classes', '0,6', '--per-class', '2,1,1', '--size', '16', '--color', 'rgb']
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr
  assert 'train: 0_t-shirt_top: 2, 1_shirt: 2' in done.stdout
  assert '--config.data.val_split=validation' in done.stdout
  loaded = image_folder.load_split(os.path.join(dest, 'validation'), image_size=None)
  assert loaded.images.shape == (2, 16, 16, 3)
  again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
  assert again.returncode == 2 and 'Traceback' not in again.stderr
  assert 'not empty' in again.stderr


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason='Fashion-MNIST not installed')
def test_real_fashion_mnist_to_150_pixel_rgb(tmp_path):
  train, test, names = export.load_arrays('idx', 'fashion_mnist', FASHION_MNIST_DIR)
  dest = str(tmp_path / 'folder')
  export.export_image_folder(train, test, dest, class_names=names, classes=[0, 6],
                             per_class=(2, 1, 1), size=(150, 150), color='rgb')
  datasets = data.load_datasets(folder_config(dest, color_mode='rgb', image_size=(150, 150)))
  assert datasets.image_shape == (150, 150, 3) and len(datasets.train) == 4
  np.testing.assert_array_equal(datasets.test.labels, [0, 1])
