"""Tests of the cats-vs-dogs subset builder on a fake Kaggle folder of tiny JPEGs."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnnjax import data
from cnnjax.config import base_config
from cnnjax.data import cats_vs_dogs
from cnnjax.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_kaggle(folder, per_class):
  """Writes cat.N.jpg (reddish) and dog.N.jpg (bluish) for N < per_class, 6x8 pixels."""
  os.makedirs(folder, exist_ok=True)
  for prefix, color in (('cat', (210, 40, 40)), ('dog', (40, 40, 210))):
    for i in range(per_class):
      Image.new('RGB', (8, 6), color).save(os.path.join(folder, f'{prefix}.{i}.jpg'))
  return str(folder)


def test_reference_sizes_are_the_defaults():
  assert cats_vs_dogs.EDITIONS[1].counts == (1000, 500, 500)
  assert cats_vs_dogs.EDITIONS[2].counts == (1000, 500, 1000)
  first = {(split, folder): names for split, folder, names in cats_vs_dogs.subset_plan(1)}
  assert first[('train', 'cats')][0] == 'cat.0.jpg' and first[('train', 'cats')][-1] == (
      'cat.999.jpg')
  assert first[('validation', 'dogs')][0] == 'dog.1000.jpg'
  assert first[('test', 'dogs')][-1] == 'dog.1999.jpg' and len(first[('test', 'cats')]) == 500
  second = {(split, folder): names for split, folder, names in cats_vs_dogs.subset_plan(2)}
  assert second[('test', 'cat')][0] == 'cat.1500.jpg'
  assert second[('test', 'dog')][-1] == 'dog.2499.jpg'
  assert sum(len(names) for names in second.values()) == 5000


@pytest.mark.parametrize('edition, folders', [(1, ('cats', 'dogs')), (2, ('cat', 'dog'))])
def test_builds_a_tree_the_image_folder_source_reads(tmp_path, edition, folders):
  source = fake_kaggle(tmp_path / 'kaggle', 12)
  dest = str(tmp_path / 'small')
  written = cats_vs_dogs.build_subsets(source, dest, edition, counts=(3, 2, 1))
  assert written == {(s, f): n for s, n in zip(cats_vs_dogs.SPLITS, (3, 2, 1)) for f in folders}
  assert sorted(os.listdir(os.path.join(dest, 'validation', folders[0]))) == [
      'cat.3.jpg', 'cat.4.jpg']
  assert os.listdir(os.path.join(dest, 'test', folders[1])) == ['dog.5.jpg']
  config = base_config().data
  config.update(source='image_folder', dir=dest, val_split='validation', num_classes=2,
                image_size=(6, 6), decode_workers=1)
  datasets = data.load_datasets(config)
  assert datasets.class_names == folders
  assert (len(datasets.train), len(datasets.validation), len(datasets.test)) == (6, 4, 2)
  # Cats (label 0) are red, dogs (label 1) blue.
  red_minus_blue = datasets.train.images[..., 0].mean((1, 2)) - datasets.train.images[
      ..., 2].mean((1, 2))
  np.testing.assert_array_equal(red_minus_blue < 0, datasets.train.labels == 1)


def test_hard_links(tmp_path):
  source = fake_kaggle(tmp_path / 'kaggle', 3)
  dest = str(tmp_path / 'small')
  cats_vs_dogs.build_subsets(source, dest, 2, counts=(1, 1, 1), link=True)
  assert os.path.samefile(os.path.join(dest, 'test', 'dog', 'dog.2.jpg'),
                          os.path.join(source, 'dog.2.jpg'))


def test_missing_source_files_are_listed_before_anything_is_written(tmp_path):
  source = fake_kaggle(tmp_path / 'kaggle', 4)
  os.remove(os.path.join(source, 'dog.1.jpg'))
  dest = str(tmp_path / 'small')
  with pytest.raises(DataError) as info:
    cats_vs_dogs.build_subsets(source, dest, 1, counts=(2, 2, 2))
  message = str(info.value)
  assert '5 of the 12 files' in message
  assert 'cat.4.jpg, cat.5.jpg, dog.1.jpg, dog.4.jpg, dog.5.jpg' in message
  assert '--counts' in message and not os.path.exists(dest)
  with pytest.raises(DataError, match='3993 of the 4000 files.*and 3983 more'):
    cats_vs_dogs.build_subsets(source, dest, 1)  # The reference sizes need 4,000 files.


def test_source_one_level_too_high_gets_a_hint(tmp_path):
  fake_kaggle(tmp_path / 'kaggle' / 'train', 2)
  with pytest.raises(DataError, match=f'pass --source {tmp_path / "kaggle" / "train"}'):
    cats_vs_dogs.build_subsets(str(tmp_path / 'kaggle'), str(tmp_path / 'small'), 2,
                               counts=(1, 1, 0))
  with pytest.raises(DataError, match='does not exist.*kaggle.com'):
    cats_vs_dogs.build_subsets(str(tmp_path / 'nowhere'), str(tmp_path / 'small'))


def test_non_empty_destination_needs_overwrite(tmp_path):
  source = fake_kaggle(tmp_path / 'kaggle', 4)
  dest = str(tmp_path / 'small')
  cats_vs_dogs.build_subsets(source, dest, 2, counts=(2, 1, 1))
  with open(os.path.join(dest, 'notes.txt'), 'w') as f:
    f.write('kept')
  with pytest.raises(DataError) as info:
    cats_vs_dogs.build_subsets(source, dest, 2, counts=(1, 1, 1))
  message = str(info.value)
  assert 'not empty' in message and '--overwrite' in message and 'another --dest' in message
  cats_vs_dogs.build_subsets(source, dest, 2, counts=(1, 1, 1), overwrite=True)
  assert os.listdir(os.path.join(dest, 'train', 'cat')) == ['cat.0.jpg']
  assert os.path.isfile(os.path.join(dest, 'notes.txt'))


def test_command_line(tmp_path):
  source = fake_kaggle(tmp_path / 'kaggle', 3)
  dest = str(tmp_path / 'small')
  command = [sys.executable, '-m', 'cnnjax.data.cats_vs_dogs', '--source', source, '--dest', dest,
             '--edition', '1', '--counts', '1,1,1']
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr
  assert 'train: cats: 1, dogs: 1' in done.stdout and '--config.data.dir=' in done.stdout
  again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
  assert again.returncode == 2 and again.stderr.startswith('error: Destination')
  assert 'Traceback' not in again.stderr
  bad = subprocess.run(command[:-1] + ['1,x'], cwd=REPO, capture_output=True, text=True,
                       check=False)
  assert bad.returncode == 2 and 'TRAIN,VALIDATION,TEST' in bad.stderr
