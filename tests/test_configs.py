"""Every config in configs/ loads, builds its model, and has the parameter count it documents."""

import glob
import os

import pytest

from conftest import REPO
from cnnjax import augment
from cnnjax.models import create_model
from cnnjax.summary import abstract_variables, config_summary, parameter_counts
from test_summary import CONFIG_TOTALS, FROZEN_CONFIG_COUNTS
from test_summary import load_config as unlocked_config

CONFIGS = sorted(os.path.splitext(os.path.basename(p))[0]
                 for p in glob.glob(os.path.join(REPO, 'configs', '*.py'))
                 if not p.endswith('__init__.py'))

# Total, trainable and non-trainable (frozen parameters + BatchNorm moving statistics) parameters
# of the BatchNorm configs, as `--mode summary` prints them: the PyTorch lecture's ResNet18 photo
# workflows, the resnet_small transfer study (docs/transfer_results.md) and InceptionV3's transfer.
BATCH_NORM_CONFIG_COUNTS = {
    'inception_v3_transfer': ('21,804,833', '2,049', '21,802,784'),
    'resnet18_transfer': ('11,186,625', '11,177,025', '9,600'),
    'resnet18_feature_extraction': ('11,186,625', '513', '11,186,112'),
    'resnet18_fine_tuning': ('11,186,625', '8,394,241', '2,792,384'),
    'resnet18_end_to_end': ('11,186,625', '11,177,025', '9,600'),
    'imagenet_resnet50': ('25,610,152', '25,557,032', '53,120'),
    'fashion_mnist_8class_resnet': ('78,296', '77,624', '672'),
    'fashion_mnist_speedrun': ('61,378', '61,042', '336'),
    'fashion_mnist_best': ('299,306', '298,410', '896'),
    'transfer_resnet_fashion_mnist': ('77,841', '77,169', '672'),
    'transfer_resnet_scratch': ('77,841', '77,169', '672'),
    'transfer_resnet_scratch_augment': ('77,841', '77,169', '672'),
    'transfer_resnet_feature_extraction': ('77,841', '65', '77,776'),
    'transfer_resnet_feature_extraction_augment': ('77,841', '65', '77,776'),
    'transfer_resnet_fine_tuning': ('77,841', '57,793', '20,048'),
    'transfer_resnet_end_to_end': ('77,841', '77,169', '672'),
}

# The models of the configs that train nothing or reuse another config's model, by their known
# totals: ResNet50 (torchvision, with its 53,120 statistics), the main job's convnet, Keras'
# InceptionV3 / ResNet50 / VGG16 as Keras prints them, vgg_small with the binary head.
MODEL_TOTALS = {
    'imagenet_predict': '25,610,152',
    'transfer_fashion_mnist': '240,641',
    'visualize_fashion_mnist': '93,322',
    'visualize_inception_v3': '23,851,784',
    'visualize_resnet50': '25,636,712',
    'visualize_vgg16': '138,357,544',
}

# Totals the configs' docstrings (and the reference) state, as the summary prints them.
EXPECTED_TOTALS = {**CONFIG_TOTALS, **MODEL_TOTALS,
                   **{name: counts[0] for name, counts in FROZEN_CONFIG_COUNTS.items()},
                   **{name: counts[0] for name, counts in BATCH_NORM_CONFIG_COUNTS.items()}}


def load(name):
  config = unlocked_config(name)
  config.lock()
  return config


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_its_model(name):
  config = load(name)
  variables = abstract_variables(create_model(config.model), tuple(config.model.input_shape))
  assert name in EXPECTED_TOTALS, f'configs/{name}.py: add its parameter total to this test'
  assert f"{parameter_counts(variables)['total']:,}" == EXPECTED_TOTALS[name]
  augment.make_augmenter(config.augment)  # Its augmentation section is valid.


def test_every_documented_total_has_its_config():
  assert set(EXPECTED_TOTALS) == set(CONFIGS)


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


@pytest.mark.parametrize('name', sorted(BATCH_NORM_CONFIG_COUNTS))
def test_batch_norm_configs_summarize_with_their_freeze(name):
  total, trainable, non_trainable = BATCH_NORM_CONFIG_COUNTS[name]
  lines = config_summary(load(name)).splitlines()
  assert f'Total params: {total}' in lines
  assert f'Trainable params: {trainable}' in lines
  assert f'Non-trainable params: {non_trainable}' in lines
