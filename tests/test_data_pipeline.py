"""Tests of the in-memory data set, the validation carve, batching and prefetching."""

import time

import numpy as np
import pytest

from cnnjax.data import ArrayDataset, batches, num_batches, prefetch, split_validation
from cnnjax.data.pipeline import Prefetch
from cnnjax.errors import CnnjaxError, ConfigError, DataError


def make_dataset(n, height=3, width=2, channels=1):
  """A data set whose label is the example's index and whose pixels all equal it / n."""
  images = np.repeat(np.arange(n, dtype=np.float32) / max(n, 1), height * width * channels)
  return ArrayDataset(images.reshape(n, height, width, channels), np.arange(n, dtype=np.int32))


def test_from_uint8_scales_to_unit_interval():
  images = np.array([0, 1, 128, 255], np.uint8).reshape(4, 1, 1, 1)
  dataset = ArrayDataset.from_uint8(images, np.array([3, 2, 1, 0], np.uint8))
  assert len(dataset) == 4
  assert dataset.images.dtype == np.float32 and dataset.labels.dtype == np.int32
  np.testing.assert_allclose(dataset.images.ravel(), [0, 1 / 255, 128 / 255, 1], rtol=1e-6)
  assert dataset.images.max() == 1.0


def test_array_dataset_rejects_wrong_arrays():
  with pytest.raises(DataError, match='from_uint8'):
    ArrayDataset(np.zeros((2, 2, 2, 1), np.uint8), np.zeros(2, np.int32))
  with pytest.raises(DataError, match='int32'):
    ArrayDataset(np.zeros((2, 2, 2, 1), np.float32), np.zeros(2, np.int64))
  with pytest.raises(DataError, match='2 images but 3 labels'):
    ArrayDataset(np.zeros((2, 2, 2, 1), np.float32), np.zeros(3, np.int32))


def split_ids(n, seed, **kwargs):
  ids = np.arange(n)
  (train_x, train_y), (val_x, val_y) = split_validation(ids * 10, ids, seed=seed, **kwargs)
  np.testing.assert_array_equal(train_x, train_y * 10)  # Images stay with their labels.
  np.testing.assert_array_equal(val_x, val_y * 10)
  return train_y, val_y


def test_split_validation_is_a_deterministic_partition():
  train, val = split_ids(100, seed=3, fraction=0.1)
  assert (len(train), len(val)) == (90, 10)
  assert not set(train) & set(val)
  np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(100))
  same_train, same_val = split_ids(100, seed=3, fraction=0.1)
  np.testing.assert_array_equal(same_val, val)
  np.testing.assert_array_equal(same_train, train)
  assert not np.array_equal(split_ids(100, seed=4, fraction=0.1)[1], val)
  # Each part keeps the original order.
  assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)


def test_split_validation_by_size():
  train, val = split_ids(10, seed=0, size=3)
  assert (len(train), len(val)) == (7, 3)


@pytest.mark.parametrize('n, kwargs, match', [
    (10, {}, 'exactly one'),
    (10, {'fraction': 0.1, 'size': 1}, 'exactly one'),
    (10, {'fraction': 0.0}, r'data.val_fraction.*\(0, 1\)'),
    (10, {'fraction': 1.0}, r'data.val_fraction.*\(0, 1\)'),
    (10, {'fraction': -0.5}, r'\(0, 1\)'),
    (3, {'fraction': 0.1}, 'leaves 0 for validation and 3 for training'),
    (3, {'fraction': 0.9}, 'leaves 3 for validation and 0 for training'),
    (3, {'size': 3}, 'leaves 3 for validation'),
    (3, {'size': 0}, 'leaves 0 for validation'),
])
def test_split_validation_errors(n, kwargs, match):
  with pytest.raises(ConfigError, match=match):
    split_ids(n, seed=0, **kwargs)


def test_batches_pad_the_last_batch_and_mask_it():
  dataset = make_dataset(10)
  out = list(batches(dataset, 4))
  assert len(out) == num_batches(10, 4, False) == 3
  for batch in out:
    assert batch['image'].shape == (4, 3, 2, 1) and batch['image'].dtype == np.float32
    assert batch['label'].shape == (4,) and batch['label'].dtype == np.int32
    assert batch['mask'].shape == (4,) and batch['mask'].dtype == np.float32
  np.testing.assert_array_equal(out[0]['label'], [0, 1, 2, 3])
  np.testing.assert_array_equal(out[2]['label'], [8, 9, 0, 0])
  np.testing.assert_array_equal(out[2]['mask'], [1, 1, 0, 0])
  np.testing.assert_array_equal(out[2]['image'][:2], dataset.images[8:])
  assert not out[2]['image'][2:].any()


def test_batches_drop_remainder():
  out = list(batches(make_dataset(10), 4, drop_remainder=True))
  assert len(out) == num_batches(10, 4, True) == 2
  assert all(batch['mask'].all() for batch in out)
  np.testing.assert_array_equal(np.concatenate([b['label'] for b in out]), np.arange(8))


def test_num_batches():
  assert num_batches(8, 4, False) == num_batches(8, 4, True) == 2
  assert num_batches(9, 4, False) == 3
  assert num_batches(0, 4, False) == 0
  assert num_batches(1, 1, True) == 1


def test_batch_size_errors_are_raised_at_the_call():
  dataset = make_dataset(5)
  with pytest.raises(ConfigError, match='at least 1'):
    batches(dataset, 0)
  with pytest.raises(ConfigError) as info:
    batches(dataset, 8, drop_remainder=True)
  assert '5 examples' in str(info.value) and 'batch of 8' in str(info.value)


def epoch_labels(dataset, batch_size, **kwargs):
  """The labels of the real (unpadded) rows of one epoch, in order."""
  out = [(b['label'], b['mask']) for b in batches(dataset, batch_size, **kwargs)]
  return np.concatenate([label[mask > 0] for label, mask in out])


def test_shuffle_sees_every_example_once_per_epoch():
  dataset = make_dataset(23)
  for epoch in range(3):
    labels = epoch_labels(dataset, 5, shuffle=True, seed=1, epoch=epoch)
    np.testing.assert_array_equal(np.sort(labels), np.arange(23))
  np.testing.assert_array_equal(epoch_labels(dataset, 5), np.arange(23))


def test_shuffle_order_depends_only_on_seed_and_epoch():
  dataset = make_dataset(50)
  epoch_2 = epoch_labels(dataset, 8, shuffle=True, seed=7, epoch=2)
  # The same order whatever came before, as when a run resumes at epoch 2.
  for _ in range(2):
    epoch_labels(dataset, 8, shuffle=True, seed=7, epoch=0)
  np.testing.assert_array_equal(epoch_labels(dataset, 8, shuffle=True, seed=7, epoch=2), epoch_2)
  # The batch size only cuts the same order differently.
  np.testing.assert_array_equal(epoch_labels(dataset, 3, shuffle=True, seed=7, epoch=2), epoch_2)
  assert not np.array_equal(epoch_labels(dataset, 8, shuffle=True, seed=7, epoch=3), epoch_2)
  assert not np.array_equal(epoch_labels(dataset, 8, shuffle=True, seed=8, epoch=2), epoch_2)
  assert not np.array_equal(epoch_2, np.arange(50))


def test_prefetch_yields_the_same_sequence():
  dataset = make_dataset(17)
  expected = list(batches(dataset, 4, shuffle=True, seed=2))
  got = list(prefetch(batches(dataset, 4, shuffle=True, seed=2), size=2))
  assert len(got) == len(expected)
  for a, b in zip(got, expected):
    for key in ('image', 'label', 'mask'):
      np.testing.assert_array_equal(a[key], b[key])
  assert list(prefetch(iter([]))) == []


def test_prefetch_reraises_producer_errors():
  def failing():
    yield 1
    yield 2
    raise DataError('bad example 3')

  it = prefetch(failing())
  assert next(it) == 1 and next(it) == 2
  with pytest.raises(CnnjaxError, match='bad example 3'):
    next(it)
  with pytest.raises(StopIteration):
    next(it)


def counting_forever(counter):
  while True:
    counter[0] += 1
    yield counter[0]


def test_prefetch_is_bounded_and_stops_when_closed():
  counter = [0]
  with Prefetch(counting_forever(counter), size=3) as it:
    assert [next(it) for _ in range(5)] == [1, 2, 3, 4, 5]
    time.sleep(0.1)
    # At most `size` items wait in the queue and one more waits to be put.
    assert counter[0] <= 5 + 3 + 1
  thread = it._thread
  thread.join(timeout=2)
  assert not thread.is_alive()
  with pytest.raises(StopIteration):
    next(it)


def test_prefetch_stops_when_dropped():
  it = prefetch(counting_forever([0]), size=1)
  next(it)
  thread = it._thread
  del it  # The consumer stops early without closing; collection must stop the thread.
  thread.join(timeout=2)
  assert not thread.is_alive()


def test_prefetch_size_must_be_positive():
  with pytest.raises(ConfigError, match='at least 1'):
    prefetch(iter([1]), size=0)


def test_uint8_storage_gives_the_batches_of_float32_storage():
  pixels = np.random.default_rng(0).integers(0, 256, (11, 4, 3, 2), dtype=np.uint8)
  pixels[0] = 255
  labels = np.arange(11, dtype=np.int32)
  stored = ArrayDataset.from_uint8(pixels, labels)
  assert stored.stored_images.dtype == np.uint8 and stored.pixel_scale == 255.0
  assert stored.image_shape == (4, 3, 2) and len(stored) == 11
  up_front = ArrayDataset(pixels.astype(np.float32) / np.float32(255), labels)
  assert up_front.pixel_scale is None and up_front.stored_images is up_front.images
  for a, b in zip(batches(stored, 4, shuffle=True, seed=1), batches(up_front, 4, shuffle=True,
                                                                    seed=1)):
    assert a['image'].dtype == np.float32
    np.testing.assert_array_equal(a['image'], b['image'])  # Bit for bit.
    np.testing.assert_array_equal(a['label'], b['label'])
  assert stored.images.max() == 1.0
  np.testing.assert_array_equal(stored.take(np.array([3, 1])), up_front.images[[3, 1]])
  kept = ArrayDataset.from_uint8(pixels, labels, pixel_scale=1)
  np.testing.assert_array_equal(kept.images, pixels.astype(np.float32))
  assert 'uint8 / 255' in repr(stored)


@pytest.mark.parametrize('scale', [0, -1.0, float('nan'), 'x'])
def test_pixel_scale_must_be_positive(scale):
  with pytest.raises(ConfigError, match='data.pixel_scale'):
    ArrayDataset.from_uint8(np.zeros((1, 1, 1, 1), np.uint8), [0], pixel_scale=scale)


def test_pixel_scale_needs_uint8_pixels():
  with pytest.raises(DataError, match='uint8 pixels'):
    ArrayDataset(np.zeros((2, 2, 2, 1), np.float32), np.zeros(2, np.int32), pixel_scale=255)
