"""Loading the train, validation and test data sets a config asks for.

`load_datasets` reads the data from IDX files (MNIST, Fashion-MNIST), from a prepared TFDS data
set or from a directory tree of photos with one folder per class (`cnnjax.data.image_folder`),
carves the validation set, checks the labels and returns everything as in-memory
`ArrayDataset`s that keep 8-bit pixels and divide them by data.pixel_scale batch by batch. The
batching and prefetching helpers live in `cnnjax.data.pipeline` and are re-exported here.

An image folder or a TFDS data set too large for memory is streamed instead
(`cnnjax.data.streaming`): data.streaming 'true' always streams it, 'auto' streams when its decoded
uint8 pixels (examples x height x width x channels bytes, over every split) would exceed
data.memory_budget_mb, 'false' never streams. A streamed data set gives the batches the in-memory
one would, read from disk by grain. `batches` serves both kinds, each process getting its own rows
of every global batch.
"""

import dataclasses
import os

import numpy as np

from cnnjax.data import idx
from cnnjax.data import image_folder
from cnnjax.data.pipeline import ArrayDataset
from cnnjax.data.pipeline import batches as _in_memory_batches
from cnnjax.data.pipeline import check_pixel_scale
from cnnjax.data.pipeline import num_batches
from cnnjax.data.pipeline import prefetch
from cnnjax.data.pipeline import Prefetch
from cnnjax.data.pipeline import split_validation
from cnnjax.data import streaming
from cnnjax.data.streaming import StreamingDataset
from cnnjax.data.subsets import subsets_from_config
from cnnjax.errors import ConfigError, DataError

__all__ = [
    'ArrayDataset',
    'Datasets',
    'FASHION_MNIST_CLASS_NAMES',
    'MNIST_CLASS_NAMES',
    'idx_class_names',
    'idx_data_dir',
    'Prefetch',
    'StreamingDataset',
    'batches',
    'check_location',
    'load_datasets',
    'num_batches',
    'prefetch',
    'split_validation',
]

_SOURCES = ('idx', 'tfds', 'image_folder')
_STREAMED_SOURCES = ('image_folder', 'tfds')

# Label i of the Fashion-MNIST / MNIST IDX files is class i.
FASHION_MNIST_CLASS_NAMES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal',
                             'Shirt', 'Sneaker', 'Bag', 'Ankle boot')
MNIST_CLASS_NAMES = tuple(str(digit) for digit in range(10))
_IDX_CLASS_NAMES = {'fashion_mnist': FASHION_MNIST_CLASS_NAMES, 'mnist': MNIST_CLASS_NAMES}

# Defaults of the photo fields, for data configs written before they existed.
_PHOTO_DEFAULTS = {'image_size': (0, 0), 'color_mode': 'rgb', 'pixel_scale': 255.0,
                   'strict': False, 'cache_dir': '', 'decode_workers': 0, 'streaming': 'false',
                   'memory_budget_mb': 8192, 'streaming_workers': 2, 'random_resized_crop': ()}


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
    class_names: The name of each class (label i is class_names[i]): the class folder names of
      an image folder, the label names of a TFDS data set, the Fashion-MNIST or MNIST class
      names for those IDX files; None when unknown.
  """

  train: ArrayDataset | StreamingDataset
  validation: ArrayDataset | StreamingDataset
  test: ArrayDataset | StreamingDataset
  num_classes: int
  image_shape: tuple
  name: str
  class_names: tuple | None = None


def batches(dataset, batch_size, *, host=(0, 1), **options):
  """Iterates over process `host`'s rows of each batch of one epoch, for either kind of data set.

  Args:
    dataset: An in-memory `ArrayDataset` or a `StreamingDataset`.
    batch_size: Rows of the global batch (all processes together).
    host: (process index, process count), as `Parallel.host()` gives it. Process i of n gets
      rows [i*B/n, (i+1)*B/n) of every global batch (`streaming.host_rows`): a streamed data set
      reads only those, an in-memory one builds the global batch and cuts them out.
    **options: shuffle, seed, epoch, drop_remainder, first_batch, as `pipeline.batches` takes
      them.

  Returns:
    An iterator of dicts with 'image', 'label' and 'mask' of B / n rows.

  Raises:
    ConfigError: As `pipeline.batches`, or the batch does not split evenly across the processes.
      Raised at the call, not at the first `next`.
  """
  if isinstance(dataset, StreamingDataset):
    return dataset.batches(batch_size, host=host, **options)
  start, stop = streaming.host_rows(batch_size, host)
  global_batches = _in_memory_batches(dataset, batch_size, **options)
  if stop - start == batch_size:
    return global_batches
  return ({k: v[start:stop] for k, v in batch.items()} for batch in global_batches)


def _photo_field(config, field):
  return config.get(field, _PHOTO_DEFAULTS[field])


def _photo_options(config):
  """Checks the photo fields; returns (image_size or None, color_mode, decode_workers)."""
  size = image_folder.check_image_size(_photo_field(config, 'image_size'))
  color_mode = _photo_field(config, 'color_mode')
  image_folder.check_color_mode(color_mode)
  workers = _photo_field(config, 'decode_workers')
  if not isinstance(workers, int) or workers < 0:
    raise ConfigError(
        f'data.decode_workers must be 0 (one per CPU core) or positive, got {workers!r}.')
  return size, color_mode, workers


def idx_data_dir(directory, name):
  """Returns the IDX directory and a phrase saying where that choice came from.

  Args:
    directory: data.dir; '' falls back to $CNNJAX_DATA_DIR, then (for Fashion-MNIST) to the
      directory of Debian's dataset-fashion-mnist package.
    name: data.name.

  Raises:
    ConfigError: No directory is given and there is no default for `name`.
  """
  if directory:
    return directory, 'data.dir'
  env = os.environ.get(idx.DATA_DIR_ENV, '')
  if env:
    return env, f'environment variable {idx.DATA_DIR_ENV}'
  if name == 'fashion_mnist':
    return idx.FASHION_MNIST_DIR, "the default directory for data.name = 'fashion_mnist'"
  raise ConfigError(
      f'data.dir is empty and {idx.DATA_DIR_ENV} is not set, and there is no default directory '
      f'for data.name = {name!r}. Set data.dir (or {idx.DATA_DIR_ENV}) to a directory '
      'holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and '
      't10k-labels-idx1-ubyte (each optionally .gz).'
  )


def idx_class_names(name):
  """Returns the class names of an IDX data set cnnjax knows (fashion_mnist, mnist), or None."""
  return _IDX_CLASS_NAMES.get(name)


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


def _check_source(config):
  if config.source not in _SOURCES:
    raise ConfigError(
        f'data.source = {config.source!r} is not a known data source; use one of {_SOURCES}.')


def _idx_directory(config):
  """The IDX directory data.dir (or its fallbacks) names, checked to exist."""
  directory, origin = idx_data_dir(config.dir, config.name)
  if not os.path.isdir(directory):
    raise DataError(
        f'Data directory {directory} (from {origin}) does not exist. {idx.GET_DATA_HINT}')
  return directory


def _split_roles(config):
  """{role: split name} of the splits to read: train, test and, where named, validation."""
  roles = {'train': config.train_split, 'test': config.test_split}
  if config.val_split:
    roles['validation'] = config.val_split
  return roles


def _image_folder_roles(config):
  """`_split_roles` of an image folder, data.dir checked to be set."""
  if not config.dir:
    raise ConfigError(
        "data.dir is empty; for data.source = 'image_folder' it must be the root directory that "
        'holds the split directories (data.train_split, data.val_split, data.test_split), each '
        'with one sub-folder of images per class.'
    )
  return _split_roles(config)


def check_location(data_config):
  """Checks, without reading an image, that the data the config names are where it says.

  The IDX source: its directory and the four files of its splits; an image folder: its root,
  split and class folders (listed, not decoded). Raises the error `load_datasets` would (a TFDS
  data set is checked when it is loaded). launch.py calls this before it spends time on anything
  else, so a wrong data.dir is one line at once, not after measuring the process settings.
  """
  config = data_config
  _check_source(config)
  if config.source == 'idx':
    directory = _idx_directory(config)
    for split in (config.train_split, config.test_split):
      idx.find_idx_split_files(directory, split)
  elif config.source == 'image_folder':
    image_folder.list_splits(config.dir, _image_folder_roles(config))


def _load_idx(config):
  directory = _idx_directory(config)
  if config.val_split:
    raise ConfigError(
        f'data.val_split = {config.val_split!r} is only supported for data.source = \'tfds\' '
        "and 'image_folder'. "
        "For 'idx', set data.val_split = '' and choose the held-out share with "
        'data.val_fraction.'
    )
  size, color_mode, workers = _photo_options(config)
  splits = {}
  for role, split in (('train', config.train_split), ('test', config.test_split)):
    images, labels = idx.load_idx_split(directory, split)
    if size is not None:
      # Resizing also applies data.color_mode; without it the IDX images stay as stored.
      images = image_folder.convert_arrays(images, len(images), size, color_mode, workers)
    labels_path = idx.find_idx_split_files(directory, split)[1]
    splits[role] = (images, labels, f'The {split} split ({labels_path})')
  return splits, idx_class_names(config.name)


def _load_tfds(config):
  # Imported here so that the IDX source never pays for importing TFDS.
  from cnnjax.data import tfds_source  # pylint: disable=g-import-not-at-top

  size, color_mode, workers = _photo_options(config)
  data_dir = config.dir or None
  splits = {}
  for role, split in _split_roles(config).items():
    images, labels = tfds_source.load_tfds_split(
        config.name, split, data_dir, image_size=size, color_mode=color_mode, workers=workers)
    splits[role] = (images, labels, f'TFDS data set {config.name!r} split {split!r}')
  return splits, tfds_source.tfds_class_names(config.name, data_dir)


def _load_image_folder(config):
  size, color_mode, workers = _photo_options(config)
  roles = _image_folder_roles(config)
  loaded = image_folder.load_splits(
      config.dir, roles, image_size=size, color_mode=color_mode,
      strict=bool(_photo_field(config, 'strict')), cache_dir=_photo_field(config, 'cache_dir'),
      workers=workers, limits={'train': config.limit_train, 'test': config.limit_test})
  class_names = loaded['train'].class_names
  if len(class_names) != config.num_classes:
    raise ConfigError(
        f'data.num_classes = {config.num_classes}, but the image folder '
        f'{loaded["train"].directory} has {len(class_names)} class folders '
        f'{list(class_names)}. Set data.num_classes = '
        f'{len(class_names)} (a binary classifier with one sigmoid output still has 2 classes).'
    )
  splits = {role: (split.images, split.labels, f'The {role} split ({split.directory})')
            for role, split in loaded.items()}
  return splits, class_names


def _streams(config):
  """Whether data.streaming (with data.memory_budget_mb for 'auto') streams this data set.

  For 'auto' the decoded size is estimated without decoding: an image folder's files are counted
  (listed, not read), a TFDS split's examples are counted by opening it, and the image shape is
  data.image_size's (a TFDS set without one: its first example's).
  """
  value = _photo_field(config, 'streaming')
  # A string field ('auto' cannot share a typed ConfigDict field with booleans), so the command
  # line's --config.data.streaming=True arrives as 'True'; booleans are taken too.
  wanted = {'auto': 'auto', 'true': True, 'false': False}.get(str(value).lower())
  if wanted is None:
    raise ConfigError(
        f"data.streaming = {value!r} must be 'auto' (stream when the decoded images exceed "
        "data.memory_budget_mb), 'true' or 'false'.")
  if wanted is False:
    return False
  if config.source not in _STREAMED_SOURCES:
    if wanted is True:
      raise ConfigError(
          f'data.streaming = {value!r} is supported for data.source in {_STREAMED_SOURCES}, not '
          f"{config.source!r}; set data.streaming = 'false' (or 'auto') to load it into memory.")
    return False
  if wanted is True:
    return True
  size = image_folder.check_image_size(_photo_field(config, 'image_size'))
  budget = _photo_field(config, 'memory_budget_mb')
  if not isinstance(budget, (int, float)) or budget <= 0:
    raise ConfigError(f'data.memory_budget_mb must be a positive number, got {budget!r}.')
  splits = {config.train_split, config.test_split, config.val_split} - {''}
  if config.source == 'tfds':
    total, image_shape = _tfds_examples(config, splits, size)
  else:
    total, image_shape = _folder_files(config, splits, size)
  if image_shape is None:
    return False  # No estimate; the in-memory loader reports what is wrong.
  return streaming.decoded_bytes(total, image_shape) > budget * 2**20


def _folder_files(config, splits, size):
  """(files in the image folder's splits, decoded image shape or None when unknown)."""
  if size is None or not os.path.isdir(config.dir):
    return 0, None  # Without an image size there is no estimate.
  channels = image_folder.check_color_mode(_photo_field(config, 'color_mode'))
  total = 0
  for split in splits:
    split_dir = os.path.join(config.dir, split)
    if os.path.isdir(split_dir):
      total += sum(len(f) for f in image_folder.list_split(split_dir)[1])
  return total, (size[0], size[1], channels)


def _tfds_examples(config, splits, size):
  """(examples in the TFDS splits, decoded image shape or None when unknown); decodes at most
  one image."""
  from cnnjax.data import tfds_source  # pylint: disable=g-import-not-at-top

  image_shape = None
  if size is not None:
    image_shape = (size[0], size[1],
                   image_folder.check_color_mode(_photo_field(config, 'color_mode')))
  total = 0
  try:
    for split in splits:
      source, where = tfds_source.open_split(config.name, split, config.dir or None)
      total += len(source)
      if image_shape is None and split == config.train_split:
        first = tfds_source.check_features(source, where, 'image', 'label')
        image_shape = tfds_source.stored_image_shape(np.shape(first['image']), where)
  except DataError:
    return 0, None  # The in-memory loader reports it, with the same message.
  return total, image_shape


def _check_streamable(config):
  """Raises a ConfigError for the fields streamed data sets do not support."""
  if tuple(config.get('classes', ()) or ()) or any(config.get('per_class', ()) or ()):
    raise ConfigError(
        'data.classes / data.per_class select a subset in memory; with data.streaming they are '
        "not supported. Set data.streaming = 'false' (a small subset fits in memory anyway).")


def _streaming_workers(config):
  workers = _photo_field(config, 'streaming_workers')
  if not isinstance(workers, int) or workers < 0:
    raise ConfigError(f'data.streaming_workers must be 0 (decode in the training process) or '
                      f'positive, got {workers!r}.')
  return workers


def _streamed_datasets(config, sets, class_names):
  """The Datasets of streamed splits {role: StreamingDataset}; without a validation split,
  the validation set is carved out of the training one as the in-memory path carves it."""
  crop = sets['train'].crop
  if 'validation' not in sets:
    # The carve of the in-memory path, on indices: the same examples are held out.
    indices = np.arange(len(sets['train']))
    (train_idx, _), (val_idx, _) = split_validation(
        indices, sets['train'].labels, fraction=config.val_fraction, seed=config.seed)
    sets['train'], sets['validation'] = (sets['train'].subset(train_idx, crop),
                                         sets['train'].subset(val_idx))
  return Datasets(train=sets['train'], validation=sets['validation'], test=sets['test'],
                  num_classes=config.num_classes, image_shape=sets['train'].image_shape,
                  name=config.name, class_names=tuple(class_names) if class_names else None)


def _stream_image_folder(config, pixel_scale):
  """The Datasets of an image folder read batch by batch (`cnnjax.data.streaming`)."""
  _check_streamable(config)
  size, color_mode, workers = _photo_options(config)
  roles = _image_folder_roles(config)
  listed, class_names = streaming.list_folder_splits(
      config.dir, roles, image_size=size, color_mode=color_mode,
      strict=bool(_photo_field(config, 'strict')), workers=workers,
      limits={'train': _check_limit(config, 'limit_train'),
              'test': _check_limit(config, 'limit_test')})
  if len(class_names) != config.num_classes:
    raise ConfigError(
        f'data.num_classes = {config.num_classes}, but the image folder {config.dir} has '
        f'{len(class_names)} class folders {list(class_names)}. Set data.num_classes = '
        f'{len(class_names)}.')
  stream_workers = _streaming_workers(config)
  crop = streaming.check_crop(_photo_field(config, 'random_resized_crop'))
  sets = {role: StreamingDataset(source, pixel_scale=pixel_scale, workers=stream_workers,
                                 strict=bool(_photo_field(config, 'strict')),
                                 crop=crop if role == 'train' else None)
          for role, (source, _) in listed.items()}
  return _streamed_datasets(config, sets, class_names)


def _stream_tfds(config, pixel_scale):
  """The Datasets of a TFDS data set read batch by batch (`streaming.TfdsSource`): the splits,
  limits, label checks and validation carve of `_load_tfds` and `load_datasets`."""
  from cnnjax.data import tfds_source  # pylint: disable=g-import-not-at-top

  _check_streamable(config)
  size, color_mode, _ = _photo_options(config)
  stream_workers = _streaming_workers(config)
  crop = streaming.check_crop(_photo_field(config, 'random_resized_crop'))
  if crop and size is None:
    raise ConfigError(
        f'data.random_resized_crop = {tuple(config.random_resized_crop)} resizes each crop to '
        'data.image_size, which is (0, 0); set data.image_size = (height, width).')
  data_dir = config.dir or None
  roles = _split_roles(config)
  limits = {'train': config.limit_train, 'test': config.limit_test}
  sets = {}
  for role, split in roles.items():
    source = streaming.TfdsSource.open(config.name, split, data_dir, image_size=size,
                                       color_mode=color_mode)
    if limits.get(role):
      source = source.subset(np.arange(min(limits[role], len(source))))
    _check_labels(source.labels, config.num_classes,
                  f'TFDS data set {config.name!r} split {split!r}')
    if source.image_shape != sets.get('train', source).image_shape:
      raise DataError(
          f'TFDS data set {config.name!r} split {split!r} has images of shape '
          f'{source.image_shape}, but the training images have shape '
          f"{sets['train'].image_shape}; all splits must share one image shape. Check the split "
          'names, or set data.image_size to resize every image to one size.')
    sets[role] = StreamingDataset(source, pixel_scale=pixel_scale, workers=stream_workers,
                                  crop=crop if role == 'train' else None)
  return _streamed_datasets(config, sets, tfds_source.tfds_class_names(config.name, data_dir))


def load_datasets(data_config):
  """Loads the train, validation and test sets described by the `data` config.

  Args:
    data_config: ConfigDict with the fields source ('idx', 'tfds' or 'image_folder'), name, dir,
      train_split, test_split, val_split ('' carves validation data out of the training split),
      val_fraction, seed, num_classes, limit_train and limit_test (0 keeps every example), and
      for photos image_size, color_mode, pixel_scale, strict, cache_dir and decode_workers,
      streaming, memory_budget_mb and streaming_workers for data read from disk, and
      classes and per_class for a small-data subset (`cnnjax.data.subsets`) (meanings in
      `cnnjax.config.base_config`; absent ones take their defaults).

  Returns:
    The Datasets; their images read as float32 pixel values divided by data.pixel_scale. They
    are `ArrayDataset`s, or `StreamingDataset`s for a streamed image folder or TFDS data set.

  Raises:
    ConfigError: A config value is invalid.
    DataError: The data are missing, malformed or inconsistent with the config.
  """
  config = data_config
  _check_source(config)
  num_classes = config.num_classes
  if num_classes < 2:
    raise ConfigError(f'data.num_classes must be at least 2, got {num_classes}.')
  limit_train = _check_limit(config, 'limit_train')
  limit_test = _check_limit(config, 'limit_test')
  pixel_scale = check_pixel_scale(_photo_field(config, 'pixel_scale'))
  if _streams(config):
    if config.source == 'tfds':
      return _stream_tfds(config, pixel_scale)
    return _stream_image_folder(config, pixel_scale)
  if streaming.check_crop(_photo_field(config, 'random_resized_crop')):
    raise ConfigError(
        f'data.random_resized_crop = {tuple(config.random_resized_crop)} crops each photo as it '
        "is decoded, which only streamed data do; set data.streaming = 'true', or () and a "
        "device-side crop (augment.kind = 'torchvision').")
  loader = {'idx': _load_idx, 'tfds': _load_tfds, 'image_folder': _load_image_folder}
  splits, class_names = loader[config.source](config)

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
          'names, or set data.image_size to resize every image to one size.'
      )
  datasets = Datasets(
      train=ArrayDataset.from_uint8(train_images, train_labels, pixel_scale),
      validation=ArrayDataset.from_uint8(val_images, val_labels, pixel_scale),
      test=ArrayDataset.from_uint8(test_images, test_labels, pixel_scale),
      num_classes=num_classes,
      image_shape=image_shape,
      name=config.name,
      class_names=tuple(class_names) if class_names else None,
  )
  # data.classes / data.per_class: a small-data task drawn from the loaded splits.
  return subsets_from_config(datasets, config)
