"""TensorFlow Datasets as a data source, read without TensorFlow.

`tfds.data_source` gives random access to a prepared data set (ArrayRecord files) and returns
examples as dicts of NumPy arrays, so neither TensorFlow nor tf.data is needed. The whole split
is read into memory, which suits the small image data sets cnnjax trains on.

Nothing is downloaded: this project's machines may have no network, so a data set that is not
prepared in the data directory is reported as a DataError instead.
"""

import numpy as np

from cnnjax.errors import DataError


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


def load_tfds_split(name, split, data_dir=None, image_key='image', label_key='label'):
  """Reads a split of a prepared TFDS data set into NumPy arrays.

  Args:
    name: TFDS data set name, e.g. 'fashion_mnist' (optionally with a config or version, e.g.
      'mnist:3.0.1').
    split: TFDS split string, slicing included, e.g. 'train', 'train[:90%]'.
    data_dir: TFDS data directory; None or '' means TFDS's default ($TFDS_DATA_DIR or
      ~/tensorflow_datasets).
    image_key: Feature holding the image.
    label_key: Feature holding the integer label.

  Returns:
    (images, labels): uint8 images of shape (N, H, W, C), grayscale (H, W) images getting a
    channel axis, and int32 labels of shape (N,).

  Raises:
    DataError: The data set is not prepared in `data_dir` (or cannot be opened), is empty, lacks
      the features, or holds images that are not uint8 or not all of one shape.
  """
  # TFDS takes about a second to import; only this source needs it.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  where = (f'TFDS data set {name!r}, split {split!r}, data_dir '
           f'{data_dir or "default ($TFDS_DATA_DIR or ~/tensorflow_datasets)"}')
  try:
    # download=False: without it TFDS would try to download and prepare the data set here.
    source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
  except Exception as e:  # pylint: disable=broad-except
    # TFDS signals a missing or unusable data set with many exception types; the original is
    # chained for the details.
    raise DataError(f'Cannot open {where}: {_explain(tfds, name, data_dir or None, e)}.') from e

  n = len(source)
  if n == 0:
    raise DataError(f'{where} has no examples; check the split string (data.*_split).')
  first = source[0]
  missing = [k for k in (image_key, label_key) if k not in first]
  if missing:
    raise DataError(
        f'{where} has no feature {missing[0]!r}; its features are {sorted(first)}. Pass the '
        'right image_key / label_key.'
    )
  shape = np.shape(first[image_key])
  images = np.empty((n,) + shape, np.uint8)
  labels = np.empty((n,), np.int64)
  for i in range(n):
    # ArrayRecord sources also offer __getitems__, but decoding dominates the time and the
    # TFDS test mock does not implement __getitems__.
    example = first if i == 0 else source[i]
    image = np.asarray(example[image_key])
    if image.dtype != np.uint8 or image.shape != shape:
      raise DataError(
          f'{where}: example {i} has a {image.dtype.name} image of shape {image.shape}, but '
          f'cnnjax needs uint8 images all of one shape (example 0: {shape}). Choose a data set '
          'or config with fixed-size 8-bit images.'
      )
    images[i] = image
    labels[i] = example[label_key]
  if images.ndim == 3:
    images = images[..., np.newaxis]
  elif images.ndim != 4:
    raise DataError(
        f'{where} has images of shape {shape}; cnnjax needs (H, W) or (H, W, C) images.'
    )
  return images, labels.astype(np.int32)
