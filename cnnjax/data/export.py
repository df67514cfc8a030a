"""Exports a labelled array data set as an image folder: split/class/NNNNN.jpg files.

The IDX Fashion-MNIST (or MNIST, or an equal-size TFDS data set) becomes a small photo-style data
set with the reference's small-data split sizes, so that the photo pipeline
(`data.source = 'image_folder'`) and the photo convnets can run on data this machine has:

    python -m cnnjax.data.export --dest DIR --classes 0,6 --per-class 1000,500,1000 \\
        --size 150 --color rgb

writes DIR/train, DIR/validation and DIR/test, each with one folder per chosen class:

- Class folders are named `P_name`: P is the class's position in --classes (zero-padded) and
  name its lower-cased class name with every run of other characters than letters, digits and
  '-' made '_' (Fashion-MNIST 'T-shirt/top' -> 't-shirt_top'). Their sorted order is the order
  of --classes, so the image-folder source gives the class listed first label 0, the next label 1
  (for --classes 0,6: 0_t-shirt_top is 0 and 1_shirt is 1).
- Per class, train takes the first TRAIN examples of that class in the source's training split
  and validation the next VAL; test takes the first TEST of the source's test split. A file's
  name is the example's index in its source split (00042.jpg), so each file can be traced back.
- --size resizes (Pillow bilinear, as the image-folder source) and --color converts (e.g. rgb,
  so a 3-channel convnet can read Fashion-MNIST); by default the images keep their size and
  channels. JPEG (--quality, default 95) or lossless PNG (--format png).
"""

import argparse
import concurrent.futures
import os
import re
import sys

import numpy as np
from PIL import Image

from cnnjax.data import image_folder
from cnnjax.errors import CnnjaxError, ConfigError, DataError

SPLITS = ('train', 'validation', 'test')
# The reference's 2nd-edition small-data split, per class.
DEFAULT_PER_CLASS = (1000, 500, 1000)
FORMATS = {'jpeg': ('JPEG', '.jpg'), 'png': ('PNG', '.png')}
COLORS = ('keep', 'rgb', 'grayscale')


def folder_name(position, class_name, count):
  """Returns the folder of the class at `position` of `count` chosen classes."""
  slug = re.sub(r'[^a-z0-9-]+', '_', str(class_name).lower()).strip('_') or 'class'
  return f'{position:0{len(str(count - 1))}d}_{slug}'


def load_arrays(source='idx', name='fashion_mnist', directory='', image_size=None):
  """Reads the training and test splits of a labelled array data set.

  Args:
    source: 'idx' (IDX files) or 'tfds' (a prepared TFDS data set).
    name: The data set's name (data.name).
    directory: IDX: the directory of the files ('' as data.dir: $CNNJAX_DATA_DIR, else the
      Debian package's directory for fashion_mnist); TFDS: the data directory ('' = default).
    image_size: TFDS only: (height, width) to resize images of varying sizes to while reading.

  Returns:
    ((train_images, train_labels), (test_images, test_labels), class_names or None).
  """
  # pylint: disable=import-outside-toplevel
  from cnnjax import data
  from cnnjax.data import idx
  if source == 'idx':
    directory, origin = data.idx_data_dir(directory, name)
    if not os.path.isdir(directory):
      raise DataError(f'Data directory {directory} (from {origin}) does not exist. '
                      f'{idx.GET_DATA_HINT}')
    splits = [idx.load_idx_split(directory, split) for split in ('train', 'test')]
    return splits[0], splits[1], data.idx_class_names(name)
  if source == 'tfds':
    from cnnjax.data import tfds_source
    splits = [tfds_source.load_tfds_split(name, split, directory or None, image_size=image_size)
              for split in ('train', 'test')]
    return splits[0], splits[1], tfds_source.tfds_class_names(name, directory or None)
  raise ConfigError(f'--source must be idx or tfds, got {source!r}.')


def _select(labels, label, name, start, count, where):
  """Indices of examples start .. start + count - 1 of class `label`, in order."""
  found = np.flatnonzero(labels == label)
  if len(found) < start + count:
    both = ' (train + validation)' if where == 'training' else ''
    raise DataError(
        f'Class {label} ({name}) has {len(found)} examples in the source\'s {where} split, but '
        f'--per-class asks for {start + count}{both}. Ask for fewer.'
    )
  return found[start:start + count]


def export_image_folder(train, test, dest, *, class_names=None, classes=None,
                        per_class=DEFAULT_PER_CLASS, size=None, color='keep', fmt='jpeg',
                        quality=95, overwrite=False, workers=0):
  """Writes chosen classes of array splits as an image-folder tree.

  Args:
    train: (images, labels) of the source's training split: uint8 (N, H, W, C), ints (N,).
    test: (images, labels) of the source's test split.
    dest: Root directory to write; created if missing, must be empty unless `overwrite`.
    class_names: Name of each source label, for the folder names; None names them class_L.
    classes: Source labels to export, in label order of the result; None: every label.
    per_class: (train, validation, test) examples per class; a 0 leaves that split out.
    size: (height, width) to resize to, or None to keep the size.
    color: 'keep', 'rgb' or 'grayscale'.
    fmt: 'jpeg' or 'png'.
    quality: JPEG quality, 1 to 95.
    overwrite: Replace the split directories of a non-empty `dest`.
    workers: Threads encoding images; 0: one per CPU core.

  Returns:
    {split: {class folder: files written}}.

  Raises:
    ConfigError: An option is invalid.
    DataError: A class has too few examples, or `dest` is not empty.
  """
  (train_images, train_labels), (test_images, test_labels) = train, test
  train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
  all_labels = sorted(set(train_labels.tolist()) | set(test_labels.tolist()))
  classes = list(all_labels if classes is None else classes)
  unknown = [c for c in classes if c not in all_labels]
  if unknown or len(set(classes)) != len(classes) or len(classes) < 2:
    raise ConfigError(
        f'--classes must name at least two different labels of the data set ({all_labels}), '
        f'got {classes}.')
  if len(per_class) != 3 or min(per_class) < 0 or per_class[0] < 1:
    raise ConfigError(
        f'--per-class must be TRAIN,VALIDATION,TEST counts with TRAIN >= 1, got {per_class}.')
  if color not in COLORS:
    raise ConfigError(f'--color must be one of {COLORS}, got {color!r}.')
  if fmt not in FORMATS:
    raise ConfigError(f'--format must be one of {sorted(FORMATS)}, got {fmt!r}.')
  if not 1 <= quality <= 95:
    raise ConfigError(f'--quality must be in [1, 95], got {quality}.')

  n_train, n_val, n_test = per_class
  jobs = []  # (split, folder, file name, images, index)
  written = {}
  for position, label in enumerate(classes):
    name = class_names[label] if class_names and label < len(class_names) else f'class_{label}'
    folder = folder_name(position, name, len(classes))
    picks = [
        ('train', train_images, _select(train_labels, label, name, 0, n_train, 'training')),
        ('validation', train_images,
         _select(train_labels, label, name, n_train, n_val, 'training')),
        ('test', test_images, _select(test_labels, label, name, 0, n_test, 'test')),
    ]
    for split, images, indices in picks:
      if len(indices):
        written.setdefault(split, {})[folder] = len(indices)
        jobs += [(split, folder, images, int(i)) for i in indices]

  image_folder.prepare_destination(dest, list(written), overwrite)
  pil_format, extension = FORMATS[fmt]
  digits = max(5, len(str(max(len(train_labels), len(test_labels)))))
  for split, folders in written.items():
    for folder in folders:
      os.makedirs(os.path.join(dest, split, folder), exist_ok=True)

  def write(job):
    split, folder, images, index = job
    pixels = images[index]
    if size is not None or color != 'keep':
      mode = color if color != 'keep' else ('grayscale' if pixels.shape[-1] == 1 else 'rgb')
      pixels = image_folder.convert_array(pixels, size, mode)
    picture = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    path = os.path.join(dest, split, folder, f'{index:0{digits}d}{extension}')
    try:
      picture.save(path, pil_format, **({'quality': quality} if fmt == 'jpeg' else {}))
    except OSError as e:
      raise DataError(f'Cannot write {path} ({e}); check --dest.') from e

  with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count() or 1) as executor:
    list(executor.map(write, jobs))
  return written


def _ints(text):
  try:
    return [int(part) for part in text.split(',')]
  except ValueError as e:
    raise argparse.ArgumentTypeError(f'expected comma-separated integers, got {text!r}') from e


def _size(text):
  parts = text.lower().split('x')
  try:
    height, width = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (0, 0)
  except ValueError:
    height = width = 0
  if height < 1 or width < 1:
    raise argparse.ArgumentTypeError(f'expected SIDE or HEIGHTxWIDTH such as 150 or 180x160, '
                                     f'got {text!r}')
  return height, width


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m cnnjax.data.export',
      description='Exports chosen classes of a labelled array data set (the IDX Fashion-MNIST '
      'by default) as an image folder DEST/{train,validation,test}/P_classname/NNNNN.jpg, '
      'train and validation from the source\'s training split, test from its test split.')
  parser.add_argument('--dest', required=True, help='root of the tree to write')
  parser.add_argument('--source', choices=('idx', 'tfds'), default='idx',
                      help='IDX files (default) or a prepared TFDS data set')
  parser.add_argument('--name', default='fashion_mnist', help='data set name (data.name)')
  parser.add_argument('--dir', default='',
                      help='IDX directory (default: $CNNJAX_DATA_DIR, else Debian\'s '
                      'Fashion-MNIST) or TFDS data directory')
  parser.add_argument('--classes', type=_ints, default=None,
                      help='source labels to export, e.g. 0,6; they get labels 0, 1, ... in '
                      'this order (default: all)')
  parser.add_argument('--per-class', type=_ints, default=list(DEFAULT_PER_CLASS),
                      metavar='TRAIN,VAL,TEST',
                      help='examples per class and split (default 1000,500,1000, the '
                      'reference\'s small-data split); a 0 leaves a split out')
  parser.add_argument('--size', type=_size, default=None,
                      help='resize to SIDE or HEIGHTxWIDTH, e.g. 150 (default: keep)')
  parser.add_argument('--color', choices=COLORS, default='keep',
                      help='rgb or grayscale (default: keep the channels)')
  parser.add_argument('--format', choices=sorted(FORMATS), default='jpeg')
  parser.add_argument('--quality', type=int, default=95, help='JPEG quality (default 95)')
  parser.add_argument('--overwrite', action='store_true',
                      help='replace the split directories of a non-empty --dest')
  args = parser.parse_args(argv)
  try:
    train, test, class_names = load_arrays(args.source, args.name, args.dir, args.size)
    written = export_image_folder(
        train, test, args.dest, class_names=class_names, classes=args.classes,
        per_class=tuple(args.per_class), size=args.size, color=args.color, fmt=args.format,
        quality=args.quality, overwrite=args.overwrite)
  except CnnjaxError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  for split, folders in written.items():
    print(f'{split}: ' + ', '.join(f'{folder}: {n:,}' for folder, n in folders.items()))
  first = next(iter(written.values()))
  options = ['--config.data.source=image_folder', f'--config.data.dir={args.dest}',
             f'--config.data.num_classes={len(first)}']
  if 'validation' in written:
    options.append('--config.data.val_split=validation')
  print(f'wrote {sum(sum(f.values()) for f in written.values()):,} images to {args.dest}; '
        f'train on them with {" ".join(options)}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
