"""ImageNet preprocessing per weight source (checked against Keras) and decoding predictions."""

import importlib.resources
import json
import os

import numpy as np
import pytest

from cnnjax.errors import ConfigError
from cnnjax.imagenet import decode_predictions, imagenet_classes, preprocess_input

ELEPHANTS = {386: 0.925, 101: 0.070, 385: 0.004}  # SPEC.md section 7: the Grad-CAM photo.


def pixels(shape=(2, 5, 7, 3)):
  return np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)


@pytest.mark.parametrize('mode', ['caffe', 'torch', 'tf'])
def test_preprocess_input_matches_keras(mode):
  os.environ.setdefault('KERAS_BACKEND', 'jax')
  imagenet_utils = pytest.importorskip('keras.src.applications.imagenet_utils')
  x = pixels()
  expected = imagenet_utils.preprocess_input(x.copy(), data_format='channels_last', mode=mode)
  np.testing.assert_allclose(preprocess_input(x, mode), expected, rtol=1e-6, atol=1e-5)


def test_preprocess_input_by_hand():
  x = pixels((1, 1, 1, 3))
  r, g, b = x[0, 0, 0]
  np.testing.assert_allclose(preprocess_input(x, 'caffe')[0, 0, 0],
                             [b - 103.939, g - 116.779, r - 123.68], rtol=1e-6)
  np.testing.assert_allclose(preprocess_input(x, 'torch')[0, 0, 0],
                             [(r / 255 - 0.485) / 0.229, (g / 255 - 0.456) / 0.224,
                              (b / 255 - 0.406) / 0.225], rtol=1e-6)


def test_preprocess_input_errors():
  with pytest.raises(ConfigError, match="'keras' is unknown"):
    preprocess_input(pixels(), 'keras')
  with pytest.raises(ConfigError, match='channels last'):
    preprocess_input(pixels((2, 3, 5, 5)), 'caffe')


def test_class_file_ships_with_the_package():
  text = importlib.resources.files('cnnjax').joinpath(
      'data_files/imagenet_classes.json').read_text(encoding='utf-8')
  assert len(json.loads(text)['classes']) == 1000


def test_classes_are_the_imagenet_synsets_in_model_order():
  classes = imagenet_classes()
  assert len(classes) == 1000 and len({wnid for wnid, _, _ in classes}) == 1000
  assert classes[0] == ('n01440764', 'tench', 'tench, Tinca tinca')
  assert classes[386][:2] == ('n02504458', 'African_elephant')
  assert classes[101][:2] == ('n01871265', 'tusker')
  assert classes[385][:2] == ('n02504013', 'Indian_elephant')
  # Models number the classes by sorted WordNet id.
  assert [wnid for wnid, _, _ in classes] == sorted(wnid for wnid, _, _ in classes)


def test_classes_match_the_tensorflow_datasets_files_they_come_from():
  tfds_root = os.path.dirname(pytest.importorskip('tensorflow_datasets').__file__)
  with open(os.path.join(tfds_root, 'datasets', 'imagenet2012', 'labels.txt')) as f:
    assert [wnid for wnid, _, _ in imagenet_classes()] == f.read().split()
  labels = pytest.importorskip('tensorflow_datasets.datasets.siscore.labels')
  assert [d for _, _, d in imagenet_classes()] == labels.IMAGENET_LABELS_LIST


def elephant_probabilities():
  p = np.full((1, 1000), (1 - sum(ELEPHANTS.values())) / 997, np.float32)
  for index, value in ELEPHANTS.items():
    p[0, index] = value
  return p


def test_decode_probabilities():
  (top3,) = decode_predictions(elephant_probabilities(), top=3, from_logits=False)
  assert [(wnid, name) for wnid, name, _ in top3] == [
      ('n02504458', 'African_elephant'), ('n01871265', 'tusker'), ('n02504013', 'Indian_elephant')]
  np.testing.assert_allclose([p for _, _, p in top3], [0.925, 0.070, 0.004], rtol=1e-6)


def test_decode_logits_applies_softmax():
  logits = np.log(elephant_probabilities()) + 3.0  # Softmax ignores a shift.
  batch = np.concatenate([logits, np.zeros_like(logits)])
  first, uniform = decode_predictions(batch, from_logits=True)
  assert len(first) == 5 and first[0][1] == 'African_elephant'
  np.testing.assert_allclose(first[0][2], 0.925, rtol=1e-5)
  # Ties keep class order.
  assert [name for _, name, _ in uniform[:2]] == ['tench', 'goldfish']
  np.testing.assert_allclose(uniform[0][2], 1e-3, rtol=1e-5)


def test_decode_errors():
  with pytest.raises(ConfigError, match=r'\(N, 1000\)'):
    decode_predictions(np.zeros((2, 10)), from_logits=True)
  with pytest.raises(ConfigError, match='top=0'):
    decode_predictions(np.zeros((1, 1000)), top=0, from_logits=True)
  with pytest.raises(TypeError):
    decode_predictions(np.zeros((1, 1000)))  # Logits or probabilities must be said.
