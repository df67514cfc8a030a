"""The Keras-style summary: layout, totals with thousands separators, trainable split, configs."""

import importlib.util
import os
import subprocess
import sys

import ml_collections
import pytest

from cnnjax.models import create_model
from cnnjax.summary import config_summary, summary

from conftest import REPO

CONFIG_TOTALS = {
    'fashion_mnist': '93,322',
    'fashion_mnist_gap': '56,394',
    'mnist': '104,202',
    'cats_vs_dogs_scratch': '3,453,121',
    'cats_vs_dogs_augment': '3,453,121',
    'cats_vs_dogs_180': '991,041',
    'cats_vs_dogs_180_augment': '991,041',
}


def load_config(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, 'configs', f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def test_layout_of_the_seed_model():
  text = summary(create_model(ml_collections.ConfigDict({'name': 'small_convnet'})), (28, 28, 1),
                 name='small_convnet')
  lines = text.splitlines()
  assert lines[0] == 'Model: "small_convnet"'
  assert lines[2].split() == ['Layer', '(type)', 'Output', 'Shape', 'Param', '#']
  rows = [line.split(maxsplit=2) for line in lines if line.startswith(('conv', 'pool', 'flat',
                                                                        'dense', 'pred'))]
  assert [(r[0], r[1]) for r in rows] == [
      ('conv1', '(Conv2D)'), ('pool1', '(MaxPooling2D)'), ('conv2', '(Conv2D)'),
      ('pool2', '(MaxPooling2D)'), ('conv3', '(Conv2D)'), ('flatten', '(Flatten)'),
      ('dense1', '(Dense)'), ('predictions', '(Dense)')]
  assert '(None, 26, 26, 32)' in lines[4] and lines[4].endswith(' 320')
  assert any(line.startswith('conv2 (Conv2D)') and line.endswith('18,496') for line in lines)
  assert 'Total params: 93,322' in lines
  assert 'Trainable params: 93,322' in lines
  assert 'Non-trainable params: 0' in lines


def test_trainable_split_follows_a_predicate():
  model = create_model(ml_collections.ConfigDict({'name': 'small_convnet'}))
  frozen_base = lambda path: path[0] in ('dense1', 'predictions')
  lines = summary(model, (28, 28, 1), trainable=frozen_base).splitlines()
  assert 'Total params: 93,322' in lines
  assert 'Trainable params: 37,578' in lines
  assert 'Non-trainable params: 55,744' in lines


@pytest.mark.parametrize('name', sorted(CONFIG_TOTALS))
def test_every_config_summarizes_with_its_exact_count(name):
  config = load_config(name)
  text = summary(create_model(config.model), config.model.input_shape, name=config.model.name)
  assert f'Total params: {CONFIG_TOTALS[name]}' in text.splitlines()
  assert f'Trainable params: {CONFIG_TOTALS[name]}' in text.splitlines()


# Total, trainable and non-trainable parameters of the transfer configs: they follow the freeze.
FROZEN_CONFIG_COUNTS = {
    'vgg16_cats_vs_dogs': ('16,812,353', '16,812,353', '0'),
    'vgg16_feature_extraction': ('16,812,353', '2,097,665', '14,714,688'),
    'vgg16_feature_extraction_augment': ('16,812,353', '2,097,665', '14,714,688'),
    'vgg16_fine_tuning': ('16,812,353', '9,177,089', '7,635,264'),
    'vgg16_end_to_end': ('16,812,353', '16,812,353', '0'),
    'fashion_mnist_8class': ('242,440', '242,440', '0'),
    'transfer_scratch': ('240,641', '240,641', '0'),
    'transfer_scratch_augment': ('240,641', '240,641', '0'),
    'transfer_feature_extraction': ('240,641', '147,969', '92,672'),
    'transfer_feature_extraction_augment': ('240,641', '147,969', '92,672'),
    'transfer_fine_tuning': ('240,641', '221,825', '18,816'),
    'transfer_end_to_end': ('240,641', '240,641', '0'),
}


@pytest.mark.parametrize('name', sorted(FROZEN_CONFIG_COUNTS))
def test_transfer_configs_summarize_with_their_freeze(name):
  total, trainable, non_trainable = FROZEN_CONFIG_COUNTS[name]
  lines = config_summary(load_config(name)).splitlines()
  assert f'Total params: {total}' in lines
  assert f'Trainable params: {trainable}' in lines
  assert f'Non-trainable params: {non_trainable}' in lines


def test_launch_summary_of_a_frozen_vgg16_config():
  out = subprocess.run(
      [sys.executable, os.path.join(REPO, 'launch.py'), '--config',
       os.path.join(REPO, 'configs', 'vgg16_feature_extraction.py'), '--mode', 'summary'],
      capture_output=True, text=True, check=True, cwd=REPO).stdout.splitlines()
  assert 'block5_pool (MaxPooling2D)   (None, 4, 4, 512)         0' in out
  assert 'Non-trainable params: 14,714,688' in out
  assert 'Trainable params: 2,097,665' in out
  assert any(line.startswith('Initialized from (model.init_from): vgg16_weights_tf_dim_ordering')
             for line in out)
