"""Data sets read from disk batch by batch, for data that do not fit in host memory.

A `StreamingDataset` holds the list of its examples, not their pixels, and reads each example
when a batch needs it, by grain (the JAX ecosystem's data loader) in worker processes. Its source
is one of:

- `FolderSource`: an image folder's files, listed once (with `cnnjax.data.image_folder`'s
  listing) and decoded, converted and resized with `image_folder`'s own functions;
- `TfdsSource`: a split of a prepared TFDS data set, read by random access through
  `tfds.data_source` (ArrayRecord files, no TensorFlow); its labels are read once, its images
  converted and resized with `tfds_source.example_image`, the in-memory TFDS path's function.

Either way a streamed image is bit for bit the image the in-memory path holds, and a streamed data
set gives the batches `pipeline.batches` gives for the in-memory one:

- the order of an epoch is the same permutation of (seed, epoch) `pipeline.batches` draws, fed to
  grain as a list of indices rather than drawn by grain's own shuffle (which draws another
  order); each worker decodes whole batches of that list and grain hands them back in the list's
  order, so the batches do not depend on the number of workers;
- each process reads only its rows of each global batch: process i of n takes rows
  [i*B/n, (i+1)*B/n) (`host_rows`), the rows `cnnjax.data.batches` cuts out of an in-memory
  batch;
- a resumed run starts the epoch's list at batch k (`first_batch`). The order is a pure function
  of (seed, epoch), so the position `checkpointing.Position` already stores (epoch, steps done)
  is the whole iterator state; grain's own iterator state is not needed.

Training batches may take torchvision's RandomResizedCrop as each photo is decoded, from the
full-size photo before the resize (`StreamingDataset(crop=...)`, data.random_resized_crop): each
example's crop is drawn from a generator seeded by (seed, epoch, example), so it too does not
depend on the workers. Batches that are not shuffled (evaluation) are never cropped.

Bad files, as the in-memory path handles them: when the files are listed, each file's header is
read (cheap: Pillow reads a few bytes), and a file that cannot be read, is empty or is not an
image is skipped with the same ImageFolderWarning (or, with `strict`, the same DataError) that
lists every such file and why; the remaining files keep their labels. A file whose header reads
but whose pixels do not decode (a truncated JPEG) can only be found when a batch reads it: its
row is then padding (mask 0, so it counts toward neither loss nor metrics, and is never given a
wrong label) and a warning names it at the end of the epoch; with `strict` it is a DataError.
Only with such files do the streamed batches differ from the in-memory ones. A TFDS example whose
image cannot be converted is a DataError, as it is in memory.

Each call of `batches` starts its own grain workers (spawned processes that import cnnjax.data and
grain: about 2-3 seconds on a 2-core machine, once per epoch and per evaluation), a cost that only
matters for small data sets, which the in-memory path serves anyway. At exit, Python's resource
tracker may warn about a few shared-memory blocks of grain's last batches; they are freed then,
and they do not accumulate over epochs.
"""

import concurrent.futures
import dataclasses
import io
import os
import re
import signal

from absl import flags
import numpy as np
from PIL import Image

from cnnjax.data import image_folder
from cnnjax.data import tfds_source
from cnnjax.data.pipeline import num_batches
from cnnjax.errors import ConfigError, DataError
from cnnjax.progress import Progress


@dataclasses.dataclass(frozen=True)
class FolderSource:
  """Random access to the listed files of an image-folder split (picklable, for grain's workers).

  Attributes:
    directory: The split directory.
    files: Each example's path relative to `directory` ('/' separated).
    labels: int32 array (N,): each example's class index.
    size: (height, width) every image is resized to.
    color_mode: 'rgb' or 'grayscale'.
  """

  directory: str
  files: tuple
  labels: np.ndarray
  size: tuple
  color_mode: str

  # A file whose pixels do not decode when read becomes a padding row (mask 0), named in a warning.
  skips_failures = True

  def __len__(self):
    return len(self.files)

  @property
  def image_shape(self):
    return (int(self.size[0]), int(self.size[1]), image_folder.COLOR_MODES[self.color_mode][1])

  @property
  def where(self):
    return self.directory

  def subset(self, indices):
    """The source of the examples at `indices`."""
    return dataclasses.replace(self, files=tuple(self.files[i] for i in indices),
                               labels=self.labels[indices])

  def load(self, index):
    """Returns example `index` as (uint8 image (H, W, C), label); raises if it cannot decode."""
    path = os.path.join(self.directory, self.files[index])
    # pylint: disable=protected-access
    return image_folder._decode_file(path, self.size, self.color_mode), self.labels[index]

  def load_cropped(self, index, rng, crop):
    """Example `index` through a random resized crop drawn from `rng` (`random_resized_crop`)."""
    # pylint: disable=protected-access
    path = os.path.join(self.directory, self.files[index])
    data = image_folder._read_bytes(path)
    if not data:
      raise image_folder._Unreadable('the file is empty (0 bytes)')
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      return cropped(image, rng, crop, self.size, self.color_mode), self.labels[index]

  def describe(self, index):
    return os.path.join(self.directory, self.files[index])


def cropped(image, rng, crop, size, color_mode):
  """A Pillow image in `color_mode`, a random resized crop of it drawn from `rng`, resized to
  `size`: uint8 (H, W, C)."""
  # pylint: disable=protected-access
  pil_mode, channels = image_folder.COLOR_MODES[color_mode]
  image = image_folder._to_mode(image, pil_mode)
  top, left, height, width = random_resized_crop(rng, image.height, image.width, *crop)
  image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR,
                       box=(left, top, left + width, top + height))
  return np.asarray(image, dtype=np.uint8).reshape(size[0], size[1], channels)


@dataclasses.dataclass(frozen=True)
class TfdsSource:
  """Random access to a split of a prepared TFDS data set (picklable, for grain's workers).

  Each process opens the split itself (`tfds.data_source`) the first time it reads an example.

  Attributes:
    name: TFDS data set name (data.name).
    split: TFDS split string, slicing included (data.*_split).
    data_dir: TFDS data directory; None for TFDS's default.
    image_key, label_key: The image and label features.
    indices: int64 array (N,): each example's position in the split.
    labels: int32 array (N,): each example's label.
    size: (height, width) every image is converted and resized to, or None to keep the images
      as stored (then all of `stored_shape`).
    color_mode: 'rgb' or 'grayscale'; applies only with a size.
    stored_shape: Without a size: the shape every stored image has (the split's first).
    image_shape: (H, W, C) of every image as read.
  """

  name: str
  split: str
  data_dir: str | None
  image_key: str
  label_key: str
  indices: np.ndarray
  labels: np.ndarray
  size: tuple | None
  color_mode: str
  stored_shape: tuple | None
  image_shape: tuple

  # A bad example is a DataError, as in `tfds_source.load_tfds_split`: a data set's records are
  # not files a user can delete.
  skips_failures = False

  @classmethod
  def open(cls, name, split, data_dir=None, image_key='image', label_key='label', *,
           image_size=None, color_mode='rgb'):
    """Opens a split and reads its labels (not its images).

    Args as `tfds_source.load_tfds_split` takes them.

    Raises:
      DataError: As `load_tfds_split`: the split cannot be opened, is empty or lacks a feature.
      ConfigError: image_size or color_mode is invalid.
    """
    size = image_folder.check_image_size(image_size if image_size is not None else (0, 0))
    if size is not None:
      image_folder.check_color_mode(color_mode)
    reader, where = tfds_source.open_split(name, split, data_dir)
    first = tfds_source.check_features(reader, where, image_key, label_key)

    def open_undecoded():
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
      return tfds_source.open_split(name, split, data_dir,
                                    decoders={image_key: tfds.decode.SkipDecoding()})[0]

    labels = tfds_source.read_labels(reader, label_key, open_undecoded)
    if size is None:
      stored_shape = tuple(np.shape(first[image_key]))
      image_shape = tfds_source.stored_image_shape(stored_shape, where)
    else:
      stored_shape = None
      image_shape = (size[0], size[1], image_folder.COLOR_MODES[color_mode][1])
    return cls(name=name, split=split, data_dir=data_dir or None, image_key=image_key,
               label_key=label_key, indices=np.arange(len(labels), dtype=np.int64),
               labels=labels, size=size, color_mode=color_mode, stored_shape=stored_shape,
               image_shape=image_shape)

  def __len__(self):
    return len(self.indices)

  def __getstate__(self):
    # The opened split stays behind: each worker opens its own.
    state = dict(self.__dict__)
    state.pop('_reader', None)
    return state

  @property
  def where(self):
    return (f'TFDS data set {self.name!r}, split {self.split!r}, data_dir '
            f'{self.data_dir or "default ($TFDS_DATA_DIR or ~/tensorflow_datasets)"}')

  def _example(self, index):
    reader = self.__dict__.get('_reader')
    if reader is None:
      reader = tfds_source.open_split(self.name, self.split, self.data_dir)[0]
      self.__dict__['_reader'] = reader  # A cache, not a field: frozen stays frozen.
    return reader[int(self.indices[index])]

  def load(self, index):
    """Returns example `index` as (uint8 image (H, W, C), label); raises if it cannot convert."""
    image = tfds_source.example_image(
        self._example(index)[self.image_key], int(self.indices[index]), self.where,
        size=self.size, color_mode=self.color_mode, shape=self.stored_shape)
    return image.reshape(self.image_shape), self.labels[index]

  def load_cropped(self, index, rng, crop):
    """Example `index` through a random resized crop drawn from `rng` (`random_resized_crop`)."""
    # Converted to the color mode first, at full size (`cropped` would convert it the same way).
    image = tfds_source.converted_image(self._example(index)[self.image_key],
                                        int(self.indices[index]), self.where, None,
                                        self.color_mode)
    image = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    return cropped(image, rng, crop, self.size, self.color_mode), self.labels[index]

  def describe(self, index):
    return f'example {int(self.indices[index])} of {self.where}'

  def failure(self, index):
    """The DataError of example `index`, which failed to read in a worker."""
    try:
      self.load(index)
    except DataError as e:
      return e
    except Exception as e:  # pylint: disable=broad-except
      return DataError(f'Cannot read {self.describe(index)}: {type(e).__name__}: {e}')
    return DataError(f'Cannot read {self.describe(index)} in a grain worker process (it reads in '
                     "this one); set data.streaming_workers = 0 to read in the training process.")

  def subset(self, indices):
    """The source of the examples at `indices`."""
    return dataclasses.replace(self, indices=self.indices[indices], labels=self.labels[indices])


def check_crop(crop, field='data.random_resized_crop'):
  """Returns ((scale low, high), (ratio low, high)) of a crop setting, or None for () (off).

  Raises:
    ConfigError: `crop` is not () or four numbers 0 < scale low <= high <= 1, 0 < ratio low <=
      high.
  """
  if not crop:
    return None
  try:
    low, high, ratio_low, ratio_high = (float(v) for v in crop)
    valid = 0 < low <= high <= 1 and 0 < ratio_low <= ratio_high
  except (TypeError, ValueError):
    valid = False
  if not valid:
    raise ConfigError(
        f'{field} must be () (no crop) or (scale low, scale high, ratio low, ratio high) with '
        f'0 < low <= high <= 1 and 0 < ratio low <= ratio high, e.g. (0.08, 1.0, 0.75, 1.333) as '
        f'torchvision\'s RandomResizedCrop; got {crop!r}.')
  return (low, high), (ratio_low, ratio_high)


def random_resized_crop(rng, height, width, scale, ratio):
  """Draws torchvision's RandomResizedCrop box: (top, left, crop height, crop width).

  Up to 10 tries of an area of `scale` x the image's and a log-uniform aspect ratio (width /
  height) in `ratio`, rounded to whole pixels and kept if it fits, at a uniform integer offset;
  else the central crop with the image's ratio clamped into `ratio` (`RandomResizedCrop.get_params`).
  """
  area = height * width
  log_ratio = (np.log(ratio[0]), np.log(ratio[1]))
  for _ in range(10):
    target = area * rng.uniform(scale[0], scale[1])
    aspect = np.exp(rng.uniform(log_ratio[0], log_ratio[1]))
    crop_width = int(round(np.sqrt(target * aspect)))
    crop_height = int(round(np.sqrt(target / aspect)))
    if 0 < crop_width <= width and 0 < crop_height <= height:
      top = int(rng.integers(0, height - crop_height + 1))
      left = int(rng.integers(0, width - crop_width + 1))
      return top, left, crop_height, crop_width
  in_ratio = width / height
  if in_ratio < ratio[0]:
    crop_width, crop_height = width, int(round(width / ratio[0]))
  elif in_ratio > ratio[1]:
    crop_height, crop_width = height, int(round(height * ratio[1]))
  else:
    crop_height, crop_width = height, width
  return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


@dataclasses.dataclass(frozen=True)
class _LoadExample:
  """grain's map: an index of the epoch's list -> the decoded example, or a row of padding."""

  source: FolderSource | TfdsSource
  image_shape: tuple
  crop: tuple | None = None  # ((scale), (ratio)) of a random resized crop, or None.
  seed: int = 0
  epoch: int = 0

  def __call__(self, index):
    index = int(index)
    if index >= 0:
      try:
        if self.crop is None:
          image, label = self.source.load(index)
        else:
          # Seeded by the example, not drawn from a stream: the same crop whatever the worker.
          rng = np.random.default_rng([self.seed, self.epoch, index])
          image, label = self.source.load_cropped(index, rng, self.crop)
        return {'image': image, 'label': np.int32(label), 'mask': np.float32(1.0),
                'failed': np.int64(-1)}
      except Exception:  # pylint: disable=broad-except
        # A file whose pixels do not decode (its header did, when listed): padding, reported
        # by the main process, never a wrong label.
        failed = index
    else:
      failed = -1
    return {'image': np.zeros(self.image_shape, np.uint8), 'label': np.int32(0),
            'mask': np.float32(0.0), 'failed': np.int64(failed)}


def host_rows(batch_size, host):
  """Returns the [start, stop) rows of a global batch that process `host` = (index, count) reads.

  Raises:
    ConfigError: The batch does not split evenly across the processes.
  """
  index, count = host
  if not 0 <= index < count:
    raise ConfigError(f'Process index {index} is outside the {count} processes.')
  if batch_size % count:
    raise ConfigError(
        f'A batch of {batch_size} rows does not split evenly across {count} processes; set '
        'train.batch_size and train.eval_batch_size to multiples of the process count.')
  rows = batch_size // count
  return index * rows, (index + 1) * rows


def epoch_plan(n, batch_size, *, shuffle, seed, epoch, drop_remainder, first_batch=0,
               host=(0, 1)):
  """The indices of the examples this host reads in each batch of an epoch, -1 for padding.

  The order is `pipeline.batches`'s: the permutation of (seed, epoch) when shuffling.

  Returns:
    int64 array (batches from `first_batch` to the epoch's end, rows of this host).
  """
  count = num_batches(n, batch_size, drop_remainder)
  if not 0 <= first_batch <= count:
    raise ConfigError(f'first_batch={first_batch} is outside the epoch\'s {count} batches')
  start, stop = host_rows(batch_size, host)
  order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
  plan = np.full(count * batch_size, -1, np.int64)
  used = min(n, count * batch_size)
  plan[:used] = order[:used]
  return plan.reshape(count, batch_size)[first_batch:, start:stop]


class StreamingDataset:
  """A labelled image data set read from disk batch by batch, with grain.

  It offers what the training loop asks of an in-memory `ArrayDataset` (its length, image shape,
  labels, `take` and `batches`), but `batches` yields only this process's rows of each batch.

  Attributes:
    source: Where the examples are read from (a FolderSource or a TfdsSource).
    labels: int32 array (N,).
    image_shape: (H, W, C) of every image.
    pixel_scale: What the uint8 pixels are divided by.
    workers: grain worker processes decoding (0: in this process, in threads).
    threads: Reading threads per process.
    strict: Whether a file that fails to decode when read is a DataError instead of padding
      (a TFDS example that fails is one always).
    crop: ((scale low, high), (ratio low, high)) of the random resized crop that shuffled
      batches (training) take at decode, from the full-size photo before it is resized; None for
      none (`check_crop`). Each example's crop is seeded by (seed, epoch, example).
  """

  def __init__(self, source, *, pixel_scale, workers=0, threads=8, strict=False, crop=None):
    if workers < 0 or threads < 1:
      raise ConfigError(
          f'data.streaming_workers must be 0 or more and the reading threads at least 1, got '
          f'{workers} and {threads}.')
    self.source = source
    self.labels = np.asarray(source.labels, np.int32)
    self.image_shape = tuple(int(d) for d in source.image_shape)
    self.pixel_scale = float(pixel_scale)
    self.workers = workers
    self.threads = threads
    self.strict = strict
    self.crop = crop

  def __len__(self):
    return len(self.labels)

  def __repr__(self):
    return (f'StreamingDataset({len(self)} images of {self.image_shape} from '
            f'{self.source.where}, {self.workers} worker(s))')

  def subset(self, indices, crop=None):
    """Returns the data set of the examples at `indices`, with `crop` (same other options)."""
    return StreamingDataset(self.source.subset(np.asarray(indices)), pixel_scale=self.pixel_scale,
                            workers=self.workers, threads=self.threads, strict=self.strict,
                            crop=crop)

  def take(self, indices):
    """Returns the float32 images at `indices` (an index array or a slice), decoded now."""
    rows = np.arange(len(self))[indices]
    out = np.empty((len(rows),) + self.image_shape, np.float32)
    for i, index in enumerate(rows):
      out[i] = self.source.load(index)[0]
    out /= np.float32(self.pixel_scale)
    return out

  def batches(self, batch_size, *, shuffle=False, seed=0, epoch=0, drop_remainder=False,
              first_batch=0, host=(0, 1)):
    """Iterates over this host's rows of one epoch's batches, as `pipeline.batches` orders them.

    Args:
      batch_size: Rows of the global batch (all processes together).
      shuffle, seed, epoch, drop_remainder, first_batch: As `pipeline.batches` takes them;
        shuffled batches take the data set's random resized crop, if it has one.
      host: (process index, process count); the batches hold the process's rows only.

    Returns:
      An iterator of dicts with 'image' (float32, (B / count, H, W, C)), 'label' (int32) and
      'mask' (float32: 0 for padding and for a file that failed to decode).

    Raises:
      ConfigError: As `pipeline.batches`, or the batch does not split across the processes.
        Raised at the call, not at the first `next`.
    """
    plan = epoch_plan(len(self), batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                      drop_remainder=drop_remainder, first_batch=first_batch, host=host)
    load = _LoadExample(self.source, self.image_shape, self.crop if shuffle else None, seed, epoch)
    return self._iterate(plan, load)

  def _iterate(self, plan, load):
    if not plan.size:
      return
    # Imported here: grain takes over a second to import, which only streamed runs should pay.
    import grain  # pylint: disable=g-import-not-at-top
    rows = plan.shape[1]
    dataset = (grain.MapDataset.source(plan.reshape(-1))
               .map(load)
               .batch(rows, drop_remainder=True))
    # The elements are whole batches here (batched before `to_iter_dataset`), so the read-ahead
    # is counted in batches: as many as there are reading threads. A buffer of 2 * rows batches
    # (128 of 9.6 MB at 224x224, batch 64) let a worker's memory grow with the epoch, 434 to 821
    # MB from 5,000 to 20,000 photos with 2 workers (benchmarks/streaming_throughput.py).
    dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=self.threads,
                                                        prefetch_buffer_size=self.threads))
    if self.workers:
      if not flags.FLAGS.is_parsed():
        # grain's workers read absl flags (their defaults suit us); a program that is not an
        # absl app (a test, a notebook) has not parsed them, and reading one would raise.
        flags.FLAGS.mark_as_parsed()
      dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.workers))
    iterator = iter(dataset)
    failed = []
    try:
      for batch in _worker_deaths_named(iterator, self):
        bad = batch['failed'][batch['failed'] >= 0]
        if bad.size and not self.source.skips_failures:
          raise self.source.failure(int(bad[0]))
        if bad.size:
          failed.extend(self.source.describe(i) for i in bad)
          if self.strict:
            raise DataError(
                f'These image files could not be decoded when read: {", ".join(failed)}. Fix '
                'or delete them, or set data.strict = False to skip them (as padding rows).')
        image = batch['image'].astype(np.float32)
        image /= np.float32(self.pixel_scale)
        # Copies, so grain's shared-memory blocks are released with the batch it handed over.
        yield {'image': image, 'label': np.array(batch['label']),
               'mask': np.array(batch['mask'])}
    finally:
      close = getattr(iterator, 'close', None)
      if close is not None:
        close()
    if failed:
      # pylint: disable-next=protected-access
      image_folder._warn(
          f'{len(failed)} image file(s) could not be decoded when read, though their headers '
          'could (truncated or damaged files?); their rows were padding (mask 0), counted '
          'nowhere:\n' + '\n'.join(f'  {path}' for path in failed))


def _worker_deaths_named(iterator, dataset):
  """`iterator`'s batches; grain's RuntimeError for a worker process that died (killed, or
  crashed) becomes a DataError that says which data, how it died, and what to do."""
  while True:
    try:
      batch = next(iterator)
    except StopIteration:
      return
    except RuntimeError as error:
      died = re.search(r'terminated unexpectedly with exit code (-?\d+)', str(error))
      if died is None:
        raise
      code = int(died.group(1))
      how = f'exit code {code}'
      if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else '?'
        how = f'killed by signal {-code} ({name}' + (
            ", as the kernel's out-of-memory killer sends" if name == 'SIGKILL' else '') + ')'
      raise DataError(
          f'A grain worker process reading {dataset.source.where} died ({how}). A training run '
          'stops here and keeps its checkpoints: the same command resumes from the last one. If '
          f'memory is short, lower data.streaming_workers (now {dataset.workers}); 0 reads in '
          'the training process.') from None
    yield batch


def _header_problem(path):
  """Returns why an image file's header cannot be read (the in-memory path's words), or None."""
  # pylint: disable=protected-access
  try:
    f = open(path, 'rb')  # pylint: disable=consider-using-with
  except OSError as e:
    return image_folder._reason(image_folder._Unreadable(
        f'cannot be read ({type(e).__name__}: {e.strerror or e})'))
  with f:
    if not f.read(1):
      return 'the file is empty (0 bytes)'
    f.seek(0)
    try:
      with Image.open(f):
        return None  # Opening reads the header only; the pixels are decoded when read.
    except Exception as e:  # pylint: disable=broad-except
      return image_folder._reason(e)


def list_folder_split(split_dir, names, files, *, image_size, color_mode, strict, limit, role,
                      workers=0):
  """Lists one split of an image folder for streaming; checks each file's header.

  Args as `image_folder.load_split` takes them, `names` and `files` from `list_split`.

  Returns:
    (FolderSource, skipped): skipped is ((relative path, reason), ...).
  """
  # pylint: disable=protected-access
  size = image_folder.check_image_size(image_size if image_size is not None else (0, 0))
  if size is None:
    raise ConfigError(
        f'Streaming {split_dir} needs one image size known before any image is decoded; set '
        'data.image_size to (height, width), e.g. (224, 224), or data.streaming = \'false\'.')
  image_folder.check_color_mode(color_mode)
  empty = [name for name, class_files in zip(names, files) if not class_files]
  image_folder._check_empty(split_dir, empty, role, after_decoding=False)
  files = image_folder._pick_round_robin(files, limit)
  paths = [f'{name}/{path}' for name, class_files in zip(names, files) for path in class_files]
  labels = np.repeat(np.arange(len(names), dtype=np.int32), [len(f) for f in files])
  with concurrent.futures.ThreadPoolExecutor(image_folder._worker_count(workers)) as executor, \
      Progress(f'listing {split_dir}', len(paths), 'image') as progress:
    problems = []
    for problem in executor.map(lambda p: _header_problem(os.path.join(split_dir, p)), paths):
      problems.append(problem)
      progress.update()
  ok = np.array([p is None for p in problems], bool)
  skipped = tuple((p, r) for p, r in zip(paths, problems) if r is not None)
  if skipped:
    message = image_folder._skipped_message(split_dir, skipped, len(paths))
    if strict:
      raise DataError(f'{message}\nFix or delete these files, or set data.strict = False to skip '
                      'them with a warning.')
    image_folder._warn(
        f'{message}\nThese files are skipped (data.strict = True makes this an error).')
    counts = np.bincount(labels[ok], minlength=len(names))
    image_folder._check_empty(
        split_dir, [n for n, c in zip(names, counts) if not c and n not in empty], role,
        after_decoding=True)
  source = FolderSource(directory=split_dir, files=tuple(p for p, good in zip(paths, ok) if good),
                        labels=labels[ok], size=size, color_mode=color_mode)
  return source, skipped


def list_folder_splits(root, splits, *, limits=None, **options):
  """Lists several splits of an image folder for streaming (`image_folder.list_splits`, checked as
  `load_splits` checks them).

  Returns:
    {role: (FolderSource, skipped)}, and the class names.
  """
  listed = image_folder.list_splits(root, splits)
  limits = limits or {}
  return {role: list_folder_split(d, names, files, limit=limits.get(role, 0), role=role,
                                  **options)
          for role, (d, names, files) in listed.items()}, listed['train'][1]


def decoded_bytes(count, image_shape):
  """Bytes the decoded uint8 images of `count` examples take in memory."""
  return int(count) * int(np.prod(image_shape))
