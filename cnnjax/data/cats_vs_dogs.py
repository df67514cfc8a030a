"""Builds the small cats-vs-dogs data sets from the Kaggle dogs-vs-cats training images.

Kaggle's dogs-vs-cats `train.zip` (2013) unpacks to one folder of 25,000 JPEGs, `cat.0.jpg` ...
`cat.12499.jpg` and `dog.0.jpg` ... `dog.12499.jpg`. The reference trains on small subsets of
them, taken by index, per class:

| edition | train | validation | test | class folders | the reference's directory |
| --- | --- | --- | --- | --- | --- |
| 1 | 0-999 | 1000-1499 | 1500-1999 | cats/, dogs/ | cats_and_dogs_small |
| 2 | 0-999 | 1000-1499 | 1500-2499 | cat/, dog/ | cats_vs_dogs_small |

    python -m cnnjax.data.cats_vs_dogs --source KAGGLE_TRAIN_DIR --dest DIR --edition 1|2

writes DIR/{train,validation,test}/{cats,dogs}/ (1st edition) or .../{cat,dog}/ (2nd), which
`data.source = 'image_folder'` reads with data.dir = DIR, data.val_split = 'validation'. Files
are copied, or hard-linked with --link. Every source file is checked before anything is written.
"""

import argparse
import dataclasses
import errno
import os
import shutil
import sys

from cnnjax.data.image_folder import prepare_destination
from cnnjax.errors import CnnjaxError, DataError

SPLITS = ('train', 'validation', 'test')
# Images per class in Kaggle's training folder.
KAGGLE_IMAGES_PER_CLASS = 12_500


@dataclasses.dataclass(frozen=True)
class Edition:
  """One edition's subsets.

  Attributes:
    counts: Images per class in (train, validation, test); the splits take consecutive file
      indices from 0.
    class_folders: Folder of each Kaggle class prefix ('cat', 'dog'), in that order.
    reference_dir: The directory name the reference gives the subsets.
  """

  counts: tuple
  class_folders: tuple
  reference_dir: str


EDITION_1 = Edition(counts=(1000, 500, 500), class_folders=('cats', 'dogs'),
                    reference_dir='cats_and_dogs_small')
EDITION_2 = Edition(counts=(1000, 500, 1000), class_folders=('cat', 'dog'),
                    reference_dir='cats_vs_dogs_small')
EDITIONS = {1: EDITION_1, 2: EDITION_2}
KAGGLE_CLASSES = ('cat', 'dog')


def subset_plan(edition, counts=None):
  """Lists the files of each split and class folder.

  Args:
    edition: 1 or 2.
    counts: (train, validation, test) images per class instead of the edition's.

  Returns:
    [(split, class_folder, [file names])] in SPLITS order, cats before dogs.
  """
  spec = EDITIONS[edition]
  counts = tuple(counts or spec.counts)
  plan = []
  start = 0
  for split, count in zip(SPLITS, counts):
    for prefix, folder in zip(KAGGLE_CLASSES, spec.class_folders):
      plan.append((split, folder, [f'{prefix}.{i}.jpg' for i in range(start, start + count)]))
    start += count
  return plan


def _missing_files_error(source, missing, needed):
  shown = ', '.join(missing[:10]) + (f' and {len(missing) - 10} more' if len(missing) > 10 else '')
  hint = ''
  nested = os.path.join(source, 'train')
  if os.path.isfile(os.path.join(nested, missing[0])):
    hint = f' The files are in {nested}: pass --source {nested}.'
  elif os.path.isfile(os.path.join(source, 'train.zip')):
    hint = f' Unzip {os.path.join(source, "train.zip")} first and pass the folder it makes.'
  return DataError(
      f'{len(missing)} of the {needed} files the subsets need are missing from {source}: '
      f'{shown}.{hint} --source must be the folder of Kaggle dogs-vs-cats training images '
      f'(train.zip unpacked: cat.0.jpg ... cat.{KAGGLE_IMAGES_PER_CLASS - 1}.jpg and the same '
      'for dog); ask for fewer images with --counts if you have fewer.'
  )


def build_subsets(source, dest, edition=2, *, counts=None, link=False, overwrite=False):
  """Copies (or hard-links) the subsets' files from the Kaggle folder into `dest`.

  Args:
    source: Folder of the Kaggle dogs-vs-cats training images (cat.N.jpg, dog.N.jpg).
    dest: Root of the tree to write; created if missing, and must be empty unless `overwrite`.
    edition: 1 or 2 (EDITIONS): the split sizes and class folder names.
    counts: (train, validation, test) images per class instead of the edition's.
    link: Hard-link the files instead of copying them (same file system only).
    overwrite: Replace the split directories in a non-empty `dest`.

  Returns:
    {(split, class_folder): number of files written}.

  Raises:
    DataError: The source folder or some of its files are missing, `dest` is not empty, or a
      file cannot be written.
    ValueError: `edition` or `counts` is invalid.
  """
  if edition not in EDITIONS:
    raise ValueError(f'edition must be one of {sorted(EDITIONS)}, got {edition!r}')
  if counts is not None and (len(counts) != 3 or any(int(c) < 0 for c in counts)):
    raise ValueError(f'counts must be three non-negative numbers, got {counts!r}')
  if not os.path.isdir(source):
    raise DataError(
        f'Source folder {source} does not exist. Download dogs-vs-cats from Kaggle '
        '(www.kaggle.com/c/dogs-vs-cats/data), unzip train.zip and pass the folder of images '
        'as --source.'
    )
  plan = subset_plan(edition, counts)
  needed = [name for _, _, names in plan for name in names]
  missing = [name for name in needed if not os.path.isfile(os.path.join(source, name))]
  if missing:
    # By class, then by number: cat.2.jpg before cat.10.jpg.
    missing.sort(key=lambda name: (name.split('.')[0], int(name.split('.')[1])))
    raise _missing_files_error(source, missing, len(needed))
  prepare_destination(dest, SPLITS, overwrite)
  written = {}
  for split, folder, names in plan:
    directory = os.path.join(dest, split, folder)
    os.makedirs(directory, exist_ok=True)
    for name in names:
      _place(os.path.join(source, name), os.path.join(directory, name), link)
    written[(split, folder)] = len(names)
  return written


def _place(src, dst, link):
  try:
    if link:
      os.link(src, dst)
    else:
      shutil.copyfile(src, dst)
  except OSError as e:
    if link and e.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
      raise DataError(
          f'Cannot hard-link {src} to {dst} ({e.strerror}); hard links work only within one '
          'file system. Drop --link to copy the files.'
      ) from e
    raise DataError(f'Cannot write {dst} ({e.strerror or e}); check --dest.') from e


def _counts(text):
  try:
    counts = tuple(int(part) for part in text.split(','))
  except ValueError:
    counts = ()
  if len(counts) != 3 or min(counts) < 0:
    raise argparse.ArgumentTypeError(
        f'expected TRAIN,VALIDATION,TEST images per class such as 100,50,50, got {text!r}')
  return counts


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m cnnjax.data.cats_vs_dogs',
      description='Builds the small cats-vs-dogs subsets from the Kaggle dogs-vs-cats images. '
      'Edition 1: 1,000 / 500 / 500 images per class (train / validation / test) in cats/ and '
      'dogs/ folders; edition 2: 1,000 / 500 / 1,000 in cat/ and dog/.')
  parser.add_argument('--source', required=True,
                      help='folder of Kaggle training images: cat.0.jpg ... dog.12499.jpg')
  parser.add_argument('--dest', required=True,
                      help='root of the tree to write (the reference names it '
                      'cats_and_dogs_small for edition 1, cats_vs_dogs_small for edition 2)')
  parser.add_argument('--edition', type=int, choices=sorted(EDITIONS), default=2,
                      help='which edition\'s split sizes and folder names (default 2)')
  parser.add_argument('--counts', type=_counts, default=None, metavar='TRAIN,VAL,TEST',
                      help='images per class instead of the edition\'s, e.g. 100,50,50 for a '
                      'quick trial')
  parser.add_argument('--link', action='store_true',
                      help='hard-link the files instead of copying them')
  parser.add_argument('--overwrite', action='store_true',
                      help='replace the train/validation/test directories of a non-empty --dest')
  args = parser.parse_args(argv)
  try:
    written = build_subsets(args.source, args.dest, args.edition, counts=args.counts,
                            link=args.link, overwrite=args.overwrite)
  except CnnjaxError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  verb = 'linked' if args.link else 'copied'
  for split in SPLITS:
    parts = ', '.join(f'{folder}: {n:,}' for (s, folder), n in written.items() if s == split)
    print(f'{split}: {parts}')
  print(f'{verb} {sum(written.values()):,} images to {args.dest}. Train on them with '
        f"--config.data.dir={args.dest} --config.data.val_split=validation")
  return 0


if __name__ == '__main__':
  sys.exit(main())
