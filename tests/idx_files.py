"""Writes small IDX files (the MNIST file format) for the data tests."""

import gzip
import os

import numpy as np

# Element type -> IDX type code.
TYPE_CODES = {
    np.dtype('u1'): 0x08,
    np.dtype('i1'): 0x09,
    np.dtype('i2'): 0x0B,
    np.dtype('i4'): 0x0C,
    np.dtype('f4'): 0x0D,
    np.dtype('f8'): 0x0E,
}


def idx_bytes(array):
  """Returns the uncompressed IDX encoding of `array`."""
  array = np.asarray(array)
  native = array.dtype.newbyteorder('=')
  header = bytes([0, 0, TYPE_CODES[native], array.ndim])
  header += np.asarray(array.shape, dtype='>u4').tobytes()
  return header + array.astype(native.newbyteorder('>')).tobytes()


def write_idx(path, array, *, gzipped=False):
  """Writes `array` to `path` as an IDX file, gzipped if asked, whatever the file's name."""
  data = idx_bytes(array)
  with open(path, 'wb') as f:
    f.write(gzip.compress(data) if gzipped else data)
  return os.fspath(path)


def make_split(n, *, height=4, width=5, num_classes=10, seed=0):
  """Returns random uint8 images (n, height, width) and uint8 labels in [0, num_classes)."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, size=(n, height, width), dtype=np.uint8)
  labels = rng.integers(0, num_classes, size=(n,), dtype=np.uint8)
  return images, labels


def write_idx_dir(directory, *, n_train=50, n_test=20, gzipped=True, **kwargs):
  """Writes the four MNIST-style IDX files into `directory`.

  Returns:
    {'train': (images, labels), 'test': (images, labels)}, the arrays written.
  """
  os.makedirs(directory, exist_ok=True)
  suffix = '.gz' if gzipped else ''
  written = {}
  for split, prefix, n, seed in (('train', 'train', n_train, 1), ('test', 't10k', n_test, 2)):
    images, labels = make_split(n, seed=seed, **kwargs)
    write_idx(os.path.join(directory, f'{prefix}-images-idx3-ubyte{suffix}'), images,
              gzipped=gzipped)
    write_idx(os.path.join(directory, f'{prefix}-labels-idx1-ubyte{suffix}'), labels,
              gzipped=gzipped)
    written[split] = (images, labels)
  return written
