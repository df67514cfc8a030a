"""BatchNorm everywhere a model's variables go: train state, steps, freezing, summary, checkpoints,
layer outputs, cached features and model.init_from.

The model is tests/batch_norm_model.py's two-BatchNorm convnet; its forward pass written out by
hand says which statistics each layer normalized with. The multi-device cases (sharded jit, pmap,
checkpoints between 8 devices and 1) are in test_parallel.py.
"""


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax.models import MODELS, layer_outputs, layers
from cnnjax.summary import summary
from cnnjax.training import steps
from cnnjax.training.checkpointing import Checkpoints
from cnnjax.training.losses import get_objective
from cnnjax.training.optimizers import create_optimizer
from cnnjax.training.param_groups import frozen_paths, param_groups
from cnnjax.training.train_state import create_train_state
from cnnjax.transfer import features as features_lib
from cnnjax.transfer.pretrained import init_from_pretrained, load_run_variables
from cnnjax.data.pipeline import ArrayDataset

from batch_norm_model import (MOMENTUM, SHAPE, TinyBatchNormNet, randomized_statistics,
                              reference_logits)

OBJECTIVE = get_objective('sparse_categorical_crossentropy')


def batch(n=8, seed=0):
  rng = np.random.default_rng(seed)
  return {'image': jnp.asarray(rng.random((n, *SHAPE), dtype=np.float32)),
          'label': jnp.asarray(rng.integers(0, 3, n).astype(np.int32)),
          'mask': jnp.ones(n, jnp.float32)}


def make_state(tx=None, param_groups_spec=(), seed=0):
  model = TinyBatchNormNet()
  config = train_config(param_groups_spec)
  state = create_train_state(model, tx or create_optimizer(config, 1), SHAPE, seed=0)
  state = state.replace(batch_stats=randomized_statistics(state.variables(), seed)['batch_stats'])
  frozen = frozen_paths(state.params, param_groups(config))
  return state.replace(frozen=frozen)


def train_config(groups=()):
  from cnnjax.config import base_config  # pylint: disable=import-outside-toplevel
  config = base_config().train
  config.optimizer = 'adamw'
  config.weight_decay = 0.1
  config.learning_rate = 1e-2
  config.param_groups = tuple(groups)
  return config


def logits_loss(logits, labels):
  return float(jnp.sum(OBJECTIVE.loss(jnp.asarray(logits, jnp.float32), labels)))


@pytest.mark.parametrize('fields', [{}, {'use_scale': False, 'momentum': 0.9, 'epsilon': 1e-3},
                                    {'dtype': jnp.bfloat16}])
def test_cnnjax_batch_norm_is_flaxs_with_its_sums_as_products(fields):
  """`layers.BatchNorm` (training-mode sums as matrix products on the CPU, its gradient written
  out) against Flax's own code: outputs, moving averages and the gradients of the scale, bias
  and input, on a batch whose channels have different means and spreads."""
  x = (jax.random.normal(jax.random.key(0), (6, 9, 9, 5)) * jnp.arange(1.0, 6.0)
       + jnp.arange(-2.0, 3.0))
  ours, flax_bn = layers.BatchNorm(**fields), nn.BatchNorm(**fields)
  variables = flax_bn.init(jax.random.key(1), x, use_running_average=False)
  assert (jax.tree.structure(ours.init(jax.random.key(1), x, use_running_average=False))
          == jax.tree.structure(variables))
  variables = jax.tree.map(lambda v: v + jax.random.uniform(jax.random.key(2), v.shape), variables)

  def run(module):
    def loss(params, x):
      y, updates = module.apply({**variables, 'params': params}, x, use_running_average=False,
                                mutable=['batch_stats'])
      return jnp.sum(jnp.sin(y.astype(jnp.float32)) * jnp.arange(5.0)), (y, updates)
    (_, (y, updates)), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
        variables['params'], x)
    return y, updates, grads

  (y, updates, grads), (ref_y, ref_updates, ref_grads) = run(ours), run(flax_bn)
  assert y.dtype == ref_y.dtype
  tolerance = 1e-2 if fields.get('dtype') == jnp.bfloat16 else 1e-5
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(ref_y, np.float32),
                             rtol=tolerance, atol=tolerance)
  for a, b in zip(jax.tree.leaves((updates, grads)), jax.tree.leaves((ref_updates, ref_grads))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  # The products are what ran: the layer's jaxpr holds its hand-written gradient.
  jaxpr = str(jax.make_jaxpr(lambda v: ours.apply(v, x, use_running_average=False,
                                                 mutable=['batch_stats']))(variables))
  assert 'custom_vjp' in jaxpr


def test_the_state_carries_batch_stats_and_a_model_without_has_none():
  state = create_train_state(TinyBatchNormNet(), optax.sgd(0.1), SHAPE, seed=0)
  assert set(state.batch_stats) == {'bn1', 'bn2'}
  np.testing.assert_array_equal(state.batch_stats['bn1']['var'], np.ones(4))
  assert set(state.variables()) == {'params', 'batch_stats'}
  from cnnjax.models.convnet import ConvNet  # pylint: disable=import-outside-toplevel
  plain = create_train_state(ConvNet(conv_features=(4,), num_outputs=3), optax.sgd(0.1), SHAPE, 0)
  assert plain.batch_stats == {} and set(plain.variables()) == {'params'}


def test_a_train_step_normalizes_with_the_batch_and_updates_the_moving_averages():
  state = make_state(optax.sgd(0.0))  # No parameter update: only the statistics move.
  data = batch()
  new_state, sums = jax.jit(lambda s, b: steps.train_step(s, b, objective=OBJECTIVE))(state, data)
  # The loss is that of the batch's statistics in both layers, not of the moving averages.
  expected = reference_logits(state.variables(), data['image'], {'1': True, '2': True})
  assert float(sums['loss']) == pytest.approx(logits_loss(expected, data['label']), rel=1e-5)
  inference = reference_logits(state.variables(), data['image'], {'1': False, '2': False})
  assert float(sums['loss']) != pytest.approx(logits_loss(inference, data['label']), rel=1e-3)
  # Moving averages: momentum * old + (1 - momentum) * batch (biased variance), Flax's rule.
  conv1 = np.asarray(layer_outputs(TinyBatchNormNet(), state.variables(), data['image'],
                                   names=['conv1'])['conv1'], np.float64)
  old = state.batch_stats['bn1']
  np.testing.assert_allclose(new_state.batch_stats['bn1']['mean'],
                             MOMENTUM * old['mean'] + (1 - MOMENTUM) * conv1.mean(axis=(0, 1, 2)),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new_state.batch_stats['bn1']['var'],
                             MOMENTUM * old['var'] + (1 - MOMENTUM) * conv1.var(axis=(0, 1, 2)),
                             rtol=1e-5, atol=1e-6)


def test_evaluation_normalizes_with_the_moving_averages():
  state = make_state()
  data = batch(seed=1)
  sums = jax.jit(lambda s, b: steps.eval_step(s, b, objective=OBJECTIVE))(state, data)
  expected = reference_logits(state.variables(), data['image'], {'1': False, '2': False})
  assert float(sums['loss']) == pytest.approx(logits_loss(expected, data['label']), rel=1e-5)


def test_frozen_batch_norm_runs_in_inference_mode_and_keeps_its_statistics():
  """Keras' rule: bn1 frozen (train.param_groups) normalizes with its moving averages during
  training and never updates them, bit for bit; bn2 trains as usual."""
  state = make_state(param_groups_spec=('conv1|bn1=frozen', '.*=1'))
  assert set(state.frozen) == {'conv1/kernel', 'bn1/scale', 'bn1/bias'}
  before = jax.device_get(state.batch_stats)
  data = batch(seed=2)
  step = jax.jit(lambda s, b: steps.train_step(s, b, objective=OBJECTIVE))
  new_state, sums = step(state, data)
  expected = reference_logits(state.variables(), data['image'], {'1': False, '2': True})
  assert float(sums['loss']) == pytest.approx(logits_loss(expected, data['label']), rel=1e-5)
  for seed in range(3, 6):
    new_state, _ = step(new_state, batch(seed=seed))
  after = jax.device_get(new_state.batch_stats)
  for key in ('mean', 'var'):
    assert after['bn1'][key].tobytes() == before['bn1'][key].tobytes()
    assert not np.allclose(after['bn2'][key], before['bn2'][key])
  assert new_state.params['bn1']['scale'].tobytes() == state.params['bn1']['scale'].tobytes()


def test_frozen_batch_norm_also_intercepts_a_positional_flag():
  class Positional(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      return nn.BatchNorm(name='bn')(x, not train)

  x = jnp.arange(12.0).reshape(4, 3)
  variables = Positional().init(jax.random.key(0), x)
  with steps.frozen_batch_norm(['bn/scale', 'bn/bias']):
    y, updates = Positional().apply(variables, x, train=True, mutable=['batch_stats'])
  np.testing.assert_allclose(y, x / np.sqrt(1 + 1e-5), rtol=1e-6)  # Moving stats 0 / 1.
  np.testing.assert_array_equal(updates['batch_stats']['bn']['mean'], np.zeros(3))


def test_summary_counts_the_moving_statistics_as_non_trainable():
  text = summary(TinyBatchNormNet(), SHAPE)
  # conv1 36, bn1 8 + 8 statistics, conv2 216, bn2 12 + 12 statistics, head 21.
  assert 'Total params: 313' in text and 'Trainable params: 293' in text
  assert 'Non-trainable params: 20' in text
  assert 'bn1 (BatchNorm)' in text and '16' in text.split('bn1 (BatchNorm)')[1].splitlines()[0]


def test_checkpoints_hold_the_batch_statistics(tmp_path):
  state = make_state()
  state, _ = jax.jit(lambda s, b: steps.train_step(s, b, objective=OBJECTIVE))(state, batch())
  checkpoints = Checkpoints(str(tmp_path / 'checkpoints'))
  checkpoints.save(1, state, [{'epoch': 1, 'val_loss': 0.5}])
  checkpoints.wait()
  like = create_train_state(TinyBatchNormNet(), create_optimizer(train_config(), 1), SHAPE, 0)
  restored, _ = checkpoints.restore(1, like)
  checkpoints.close()
  for a, b in zip(jax.tree.leaves(jax.device_get(state)), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(a, b)  # Exact.
  assert not np.allclose(restored.batch_stats['bn2']['mean'], 0)


def test_layer_outputs_reach_layers_inside_blocks():
  class Block(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      x = layers.Conv2D(3, (3, 3), padding='SAME', activation=None, name='conv')(x)
      return nn.relu(nn.BatchNorm(name='bn')(x, use_running_average=not train))

  class Nested(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      x = Block(name='layer1')(x, train)
      return layers.GlobalAveragePooling2D(name='pool')(x)

  model = Nested()
  x = jnp.asarray(np.random.default_rng(0).random((2, 5, 5, 1), np.float32))
  variables = randomized_statistics(model.init(jax.random.key(0), x))
  outputs = layer_outputs(model, variables, x, names=['layer1/bn', 'layer1/conv', 'layer1'])
  assert list(outputs) == ['layer1/bn', 'layer1/conv', 'layer1']
  stats = variables['batch_stats']['layer1']['bn']
  expected = ((outputs['layer1/conv'] - stats['mean']) / jnp.sqrt(stats['var'] + 1e-5)
              * variables['params']['layer1']['bn']['scale'])
  np.testing.assert_allclose(outputs['layer1/bn'], expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(outputs['layer1'], np.maximum(expected, 0), rtol=1e-5, atol=1e-6)
  assert list(layer_outputs(model, variables, x)) == ['layer1', 'pool']
  with pytest.raises(KeyError, match=r"\['layer1/conv2'\].*'layer1', 'pool'"):
    layer_outputs(model, variables, x, names=['layer1/conv2'])


def test_cached_features_come_from_the_moving_statistics():
  model = TinyBatchNormNet()
  images = np.random.default_rng(3).random((5, *SHAPE), dtype=np.float32)
  variables = randomized_statistics(model.init(jax.random.key(0), jnp.asarray(images)))
  assert features_lib.supports_features(model)
  dataset = ArrayDataset(images, np.zeros(5, np.int32))
  features = features_lib.extract_features(model, variables, dataset, 2)
  assert features.shape == (5, 6)  # Pooled: an ArrayDataset of (N, C) features trains the head.
  from cnnjax.data.pipeline import batches  # pylint: disable=import-outside-toplevel
  (batch,) = batches(ArrayDataset(features, np.zeros(5, np.int32)), 5)
  np.testing.assert_array_equal(batch['image'], features)
  logits = model.apply(variables, jnp.asarray(features), from_features=True)
  np.testing.assert_allclose(logits, reference_logits(variables, images, {'1': False, '2': False}),
                             rtol=1e-4, atol=1e-5)


def test_init_from_a_run_takes_its_batch_statistics(tmp_path, monkeypatch, tiny_config):
  from cnnjax.training.train import train_and_evaluate  # pylint: disable=import-outside-toplevel
  monkeypatch.setitem(MODELS, 'tiny_batch_norm', TinyBatchNormNet)
  tiny_config.model.name = 'tiny_batch_norm'
  tiny_config.model.num_outputs = 10
  tiny_config.data.limit_train = 320
  tiny_config.train.epochs = 1
  tiny_config.model.bn_momentum = 0.5  # Overridable in config: the model takes it.
  run = str(tmp_path / 'pretrain')
  train_and_evaluate(tiny_config, run)
  pretrained, _ = load_run_variables(run)
  assert set(pretrained) == {'params', 'batch_stats'}
  fresh = TinyBatchNormNet(num_outputs=10).init(jax.random.key(1), jnp.zeros((1, 28, 28, 1)))
  messages = []
  merged = init_from_pretrained(fresh, run, ('conv.*', 'bn.*'), 'tiny_batch_norm',
                                log=messages.append)
  np.testing.assert_array_equal(merged['batch_stats']['bn2']['var'],
                                pretrained['batch_stats']['bn2']['var'])
  np.testing.assert_array_equal(merged['params']['head']['kernel'], fresh['params']['head']['kernel'])
  assert 'taken (6 parameters, 4 BatchNorm statistics): bn1, bn2, conv1, conv2' in messages[0]
  # With momentum 0.5 after 8 steps the statistics are far from their initial 0 and 1.
  assert np.abs(pretrained['batch_stats']['bn1']['var'] - 1).max() > 0.5
  # The visualize job restores the same variables from the run, statistics included.
  from cnnjax.visualize import job  # pylint: disable=import-outside-toplevel
  tiny_config.visualize = {'checkpoint_dir': run}
  _, variables, _, _ = job.restore_trained(tiny_config, (28, 28, 1))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(variables), pretrained)
