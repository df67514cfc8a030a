"""Photos from a directory tree with one sub-folder per class, decoded once into memory.

The layout is the one Keras' `image_dataset_from_directory` and `flow_from_directory` read, one
directory per split under a root, and in it one folder per class:

    ROOT/train/cats/cat.0.jpg      ROOT/validation/cats/...      ROOT/test/cats/...
    ROOT/train/dogs/dog.0.jpg      ROOT/validation/dogs/...      ROOT/test/dogs/...

A class's label is its folder's index among the sorted folder names (cats 0, dogs 1), the same
for every split; the split directories must hold the same class folders. Files are found in
each class folder and its sub-folders, by extension (IMAGE_EXTENSIONS, any case); other files and
hidden names (starting with '.', such as .ipynb_checkpoints) are ignored. Within a class the
files are taken in sorted order of their paths, so the examples' order never depends on the
file system.

Every image is decoded when the data set is loaded, in parallel threads (Pillow releases the GIL
while it decodes and resizes), straight into one preallocated uint8 array, so nothing can fail
in the middle of an epoch. Decoding, the same for photo arrays from TFDS or IDX files:

- the first frame of the file is read (an animated GIF gives its first frame), without applying
  an EXIF orientation (as Keras does not);
- it is converted with Pillow to RGB ('rgb') or 8-bit luminance L = 0.299 R + 0.587 G + 0.114 B
  ('grayscale'): grayscale, palette, CMYK and 16-bit images are converted; an alpha channel is
  dropped, not composited (Keras' `load_img` does the same), so fully transparent pixels show
  whatever colour they store;
- it is resized to the requested (height, width) with Pillow's bilinear filter (the filter
  Keras' `image_dataset_from_directory` defaults to; Pillow's averages over all the pixels a
  shrunken output pixel covers instead of sampling 2x2 of them). Without a size, every image of
  the split must already have one size.

A file that cannot be read or decoded (truncated, empty, not an image) is skipped with one
ImageFolderWarning that lists every such file and why; with `strict` it is a DataError listing
them instead. A skipped file never shifts another file's label.

With a cache directory, the decoded arrays of a split are saved there (.npz) under a key made
from the files' paths, sizes and modification times, the class names, the decode options and
Pillow's version; the next load with the same key reads the cache instead of decoding, and any
change to a file makes a new key.
"""

import concurrent.futures
import dataclasses
import hashlib
import io
import json
import os
import shutil
import sys
import warnings

import numpy as np
import PIL
from PIL import Image

from cnnjax.errors import ConfigError, DataError
from cnnjax.progress import Progress

# File name extensions of the images a class folder may hold (compared in lower case).
IMAGE_EXTENSIONS = ('.bmp', '.gif', '.jpeg', '.jpg', '.png')
# color_mode -> (Pillow mode, channels).
COLOR_MODES = {'rgb': ('RGB', 3), 'grayscale': ('L', 1)}
# Examples converted per round when arrays arrive one by one (TFDS): bounds the memory held.
_CHUNK = 256
# Bumped when the decoding changes, so that old cache files are not read.
_CACHE_FORMAT = 1


class ImageFolderWarning(UserWarning):
  """Files were skipped, or a validation / test class folder holds no image."""


@dataclasses.dataclass(frozen=True)
class FolderSplit:
  """One split of an image folder, decoded.

  Attributes:
    images: uint8 array (N, H, W, C).
    labels: int32 array (N,): each image's class index in `class_names`.
    files: Path of each image relative to `directory`, in row order ('/' separated).
    class_names: The class folder names, sorted; label i is class_names[i].
    skipped: (relative path, reason) of each file that could not be read or decoded.
    directory: The split directory.
    from_cache: Whether the arrays were read from the cache instead of decoded.
  """

  images: np.ndarray
  labels: np.ndarray
  files: tuple
  class_names: tuple
  skipped: tuple
  directory: str
  from_cache: bool = False


def check_image_size(image_size, field='data.image_size'):
  """Returns (height, width) as ints, or None for (0, 0) (keep each image's size).

  Raises:
    ConfigError: `image_size` is not two non-negative integers, both 0 or both positive.
  """
  try:
    height, width = (int(v) for v in image_size)
    valid = (height, width) == tuple(image_size) and (
        (height, width) == (0, 0) or (height > 0 and width > 0))
  except (TypeError, ValueError):
    valid = False
  if not valid:
    raise ConfigError(
        f'{field} must be (height, width), two positive integers such as (180, 180), or (0, 0) '
        f'to keep the images\' size; got {image_size!r}.'
    )
  return None if height == 0 else (height, width)


def check_color_mode(color_mode, field='data.color_mode'):
  """Returns the number of channels of `color_mode`.

  Raises:
    ConfigError: `color_mode` is not one of COLOR_MODES.
  """
  if color_mode not in COLOR_MODES:
    raise ConfigError(
        f'{field} = {color_mode!r} is not a colour mode; use one of {sorted(COLOR_MODES)}.')
  return COLOR_MODES[color_mode][1]


def _worker_count(workers):
  if workers < 0:
    raise ConfigError(
        f'data.decode_workers must be 0 (one per CPU core) or positive, got {workers}.')
  return workers or os.cpu_count() or 1


def _to_mode(image, pil_mode):
  """Converts a Pillow image to 'RGB' or 'L', dropping any alpha channel."""
  if image.mode == pil_mode:
    return image
  if image.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N'):
    # 16-bit grayscale (PNG): Pillow's own conversion would clip everything above 255 to white.
    values = np.asarray(image, dtype=np.float64)
    image = Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), 'L')
  elif image.mode in ('P', 'PA'):
    # Through RGBA, so a palette's transparency is dropped like any alpha channel (converting
    # straight to RGB makes Pillow warn about transparency given as bytes).
    image = image.convert('RGBA')
  return image.convert(pil_mode)


def convert_image(image, size, color_mode):
  """Returns a Pillow image as a uint8 array (H, W, C) in `color_mode`, resized to `size`.

  Args:
    image: A Pillow image, any mode.
    size: (height, width) to resize to with Pillow's bilinear filter, or None to keep the size.
    color_mode: 'rgb' or 'grayscale'.
  """
  pil_mode, channels = COLOR_MODES[color_mode]
  image = _to_mode(image, pil_mode)
  if size is not None and (image.height, image.width) != tuple(size):
    image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
  return np.asarray(image, dtype=np.uint8).reshape(image.height, image.width, channels)


def convert_array(array, size, color_mode):
  """Converts one uint8 image array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) like a photo file.

  Raises:
    DataError: The array is not uint8 or has another shape.
  """
  array = np.asarray(array)
  if array.ndim == 3 and array.shape[-1] == 1:
    array = array[..., 0]
  if array.ndim == 2:
    mode = 'L'
  elif array.ndim == 3:
    mode = {3: 'RGB', 4: 'RGBA'}.get(array.shape[-1])
  else:
    mode = None
  if array.dtype != np.uint8 or mode is None:
    raise DataError(
        f'An image array of dtype {array.dtype.name} and shape {array.shape} cannot be '
        'converted: images must be uint8 of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).'
    )
  return convert_image(Image.fromarray(array, mode), size, color_mode)


def convert_arrays(arrays, count, size, color_mode, workers=0):
  """Converts uint8 image arrays of any sizes into one uint8 array (count, H, W, C).

  The arrays are consumed _CHUNK at a time and converted in threads, so an iterator over a large
  data set never holds more than a chunk of the original images.

  Args:
    arrays: Iterable of `count` uint8 image arrays, each as `convert_array` takes.
    count: How many arrays `arrays` yields.
    size: (height, width) to resize to.
    color_mode: 'rgb' or 'grayscale'.
    workers: Threads converting; 0 means one per CPU core.

  Returns:
    uint8 array (count, height, width, channels).

  Raises:
    DataError: An array is not an image, or there are fewer than `count`.
  """
  channels = check_color_mode(color_mode)
  out = np.empty((count, size[0], size[1], channels), np.uint8)
  iterator = iter(arrays)

  def convert_into(item):
    index, array = item
    out[index] = convert_array(array, size, color_mode)

  with concurrent.futures.ThreadPoolExecutor(_worker_count(workers)) as executor:
    for start in range(0, count, _CHUNK):
      chunk = []
      for index in range(start, min(start + _CHUNK, count)):
        array = next(iterator, None)
        if array is None:
          raise DataError(f'Expected {count} images, but the source ended after {index}.')
        chunk.append((index, array))
      # list() re-raises the first error of the chunk.
      list(executor.map(convert_into, chunk))
  return out


def _class_folders(split_dir):
  """Returns the sorted, non-hidden sub-directory names of a split directory."""
  with os.scandir(split_dir) as entries:
    return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith('.'))


def _image_files(class_dir):
  """Returns the image files under `class_dir`, as sorted '/'-separated relative paths."""
  found = []
  for parent, dirs, names in os.walk(class_dir):
    dirs[:] = [d for d in dirs if not d.startswith('.')]
    rel = os.path.relpath(parent, class_dir)
    for name in names:
      if not name.startswith('.') and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
        found.append(name if rel == '.' else f'{rel}/{name}'.replace(os.sep, '/'))
  return sorted(found)


def list_split(split_dir):
  """Lists a split directory's classes and each class's image files.

  Args:
    split_dir: Directory with one sub-folder per class.

  Returns:
    (class_names, files): the sorted class folder names, and for each class the sorted image
    paths relative to its folder.

  Raises:
    DataError: The directory does not exist or has fewer than two class folders.
  """
  if not os.path.isdir(split_dir):
    raise DataError(f'Image folder {split_dir} does not exist or is not a directory.')
  class_names = _class_folders(split_dir)
  if len(class_names) < 2:
    found = f'only the class folder {class_names[0]!r}' if class_names else 'no class folder'
    raise DataError(
        f'Image folder {split_dir} has {found}; a classifier needs at least two classes, each a '
        'sub-folder holding that class\'s images (e.g. cats/ and dogs/). Check that data.dir '
        'is the root above the split directories.'
    )
  files = [_image_files(os.path.join(split_dir, name)) for name in class_names]
  return tuple(class_names), files


def _pick_round_robin(files, limit):
  """Keeps `limit` files in all, taking each class's first files in turn (class by class)."""
  if not limit or sum(len(f) for f in files) <= limit:
    return files
  kept = [0] * len(files)
  remaining = limit
  depth = 0
  while remaining:
    for c, class_files in enumerate(files):
      if remaining and depth < len(class_files):
        kept[c] += 1
        remaining -= 1
    depth += 1
  return [class_files[:k] for class_files, k in zip(files, kept)]


def _read_bytes(path):
  """Reads a file's bytes (a function of its own so that tests can make a file unreadable)."""
  with open(path, 'rb') as f:
    return f.read()


class _Unreadable(Exception):
  """The file could not be read, or is empty; the message is the reason."""


def _decode_file(path, size, color_mode):
  """Decodes one image file; returns the array or raises the reason it cannot."""
  try:
    data = _read_bytes(path)
  except OSError as e:
    raise _Unreadable(f'cannot be read ({type(e).__name__}: {e.strerror or e})') from e
  if not data:
    raise _Unreadable('the file is empty (0 bytes)')
  with Image.open(io.BytesIO(data)) as image:
    image.load()  # Decodes now, so that a truncated file fails here.
    return convert_image(image, size, color_mode)


def _reason(error):
  """Says in a few words why a file was skipped."""
  if isinstance(error, _Unreadable):
    return str(error)
  if isinstance(error, PIL.UnidentifiedImageError):
    return 'not an image file Pillow can identify'
  detail = f'{type(error).__name__}: {error}' if str(error) else type(error).__name__
  return f'cannot be decoded ({detail}); a truncated or damaged file?'


def _warn(message):
  """Warns, attributing the warning to the first caller outside cnnjax.data."""
  package = os.path.dirname(os.path.abspath(__file__))
  level, frame = 2, sys._getframe(1)  # pylint: disable=protected-access
  while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == (
      package):
    level, frame = level + 1, frame.f_back
  warnings.warn(ImageFolderWarning(message), stacklevel=level)


def _peek_size(directory, paths):
  """Returns the (height, width) of the first file whose header can be read, or None."""
  for path in paths:
    try:
      with Image.open(io.BytesIO(_read_bytes(os.path.join(directory, path)))) as image:
        return image.height, image.width
    except Exception:  # pylint: disable=broad-except
      continue  # This file will be reported when it is decoded.
  return None


def _decode_all(directory, paths, size, color_mode, workers):
  """Decodes the files in threads into one preallocated array.

  Returns:
    (images, ok, problems, sizes): uint8 array (N, H, W, C) whose rows for failed files are
    undefined; a bool mask of the decoded rows; {path: reason} of the files that failed;
    {path: (height, width)} of files that decoded to another size when `size` is None.
  """
  channels = COLOR_MODES[color_mode][1]
  keep_size = size is None
  if keep_size:
    size = _peek_size(directory, paths) or (1, 1)
  images = np.empty((len(paths), size[0], size[1], channels), np.uint8)
  ok = np.zeros(len(paths), bool)
  problems, sizes = {}, {}

  def decode_into(index):
    path = paths[index]
    try:
      array = _decode_file(os.path.join(directory, path), None if keep_size else size, color_mode)
    except Exception as e:  # pylint: disable=broad-except
      # Pillow signals a bad file with many exception types (OSError, SyntaxError, ValueError,
      # DecompressionBombError, ...); each is a reason to skip the file, never a crash.
      problems[path] = _reason(e)
      return
    if array.shape[:2] != size:
      sizes[path] = array.shape[:2]
      return
    images[index] = array
    ok[index] = True

  with concurrent.futures.ThreadPoolExecutor(_worker_count(workers)) as executor, \
      Progress(f'decoding {directory}', len(paths), 'image') as progress:
    for _ in executor.map(decode_into, range(len(paths))):
      progress.update()
  return images, ok, problems, sizes


def _size_error(directory, paths, ok, sizes):
  first = next((p for p, good in zip(paths, ok) if good), None)
  by_size = {}
  for path, hw in sizes.items():
    by_size.setdefault(hw, []).append(path)
  described = '; '.join(f'{h}x{w}: {len(found)} file(s), e.g. {sorted(found)[0]}'
                        for (h, w), found in sorted(by_size.items()))
  return DataError(
      f'The images in {directory} do not all have one size, and data.image_size is (0, 0) '
      f'(keep the size). {int(ok.sum())} image(s) have the size of the first one'
      f'{f" ({first})" if first else ""}, but others differ: {described}. Set data.image_size '
      'to the (height, width) to resize every image to, e.g. (180, 180).'
  )


def _cache_key(directory, class_names, files, size, color_mode):
  """A hash of everything the decoded arrays depend on."""
  entries = []
  for label, class_files in enumerate(files):
    for path in class_files:
      try:
        stat = os.stat(os.path.join(directory, class_names[label], path))
        entries.append((label, path, stat.st_size, stat.st_mtime_ns))
      except OSError:
        entries.append((label, path, -1, -1))  # Decoding will report the file.
  description = json.dumps({
      'format': _CACHE_FORMAT,
      'pillow': PIL.__version__,
      'directory': os.path.abspath(directory),
      'class_names': list(class_names),
      'size': list(size) if size else None,
      'color_mode': color_mode,
      'files': entries,
  })
  return hashlib.sha256(description.encode()).hexdigest()


def _cache_path(cache_dir, directory, key):
  name = os.path.basename(os.path.normpath(directory)) or 'split'
  safe = ''.join(c if c.isalnum() or c in '-_' else '_' for c in name)
  return os.path.join(cache_dir, f'{safe}-{key[:24]}.npz')


def _read_cache(path):
  """Returns the cached arrays, or None when the file is missing or unreadable."""
  if not os.path.isfile(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as cached:
      return {name: cached[name] for name in cached.files}
  except Exception as e:  # pylint: disable=broad-except
    # A damaged cache is only a lost speed-up: decode again and rewrite it.
    _warn(f'Ignoring the unreadable cache file {path} ({type(e).__name__}: {e}); decoding again.')
    return None


def _write_cache(path, arrays):
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f'{path}.{os.getpid()}.tmp'
    with open(temporary, 'wb') as f:
      np.savez(f, **arrays)
    # Atomic, so a concurrent reader (another process) never sees half a file.
    os.replace(temporary, path)
  except OSError as e:
    _warn(f'Could not write the cache file {path} ({e}); the data are used without caching. '
          'Check data.cache_dir.')


def _skipped_message(directory, skipped, total):
  lines = '\n'.join(f'  {path}: {reason}' for path, reason in skipped)
  return (f'{len(skipped)} of {total} image files in {directory} could not be read or decoded:\n'
          f'{lines}')


def load_split(split_dir, *, image_size=None, color_mode='rgb', class_names=None,
               strict=False, cache_dir='', workers=0, limit=0, role='train'):
  """Reads and decodes one split directory.

  Args:
    split_dir: Directory with one sub-folder per class.
    image_size: (height, width) to resize every image to, or None / (0, 0) to keep the size
      (then all images must share one).
    color_mode: 'rgb' or 'grayscale'.
    class_names: The class folder names the split must have (those of the training split), or
      None to accept the split's own.
    strict: Whether an undecodable file is a DataError instead of a skipped file.
    cache_dir: Directory of the decoded-array cache; '' for no cache.
    workers: Decoding threads; 0 means one per CPU core.
    limit: Keep only this many files (0: all), taking each class's first files in turn.
    role: 'train', 'validation' or 'test': a training class with no image is an error, a
      validation or test class with none a warning.

  Returns:
    The FolderSplit.

  Raises:
    DataError: The directory is missing, has fewer than two classes, not the expected class
      folders, a training class without images, images of different sizes with no image_size,
      or (with `strict`) files that cannot be decoded.
    ConfigError: An option is invalid.
  """
  names, files = list_split(split_dir)
  if class_names is not None and tuple(class_names) != names:
    raise DataError(
        f'The class folders of {split_dir} differ from the expected ones: '
        f'{_class_difference(names, class_names)}. Every split must hold the same class '
        'folders, since a label is the index of its folder name in sorted order.')
  return _decode_split(split_dir, names, files, image_size=image_size, color_mode=color_mode,
                       strict=strict, cache_dir=cache_dir, workers=workers, limit=limit,
                       role=role)


def _decode_split(split_dir, names, files, *, image_size, color_mode, strict, cache_dir,
                  workers, limit, role):
  """load_split after the listing."""
  size = check_image_size(image_size if image_size is not None else (0, 0))
  check_color_mode(color_mode)
  _worker_count(workers)
  empty = [name for name, class_files in zip(names, files) if not class_files]
  _check_empty(split_dir, empty, role, after_decoding=False)
  files = _pick_round_robin(files, limit)
  left_out = [name for name, class_files in zip(names, files)
              if not class_files and name not in empty]
  if left_out and role == 'train':
    raise ConfigError(
        f'data.limit_train = {limit} keeps no image of the class(es) {left_out} of {split_dir}; '
        f'keep at least one per class (data.limit_train >= {len(names)}) or 0 for all.'
    )

  cache_path = None
  cached = None
  if cache_dir:
    cache_path = _cache_path(cache_dir, split_dir, _cache_key(
        split_dir, names, files, size, color_mode))
    cached = _read_cache(cache_path)
  if cached is not None:
    images, labels = cached['images'], cached['labels']
    kept = tuple(str(p) for p in cached['files'])
    skipped = tuple(zip((str(p) for p in cached['skipped_files']),
                        (str(r) for r in cached['skipped_reasons'])))
  else:
    paths = [f'{name}/{path}' for name, class_files in zip(names, files) for path in class_files]
    all_labels = np.repeat(np.arange(len(names), dtype=np.int32), [len(f) for f in files])
    images, ok, problems, sizes = _decode_all(split_dir, paths, size, color_mode, workers)
    if sizes:
      raise _size_error(split_dir, paths, ok, sizes)
    if not ok.all():
      images, all_labels = images[ok], all_labels[ok]
    labels = all_labels
    kept = tuple(p for p, good in zip(paths, ok) if good)
    skipped = tuple((p, problems[p]) for p in paths if p in problems)
    if cache_path:
      _write_cache(cache_path, {
          'images': images, 'labels': labels, 'files': np.array(kept, dtype=str),
          'skipped_files': np.array([p for p, _ in skipped], dtype=str),
          'skipped_reasons': np.array([r for _, r in skipped], dtype=str)})

  total = len(kept) + len(skipped)
  if skipped:
    message = _skipped_message(split_dir, skipped, total)
    if strict:
      raise DataError(f'{message}\nFix or delete these files, or set data.strict = False to skip '
                      'them with a warning.')
    _warn(f'{message}\nThese files are skipped (data.strict = True makes this an error).')
    counts = np.bincount(labels, minlength=len(names))
    _check_empty(split_dir, [n for n, c in zip(names, counts) if not c and n not in empty], role,
                 after_decoding=True)
  return FolderSplit(images=images, labels=labels.astype(np.int32), files=kept,
                     class_names=names, skipped=skipped, directory=split_dir,
                     from_cache=cached is not None)


def _check_empty(split_dir, empty, role, after_decoding):
  if not empty:
    return
  what = ('has no image that could be decoded' if after_decoding else
          f'holds no image file ({", ".join(IMAGE_EXTENSIONS)})')
  folders = ', '.join(os.path.join(split_dir, name) for name in empty)
  if role == 'train':
    raise DataError(
        f'Class folder(s) {folders} {what}; a class without training examples cannot be '
        'learned. Add images, or remove the folder from every split (the labels follow the '
        'sorted folder names).'
    )
  _warn(f'Class folder(s) {folders} of the {role} split {what}; the {role} metrics will not '
        'cover that class.')


def _class_difference(names, expected):
  missing = [n for n in expected if n not in names]
  extra = [n for n in names if n not in expected]
  return f'missing {missing or "none"}, extra {extra or "none"}'


# The config field that names each split directory.
SPLIT_FIELDS = {'train': 'data.train_split', 'validation': 'data.val_split',
                'test': 'data.test_split'}


def _split_dir(root, role, split):
  split_dir = os.path.join(root, split)
  if os.path.isdir(split_dir):
    return split_dir
  with os.scandir(root) as entries:
    found = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith('.'))
  hint = ''
  if '[' in split:
    hint = (' Split slicing such as train[:90%] is a TFDS feature; for an image folder give a '
            'directory name and use data.limit_train or data.val_fraction.')
  elif role == 'validation':
    hint = (' Or set data.val_split = \'\' to carve data.val_fraction of the training split off '
            'instead.')
  raise DataError(
      f'Image folder root {root} has no split directory {split!r} ({SPLIT_FIELDS[role]}); its '
      f'sub-directories are {found or "none"}. Set {SPLIT_FIELDS[role]} to one of them, or '
      f'data.dir to the root that holds the split directories.{hint}'
  )


def prepare_destination(dest, split_names, overwrite):
  """Makes sure an image-folder tree can be written to `dest`.

  Args:
    dest: The root directory to write split directories into; created if missing.
    split_names: The split directories that will be written.
    overwrite: Whether to delete those split directories if they exist; nothing else in `dest`
      is touched.

  Raises:
    DataError: `dest` is a file, or is not empty and `overwrite` is false.
  """
  if os.path.exists(dest) and not os.path.isdir(dest):
    raise DataError(f'Destination {dest} exists and is not a directory; pick another --dest.')
  held = sorted(os.listdir(dest)) if os.path.isdir(dest) else []
  if held:
    if not overwrite:
      more = f' and {len(held) - 5} more' if len(held) > 5 else ''
      raise DataError(
          f'Destination {dest} is not empty (it holds {", ".join(held[:5])}{more}). Pick another '
          '--dest, or pass --overwrite to replace its split directories '
          f'{", ".join(split_names)} (nothing else in it is touched).'
      )
    for name in split_names:
      path = os.path.join(dest, name)
      if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
      elif os.path.lexists(path):
        os.remove(path)
  os.makedirs(dest, exist_ok=True)


def list_splits(root, splits):
  """The class folders and files of several splits of an image folder, checked to share classes.

  Args:
    root: Directory holding one directory per split.
    splits: {role: split directory name}, roles from SPLIT_FIELDS; 'train' is required.

  Returns:
    {role: (split directory, class names, files per class)} (`list_split`'s lists).

  Raises:
    DataError: The root or a split directory is missing, or the splits' class folders differ
      (all differences are listed).
  """
  if not os.path.isdir(root):
    raise DataError(
        f'Image folder root {root} (data.dir) does not exist or is not a directory. Set data.dir '
        'to a directory holding one directory per split (e.g. train/, validation/, test/), each '
        'with one sub-folder of images per class; `python -m cnnjax.data.cats_vs_dogs` builds '
        'one from the Kaggle cats-vs-dogs files.'
    )
  split_dirs = {role: _split_dir(root, role, split) for role, split in splits.items()}
  listed = {role: (split_dir,) + list_split(split_dir) for role, split_dir in split_dirs.items()}
  train_names = listed['train'][1]
  differences = [f'{split_dir}: {_class_difference(names, train_names)}'
                 for role, (split_dir, names, _) in listed.items()
                 if role != 'train' and names != train_names]
  if differences:
    raise DataError(
        f'The split directories of {root} hold different class folders. Training classes '
        f'({listed["train"][0]}): {list(train_names)}; ' + '; '.join(differences) + '. Every '
        'split must hold the same class folders, since a label is the index of its folder name '
        'in sorted order.'
    )
  return listed


def load_splits(root, splits, **options):
  """Reads and decodes several splits of an image folder, checking they share the classes.

  Args:
    root: Directory holding one directory per split.
    splits: {role: split directory name}, roles from SPLIT_FIELDS; 'train' is required.
    **options: image_size, color_mode, strict, cache_dir, workers as `load_split` takes, and
      limits: {role: limit} (absent or 0: all files).

  Returns:
    {role: FolderSplit}.

  Raises:
    DataError: as `list_splits` and `load_split`.
  """
  limits = options.pop('limits', {})
  return {role: _decode_split(split_dir, names, files, limit=limits.get(role, 0), role=role,
                              **options)
          for role, (split_dir, names, files) in list_splits(root, splits).items()}
