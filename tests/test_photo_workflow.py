"""The photo workflow end to end on real images: Fashion-MNIST classes exported as a JPEG folder
tree by the export command, read back by the image-folder source, and trained on with the
cats-vs-dogs augmentation config through launch.py."""

import json
import os
import subprocess
import sys

from conftest import REPO


def run(*args):
  return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                        timeout=600)


def test_exported_jpegs_train_with_augmentation_through_launch(tmp_path, tiny_config):
  photos = tmp_path / 'photos'
  export = run('-m', 'cnnjax.data.export', '--dest', str(photos), '--dir', tiny_config.data.dir,
               '--classes', '0,6', '--per-class', '60,20,40', '--size', '64', '--color', 'rgb')
  assert export.returncode == 0, export.stderr
  for split, count in (('train', 60), ('validation', 20), ('test', 40)):
    assert sorted(os.listdir(photos / split)) == ['0_t-shirt_top', '1_shirt']
    assert len(os.listdir(photos / split / '1_shirt')) == count
  # One broken JPEG among the training photos: skipped with a warning, the run goes on.
  (photos / 'train' / '1_shirt' / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not a jpeg')

  workdir = tmp_path / 'run'
  launch = run('launch.py', '--config', 'configs/cats_vs_dogs_augment.py',
               '--workdir', str(workdir), f'--config.data.dir={photos}',
               '--config.data.image_size=(64, 64)', '--config.model.input_shape=(64, 64, 3)',
               '--config.train.epochs=2', '--config.train.batch_size=20',
               '--config.train.eval_batch_size=20')
  assert launch.returncode == 0, launch.stderr
  assert 'broken.jpg' in launch.stderr  # The one warning that lists the skipped files.
  assert 'Traceback' not in launch.stderr
  assert '120 train / 40 validation / 80 test images of (64, 64, 3)' in launch.stdout
  with open(workdir / 'history.json') as f:
    history = json.load(f)
  assert [record['epoch'] for record in history] == [1, 2]
  with open(workdir / 'config.json') as f:
    assert json.load(f)['augment']['kind'] == 'image_data_generator'
  with open(workdir / 'augmentation_preview.png', 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  with open(workdir / 'test_metrics.json') as f:
    assert 0.0 <= json.load(f)['test_accuracy'] <= 1.0
