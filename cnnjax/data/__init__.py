"""Loading the train, validation and test data sets a config asks for.

`load_datasets` reads the data from IDX files (MNIST, Fashion-MNIST) or from a prepared TFDS data
set, carves the validation set, checks the labels and returns everything as in-memory
`ArrayDataset`s. The batching and prefetching helpers live in `cnnjax.data.pipeline` and are
re-exported here.
"""

import dataclasses
import os

import numpy as np

from cnnjax.data import idx
from cnnjax.data.pipeline import ArrayDataset
from cnnjax.data.pipeline import batches
from cnnjax.data.pipeline import num_batches
from cnnjax.data.pipeline import prefetch
from cnnjax.data.pipeline import Prefetch
from cnnjax.data.pipeline import split_validation
from cnnjax.errors import ConfigError, DataError

__all__ = [
    'ArrayDataset',
    'Datasets',
    'Prefetch',
    'batches',
    'load_datasets',
    'num_batches',
    'prefetch',
    'split_validation',
]

_SOURCES = ('idx', 'tfds')


@dataclasses.dataclass(frozen=True)
class Datasets:
  """The data sets of one run.

  Attributes:
    train: Training examples.
    validation: Held-out examples for model selection.
    test: Test examples.
    num_classes: Number of classes; labels are in [0, num_classes).
    image_shape: (H, W, C) of every image.
    name: Data set name, from data.name.
  """

  train: ArrayDataset
  validation: ArrayDataset
  test: ArrayDataset
  num_classes: int
  image_shape: tuple
  name: str


def _idx_dir(config):
  """Returns the IDX directory and a phrase saying where that choice came from."""
  if config.dir:
    return config.dir, 'data.dir'
  env = os.environ.get(idx.DATA_DIR_ENV, '')
  if env:
    return env, f'environment variable {idx.DATA_DIR_ENV}'
  if config.name == 'fashion_mnist':
    return idx.FASHION_MNIST_DIR, "the default directory for data.name = 'fashion_mnist'"
  raise ConfigError(
      f'data.dir is empty and {idx.DATA_DIR_ENV} is not set, and there is no default directory '
      f'for data.name = {config.name!r}. Set data.dir (or {idx.DATA_DIR_ENV}) to a directory '
      'holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and '
      't10k-labels-idx1-ubyte (each optionally .gz).'
  )


def _check_limit(config, field):
  limit = config[field]
  if limit < 0:
    raise ConfigError(f'data.{field} must be 0 (all examples) or positive, got {limit}.')
  return limit


def _check_labels(labels, num_classes, where):
  if not len(labels):
    return
  low, high = int(labels.min()), int(labels.max())
  if low < 0 or high >= num_classes:
    bad = low if low < 0 else high
    raise DataError(
        f'{where} has label {bad}, outside [0, {num_classes}) for data.num_classes = '
        f'{num_classes} (labels range from {low} to {high}). Set data.num_classes to the number '
        'of classes of this data set, or fix the labels.'
    )


def _load_idx(config):
  directory, origin = _idx_dir(config)
  if not os.path.isdir(directory):
    raise DataError(
        f'Data directory {directory} (from {origin}) does not exist. {idx.GET_DATA_HINT}')
  if config.val_split:
    raise ConfigError(
        f"data.val_split = {config.val_split!r} is only supported for data.source = 'tfds'. "
        "For 'idx', set data.val_split = '' and choose the held-out share with "
        'data.val_fraction.'
    )
  splits = {}
  for role, split in (('train', config.train_split), ('test', config.test_split)):
    images, labels = idx.load_idx_split(directory, split)
    labels_path = idx.find_idx_split_files(directory, split)[1]
    splits[role] = (images, labels, f'The {split} split ({labels_path})')
  return splits


def _load_tfds(config):
  # Imported here so that the IDX source never pays for importing TFDS.
  from cnnjax.data.tfds_source import load_tfds_split  # pylint: disable=g-import-not-at-top

  data_dir = config.dir or None
  roles = [('train', config.train_split), ('test', config.test_split)]
  if config.val_split:
    roles.append(('validation', config.val_split))
  splits = {}
  for role, split in roles:
    images, labels = load_tfds_split(config.name, split, data_dir)
    splits[role] = (images, labels, f'TFDS data set {config.name!r} split {split!r}')
  return splits


def load_datasets(data_config):
  """Loads the train, validation and test sets described by the `data` config.

  Args:
    data_config: ConfigDict with the fields source ('idx' or 'tfds'), name, dir, train_split,
      test_split, val_split ('' carves validation data out of the training split), val_fraction,
      seed, num_classes, limit_train and limit_test (0 keeps every example).

  Returns:
    The Datasets, with images scaled to [0, 1].

  Raises:
    ConfigError: A config value is invalid.
    DataError: The data are missing, malformed or inconsistent with the config.
  """
  config = data_config
  if config.source not in _SOURCES:
    raise ConfigError(
        f'data.source = {config.source!r} is not a known data source; use one of {_SOURCES}.')
  num_classes = config.num_classes
  if num_classes < 2:
    raise ConfigError(f'data.num_classes must be at least 2, got {num_classes}.')
  limit_train = _check_limit(config, 'limit_train')
  limit_test = _check_limit(config, 'limit_test')
  splits = _load_idx(config) if config.source == 'idx' else _load_tfds(config)

  train_images, train_labels, train_where = splits['train']
  if limit_train:
    train_images, train_labels = train_images[:limit_train], train_labels[:limit_train]
  _check_labels(train_labels, num_classes, train_where)
  if 'validation' in splits:
    val_images, val_labels, val_where = splits['validation']
    _check_labels(val_labels, num_classes, val_where)
  else:
    (train_images, train_labels), (val_images, val_labels) = split_validation(
        train_images, train_labels, fraction=config.val_fraction, seed=config.seed)
  test_images, test_labels, test_where = splits['test']
  if limit_test:
    test_images, test_labels = test_images[:limit_test], test_labels[:limit_test]
  _check_labels(test_labels, num_classes, test_where)

  image_shape = tuple(int(d) for d in train_images.shape[1:])
  for images, where in ((val_images, 'The validation data'), (test_images, test_where)):
    if images.shape[1:] != image_shape:
      raise DataError(
          f'{where} has images of shape {images.shape[1:]}, but the training images have shape '
          f'{image_shape}; all splits must share one image shape. Check data.dir / the split '
          'names.'
      )
  return Datasets(
      train=ArrayDataset.from_uint8(train_images, train_labels),
      validation=ArrayDataset.from_uint8(val_images, val_labels),
      test=ArrayDataset.from_uint8(test_images, test_labels),
      num_classes=num_classes,
      image_shape=image_shape,
      name=config.name,
  )
