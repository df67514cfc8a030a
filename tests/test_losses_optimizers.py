"""Losses and accuracy against hand computations; optimizers and schedules from config."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax.config import base_config
from cnnjax.errors import ConfigError
from cnnjax.training.losses import get_objective
from cnnjax.training.optimizers import OPTIMIZERS, create_optimizer, learning_rate_schedule


def test_sparse_categorical_crossentropy_by_hand():
  logits = jnp.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]])
  labels = jnp.array([0, 2])
  objective = get_objective('sparse_categorical_crossentropy')
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  np.testing.assert_allclose(objective.loss(logits, labels), -np.log(p[[0, 1], [0, 2]]), rtol=1e-6)
  np.testing.assert_array_equal(objective.correct(logits, labels), [1.0, 0.0])


def test_binary_crossentropy_by_hand():
  logits = jnp.array([[1.5], [-0.3], [0.2]])
  labels = jnp.array([1, 0, 0])
  objective = get_objective('binary_crossentropy')
  p = 1 / (1 + np.exp(-np.array([1.5, -0.3, 0.2])))
  expected = -(np.array([1, 0, 0]) * np.log(p) + (1 - np.array([1, 0, 0])) * np.log(1 - p))
  np.testing.assert_allclose(objective.loss(logits, labels), expected, rtol=1e-6)
  np.testing.assert_array_equal(objective.correct(logits, labels), [1.0, 1.0, 0.0])


def test_unknown_loss_is_named():
  with pytest.raises(ConfigError, match="train.loss='hinge'"):
    get_objective('hinge')


@pytest.mark.parametrize('name', OPTIMIZERS)
@pytest.mark.parametrize('schedule', ['constant', 'cosine', 'warmup_cosine', 'exponential'])
def test_every_optimizer_and_schedule_descends(name, schedule):
  config = base_config().train
  config.optimizer, config.schedule, config.learning_rate = name, schedule, 0.05
  config.epochs, config.warmup_epochs, config.weight_decay = 4, 1, 1e-4
  tx = create_optimizer(config, steps_per_epoch=10)
  params = {'w': jnp.array([3.0, -2.0])}
  loss = lambda p: jnp.sum(p['w'] ** 2)
  state = tx.init(params)
  for _ in range(40):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
  assert float(loss(params)) < 13.0 * 0.5


def test_rmsprop_is_keras_rmsprop():
  """rho 0.9, epsilon 1e-7 outside the square root: the first step is lr * g / (sqrt(0.1 g^2) + eps)."""
  config = base_config().train
  tx = create_optimizer(config, steps_per_epoch=1)
  g = jnp.array([0.5, -2.0])
  updates, _ = tx.update({'w': g}, tx.init({'w': jnp.zeros(2)}))
  expected = -1e-3 * np.array(g) / (np.sqrt(0.1 * np.array(g) ** 2) + 1e-7)
  np.testing.assert_allclose(updates['w'], expected, rtol=1e-6)


@pytest.mark.parametrize('name,momentum,nesterov', [('sgd', 0.0, False), ('sgd', 0.9, False),
                                                     ('sgd', 0.9, True), ('adam', 0.0, False),
                                                     ('adamw', 0.0, False)])
def test_sgd_adam_and_adamw_step_as_pytorch_does(name, momentum, nesterov):
  """Three updates with changing gradients equal torch.optim's: SGD with its momentum buffer
  (the first step's buffer is the gradient), Nesterov, Adam's bias corrections and epsilon, L2
  weight decay in the gradient for SGD and Adam, AdamW's decoupled decay (lr * wd * param)."""
  import torch  # pylint: disable=import-outside-toplevel
  config = base_config().train
  config.optimizer, config.learning_rate, config.weight_decay = name, 0.1, 0.05
  config.momentum, config.nesterov = momentum, nesterov
  tx = create_optimizer(config, steps_per_epoch=3)
  start = np.array([0.7, -1.3, 0.02], np.float32)
  gradients = [np.array(g, np.float32) for g in ([0.5, -2.0, 1e-3], [0.1, 0.3, -0.2],
                                                [-0.4, 1.5, 0.0])]
  reference = torch.nn.Parameter(torch.tensor(start))
  optimizer = {'sgd': lambda p: torch.optim.SGD(p, lr=0.1, momentum=momentum, nesterov=nesterov,
                                                weight_decay=0.05),
               'adam': lambda p: torch.optim.Adam(p, lr=0.1, weight_decay=0.05),
               'adamw': lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.05)}[name]([reference])
  params = {'w': jnp.asarray(start)}
  state = tx.init(params)
  for g in gradients:
    updates, state = tx.update({'w': jnp.asarray(g)}, state, params)
    params = optax.apply_updates(params, updates)
    reference.grad = torch.tensor(g)
    optimizer.step()
    # Within float rounding (the steps are 0.1 in size; a missing bias correction, epsilon or
    # decay term moves them by 1e-3 or more).
    np.testing.assert_allclose(params['w'], reference.detach().numpy(), rtol=1e-6, atol=2e-6)


def test_schedules():
  config = base_config().train
  config.epochs, config.learning_rate = 10, 0.1
  config.schedule = 'cosine'
  cosine = learning_rate_schedule(config, steps_per_epoch=5)
  assert float(cosine(0)) == pytest.approx(0.1)
  assert float(cosine(25)) == pytest.approx(0.05)
  assert float(cosine(50)) == pytest.approx(0.0, abs=1e-9)
  config.schedule, config.warmup_epochs = 'warmup_cosine', 2
  warmup = learning_rate_schedule(config, steps_per_epoch=5)
  assert float(warmup(5)) == pytest.approx(0.05)
  assert float(warmup(10)) == pytest.approx(0.1)
  config.schedule, config.decay_rate = 'exponential', 0.5
  assert float(learning_rate_schedule(config, steps_per_epoch=5)(10)) == pytest.approx(0.025)


@pytest.mark.parametrize('field,value,message', [
    ('optimizer', 'adagrad', "train.optimizer='adagrad'"),
    ('schedule', 'linear', "train.schedule='linear'"),
    ('learning_rate', -1.0, 'train.learning_rate must be positive'),
    ('warmup_epochs', 7.0, 'train.warmup_epochs=7.0'),
])
def test_bad_optimizer_fields_are_named(field, value, message):
  config = base_config().train
  config.schedule = 'warmup_cosine'
  config[field] = value
  with pytest.raises(ConfigError, match=message):
    create_optimizer(config, steps_per_epoch=10)


def grouped_config(name, groups, **fields):
  config = base_config().train
  config.optimizer, config.learning_rate, config.param_groups = name, 0.05, groups
  for field, value in fields.items():
    config[field] = value
  return config


@pytest.mark.parametrize('name', OPTIMIZERS)
def test_param_groups_freeze_with_every_optimizer(name):
  """Frozen: no update, no state, no weight decay; the rest descends as without groups."""
  params = {'base': {'w': jnp.array([3.0, -2.0])}, 'head': {'w': jnp.array([1.0, 4.0])}}
  config = grouped_config(name, ('base=frozen', '.*=1'), weight_decay=0.1, grad_clip_norm=1.0)
  tx = create_optimizer(config, steps_per_epoch=10)
  state = tx.init(params)
  loss = lambda p: jnp.sum(p['base']['w'] ** 2) + jnp.sum(p['head']['w'] ** 2)
  for _ in range(40):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    assert not np.any(np.asarray(updates['base']['w']))
    params = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(params['base']['w'], [3.0, -2.0])
  assert float(jnp.sum(params['head']['w'] ** 2)) < 17.0 * 0.5
  state_paths = [jax.tree_util.keystr(path) for path, _ in
                 jax.tree_util.tree_leaves_with_path(state)]
  assert not [path for path in state_paths if "['base']" in path]


def test_learning_rate_multiplier_scales_the_schedule():
  config = grouped_config('sgd', ('base=0.1', '.*=1'), momentum=0.0, schedule='cosine', epochs=2)
  tx = create_optimizer(config, steps_per_epoch=5)
  params = {'base': {'w': jnp.ones(3)}, 'head': {'w': jnp.ones(3)}}
  grads = jax.tree.map(jnp.ones_like, params)
  state = tx.init(params)
  for step in range(3):
    updates, state = tx.update(grads, state, params)
    lr = float(learning_rate_schedule(config, 5)(step))
    np.testing.assert_allclose(updates['head']['w'], -lr, rtol=1e-6)
    np.testing.assert_allclose(updates['base']['w'], -0.1 * lr, rtol=1e-6)


def test_without_groups_the_optimizer_is_unpartitioned():
  """No train.param_groups: the optimizer state of earlier runs' checkpoints, unchanged."""
  config = base_config().train
  state = create_optimizer(config, 1).init({'w': jnp.zeros(2)})
  assert not isinstance(state, optax.PartitionState)
  config.param_groups = ('.*=1',)
  assert isinstance(create_optimizer(config, 1).init({'w': jnp.zeros(2)}), optax.PartitionState)
