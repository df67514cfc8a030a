"""Transfer learning: class subsets, init_from (files and runs), cached features, the workflows."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.config import base_config
from cnnjax.data import ArrayDataset, Datasets
from cnnjax.data.idx import FASHION_MNIST_DIR
from cnnjax.data import load_datasets
from cnnjax.data.subsets import select_subsets, subsets_from_config
from cnnjax.errors import ConfigError, DataError
from cnnjax.models.vgg_classifier import VGGClassifier
from cnnjax.training.checkpointing import Checkpoints
from cnnjax.training.history import read_history
from cnnjax.training.train import train_and_evaluate
from cnnjax.transfer import features as features_lib
from cnnjax.transfer.pretrained import init_from_pretrained, load_run_variables

from conftest import REPO
from keras_files import write_weights_h5

TINY_BLOCKS = ((1, 4), (1, 8))

# Runs that compile what an earlier one did (resumed runs, runs of the same model) load it from
# JAX's persistent compilation cache instead (conftest.py): seconds a run.
pytestmark = pytest.mark.usefixtures('persistent_compilation_cache')


# -- class subsets ----------------------------------------------------------------------------


def fake_datasets(per_class_train=30, per_class_test=10, num_classes=4):
  def split(n, offset):
    labels = np.repeat(np.arange(num_classes), n).astype(np.int32)
    images = (np.arange(len(labels)) + offset).astype(np.uint8).reshape(-1, 1, 1, 1)
    return ArrayDataset.from_uint8(np.broadcast_to(images, (len(labels), 2, 2, 1)).copy(),
                                   labels)
  train = split(per_class_train, 0)
  test = split(per_class_test, 200)
  carve = np.arange(len(train)) % 5 == 0  # A validation carve, as load_datasets makes one.

  def rows(dataset, keep):
    return ArrayDataset.from_uint8(dataset.stored_images[keep], dataset.labels[keep])
  return Datasets(rows(train, ~carve), rows(train, carve), test, num_classes, (2, 2, 1), 'fake',
                  tuple(f'class{i}' for i in range(num_classes)))


def ids(dataset):
  return set(dataset.stored_images[:, 0, 0, 0].tolist())


def test_subsets_draw_per_class_counts_and_relabel():
  datasets = fake_datasets()
  picked = select_subsets(datasets, (3, 1), (12, 5, 4), seed=0)
  assert picked.num_classes == 2 and picked.class_names == ('class3', 'class1')
  for split, count in (('train', 12), ('validation', 5), ('test', 4)):
    labels = getattr(picked, split).labels
    assert np.bincount(labels).tolist() == [count, count]
  # Class 3 became label 0: its images are the ones of class 3 in the originals.
  pool = np.concatenate([datasets.train.stored_images, datasets.validation.stored_images])
  pool_labels = np.concatenate([datasets.train.labels, datasets.validation.labels])
  class3 = set(pool[pool_labels == 3, 0, 0, 0].tolist())
  assert {int(x) for x, y in zip(picked.train.stored_images[:, 0, 0, 0], picked.train.labels)
          if y == 0} <= class3
  # Train and validation are disjoint draws from the training examples; seeded.
  assert not ids(picked.train) & ids(picked.validation)
  assert ids(picked.test) <= ids(datasets.test)
  again = select_subsets(datasets, (3, 1), (12, 5, 4), seed=0)
  assert ids(again.train) == ids(picked.train)
  other = select_subsets(datasets, (3, 1), (12, 5, 4), seed=1)
  assert ids(other.train) != ids(picked.train)
  assert picked.train.pixel_scale == 255.0


def test_subsets_keep_everything_of_the_classes_with_zero_counts():
  datasets = fake_datasets()
  picked = select_subsets(datasets, (2, 0), (0, 0, 0), seed=0)
  assert len(picked.train) + len(picked.validation) == 60 and len(picked.test) == 20
  assert set(picked.train.labels.tolist()) == {0, 1}


@pytest.mark.parametrize('classes,per_class,error,message', [
    ((0, 1), (25, 10, 0), DataError, 'class 0, fewer than the 35'),
    ((0, 7), (1, 1, 1), ConfigError, r'data.classes=\(0, 7\)'),
    ((1,), (1, 1, 1), ConfigError, 'at least 2 distinct'),
    ((0, 1), (5, 0, 1), ConfigError, 'both counts positive'),
    ((0, 1), (5, 5), ConfigError, 'three counts'),
])
def test_bad_subsets_are_named(classes, per_class, error, message):
  with pytest.raises(error, match=message):
    select_subsets(fake_datasets(), classes, per_class, seed=0)


def test_subsets_from_config_leaves_unset_fields_alone(tiny_config):
  datasets = fake_datasets()
  assert subsets_from_config(datasets, tiny_config.data) is datasets


def test_load_datasets_draws_the_configured_subset(tiny_config):
  # Every user of load_datasets (training, the visualize job) gets the same small-data task.
  tiny_config.data.classes = (6, 0)
  tiny_config.data.per_class = (20, 5, 10)
  datasets = load_datasets(tiny_config.data)
  assert (len(datasets.train), len(datasets.validation), len(datasets.test)) == (40, 10, 20)
  assert set(datasets.train.labels.tolist()) == {0, 1}
  assert datasets.class_names == ('Shirt', 'T-shirt/top')


# -- init_from --------------------------------------------------------------------------------


def tiny_params(seed, num_outputs=2):
  """Random parameters of a two-block VGGClassifier on 8x8x1 (NumPy: no compilation needed)."""
  model = VGGClassifier(blocks=TINY_BLOCKS, num_outputs=num_outputs, hidden_units=(8,))
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 1)))['params']
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: rng.normal(0, 0.3, x.shape).astype(x.dtype), shapes)


def test_init_from_a_weight_file_takes_the_named_layers_and_keeps_a_new_head(tmp_path):
  pretrained = jax.device_get(tiny_params(seed=1, num_outputs=5))
  path = write_weights_h5(tmp_path / 'w.h5', pretrained)
  fresh = tiny_params(seed=0)
  messages = []
  merged = init_from_pretrained({'params': fresh}, path, ('block.*',), 'vgg_small',
                                log=messages.append)['params']
  for layer in ('block1_conv1', 'block2_conv1'):
    np.testing.assert_array_equal(merged[layer]['kernel'], pretrained[layer]['kernel'])
  for layer in ('dense1', 'predictions'):
    np.testing.assert_array_equal(merged[layer]['kernel'], fresh[layer]['kernel'])
  (message,) = messages
  assert 'taken (4 parameters): block1_conv1, block2_conv1' in message
  assert 'new (freshly initialized): dense1, predictions' in message
  assert 'in the weights but not taken: dense1, predictions' in message


def test_init_from_mismatches_are_listed(tmp_path):
  pretrained = jax.device_get(tiny_params(seed=1, num_outputs=5))
  path = write_weights_h5(tmp_path / 'w.h5', pretrained)
  with pytest.raises(DataError, match=r'wrong shapes \(2\): predictions/bias: \(5,\) loaded, '
                                      r'\(2,\) in the model; predictions/kernel: \(8, 5\)'):
    init_from_pretrained({'params': tiny_params(seed=0)}, path, ('.*',), 'vgg_small',
                         log=lambda _: None)
  with pytest.raises(ConfigError, match=r"\['block9.\*'\] match nothing in .*w.h5; it holds the "
                                        'layers block1_conv1, block2_conv1, dense1'):
    init_from_pretrained({'params': tiny_params(seed=0)}, path, ('block.*', 'block9.*'),
                         'vgg_small')
  del pretrained['block2_conv1']
  path = write_weights_h5(tmp_path / 'partial.h5', pretrained)
  with pytest.raises(DataError, match=r'(?s)missing from the weights \(2\): block2_conv1/bias, '
                                      r'block2_conv1/kernel\n.*model.init_layers'):
    init_from_pretrained({'params': tiny_params(seed=0)}, path, ('block.*',), 'vgg_small')


def test_init_from_a_missing_file_names_it_and_where_to_get_weights(tmp_path):
  missing = str(tmp_path / 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5')
  with pytest.raises(DataError) as error:
    init_from_pretrained({'params': tiny_params(seed=0)}, missing, ('block.*',),
                         'vgg_small')
  assert missing in str(error.value)
  assert 'https://storage.googleapis.com/tensorflow/keras-applications/vgg16/' in str(error.value)
  with pytest.raises(DataError, match='without checkpoints/'):
    init_from_pretrained({'params': tiny_params(seed=0)}, str(tmp_path), ('block.*',),
                         'vgg_small')


# -- cached features --------------------------------------------------------------------------


def test_head_on_features_is_the_whole_model():
  model = VGGClassifier(blocks=TINY_BLOCKS, num_outputs=2, hidden_units=(8,))
  params = tiny_params(seed=0)
  images = jnp.asarray(np.random.default_rng(0).random((5, 8, 8, 1), dtype=np.float32))
  feats = model.apply({'params': params}, images, features_only=True)
  assert feats.shape == (5, 2, 2, 8)
  assert features_lib.feature_shape(model, (8, 8, 1)) == (2, 2, 8)
  np.testing.assert_allclose(model.apply({'params': params}, feats, from_features=True),
                             model.apply({'params': params}, images), rtol=1e-5, atol=1e-6)
  dataset = ArrayDataset(np.asarray(images), np.zeros(5, np.int32))
  np.testing.assert_allclose(features_lib.extract_features(model, {'params': params}, dataset, 2), feats,
                             rtol=1e-6)


def test_feature_cache_is_reused_and_invalidated(tmp_path):
  model = VGGClassifier(blocks=TINY_BLOCKS, num_outputs=2, hidden_units=(8,))
  datasets = fake_datasets(num_classes=2)
  datasets = dataclasses.replace(datasets, image_shape=(8, 8, 1), **{
      split: ArrayDataset.from_uint8(np.resize(getattr(datasets, split).stored_images,
                                               (len(getattr(datasets, split)), 8, 8, 1)),
                                     getattr(datasets, split).labels)
      for split in ('train', 'validation', 'test')})
  params = tiny_params(seed=0)
  base = ['block1_conv1/kernel', 'block1_conv1/bias', 'block2_conv1/kernel', 'block2_conv1/bias']
  assert sorted(features_lib.check_feature_model(model, (8, 8, 1), base)) == sorted(base)
  log = []
  first = features_lib.feature_datasets(model, {'params': params}, base, datasets, str(tmp_path), 16,
                                        log=log.append)
  assert first.image_shape == (2, 2, 8) and len(first.train) == len(datasets.train)
  np.testing.assert_array_equal(first.test.labels, datasets.test.labels)
  again = features_lib.feature_datasets(model, {'params': params}, base, datasets, str(tmp_path), 16,
                                        log=log.append)
  np.testing.assert_array_equal(again.train.images, first.train.images)
  # Another head does not matter; another base or other data do.
  other_head = jax.tree.map(lambda x: x, params)
  other_head['predictions']['bias'] = other_head['predictions']['bias'] + 1
  features_lib.feature_datasets(model, {'params': other_head}, base, datasets, str(tmp_path), 16,
                                log=log.append)
  other_base = tiny_params(seed=3)
  features_lib.feature_datasets(model, {'params': other_base}, base, datasets, str(tmp_path), 16,
                                log=log.append)
  fewer = dataclasses.replace(datasets, test=ArrayDataset.from_uint8(
      datasets.test.stored_images[:-1], datasets.test.labels[:-1]))
  features_lib.feature_datasets(model, {'params': other_base}, base, fewer, str(tmp_path), 16,
                                log=log.append)
  kinds = ['reuse' if 'reusing' in m else 'stale' if 'another base' in m else 'ran' for m in log]
  assert kinds == ['ran', 'reuse', 'reuse', 'stale', 'ran', 'stale', 'ran']
  with pytest.raises(ConfigError, match='whole base must be frozen.*block2_conv1'):
    features_lib.check_feature_model(model, (8, 8, 1), base[:2])


# -- the workflows through the training loop, on real Fashion-MNIST -------------------------


def small_config():
  """Real Fashion-MNIST, one epoch, small batches (as conftest's tiny_config)."""
  config = base_config()
  config.data.dir = os.environ.get('CNNJAX_DATA_DIR', FASHION_MNIST_DIR)
  config.train.epochs = 1
  config.train.batch_size = 32
  config.train.eval_batch_size = 128
  return config


def transfer_config(**train_fields):
  """T-shirt/top vs Shirt, 64 / 32 / 32 images per class, vgg_small with one sigmoid output."""
  config = small_config()
  config.data.classes = (0, 6)
  config.data.per_class = (64, 32, 32)
  config.model.name = 'vgg_small'
  config.model.num_outputs = 1
  config.train.loss = 'binary_crossentropy'
  for name, value in train_fields.items():
    config.train[name] = value
  return config


@pytest.fixture(scope='module')
def pretrained_run(tmp_path_factory):
  """A one-epoch 'pretraining' of vgg_small on the 8 other classes (256 images)."""
  config = small_config()
  config.data.classes = (1, 2, 3, 4, 5, 7, 8, 9)
  config.data.per_class = (32, 8, 8)
  config.model.name = 'vgg_small'
  config.model.num_outputs = 8
  workdir = str(tmp_path_factory.mktemp('pretrain'))
  train_and_evaluate(config, workdir)
  return workdir


def test_frozen_transfer_then_fine_tuning_from_its_checkpoint(pretrained_run, tmp_path, capsys):
  """Workflows 2 and 3: the base stays bit for bit (adamw decay on), then phase 2 unfreezes."""
  config = transfer_config(param_groups=('block.*=frozen', '.*=1'), optimizer='adamw',
                           weight_decay=0.1)
  config.model.init_from = pretrained_run
  config.model.init_layers = ('block.*',)
  config.augment.kind = 'keras_layers'
  phase1 = str(tmp_path / 'phase1')
  train_and_evaluate(config, phase1)
  out = capsys.readouterr().out
  assert 'Non-trainable params: 92,672' in out.splitlines()
  assert 'taken (8 parameters): block1_conv1, block2_conv1, block3_conv1, block3_conv2' in out
  assert '128 train / 64 validation / 64 test images' in out
  pretrained = load_run_variables(pretrained_run)[0]['params']
  trained = load_run_variables(phase1)[0]['params']
  for layer in ('block1_conv1', 'block3_conv2'):
    assert trained[layer]['kernel'].tobytes() == pretrained[layer]['kernel'].tobytes()
  assert trained['predictions']['kernel'].shape == (256, 1)

  config.model.init_from = phase1  # Phase 2: everything from phase 1's best checkpoint,
  config.model.init_layers = ('.*',)
  config.train.param_groups = ('block[12]_.*=frozen', '.*=1')  # the last block unfrozen.
  config.train.optimizer = 'rmsprop'
  config.train.learning_rate = 1e-4
  phase2 = str(tmp_path / 'phase2')
  train_and_evaluate(config, phase2)
  assert 'Non-trainable params: 18,816' in capsys.readouterr().out.splitlines()
  end = load_run_variables(phase2)[0]['params']
  assert end['block1_conv1']['kernel'].tobytes() == trained['block1_conv1']['kernel'].tobytes()
  assert not np.array_equal(end['block3_conv2']['kernel'], trained['block3_conv2']['kernel'])
  with open(os.path.join(phase2, 'config.json')) as f:
    assert json.load(f)['model']['init_from'] == phase1


class Interrupt(Exception):
  pass


def stop_after_epoch_1(epoch, history):
  if epoch == 1:
    raise Interrupt()


def epoch_end(workdir, step):
  """The parameters of a run's checkpoint of `step`."""
  checkpoints = Checkpoints(os.path.join(workdir, 'checkpoints'))
  try:
    return checkpoints.restore(step)[0]['params']
  finally:
    checkpoints.close()


def without_timing(history):
  return [{k: v for k, v in epoch.items() if k not in ('epoch_seconds', 'images_per_second')}
          for epoch in history]


def test_cached_features_train_the_head_and_resume(pretrained_run, tmp_path, capsys):
  """Two epochs of the head on cached features, straight and stopped after epoch 1 then resumed:
  the resumed run continues from epoch 1's checkpoint on the cached features and ends as the
  straight one (history, test result, parameters)."""
  config = transfer_config(param_groups=('block.*=frozen', '.*=1'),
                           cache_features=True, epochs=2)
  config.model.init_from = pretrained_run
  config.model.init_layers = ('block.*',)
  straight = str(tmp_path / 'straight')
  result = train_and_evaluate(config, straight)
  out = capsys.readouterr().out
  assert 'features: ran the conv base over 256 images -> (3, 3, 64) each' in out
  assert os.path.isfile(os.path.join(straight, 'features.npz'))
  # The checkpoint holds the whole model, so it can start a fine-tuning (phase 2).
  params = load_run_variables(straight)[0]['params']
  assert set(params) == {'block1_conv1', 'block2_conv1', 'block3_conv1', 'block3_conv2',
                         'dense1', 'predictions'}

  stopped = str(tmp_path / 'stopped')
  with pytest.raises(Interrupt):
    train_and_evaluate(config, stopped, on_epoch_end=stop_after_epoch_1)
  assert [epoch['epoch'] for epoch in read_history(stopped)] == [1]
  capsys.readouterr()
  assert train_and_evaluate(config, stopped) == result
  out = capsys.readouterr().out
  steps_per_epoch = 128 // config.train.batch_size
  assert (f'resuming from the checkpoint of step {steps_per_epoch} (the end of epoch 1/2)'
          in out)
  assert 'features: reusing' in out and 'features: ran' not in out
  assert 'epoch 1/2 - ' not in out and 'epoch 2/2 - ' in out  # Epoch 2 alone trained.
  assert without_timing(read_history(stopped)) == without_timing(read_history(straight))
  # Epoch 2's end, whichever epoch is the best: the resumed run's head is the straight run's.
  ends = [epoch_end(workdir, 2 * steps_per_epoch) for workdir in (straight, stopped)]
  jax.tree.map(np.testing.assert_array_equal, *ends)
  config.augment.kind = 'keras_layers'
  with pytest.raises(ConfigError, match='cannot be augmented'):
    train_and_evaluate(config, str(tmp_path / 'augmented'))


@pytest.mark.slow
def test_the_experiment_runs_every_workflow_fast(tmp_path):
  from cnnjax.transfer import experiment  # pylint: disable=import-outside-toplevel
  output = str(tmp_path / 'results.md')
  assert experiment.main(['--workdir', str(tmp_path / 'runs'), '--fast', '--seeds', '0',
                          '--output', output]) == 0
  with open(output) as f:
    text = f.read()
  for title in ('from scratch', '(1) fast feature extraction', '(2) frozen base',
                '(3) fine-tuning', '(4) end to end'):
    assert title in text
  assert os.path.isdir(os.path.join(REPO, 'configs'))


def test_resnet_small_workflows_build_and_follow_their_freezing():
  from cnnjax.transfer import experiment  # pylint: disable=import-outside-toplevel
  from cnnjax.models import create_model  # pylint: disable=import-outside-toplevel
  from cnnjax.summary import abstract_variables  # pylint: disable=import-outside-toplevel
  assert experiment.BASES['vgg_small'].runs == experiment.RUNS  # The default is unchanged.
  spec = experiment.BASES['resnet_small']
  assert experiment.load_config(spec.pretrain[1]).model.name == 'resnet_small'
  sizes = None
  for name, config_name, _, init_run in spec.runs:
    config = experiment.load_config(config_name)
    assert config.model.name == 'resnet_small' and config.model.num_outputs == 1
    assert bool(config.model.init_from) == (init_run is not None)
    assert config.train.cache_features == (name == 'feature_extraction')
    if sizes is None:  # Parameters per top-level module (shapes only).
      params = abstract_variables(create_model(config.model), (28, 28, 1))['params']
      sizes = {k: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(v))
               for k, v in params.items()}
    expected = {'feature_extraction': sizes['fc'], 'feature_extraction_augment': sizes['fc'],
                'fine_tuning': sizes['layer3'] + sizes['fc']}.get(name, sum(sizes.values()))
    counts = experiment._counts(config, (28, 28, 1))  # pylint: disable=protected-access
    assert (counts['trainable'], counts['non_trainable']) == (
        expected, sum(sizes.values()) - expected + 672), name  # + BatchNorm moving statistics.
  assert ArrayDataset(np.zeros((3, 64), np.float32), np.zeros(3, np.int32)).image_shape == (64,)
