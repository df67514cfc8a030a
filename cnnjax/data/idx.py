"""Reader for IDX files, the format MNIST and Fashion-MNIST are distributed in.

An IDX file is a tiny header (two zero bytes, a type code, the number of dimensions, then each
dimension as a big-endian uint32) followed by the array's values, big-endian, in C order. The
files are often gzipped; gzip is recognised by its magic bytes, not by the file name, so a
decompressed file that kept its `.gz` name (or the reverse) still reads.

`load_idx_split` reads the image and label files of one split from a directory laid out like the
MNIST / Fashion-MNIST downloads (and the Debian package `dataset-fashion-mnist`).
"""

import gzip
import os
import zlib

import numpy as np

from cnnjax.errors import ConfigError, DataError

# Environment variable naming a directory with the four IDX files; read by `cnnjax.data`.
DATA_DIR_ENV = 'CNNJAX_DATA_DIR'
# Where the Debian package `dataset-fashion-mnist` installs the files.
FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'

# Type code -> big-endian dtype, as defined by the IDX format.
_DTYPES = {
    0x08: np.dtype('u1'),
    0x09: np.dtype('i1'),
    0x0B: np.dtype('>i2'),
    0x0C: np.dtype('>i4'),
    0x0D: np.dtype('>f4'),
    0x0E: np.dtype('>f8'),
}
_GZIP_MAGIC = b'\x1f\x8b'
# File name prefix of each split, as in the MNIST and Fashion-MNIST downloads.
_SPLIT_PREFIXES = {'train': 'train', 'test': 't10k'}

GET_DATA_HINT = (
    'To get Fashion-MNIST, run `apt-get install dataset-fashion-mnist` (Debian package; it '
    f'installs the files to {FASHION_MNIST_DIR}), or point data.dir (config field) or the '
    f'environment variable {DATA_DIR_ENV} at a directory holding the four IDX files '
    'train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and '
    't10k-labels-idx1-ubyte (each optionally gzipped with a .gz suffix). MNIST uses the same '
    'file names, so the same directory layout serves it.'
)


def _type_codes():
  return ', '.join(f'0x{code:02X}' for code in _DTYPES)


def _read_bytes(path):
  """Returns the file's contents, decompressed when it is gzipped."""
  if not os.path.exists(path):
    raise DataError(f'IDX file {path} does not exist. {GET_DATA_HINT}')
  if not os.path.isfile(path):
    raise DataError(f'{path} is not a regular file; expected an IDX file there. {GET_DATA_HINT}')
  with open(path, 'rb') as f:
    raw = f.read()
  if not raw.startswith(_GZIP_MAGIC):
    return raw
  try:
    return gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(
        f'{path} starts like a gzip file (bytes 1f 8b) but cannot be decompressed ({e}); it is '
        'probably truncated or corrupt. Download it again, or replace it with the '
        'uncompressed IDX file.'
    ) from e


def read_idx(path):
  """Reads an IDX file, gzipped or not.

  Args:
    path: Path of the file (str or os.PathLike).

  Returns:
    A NumPy array with the shape and element type given in the file's header, in native byte
    order.

  Raises:
    DataError: The file is missing, is not an IDX file, is truncated or has bytes after the
      data, or is a gzip file that cannot be decompressed.
  """
  path = os.fspath(path)
  data = _read_bytes(path)
  if len(data) < 4:
    raise DataError(
        f'{path} is truncated: it has {len(data)} bytes, but the IDX header alone needs 4. '
        'Download the file again.'
    )
  type_code, ndim = data[2], data[3]
  if data[:2] != b'\x00\x00' or type_code not in _DTYPES:
    raise DataError(
        f'{path} does not start with an IDX magic number: found 0x{data[:4].hex().upper()}, '
        f'expected two zero bytes, a type code (one of {_type_codes()}) and the number of '
        'dimensions, e.g. 0x00000803 for uint8 images. Is this an IDX file? If it is an image '
        'or archive of another format, convert it or use another data source.'
    )
  header_size = 4 + 4 * ndim
  if len(data) < header_size:
    raise DataError(
        f'{path} is truncated: its header declares {ndim} dimensions and so needs '
        f'{header_size} bytes, but the file has {len(data)}. Download the file again.'
    )
  shape = tuple(int(d) for d in np.frombuffer(data, dtype='>u4', count=ndim, offset=4))
  dtype = _DTYPES[type_code]
  count = int(np.prod(shape, dtype=np.int64))
  expected = header_size + count * dtype.itemsize
  if len(data) != expected:
    problem = 'is truncated' if len(data) < expected else 'has extra bytes after the data'
    raise DataError(
        f'{path} {problem}: the header declares shape {shape} of {dtype.name} values, so the '
        f'file should have {expected} bytes (uncompressed), but it has {len(data)}. '
        'Download the file again.'
    )
  array = np.frombuffer(data, dtype=dtype, count=count, offset=header_size).reshape(shape)
  # frombuffer gives a read-only, possibly big-endian view; callers want an ordinary array.
  return array.astype(dtype.newbyteorder('='))


def find_idx_split_files(directory, split):
  """Returns the paths of a split's image and label files in `directory`.

  Each file may be gzipped (`.gz` suffix) or not; the uncompressed one wins if both exist.

  Args:
    directory: Directory holding the IDX files.
    split: 'train' or 'test'.

  Returns:
    (images_path, labels_path).

  Raises:
    ConfigError: `split` is neither 'train' nor 'test'.
    DataError: The directory or one of the files is missing.
  """
  if split not in _SPLIT_PREFIXES:
    raise ConfigError(
        f'The IDX source has only the splits {sorted(_SPLIT_PREFIXES)}, got {split!r}. Set '
        'data.train_split / data.test_split to one of them (to hold out validation data, use '
        'data.val_fraction).'
    )
  directory = os.fspath(directory)
  if not os.path.isdir(directory):
    raise DataError(f'Data directory {directory} does not exist. {GET_DATA_HINT}')
  prefix = _SPLIT_PREFIXES[split]
  paths = []
  for base in (f'{prefix}-images-idx3-ubyte', f'{prefix}-labels-idx1-ubyte'):
    candidates = [os.path.join(directory, base), os.path.join(directory, base + '.gz')]
    found = [c for c in candidates if os.path.isfile(c)]
    if not found:
      raise DataError(
          f'The {split} split is incomplete: neither {candidates[0]} nor {candidates[1]} '
          f'exists. {GET_DATA_HINT}'
      )
    paths.append(found[0])
  return tuple(paths)


def load_idx_split(directory, split):
  """Reads one split of an MNIST-style data set from IDX files.

  Args:
    directory: Directory holding `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
      `t10k-images-idx3-ubyte[.gz]` and `t10k-labels-idx1-ubyte[.gz]`.
    split: 'train' or 'test' (the latter reads the `t10k-` files).

  Returns:
    (images, labels): uint8 images of shape (N, H, W, 1) and int32 labels of shape (N,).

  Raises:
    ConfigError: `split` is neither 'train' nor 'test'.
    DataError: A file is missing or malformed, or the files disagree on the number of examples.
  """
  images_path, labels_path = find_idx_split_files(directory, split)
  images = read_idx(images_path)
  labels = read_idx(labels_path)
  if images.ndim != 3 or images.dtype != np.uint8:
    raise DataError(
        f'{images_path} holds a {images.dtype.name} array of shape {images.shape}, but images '
        'must be uint8 of shape (N, H, W). Check that the image and label files are not swapped '
        'and that the file is an MNIST-style image file.'
    )
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise DataError(
        f'{labels_path} holds a {labels.dtype.name} array of shape {labels.shape}, but labels '
        'must be integers of shape (N,). Check that the image and label files are not swapped '
        'and that the file is an MNIST-style label file.'
    )
  if len(images) != len(labels):
    raise DataError(
        f'{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} '
        'labels; the two files must describe the same examples. Replace the mismatched file '
        '(e.g. a train file mixed up with a t10k file, or a partial download).'
    )
  return images[..., np.newaxis], labels.astype(np.int32)
