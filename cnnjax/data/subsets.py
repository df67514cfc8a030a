"""Class selection and per-class counts: the small-data tasks of transfer learning.

`select_subsets(datasets, classes, per_class, seed)` keeps the examples of `classes` (relabelled
0, 1, ... in that order) and draws a fixed number of examples per class from each split, as the
reference builds its small cats-vs-dogs sets (2nd edition: 1,000 / 500 / 1,000 per class). The
training and validation examples are drawn from the training examples (the union of the loaded
train and validation sets, so the draw does not depend on data.val_fraction), disjointly; the test
examples from the test split. The draw is a pure function of (seed, class), so the same config
gives the same subsets on every machine and in every run.

Driven by `data.classes` and `data.per_class` (`subsets_from_config`).
"""

import dataclasses
from typing import Sequence

import numpy as np

from cnnjax.data.pipeline import ArrayDataset
from cnnjax.errors import ConfigError, DataError

SPLITS = ('train', 'validation', 'test')


def _rows(dataset: ArrayDataset, indices: np.ndarray, labels: np.ndarray) -> ArrayDataset:
  return ArrayDataset(dataset.stored_images[indices], labels, pixel_scale=dataset.pixel_scale)


def _concat(a: ArrayDataset, b: ArrayDataset) -> ArrayDataset:
  return ArrayDataset(np.concatenate([a.stored_images, b.stored_images]),
                      np.concatenate([a.labels, b.labels]), pixel_scale=a.pixel_scale)


def _draw(labels: np.ndarray, classes: Sequence[int], counts: Sequence[int], seed: int,
          salt: int, where: str) -> list[np.ndarray]:
  """Per split: indices into `labels`, `counts[k]` per class (0: every remaining one), sorted."""
  picked = [[] for _ in counts]
  for c in classes:
    members = np.flatnonzero(labels == c)
    order = np.random.default_rng([seed, salt, int(c)]).permutation(members)
    needed = sum(counts)
    if len(order) < needed:
      raise DataError(
          f'{where} has {len(order)} examples of class {c}, fewer than the {needed} that '
          f'data.per_class asks for; lower data.per_class or choose other data.classes')
    start = 0
    for k, count in enumerate(counts):
      end = start + count if count else len(order)
      picked[k].append(order[start:end])
      start = end
  return [np.sort(np.concatenate(p)) for p in picked]


def select_subsets(datasets, classes: Sequence[int], per_class: Sequence[int], seed: int):
  """The data sets restricted to `classes` with `per_class` examples of each.

  Args:
    datasets: `cnnjax.data.Datasets` as `load_datasets` returns them.
    classes: the original labels to keep; class `classes[i]` becomes label i. Empty: all
      `datasets.num_classes` classes, labels unchanged.
    per_class: (train, validation, test) examples per class. A 0 keeps every example of that
      split (for train / validation: the split as loaded); train and validation are either both
      drawn or both kept.
    seed: the seed of the draw (`data.seed`).

  Returns:
    New Datasets with `num_classes = len(classes)` and the matching class names.

  Raises:
    ConfigError: bad `classes` or `per_class` values.
    DataError: a class has fewer examples than asked for.
  """
  per_class = tuple(int(n) for n in per_class)
  if len(per_class) != 3 or min(per_class) < 0:
    raise ConfigError(f'data.per_class={per_class} must be three counts (train, validation, '
                      'test) of examples per class, each 0 (keep all) or positive')
  if bool(per_class[0]) != bool(per_class[1]):
    raise ConfigError(f'data.per_class={per_class}: draw both training and validation examples '
                      '(both counts positive) or neither (both 0), since both come from the '
                      'training examples')
  classes = tuple(int(c) for c in classes) or tuple(range(datasets.num_classes))
  bad = [c for c in classes if not 0 <= c < datasets.num_classes]
  if bad or len(set(classes)) != len(classes) or len(classes) < 2:
    raise ConfigError(f'data.classes={classes} must name at least 2 distinct labels in '
                      f'[0, {datasets.num_classes}) (data.num_classes of the source)')
  relabel = np.full(datasets.num_classes, -1, np.int32)
  relabel[list(classes)] = np.arange(len(classes), dtype=np.int32)

  def subset(dataset, indices):
    return _rows(dataset, indices, relabel[dataset.labels[indices]])

  def kept(dataset):
    return np.flatnonzero(np.isin(dataset.labels, classes))

  if per_class[0]:
    pool = _concat(datasets.train, datasets.validation)
    train_idx, val_idx = _draw(pool.labels, classes, per_class[:2], seed, 0,
                               'The training data (train + validation)')
    train, validation = subset(pool, train_idx), subset(pool, val_idx)
  else:
    train = subset(datasets.train, kept(datasets.train))
    validation = subset(datasets.validation, kept(datasets.validation))
  if per_class[2]:
    (test_idx,) = _draw(datasets.test.labels, classes, per_class[2:], seed, 1, 'The test split')
  else:
    test_idx = kept(datasets.test)
  test = subset(datasets.test, test_idx)
  names = datasets.class_names
  return dataclasses.replace(
      datasets, train=train, validation=validation, test=test, num_classes=len(classes),
      class_names=tuple(names[c] for c in classes) if names else None)


def subsets_from_config(datasets, data_config):
  """`select_subsets` as `data.classes` / `data.per_class` ask; unchanged when both are unset."""
  classes = tuple(data_config.get('classes', ()) or ())
  per_class = tuple(data_config.get('per_class', (0, 0, 0)) or (0, 0, 0))
  if not classes and not any(per_class):
    return datasets
  return select_subsets(datasets, classes, per_class, data_config.seed)
