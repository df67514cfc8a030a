"""The Keras-style summary: layout, totals with thousands separators, trainable split, configs."""

import importlib.util
import os

import ml_collections
import pytest

from cnnjax.models import create_model
from cnnjax.summary import summary

from conftest import REPO

CONFIG_TOTALS = {
    'fashion_mnist': '93,322',
    'fashion_mnist_gap': '56,394',
    'mnist': '104,202',
    'cats_vs_dogs_scratch': '3,453,121',
    'cats_vs_dogs_180': '991,041',
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
