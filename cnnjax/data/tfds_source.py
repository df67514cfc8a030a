"""TensorFlow Datasets as a data source, read without TensorFlow.

`tfds.data_source` gives random access to a prepared data set (ArrayRecord files) and returns
examples as dicts of NumPy arrays, so neither TensorFlow nor tf.data is needed. `load_tfds_split`
reads the whole split into memory, which suits the small image data sets cnnjax trains on; a
split too large for memory is streamed (`cnnjax.data.streaming.TfdsSource`), which opens it with
`open_split` and converts each example with `example_image`, the function the in-memory path
uses, so both give the same pixels. Photo data sets whose images differ in size (cats_vs_dogs)
are converted and resized as they are read, with the image-folder source's code
(`cnnjax.data.image_folder.convert_array`).

Nothing is downloaded: this project's machines may have no network, so a data set that is not
prepared in the data directory is reported as a DataError instead.
"""

import numpy as np

from cnnjax.data import image_folder
from cnnjax.errors import DataError

# Records read at a time for the labels of a streamed split.
_LABEL_CHUNK = 1024


def _first_line(error):
  # Some TFDS errors (an unknown name) append the list of every data set TFDS knows.
  text = str(error).strip().splitlines()
  return f'{type(error).__name__}: {text[0].rstrip(".") if text else ""}'


def _explain(tfds, name, data_dir, error):
  """Says why `tfds.data_source` failed and what to do; TFDS's own messages can mislead."""
  build = (f'prepare it with `tfds build {name} --file_format=array_record` on a machine with '
           'network access (and TensorFlow), copy the data directory here and set data.dir to '
           "it, or use the IDX source (data.source = 'idx')")
  if isinstance(error, tfds.core.DatasetNotFoundError):
    return f'TFDS knows no data set named {name!r}. Check data.name'
  try:
    prepared = tfds.builder(name, data_dir=data_dir).is_prepared()
  except Exception:  # pylint: disable=broad-except
    # Only a better message is at stake; the original error is chained either way.
    prepared = None
  if prepared is False:
    return ('the data set is not prepared there, and this machine cannot download it. To fix, '
            f'{build}')
  return (f'{_first_line(error)}. Check the split string (data.train_split, data.test_split, '
          'data.val_split). If the data set is not prepared there or not in a random-access '
          f'format, note that this machine cannot download it: {build}')


def load_tfds_split(name, split, data_dir=None, image_key='image', label_key='label', *,
                    image_size=None, color_mode='rgb', workers=0):
  """Reads a split of a prepared TFDS data set into NumPy arrays.

  Args:
    name: TFDS data set name, e.g. 'fashion_mnist' (optionally with a config or version, e.g.
      'mnist:3.0.1').
    split: TFDS split string, slicing included, e.g. 'train', 'train[:90%]', 'train[:2000]'.
    data_dir: TFDS data directory; None or '' means TFDS's default ($TFDS_DATA_DIR or
      ~/tensorflow_datasets).
    image_key: Feature holding the image.
    label_key: Feature holding the integer label.
    image_size: (height, width) to resize every image to (converting it to `color_mode` first),
      as photo data sets of varying sizes need; None or (0, 0) keeps the images as they are,
      which must then all have one shape.
    color_mode: 'rgb' or 'grayscale'; applies only with an image_size.
    workers: Threads resizing images; 0 means one per CPU core.

  Returns:
    (images, labels): uint8 images of shape (N, H, W, C), grayscale (H, W) images getting a
    channel axis, and int32 labels of shape (N,).

  Raises:
    DataError: The data set is not prepared in `data_dir` (or cannot be opened), is empty, lacks
      the features, or holds images that are not uint8 or (without image_size) not all of one
      shape.
    ConfigError: image_size or color_mode is invalid.
  """
  size = image_folder.check_image_size(image_size if image_size is not None else (0, 0))
  if size is not None:
    image_folder.check_color_mode(color_mode)
  source, where = open_split(name, split, data_dir)
  n = len(source)
  first = check_features(source, where, image_key, label_key)
  if size is not None:
    return _read_resized(source, n, where, image_key, label_key, size, color_mode, workers)
  shape = np.shape(first[image_key])
  image_shape = stored_image_shape(shape, where)
  images = np.empty((n,) + shape, np.uint8)
  labels = np.empty((n,), np.int64)
  for i in range(n):
    # ArrayRecord sources also offer __getitems__, but decoding dominates the time and the
    # TFDS test mock does not implement __getitems__.
    example = first if i == 0 else source[i]
    images[i] = example_image(example[image_key], i, where, size=None, color_mode=color_mode,
                              shape=shape)
    labels[i] = example[label_key]
  return images.reshape((n,) + image_shape), labels.astype(np.int32)


def open_split(name, split, data_dir=None, decoders=None):
  """Opens a split of a prepared TFDS data set for random access; downloads nothing.

  Args:
    name, split, data_dir: As `load_tfds_split` takes them.
    decoders: TFDS decoders by feature (`tfds.decode.SkipDecoding()` leaves a feature encoded).

  Returns:
    (the TFDS data source, a phrase naming the data set, split and data directory for messages).

  Raises:
    DataError: The data set is not prepared in `data_dir` or cannot be opened, or the split is
      empty.
  """
  # TFDS takes about a second to import; only this source needs it.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  where = (f'TFDS data set {name!r}, split {split!r}, data_dir '
           f'{data_dir or "default ($TFDS_DATA_DIR or ~/tensorflow_datasets)"}')
  try:
    # download=False: without it TFDS would try to download and prepare the data set here.
    source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False,
                              decoders=decoders)
  except Exception as e:  # pylint: disable=broad-except
    # TFDS signals a missing or unusable data set with many exception types; the original is
    # chained for the details.
    raise DataError(f'Cannot open {where}: {_explain(tfds, name, data_dir or None, e)}.') from e
  if len(source) == 0:
    raise DataError(f'{where} has no examples; check the split string (data.*_split).')
  return source, where


def check_features(source, where, image_key, label_key):
  """Returns the first example of an opened split; raises a DataError if it lacks a feature."""
  first = source[0]
  missing = [k for k in (image_key, label_key) if k not in first]
  if missing:
    raise DataError(
        f'{where} has no feature {missing[0]!r}; its features are {sorted(first)}. Pass the '
        'right image_key / label_key.'
    )
  return first


def stored_image_shape(shape, where):
  """(H, W, C) of images stored with `shape` (H, W) or (H, W, C), used without resizing."""
  if len(shape) == 2:
    return tuple(shape) + (1,)
  if len(shape) != 3:
    raise DataError(
        f'{where} has images of shape {shape}; cnnjax needs (H, W) or (H, W, C) images.'
    )
  return tuple(shape)


def example_image(image, index, where, *, size, color_mode, shape=None):
  """One example's image as the data sets hold it, uint8.

  Args:
    image: The example's image feature.
    index: The example's position in its split, for messages.
    where: The phrase `open_split` returned, for messages.
    size: (height, width) to convert and resize to (`image_folder.convert_array`), or None to
      keep the image as stored.
    color_mode: 'rgb' or 'grayscale'; applies only with a size.
    shape: Without a size: the shape every image must have (the first example's).

  Returns:
    (H, W, C) converted and resized with a size; else the image as stored, of shape `shape`.

  Raises:
    DataError: The image is not uint8, or not of `shape` / not (H, W) or (H, W, C).
  """
  image = np.asarray(image)
  if size is None:
    if image.dtype != np.uint8 or image.shape != tuple(shape):
      raise DataError(
          f'{where}: example {index} has a {image.dtype.name} image of shape {image.shape}, but '
          f'without data.image_size cnnjax needs uint8 images all of one shape (example 0: '
          f'{tuple(shape)}). Set data.image_size = (height, width) to resize every image (photo '
          'data sets such as cats_vs_dogs need it), or choose a data set with fixed-size 8-bit '
          'images.'
      )
    return image
  return converted_image(image, index, where, size, color_mode)


def converted_image(image, index, where, size, color_mode):
  """`image_folder.convert_array` of an example's image (size None: converted, not resized).

  Raises:
    DataError: The image is not uint8 of shape (H, W) or (H, W, C).
  """
  try:
    _check_convertible(np.asarray(image), index)
    return image_folder.convert_array(image, size, color_mode)
  except DataError as e:
    raise DataError(f'{where}: {e}') from e


def _check_convertible(image, index):
  if image.dtype != np.uint8 or image.ndim not in (2, 3):
    raise DataError(
        f'example {index} has a {image.dtype.name} image of shape {image.shape}; cnnjax reads '
        'uint8 images of shape (H, W) or (H, W, C).'
    )


def _read_resized(source, n, where, image_key, label_key, size, color_mode, workers):
  """Reads every example, converting and resizing its image as it comes."""
  labels = np.empty((n,), np.int64)

  def images():
    for i in range(n):
      example = source[i]
      labels[i] = example[label_key]
      image = np.asarray(example[image_key])
      _check_convertible(image, i)
      yield image

  # `example_image`'s check and conversion (`convert_array`), run in threads.
  try:
    resized = image_folder.convert_arrays(images(), n, size, color_mode, workers)
  except DataError as e:
    raise DataError(f'{where}: {e}') from e
  return resized, labels.astype(np.int32)


def read_labels(source, label_key, open_undecoded=None):
  """Reads every label of an opened split, int32 (N,), leaving the images encoded if it can.

  Args:
    source: The split, from `open_split`.
    label_key: The label feature.
    open_undecoded: A function returning the split opened with the image feature left encoded
      (`tfds.decode.SkipDecoding`), so that reading the labels decodes no image; None, or one
      that fails, reads through `source`.
  """
  reader = source
  if open_undecoded is not None:
    try:
      reader = open_undecoded()
      reader[0][label_key]  # pylint: disable=expression-not-assigned
    except Exception:  # pylint: disable=broad-except
      # Only speed is at stake: a feature TFDS cannot skip decoding is decoded.
      reader = source
  n = len(source)
  labels = np.empty((n,), np.int64)
  # ArrayRecord sources read a list of records in parallel; TFDS's test mock reads one at a time.
  read_many = getattr(reader, '__getitems__', None)
  for start in range(0, n, _LABEL_CHUNK):
    keys = list(range(start, min(start + _LABEL_CHUNK, n)))
    examples = read_many(keys) if read_many is not None else [reader[i] for i in keys]
    labels[start:start + len(keys)] = [example[label_key] for example in examples]
  return labels.astype(np.int32)  # As `load_tfds_split` converts them.


def tfds_class_names(name, data_dir=None, label_key='label'):
  """Returns the label names of a TFDS data set's ClassLabel feature, or None if it has none."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  try:
    feature = tfds.builder(name, data_dir=data_dir or None).info.features[label_key]
    names = getattr(feature, 'names', None)
  except Exception:  # pylint: disable=broad-except
    # The names are a convenience; a data set without them (or its metadata) still loads.
    return None
  return tuple(names) if names else None
