"""launch.py as a user runs it: summary mode, a misspelt override, bad data, a tiny training run."""

import json
import os
import subprocess
import sys

from conftest import REPO


def launch(*args, env=None):
  return subprocess.run([sys.executable, os.path.join(REPO, 'launch.py'), *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300,
                        env={**os.environ, **(env or {})})


def test_summary_mode_needs_no_data():
  run = launch('--config', 'configs/cats_vs_dogs_scratch.py', '--mode', 'summary')
  assert run.returncode == 0, run.stderr
  assert 'Total params: 3,453,121' in run.stdout.splitlines()
  assert 'Non-trainable params: 0' in run.stdout.splitlines()


def test_misspelt_override_is_an_error_naming_it():
  run = launch('--config', 'configs/fashion_mnist.py', '--mode', 'summary',
               '--config.train.epoch=3')
  assert run.returncode != 0
  assert 'epoch' in run.stderr and 'Did you mean "epochs"' in run.stderr
  assert 'Traceback' not in run.stderr


def test_missing_config_file():
  run = launch('--config', 'configs/no_such_config.py', '--mode', 'summary')
  assert run.returncode != 0
  assert "no config file 'configs/no_such_config.py'" in run.stderr
  assert 'Traceback' not in run.stderr


def test_missing_data_says_how_to_get_it(tmp_path):
  # With measuring on and an empty cache, the process settings would be measured first (a
  # minute of train steps): the missing data must be reported before that.
  run = launch('--config', 'configs/fashion_mnist.py', '--workdir', str(tmp_path / 'run'),
               f'--config.data.dir={tmp_path / "nowhere"}',
               env={'CNNJAX_TUNING': 'measure', 'CNNJAX_CACHE_DIR': str(tmp_path / 'cache')})
  assert run.returncode == 2
  assert str(tmp_path / 'nowhere') in run.stderr
  assert 'dataset-fashion-mnist' in run.stderr
  assert 'Traceback' not in run.stderr
  assert 'ms per train step' not in run.stdout, run.stdout


def test_an_incomplete_data_directory_is_reported_before_measuring(tmp_path):
  data = tmp_path / 'data'
  data.mkdir()
  for name in ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte'):
    (data / name).write_bytes(b'')  # Present; the test labels are missing.
  run = launch('--config', 'configs/fashion_mnist.py', '--workdir', str(tmp_path / 'run'),
               f'--config.data.dir={data}',
               env={'CNNJAX_TUNING': 'measure', 'CNNJAX_CACHE_DIR': str(tmp_path / 'cache')})
  assert run.returncode == 2
  assert 'The test split is incomplete' in run.stderr
  assert str(data / 't10k-labels-idx1-ubyte') in run.stderr
  assert 'ms per train step' not in run.stdout, run.stdout


def test_tiny_training_run_with_overrides(tmp_path, tiny_config):
  workdir = tmp_path / 'run'
  run = launch('--config', 'configs/fashion_mnist.py', '--workdir', str(workdir),
               f'--config.data.dir={tiny_config.data.dir}', '--config.data.limit_train=640',
               '--config.data.limit_test=128', '--config.train.epochs=1',
               '--config.train.batch_size=32')
  assert run.returncode == 0, run.stderr
  last = run.stdout.strip().splitlines()[-1]
  assert last.startswith('test_accuracy: 0.')
  with open(workdir / 'config.json') as f:
    saved = json.load(f)
  assert saved['data']['limit_train'] == 640 and saved['train']['batch_size'] == 32
