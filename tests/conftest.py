"""Shared fixtures: a tiny training config on a slice of the real Fashion-MNIST files."""

import os

import pytest

from cnnjax.config import base_config
from cnnjax.data.idx import FASHION_MNIST_DIR

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def tiny_config():
  """The main job's config on 1,280 training / 256 test images, 2 epochs: seconds, not minutes."""
  data_dir = os.environ.get('CNNJAX_DATA_DIR', FASHION_MNIST_DIR)
  assert os.path.isdir(data_dir), (
      f'the Fashion-MNIST IDX files are missing from {data_dir}: run scripts/setup.sh '
      '(it installs the Debian package dataset-fashion-mnist)')
  config = base_config()
  config.data.dir = data_dir
  config.data.limit_train = 1280
  config.data.limit_test = 256
  config.data.val_fraction = 0.2
  config.train.epochs = 2
  config.train.batch_size = 32
  config.train.eval_batch_size = 128
  return config
