"""Every config in configs/ loads, builds its model, and has the parameter count it documents."""

import glob
import os

import pytest

from conftest import REPO
from cnnjax import augment
from cnnjax.models import create_model
from cnnjax.summary import abstract_variables, parameter_counts
from test_summary import CONFIG_TOTALS, FROZEN_CONFIG_COUNTS
from test_summary import load_config as unlocked_config

CONFIGS = sorted(os.path.splitext(os.path.basename(p))[0]
                 for p in glob.glob(os.path.join(REPO, 'configs', '*.py'))
                 if not p.endswith('__init__.py'))

# Totals the configs' docstrings (and the reference) state, as the summary prints them.
EXPECTED_TOTALS = {**CONFIG_TOTALS,
                   **{name: counts[0] for name, counts in FROZEN_CONFIG_COUNTS.items()}}


def load(name):
  config = unlocked_config(name)
  config.lock()
  return config


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_its_model(name):
  config = load(name)
  variables = abstract_variables(create_model(config.model), tuple(config.model.input_shape))
  total = f"{parameter_counts(variables)['total']:,}"
  assert total == EXPECTED_TOTALS.get(name, total)
  augment.make_augmenter(config.augment)  # Its augmentation section is valid.


def test_every_documented_total_has_its_config():
  assert set(EXPECTED_TOTALS) <= set(CONFIGS)


def test_photo_configs_read_the_reference_layout():
  for name in ('cats_vs_dogs_scratch', 'cats_vs_dogs_augment', 'cats_vs_dogs_180',
               'cats_vs_dogs_180_augment'):
    data = load(name).data
    assert (data.source, data.train_split, data.val_split, data.test_split) == (
        'image_folder', 'train', 'validation', 'test')
    assert tuple(data.image_size) == tuple(load(name).model.input_shape[:2])
  assert load('cats_vs_dogs_augment').augment.kind == 'image_data_generator'
  assert load('cats_vs_dogs_180_augment').augment.kind == 'keras_layers'
  # The 180 model rescales by 1/255 itself, so its data keep 0..255.
  assert load('cats_vs_dogs_180').data.pixel_scale == 1.0
