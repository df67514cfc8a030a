"""Tests of the image-folder source on small trees of photos the tests write themselves."""

import io
import os
import warnings

import ml_collections
import numpy as np
import pytest
from PIL import Image

from cnnjax import data
from cnnjax.config import base_config
from cnnjax.data import image_folder
from cnnjax.data.image_folder import ImageFolderWarning
from cnnjax.errors import ConfigError, DataError
import idx_files

# One clearly different colour per class, so a decoded image tells which folder it came from.
COLORS = {'cats': (200, 30, 30), 'dogs': (30, 30, 200), 'birds': (30, 200, 30)}


def write_image(path, color=(200, 30, 30), size=(12, 16), mode='RGB', fmt=None, **save):
  """Writes a solid-colour image of size (height, width) in a Pillow mode and format."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image = Image.new('RGB', (size[1], size[0]), color)
  if mode != 'RGB':
    image = image.convert(mode)
  image.save(path, fmt, **save)
  return path


def noise_jpeg_bytes(size=(32, 32)):
  pixels = np.random.default_rng(0).integers(0, 256, size + (3,), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, 'JPEG', quality=90)
  return buffer.getvalue()


def make_tree(root, splits=('train', 'validation', 'test'), classes=('cats', 'dogs'), per_class=3,
              sizes=((12, 16), (20, 10), (9, 9))):
  """Writes ROOT/split/class/NNN.jpg|png, images of varying sizes in the class's colour."""
  for split in splits:
    for name in classes:
      for i in range(per_class):
        ext = 'jpg' if i % 2 == 0 else 'png'
        write_image(os.path.join(root, split, name, f'{i:03d}.{ext}'), COLORS[name],
                    sizes[i % len(sizes)])
  return str(root)


def folder_config(root, **overrides):
  config = base_config().data
  config.source = 'image_folder'
  config.name = 'tiny_photos'
  config.dir = str(root)
  config.val_split = 'validation'
  config.num_classes = 2
  config.image_size = (8, 10)
  config.decode_workers = 2
  config.update(overrides)
  return config


def load(split_dir, **kwargs):
  kwargs.setdefault('image_size', (8, 10))
  kwargs.setdefault('workers', 2)
  return image_folder.load_split(str(split_dir), **kwargs)


def assert_colors_match_labels(split):
  """Each image's mean colour is its class's colour (JPEG-close): no image has a wrong label."""
  for image, label, path in zip(split.images, split.labels, split.files):
    name = split.class_names[label]
    assert path.split('/')[0] == name
    np.testing.assert_allclose(image.reshape(-1, 3).mean(0), COLORS[name], atol=6)


def test_tree_loads_with_labels_from_sorted_folder_names(tmp_path):
  root = make_tree(tmp_path / 'photos', classes=('dogs', 'cats', 'birds'), per_class=4)
  split = load(os.path.join(root, 'train'))
  assert split.class_names == ('birds', 'cats', 'dogs')
  assert split.images.shape == (12, 8, 10, 3) and split.images.dtype == np.uint8
  np.testing.assert_array_equal(split.labels, np.repeat([0, 1, 2], 4))
  assert split.files[:4] == ('birds/000.jpg', 'birds/001.png', 'birds/002.jpg', 'birds/003.png')
  assert not split.skipped and not split.from_cache
  assert_colors_match_labels(split)


def test_load_datasets_from_an_image_folder(tmp_path):
  root = make_tree(tmp_path / 'photos', per_class=4)
  datasets = data.load_datasets(folder_config(root, pixel_scale=1.0))
  assert (len(datasets.train), len(datasets.validation), len(datasets.test)) == (8, 8, 8)
  assert datasets.image_shape == (8, 10, 3) and datasets.class_names == ('cats', 'dogs')
  assert datasets.train.stored_images.dtype == np.uint8  # A quarter of float32's memory.
  batch = next(iter(data.batches(datasets.train, 8)))
  assert batch['image'].dtype == np.float32 and batch['image'].max() > 100  # 0..255 kept.
  np.testing.assert_array_equal(batch['label'], [0] * 4 + [1] * 4)
  np.testing.assert_array_equal(batch['image'], datasets.train.stored_images)
  # The default scale divides by 255.
  scaled = data.load_datasets(folder_config(root))
  np.testing.assert_array_equal(scaled.test.images,
                                datasets.test.stored_images.astype(np.float32) / 255)


def test_validation_carved_from_train_when_val_split_is_empty(tmp_path):
  root = make_tree(tmp_path / 'photos', splits=('train', 'test'), per_class=5)
  datasets = data.load_datasets(folder_config(root, val_split='', val_fraction=0.2))
  assert (len(datasets.train), len(datasets.validation), len(datasets.test)) == (8, 2, 10)


def test_limit_takes_every_class_in_turn(tmp_path):
  root = make_tree(tmp_path / 'photos', classes=('cats', 'dogs', 'birds'), per_class=3)
  split = load(os.path.join(root, 'train'), limit=5)
  assert split.files == ('birds/000.jpg', 'birds/001.png', 'cats/000.jpg', 'cats/001.png',
                         'dogs/000.jpg')
  datasets = data.load_datasets(folder_config(
      root, val_split='', num_classes=3, limit_train=7, limit_test=3, val_fraction=0.3))
  assert len(datasets.train) + len(datasets.validation) == 7 and len(datasets.test) == 3
  np.testing.assert_array_equal(np.sort(datasets.test.labels), [0, 1, 2])
  with pytest.raises(ConfigError, match=r"keeps no image of the class\(es\) \['dogs'\]"):
    load(os.path.join(root, 'train'), limit=2)


def convertible_images(folder):
  """Writes one image of each convertible kind, all red (a palette / grayscale one: its red)."""
  red = (220, 20, 20)
  write_image(os.path.join(folder, 'cmyk.jpg'), red, mode='CMYK', quality=95)
  write_image(os.path.join(folder, 'gray.png'), red, mode='L')
  write_image(os.path.join(folder, 'gray.jpg'), red, mode='L')
  write_image(os.path.join(folder, 'rgba.png'), red, mode='RGBA')
  write_image(os.path.join(folder, 'gray_la.png'), red, mode='LA')
  write_image(os.path.join(folder, 'palette.png'), red, mode='P')
  write_image(os.path.join(folder, 'palette.gif'), red, mode='P', transparency=0)
  write_image(os.path.join(folder, 'photo.bmp'), red)
  write_image(os.path.join(folder, 'upper.JPEG'), red)
  # A 16-bit grayscale PNG of the same luminance.
  luma = round(0.299 * 220 + 0.587 * 20 + 0.114 * 20)
  Image.fromarray(np.full((12, 16), luma * 257, np.uint16)).save(os.path.join(folder, 'x16.png'))
  # An animated GIF: its first frame (red) is read.
  frames = [Image.new('RGB', (16, 12), c).convert('P') for c in (red, (0, 0, 255))]
  frames[0].save(os.path.join(folder, 'anim.gif'), save_all=True, append_images=frames[1:])
  # A transparent RGBA pixel keeps its stored colour: the alpha channel is dropped.
  rgba = np.zeros((12, 16, 4), np.uint8)
  rgba[..., :3] = red
  Image.fromarray(rgba, 'RGBA').save(os.path.join(folder, 'transparent.png'))
  return red, luma


@pytest.mark.parametrize('color_mode', ['rgb', 'grayscale'])
def test_convertible_images_are_converted(tmp_path, color_mode):
  red, luma = convertible_images(str(tmp_path / 'train' / 'red'))
  write_image(str(tmp_path / 'train' / 'blue' / 'b.png'), (0, 0, 255))
  with warnings.catch_warnings():
    warnings.simplefilter('error')  # Neither cnnjax nor Pillow warns about any of them.
    split = load(tmp_path / 'train', color_mode=color_mode, image_size=(6, 6))
  assert len(split.files) == 13 and not split.skipped
  channels = 3 if color_mode == 'rgb' else 1
  assert split.images.shape == (13, 6, 6, channels)
  reds = split.images[split.labels == 1].reshape(12, -1, channels).mean(1)
  for path, pixel in zip(split.files[1:], reds):
    if color_mode == 'grayscale':
      np.testing.assert_allclose(pixel, [luma], atol=4, err_msg=path)
    elif 'gray' in path or 'x16' in path:
      np.testing.assert_allclose(pixel, [luma] * 3, atol=4, err_msg=path)
    else:
      np.testing.assert_allclose(pixel, red, atol=12, err_msg=path)


def write_bad_files(folder):
  """A truncated JPEG, an empty file and random bytes named .jpg; returns their names."""
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, 'truncated.jpg'), 'wb') as f:
    f.write(noise_jpeg_bytes()[:400])
  open(os.path.join(folder, 'empty.jpg'), 'wb').close()
  with open(os.path.join(folder, 'random.jpg'), 'wb') as f:
    f.write(np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes())
  return ['truncated.jpg', 'empty.jpg', 'random.jpg']


def test_undecodable_files_are_skipped_with_one_warning(tmp_path):
  root = make_tree(tmp_path, splits=('train',), per_class=3)
  bad = write_bad_files(os.path.join(root, 'train', 'dogs'))
  with open(os.path.join(root, 'train', 'cats', 'notes.txt'), 'w') as f:
    f.write('not an image, and not named like one: ignored')
  with pytest.warns(ImageFolderWarning) as caught:
    split = load(os.path.join(root, 'train'))
  assert len(caught) == 1
  message = str(caught[0].message)
  assert '3 of 9 image files' in message and 'data.strict' in message
  for name in bad:
    assert f'dogs/{name}' in message
  assert 'empty (0 bytes)' in message and 'not an image file' in message
  assert 'truncated.jpg: cannot be decoded' in message
  assert 'notes.txt' not in message
  assert [path for path, _ in split.skipped] == [f'dogs/{name}' for name in sorted(bad)]
  assert len(split.files) == 6 and split.images.shape[0] == 6
  assert_colors_match_labels(split)


def test_strict_mode_lists_every_undecodable_file(tmp_path):
  root = make_tree(tmp_path, splits=('train', 'test'), per_class=2)
  bad = write_bad_files(os.path.join(root, 'test', 'cats'))
  with pytest.raises(DataError) as info:
    data.load_datasets(folder_config(root, val_split='', val_fraction=0.5, strict=True))
  message = str(info.value)
  assert os.path.join(root, 'test') in message and 'data.strict = False' in message
  assert all(f'cats/{name}' in message for name in bad)


def test_unreadable_file_is_skipped(tmp_path, monkeypatch):
  # Tests run as root here, and chmod 000 does not stop root from reading, so reading the file
  # is made to fail the way it would for another user.
  root = make_tree(tmp_path, splits=('train',), per_class=2)
  locked = os.path.join(root, 'train', 'dogs', '001.png')
  real_read = image_folder._read_bytes

  def read(path):
    if os.path.samefile(path, locked):
      raise PermissionError(13, 'Permission denied', path)
    return real_read(path)

  monkeypatch.setattr(image_folder, '_read_bytes', read)
  with pytest.warns(ImageFolderWarning, match=r'dogs/001.png: cannot be read \(PermissionError'):
    split = load(os.path.join(root, 'train'))
  assert split.files == ('cats/000.jpg', 'cats/001.png', 'dogs/000.jpg')


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads files whatever their mode')
def test_unreadable_file_is_skipped_for_real(tmp_path):
  root = make_tree(tmp_path, splits=('train',), per_class=2)
  os.chmod(os.path.join(root, 'train', 'dogs', '001.png'), 0)
  with pytest.warns(ImageFolderWarning, match='dogs/001.png: cannot be read'):
    load(os.path.join(root, 'train'))


def test_empty_training_class_is_an_error_naming_the_folder(tmp_path):
  root = make_tree(tmp_path, splits=('train',), per_class=2)
  os.makedirs(os.path.join(root, 'train', 'zebras'))
  with pytest.raises(DataError) as info:
    load(os.path.join(root, 'train'))
  message = str(info.value)
  assert os.path.join(root, 'train', 'zebras') in message and 'cannot be learned' in message


def test_empty_test_class_is_a_warning(tmp_path):
  root = make_tree(tmp_path, splits=('train', 'test'), classes=('cats', 'dogs', 'birds'))
  for name in os.listdir(os.path.join(root, 'test', 'birds')):
    os.remove(os.path.join(root, 'test', 'birds', name))
  with pytest.warns(ImageFolderWarning, match='birds of the test split holds no image'):
    datasets = data.load_datasets(folder_config(root, val_split='', num_classes=3,
                                                val_fraction=0.3))
  assert set(datasets.test.labels) == {1, 2}


def test_training_class_of_only_undecodable_files_is_an_error(tmp_path):
  root = make_tree(tmp_path, splits=('train',), classes=('cats',), per_class=2)
  write_bad_files(os.path.join(root, 'train', 'dogs'))
  with pytest.warns(ImageFolderWarning), pytest.raises(DataError, match='no image that could be'):
    load(os.path.join(root, 'train'))


@pytest.mark.parametrize('classes, found', [(('cats',), "only the class folder 'cats'"),
                                            ((), 'no class folder')])
def test_fewer_than_two_classes_is_an_error(tmp_path, classes, found):
  root = make_tree(tmp_path, splits=('train',), classes=classes)
  os.makedirs(os.path.join(root, 'train', '.ipynb_checkpoints'))  # Hidden: not a class.
  with pytest.raises(DataError) as info:
    load(os.path.join(root, 'train'))
  message = str(info.value)
  assert found in message and os.path.join(root, 'train') in message and 'two classes' in message


def test_hidden_names_are_ignored_and_sub_folders_searched(tmp_path):
  root = make_tree(tmp_path, splits=('train',), per_class=1)
  write_image(os.path.join(root, 'train', 'dogs', 'more', 'a.jpg'), COLORS['dogs'])
  write_image(os.path.join(root, 'train', 'dogs', '.hidden.jpg'), COLORS['cats'])
  write_image(os.path.join(root, 'train', '.ipynb_checkpoints', 'x.jpg'), COLORS['cats'])
  split = load(os.path.join(root, 'train'))
  assert split.class_names == ('cats', 'dogs')
  assert split.files == ('cats/000.jpg', 'dogs/000.jpg', 'dogs/more/a.jpg')
  assert_colors_match_labels(split)


def test_missing_split_directory(tmp_path):
  root = make_tree(tmp_path, splits=('train', 'test'), per_class=1)
  with pytest.raises(DataError) as info:
    data.load_datasets(folder_config(root, val_split='valid'))
  message = str(info.value)
  assert "no split directory 'valid' (data.val_split)" in message
  assert "['test', 'train']" in message and "data.val_split = ''" in message
  with pytest.raises(DataError, match='TFDS feature'):
    data.load_datasets(folder_config(root, train_split='train[:90%]'))


def test_check_location_reports_what_loading_would_without_decoding(tmp_path):
  root = make_tree(tmp_path, splits=('train', 'test'), per_class=1)
  data.check_location(folder_config(root, val_split=''))  # Present: no error.
  with pytest.raises(DataError, match="no split directory 'valid' \\(data.val_split\\)"):
    data.check_location(folder_config(root, val_split='valid'))
  with pytest.raises(DataError, match='Image folder root .*nowhere'):
    data.check_location(folder_config(tmp_path / 'nowhere'))
  with pytest.raises(ConfigError, match='data.dir is empty'):
    data.check_location(folder_config(''))
  # Nothing is decoded: a file that is no image passes the check (loading skips or rejects it).
  with open(os.path.join(root, 'train', 'cats', 'zzz.jpg'), 'wb') as f:
    f.write(b'not a jpeg')
  data.check_location(folder_config(root, val_split=''))


def test_splits_with_different_class_folders(tmp_path):
  root = make_tree(tmp_path, per_class=1)
  os.rename(os.path.join(root, 'validation', 'dogs'), os.path.join(root, 'validation', 'dog'))
  write_image(os.path.join(root, 'test', 'birds', 'a.jpg'), COLORS['birds'])
  with pytest.raises(DataError) as info:
    data.load_datasets(folder_config(root))
  message = str(info.value)
  assert "Training classes" in message and "['cats', 'dogs']" in message
  assert f"{os.path.join(root, 'validation')}: missing ['dogs'], extra ['dog']" in message
  assert f"{os.path.join(root, 'test')}: missing none, extra ['birds']" in message


def test_config_errors(tmp_path):
  root = make_tree(tmp_path, per_class=1)
  with pytest.raises(ConfigError, match='data.num_classes = 10.*2 class folders'):
    data.load_datasets(folder_config(root, num_classes=10))
  with pytest.raises(ConfigError, match='data.dir is empty'):
    data.load_datasets(folder_config(''))
  with pytest.raises(DataError, match='does not exist.*cnnjax.data.cats_vs_dogs'):
    data.load_datasets(folder_config(tmp_path / 'nowhere'))
  with pytest.raises(ConfigError, match=r'data.image_size.*\(180, 180\)'):
    data.load_datasets(folder_config(root, image_size=(0, 10)))
  with pytest.raises(ConfigError, match="'rgb'"):
    data.load_datasets(folder_config(root, color_mode='RGB'))
  with pytest.raises(ConfigError, match='data.pixel_scale'):
    data.load_datasets(folder_config(root, pixel_scale=0.0))
  with pytest.raises(ConfigError, match='data.decode_workers'):
    data.load_datasets(folder_config(root, decode_workers=-1))
  with pytest.raises(ConfigError, match="'image_folder'"):
    data.load_datasets(folder_config(root, source='folder'))


def test_keeping_the_size_needs_one_size(tmp_path):
  root = make_tree(tmp_path, splits=('train',), sizes=((7, 5),), per_class=2)
  split = load(os.path.join(root, 'train'), image_size=(0, 0))
  assert split.images.shape == (4, 7, 5, 3)
  write_image(os.path.join(root, 'train', 'dogs', 'big.jpg'), COLORS['dogs'], size=(9, 11))
  with pytest.raises(DataError) as info:
    load(os.path.join(root, 'train'), image_size=(0, 0))
  message = str(info.value)
  assert '9x11: 1 file(s), e.g. dogs/big.jpg' in message and 'data.image_size' in message


def test_decoding_does_not_depend_on_the_thread_count(tmp_path):
  root = make_tree(tmp_path, splits=('train',), per_class=6, sizes=((40, 30), (17, 23)))
  one = load(os.path.join(root, 'train'), workers=1)
  many = load(os.path.join(root, 'train'), workers=5)
  np.testing.assert_array_equal(one.images, many.images)
  np.testing.assert_array_equal(one.labels, many.labels)


def test_cache_is_reused_and_invalidated_by_a_changed_file(tmp_path, monkeypatch):
  root = make_tree(tmp_path / 'photos', splits=('train',), per_class=2)
  write_bad_files(os.path.join(root, 'train', 'cats'))
  cache = str(tmp_path / 'cache')
  train = os.path.join(root, 'train')
  with pytest.warns(ImageFolderWarning):
    first = load(train, cache_dir=cache)
  assert not first.from_cache and len(os.listdir(cache)) == 1

  def broken_decoder(*args):
    raise AssertionError('the cache should have been read')

  monkeypatch.setattr(image_folder, '_decode_file', broken_decoder)
  # The cached skips are reported again, and strict mode still refuses them.
  with pytest.warns(ImageFolderWarning, match='3 of 7'):
    second = load(train, cache_dir=cache)
  assert second.from_cache and second.files == first.files and second.skipped == first.skipped
  np.testing.assert_array_equal(second.images, first.images)
  np.testing.assert_array_equal(second.labels, first.labels)
  with pytest.raises(DataError, match='truncated.jpg'):
    load(train, cache_dir=cache, strict=True)
  # Other decode options are another key: the files are decoded (here, in vain).
  with pytest.warns(ImageFolderWarning, match='cache should have been read'):
    with pytest.raises(DataError, match='no image that could be decoded'):
      load(train, cache_dir=cache, image_size=(4, 4))

  changed = os.path.join(train, 'dogs', '000.jpg')
  write_image(changed, (0, 255, 0), size=(5, 5))
  stat = os.stat(changed)
  os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
  monkeypatch.undo()
  with pytest.warns(ImageFolderWarning):
    third = load(train, cache_dir=cache)
  assert not third.from_cache
  new_image = third.images[third.files.index('dogs/000.jpg')]
  np.testing.assert_allclose(new_image.reshape(-1, 3).mean(0), (0, 255, 0), atol=6)


def test_damaged_cache_file_is_decoded_again(tmp_path):
  root = make_tree(tmp_path / 'photos', splits=('train',), per_class=1)
  cache = str(tmp_path / 'cache')
  first = load(os.path.join(root, 'train'), cache_dir=cache)
  (name,) = os.listdir(cache)
  with open(os.path.join(cache, name), 'wb') as f:
    f.write(b'not an npz')
  with pytest.warns(ImageFolderWarning, match='unreadable cache file'):
    again = load(os.path.join(root, 'train'), cache_dir=cache)
  np.testing.assert_array_equal(again.images, first.images)
  assert load(os.path.join(root, 'train'), cache_dir=cache).from_cache


def test_load_datasets_uses_the_cache_dir(tmp_path, monkeypatch):
  root = make_tree(tmp_path / 'photos', per_class=2)
  config = folder_config(root, cache_dir=str(tmp_path / 'cache'))
  first = data.load_datasets(config)
  assert len(os.listdir(tmp_path / 'cache')) == 3
  monkeypatch.setattr(image_folder, '_decode_file', None)  # Any decoding would fail.
  second = data.load_datasets(config)
  for role in ('train', 'validation', 'test'):
    np.testing.assert_array_equal(getattr(second, role).images, getattr(first, role).images)


def test_convert_array_matches_decoding_a_file(tmp_path):
  pixels = np.random.default_rng(0).integers(0, 256, (20, 14, 3), dtype=np.uint8)
  Image.fromarray(pixels).save(tmp_path / 'a.png')
  from_file = image_folder._decode_file(str(tmp_path / 'a.png'), (9, 7), 'rgb')
  np.testing.assert_array_equal(image_folder.convert_array(pixels, (9, 7), 'rgb'), from_file)
  gray = image_folder.convert_array(pixels[..., :1], (9, 7), 'rgb')
  assert gray.shape == (9, 7, 3) and (gray[..., 0] == gray[..., 2]).all()
  with pytest.raises(DataError, match='float32'):
    image_folder.convert_array(pixels.astype(np.float32), (9, 7), 'rgb')
  batch = image_folder.convert_arrays(iter([pixels, pixels[:5]]), 2, (4, 4), 'grayscale', 2)
  assert batch.shape == (2, 4, 4, 1)
  with pytest.raises(DataError, match='ended after 2'):
    image_folder.convert_arrays(iter([pixels, pixels]), 3, (4, 4), 'rgb')


def test_idx_source_can_resize(tmp_path):
  # Default IDX configs keep the images exactly (no resize, no colour change).
  idx_files.write_idx_dir(tmp_path, n_train=6, n_test=4)
  config = base_config().data
  config.dir = str(tmp_path)
  config.val_fraction = 0.5
  kept = data.load_datasets(config)
  assert kept.image_shape[2] == 1 and kept.class_names[0] == 'T-shirt/top'
  config.image_size = (10, 12)
  resized = data.load_datasets(config)
  assert resized.image_shape == (10, 12, 3)
  np.testing.assert_array_equal(resized.test.labels, kept.test.labels)


def test_config_without_photo_fields_still_loads(tmp_path):
  root = make_tree(tmp_path, per_class=1, sizes=((6, 6),))
  config = ml_collections.ConfigDict({
      'source': 'image_folder', 'name': 'x', 'dir': root, 'train_split': 'train',
      'val_split': 'validation', 'test_split': 'test', 'val_fraction': 0.1, 'seed': 0,
      'num_classes': 2, 'limit_train': 0, 'limit_test': 0})
  datasets = data.load_datasets(config)
  assert datasets.image_shape == (6, 6, 3) and datasets.train.images.max() <= 1.0
