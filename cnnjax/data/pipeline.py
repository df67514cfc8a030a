"""In-memory data sets, the validation carve, batching and host-side prefetching.

The data sets cnnjax trains on (MNIST, Fashion-MNIST, the small cats-vs-dogs subsets) fit in host
memory, so a data set is just two NumPy arrays; images from 8-bit files stay uint8 until a batch
is built, a quarter of the memory of float32. Batches are NumPy dicts; the training loop moves
them to the device. Every epoch's order is a pure function of (seed, epoch), so a run resumed from a
checkpoint sees exactly the batches an uninterrupted run would have seen.
"""

import queue
import threading

import numpy as np

from cnnjax.errors import ConfigError, DataError


class ArrayDataset:
  """A labelled image data set held in host memory.

  The images are stored in one of two forms:

  - float32 (`ArrayDataset(images, labels)`): used as they are;
  - uint8 pixels with a `pixel_scale` (`ArrayDataset.from_uint8`): a quarter of the memory, and
    converted to float32 one batch at a time by `batches` (and `take`), dividing by
    `pixel_scale`. Division rather than multiplication by its inverse maps 255 / 255 to exactly
    1.0, so the values are the ones a float32 copy divided up front would hold.

  Attributes:
    images: float32 array of shape (N, H, W, C). For a uint8 data set this converts the whole set
      on every access (a new array each time); use `take` for a few examples.
    labels: int32 array of shape (N,).
    pixel_scale: What the stored uint8 pixels are divided by, or None for float32 storage.
    stored_images: The images as stored: uint8 pixels or float32 images.
    image_shape: (H, W, C) of every image.
  """

  __slots__ = ('_stored', '_labels', '_pixel_scale')

  def __init__(self, images, labels, *, pixel_scale=None):
    """Checks and holds the arrays.

    Args:
      images: float32 images (pixel_scale None), or uint8 pixels with a pixel_scale, of shape
        (N, H, W, C).
      labels: int32 array of shape (N,).
      pixel_scale: For uint8 pixels: the positive number they are divided by when converted to
        float32 (255 gives [0, 1], 1 keeps 0..255).

    Raises:
      DataError: The arrays have the wrong dtype or shape, or differ in length.
      ConfigError: pixel_scale is not a positive number.
    """
    if pixel_scale is None:
      # (N, H, W, C) images, or cached features of another rank (a ResNet's pooled (N, C)).
      if images.ndim < 2 or images.dtype != np.float32:
        raise DataError(
            f'ArrayDataset images must be float32 of shape (N, H, W, C) (features: (N, ...)), '
            f'got {images.dtype.name} of shape {images.shape}; use ArrayDataset.from_uint8 for '
            'uint8 images.'
        )
    else:
      if images.ndim != 4 or images.dtype != np.uint8:
        raise DataError(
            f'ArrayDataset with a pixel_scale holds uint8 pixels of shape (N, H, W, C), got '
            f'{images.dtype.name} of shape {images.shape}; pass float32 images without '
            'pixel_scale.'
        )
      pixel_scale = check_pixel_scale(pixel_scale)
    if labels.ndim != 1 or labels.dtype != np.int32:
      raise DataError(
          f'ArrayDataset labels must be int32 of shape (N,), got {labels.dtype.name} of '
          f'shape {labels.shape}.'
      )
    if len(images) != len(labels):
      raise DataError(
          f'ArrayDataset has {len(images)} images but {len(labels)} labels; they must '
          'describe the same examples.'
      )
    self._stored = images
    self._labels = labels
    self._pixel_scale = pixel_scale

  def __len__(self):
    return len(self._labels)

  def __repr__(self):
    form = 'float32' if self._pixel_scale is None else f'uint8 / {self._pixel_scale:g}'
    return f'ArrayDataset({len(self)} images of {self.image_shape}, {form})'

  @property
  def labels(self):
    return self._labels

  @property
  def pixel_scale(self):
    return self._pixel_scale

  @property
  def stored_images(self):
    return self._stored

  @property
  def image_shape(self):
    return tuple(int(d) for d in self._stored.shape[1:])

  @property
  def images(self):
    if self._pixel_scale is None:
      return self._stored
    return self.take(slice(None))

  def take(self, indices):
    """Returns the float32 images at `indices` (an index array or a slice)."""
    out = np.empty((len(self._labels[indices]),) + self._stored.shape[1:], np.float32)
    self.fill(out, indices)
    return out

  def fill(self, out, indices):
    """Writes the float32 images at `indices` into `out` (float32, one row per index)."""
    out[...] = self._stored[indices]
    if self._pixel_scale is not None:
      out /= np.float32(self._pixel_scale)

  @classmethod
  def from_uint8(cls, images, labels, pixel_scale=255.0):
    """Builds a data set that keeps uint8 pixels and divides them by `pixel_scale` per batch.

    Args:
      images: uint8 array of shape (N, H, W, C).
      labels: Integer array of shape (N,).
      pixel_scale: The pixels are divided by it: 255 (the default) gives [0, 1], 1 keeps 0..255.

    Returns:
      An ArrayDataset with uint8 storage and int32 labels; `images` reads as float32.
    """
    if images.dtype != np.uint8:
      raise DataError(f'from_uint8 needs uint8 images, got {images.dtype.name}.')
    return cls(images, np.asarray(labels, dtype=np.int32), pixel_scale=pixel_scale)


def check_pixel_scale(pixel_scale):
  """Returns `pixel_scale` as a float; raises ConfigError unless it is a positive number."""
  try:
    value = float(pixel_scale)
  except (TypeError, ValueError):
    value = float('nan')
  if not np.isfinite(value) or value <= 0:
    raise ConfigError(
        f'The pixel scale (data.pixel_scale) must be a positive number, got {pixel_scale!r}; '
        'use 255 for images in [0, 1] or 1 to keep 0..255.'
    )
  return value


def split_validation(images, labels, *, fraction=None, size=None, seed):
  """Carves a validation set out of training data, the same way for the same seed.

  Args:
    images: Array of shape (N, ...).
    labels: Array of shape (N,).
    fraction: Share of the examples to hold out, in (0, 1); the count is rounded to nearest.
    size: Number of examples to hold out. Give exactly one of `fraction` and `size`.
    seed: Seed of the permutation that picks the held-out examples.

  Returns:
    ((train_images, train_labels), (val_images, val_labels)); each part keeps the examples'
    original relative order and their dtypes.

  Raises:
    ConfigError: Not exactly one of `fraction` and `size` is given, `fraction` is not in
      (0, 1), or the split would leave no training or no validation example.
  """
  if (fraction is None) == (size is None):
    raise ConfigError(
        f'split_validation needs exactly one of fraction and size, got fraction={fraction!r}, '
        f'size={size!r}.'
    )
  n = len(labels)
  if len(images) != n:
    raise DataError(f'split_validation got {len(images)} images but {n} labels.')
  if fraction is not None:
    if not 0 < fraction < 1:
      raise ConfigError(
          f'The validation fraction (data.val_fraction) must be in (0, 1), got {fraction!r}.'
      )
    size = int(round(fraction * n))
    what = f'fraction {fraction!r}'
  else:
    what = f'size {size!r}'
  if not 0 < size < n:
    raise ConfigError(
        f'A validation {what} of {n} examples leaves {size} for validation and {n - size} for '
        'training; both need at least one. Choose a fraction (data.val_fraction) or size in '
        'between, or use more examples (data.limit_train).'
    )
  perm = np.random.default_rng(seed).permutation(n)
  val_idx, train_idx = np.sort(perm[:size]), np.sort(perm[size:])
  return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])


def num_batches(n, batch_size, drop_remainder):
  """Returns how many batches `batches` yields for `n` examples.

  Raises:
    ConfigError: `batch_size` is below 1, or `drop_remainder` leaves no batch at all.
  """
  if batch_size < 1:
    raise ConfigError(f'Batch size must be at least 1, got {batch_size}; '
                      'check train.batch_size and train.eval_batch_size.')
  if drop_remainder:
    if n < batch_size:
      raise ConfigError(
          f'A data set of {n} examples has no full batch of {batch_size}, so dropping the '
          'partial batch leaves none. Lower train.batch_size or use more examples (data.limit_*).'
      )
    return n // batch_size
  return -(-n // batch_size)


def batches(dataset, batch_size, *, shuffle=False, seed=0, epoch=0, drop_remainder=False,
            first_batch=0):
  """Iterates over one epoch of a data set in batches.

  Every batch has exactly `batch_size` rows, so a jitted step compiles once: without
  `drop_remainder` the last partial batch is padded with zero rows whose mask is 0; with it the
  partial batch is skipped.

  Args:
    dataset: The ArrayDataset to iterate over.
    batch_size: Rows per batch.
    shuffle: Whether to visit the examples in a random order.
    seed: Seed of the shuffle; with `epoch` it fully determines the order.
    epoch: Epoch number; each epoch gets its own order.
    drop_remainder: Whether to skip the last partial batch instead of padding it.
    first_batch: Start at this batch of the epoch's order (a run resumed within an epoch):
      the batches after it are the ones an iteration from the start would give.

  Returns:
    An iterator of dicts with 'image' (float32, (B, H, W, C)), 'label' (int32, (B,)) and 'mask'
    (float32, (B,): 1 for real rows, 0 for padding).

  Raises:
    ConfigError: `batch_size` is below 1, or `drop_remainder` leaves no batch at all. Raised
      at the call, not at the first `next`.
  """
  n = len(dataset)
  count = num_batches(n, batch_size, drop_remainder)
  if shuffle:
    # Seeding with (seed, epoch) alone, not with state carried between epochs, is what lets a
    # resumed run reproduce the order of an uninterrupted one.
    order = np.random.default_rng([seed, epoch]).permutation(n)
  else:
    order = np.arange(n)
  if not 0 <= first_batch <= count:
    raise ConfigError(f'first_batch={first_batch} is outside the epoch\'s {count} batches')
  return _batch_iterator(dataset, batch_size, order, count, first_batch)


def _batch_iterator(dataset, batch_size, order, count, first_batch=0):
  for start in range(first_batch * batch_size, count * batch_size, batch_size):
    idx = order[start:start + batch_size]
    real = len(idx)
    image = np.zeros((batch_size,) + dataset.image_shape, np.float32)
    label = np.zeros((batch_size,), np.int32)
    mask = np.zeros((batch_size,), np.float32)
    dataset.fill(image[:real], idx)
    label[:real] = dataset.labels[idx]
    mask[:real] = 1.0
    yield {'image': image, 'label': label, 'mask': mask}


class _Raised:
  """Carries an exception from the producer thread to the consumer."""

  def __init__(self, error):
    self.error = error


_END = object()


def _produce(iterator, out, stop):
  """Runs in the background thread; takes no reference to the Prefetch so it can be collected."""

  def put(item):
    # Short timeouts so a producer blocked on a full queue notices that the consumer left.
    while not stop.is_set():
      try:
        out.put(item, timeout=0.05)
        return True
      except queue.Full:
        pass
    return False

  try:
    for item in iterator:
      if not put(item):
        return
  except BaseException as e:  # pylint: disable=broad-except
    put(_Raised(e))
  else:
    put(_END)


class Prefetch:
  """Runs an iterator ahead in a background thread, holding at most `size` items.

  This overlaps host-side batch assembly with the device step. An exception raised by the
  wrapped iterator is re-raised by `next`. If the consumer stops early, `close` (also called by
  `with`, and when the object is garbage-collected) stops the thread.
  """

  def __init__(self, iterator, size=2):
    if size < 1:
      raise ConfigError(f'Prefetch size must be at least 1, got {size}.')
    self._queue = queue.Queue(maxsize=size)
    self._stop = threading.Event()
    self._finished = False
    self._thread = threading.Thread(
        target=_produce, args=(iter(iterator), self._queue, self._stop), daemon=True)
    self._thread.start()

  def __iter__(self):
    return self

  def __next__(self):
    if self._finished:
      raise StopIteration
    item = self._queue.get()
    if item is _END:
      self._finished = True
      raise StopIteration
    if isinstance(item, _Raised):
      self._finished = True
      raise item.error
    return item

  def close(self):
    """Stops the background thread; further `next` calls raise StopIteration."""
    self._finished = True
    self._stop.set()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()

  def __del__(self):
    # __init__ may have failed before the event existed.
    if hasattr(self, '_stop'):
      self.close()


def prefetch(iterator, size=2):
  """Returns a `Prefetch` running `iterator` ahead by up to `size` items."""
  return Prefetch(iterator, size)
