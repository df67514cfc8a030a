"""Frozen partitions: train.param_groups, optimizer state, the step's gradient and its FLOPs."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from cnnjax.config import base_config
from cnnjax.errors import ConfigError
from cnnjax.training.losses import get_objective
from cnnjax.models.vgg_classifier import VGGClassifier
from cnnjax.training.optimizers import create_optimizer
from cnnjax.training.param_groups import (frozen_paths, param_groups, parse_param_groups,
                                          partition_labels)
from cnnjax.training.parallel import create_parallel
from cnnjax.training.steps import train_step
from cnnjax.summary import config_summary
from cnnjax.training.train_state import create_train_state, init_variables, split_params

OBJECTIVE = get_objective('sparse_categorical_crossentropy')
SHAPE = (8, 8, 1)
BASE = ('block1_conv1', 'block2_conv1')
HEAD = ('dense1', 'predictions')


def tiny_model(blocks=((1, 4), (1, 8))):
  return VGGClassifier(blocks=blocks, num_outputs=3, hidden_units=(8,), dropout_rate=0.25)


def train_config(**fields):
  config = base_config().train
  for name, value in fields.items():
    config[name] = value
  return config


@functools.cache
def _initial_params(blocks, shape):
  return jax.device_get(init_variables(tiny_model(blocks), shape, seed=0)["params"])


def fresh_params(blocks=((1, 4), (1, 8)), shape=SHAPE):
  """The tiny model's initial parameters (initialized once, copied for each state)."""
  return jax.tree.map(np.copy, _initial_params(blocks, shape))


def zero_params(blocks, shape):
  """Zeros shaped as the model's parameters: enough where only shapes matter (FLOP counts)."""
  shapes = jax.eval_shape(tiny_model(blocks).init, jax.random.key(0), jnp.zeros((1, *shape)))
  return jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes['params'])


def tiny_state(steps_per_epoch=1, blocks=((1, 4), (1, 8)), shape=SHAPE, zeros=False, **fields):
  """A state of the tiny model with the optimizer and frozen set `fields` describe."""
  model = tiny_model(blocks)
  config = train_config(**fields)
  params = zero_params(blocks, shape) if zeros else fresh_params(blocks, shape)
  frozen = frozen_paths(params, param_groups(config))
  return create_train_state(model, create_optimizer(config, steps_per_epoch), shape, seed=0,
                            variables={'params': params}, frozen=frozen)


def batch(n=8, seed=0, shape=SHAPE):
  rng = np.random.default_rng(seed)
  return {'image': jnp.asarray(rng.random((n, *shape), dtype=np.float32)),
          'label': jnp.asarray(rng.integers(0, 3, n).astype(np.int32)),
          'mask': jnp.ones(n)}


def layer_of(path):
  return path[0].key


def run_steps(state, steps=4):
  step = create_parallel('single', OBJECTIVE).train_step
  for i in range(steps):
    state, _ = step(state, batch(seed=i))
  return state


# -- parsing and matching ---------------------------------------------------------------------


def test_groups_parse_and_first_match_wins():
  groups = parse_param_groups(('block2_.*=frozen', 'block.*=0.1', 'dense1/bias=frozen', '.*=1'))
  assert [(g.pattern, g.multiplier) for g in groups] == [
      ('block2_.*', None), ('block.*', 0.1), ('dense1/bias', None), ('.*', 1.0)]
  params = fresh_params()
  labels = partition_labels(params, groups)
  assert labels['block1_conv1'] == {'kernel': 'lr_x0.1', 'bias': 'lr_x0.1'}
  assert labels['block2_conv1'] == {'kernel': 'frozen', 'bias': 'frozen'}
  # A pattern matches a whole path or a leading part of one.
  assert labels['dense1'] == {'kernel': 'lr_x1', 'bias': 'frozen'}
  assert sorted(frozen_paths(params, groups)) == ['block2_conv1/bias', 'block2_conv1/kernel',
                                                  'dense1/bias']


@pytest.mark.parametrize('groups,message', [
    (('block.*',), "'block.\\*' is not 'PATTERN=VALUE'"),
    (('block.*=freeze',), "the value must be 'frozen' or a positive"),
    (('block.*=0',), 'positive learning-rate multiplier'),
    (('block[=frozen',), 'not a regular expression'),
    ('block.*=frozen', 'must be a tuple'),
])
def test_malformed_groups_are_named(groups, message):
  with pytest.raises(ConfigError, match=message):
    parse_param_groups(groups)


def test_every_parameter_must_match_and_every_pattern_must_match_something():
  params = fresh_params()
  with pytest.raises(ConfigError) as error:
    partition_labels(params, parse_param_groups(('block.*=frozen',)))
  message = str(error.value)
  assert '4 parameter(s) match no group' in message
  assert 'dense1/bias, dense1/kernel, predictions/bias, predictions/kernel' in message
  assert "catch-all such as '.*=1'" in message
  with pytest.raises(ConfigError, match=r"matching no parameter \(a typo\?\): 'blok.\*=frozen'"):
    partition_labels(params, parse_param_groups(('blok.*=frozen', '.*=1')))


# -- what freezing does -----------------------------------------------------------------------


def test_frozen_leaves_stay_bit_identical_under_adamw_weight_decay():
  state = tiny_state(optimizer='adamw', learning_rate=1e-2, weight_decay=0.1,
                     param_groups=('block.*=frozen', '.*=1'))
  assert sorted(state.frozen) == [f'{layer}/{name}' for layer in BASE
                                  for name in ('bias', 'kernel')]
  before = jax.device_get(state.params)
  after = jax.device_get(run_steps(state).params)
  for layer in BASE:
    for name in ('kernel', 'bias'):
      assert before[layer][name].tobytes() == after[layer][name].tobytes()
  for layer in HEAD:
    assert not np.array_equal(before[layer]['kernel'], after[layer]['kernel'])


def test_chained_freeze_would_still_decay_what_partition_keeps():
  """Why a partition: chain(zero updates for the base, adamw) still decays the base's weights."""
  params = fresh_params()
  labels = partition_labels(params, parse_param_groups(('block.*=frozen', '.*=1')))
  mask = jax.tree.map(lambda label: label == 'frozen', labels)
  chained = optax.chain(optax.masked(optax.set_to_zero(), mask),
                        optax.adamw(1e-2, weight_decay=0.1))
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = chained.update(grads, chained.init(params), params)
  assert np.any(np.asarray(updates['block1_conv1']['kernel']) != 0)
  tx = create_optimizer(train_config(optimizer='adamw', weight_decay=0.1,
                                     param_groups=('block.*=frozen', '.*=1')), 1)
  updates, _ = tx.update(grads, tx.init(params), params)
  assert not np.any(np.asarray(updates['block1_conv1']['kernel']))


def test_frozen_parameters_have_no_optimizer_state():
  for optimizer, moments in (('adamw', 2), ('rmsprop', 1)):
    state = tiny_state(optimizer=optimizer, param_groups=('block.*=frozen', '.*=1'))
    trainable, fixed = split_params(state.params, state.frozen)
    trainable_size = sum(x.size for x in jax.tree.leaves(trainable))
    float_state = [x for x in jax.tree.leaves(state.opt_state)
                   if jnp.issubdtype(x.dtype, jnp.floating)]
    assert sum(x.size for x in float_state) == moments * trainable_size
    state_paths = [jax.tree_util.keystr(path)
                   for path, _ in jax.tree_util.tree_leaves_with_path(state.opt_state)]
    assert any("['dense1']" in path for path in state_paths)
    assert not [path for path in state_paths for layer in fixed if f"['{layer}']" in path]


def test_the_step_differentiates_only_the_trainable_parameters():
  state = tiny_state(param_groups=('block1_.*=frozen', '.*=1'))
  seen = []
  original = jax.value_and_grad

  def spy(fun, **kwargs):
    grad_fn = original(fun, **kwargs)

    def wrapped(params):
      seen.append(sorted(params))
      return grad_fn(params)
    return wrapped

  jax.value_and_grad = spy
  try:
    jax.eval_shape(functools.partial(train_step, objective=OBJECTIVE), state, batch())
  finally:
    jax.value_and_grad = original
  assert seen == [['block2_conv1', 'dense1', 'predictions']]


# -- the compiled step's cost -----------------------------------------------------------------


def _flops(compiled):
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops'])


def test_frozen_base_step_costs_what_a_head_only_step_costs():
  """XLA's FLOP count: frozen base ~ a hand-written head-only step, far below the full step.

  What this shows is the cost, not the mechanism: XLA prunes an unused backward pass by itself,
  so differentiating everything and dropping the base's gradients would count the same
  (benchmarks/frozen_step_flops.py). That the step differentiates only the trainable parameters
  is the test above.
  """
  blocks, shape = ((1, 8), (1, 16)), (16, 16, 3)
  model = tiny_model(blocks)
  data = batch(8, shape=shape)
  step = jax.jit(functools.partial(train_step, objective=OBJECTIVE))
  full = _flops(step.lower(tiny_state(blocks=blocks, shape=shape, zeros=True, optimizer='adam'),
                           data).compile())
  frozen_state = tiny_state(blocks=blocks, shape=shape, zeros=True, optimizer='adam',
                            param_groups=('block.*=frozen', '.*=1'))
  frozen = _flops(step.lower(frozen_state, data).compile())

  head_names = ('dense1', 'predictions')
  tx = optax.adam(1e-3)

  def head_only_step(params, opt_state, rng, data):
    """What one would write by hand: the base's parameters are closed-over constants."""
    base = {k: v for k, v in params.items() if k not in head_names}
    head = {k: v for k, v in params.items() if k in head_names}

    def loss(head):
      logits = model.apply({'params': {**base, **head}}, data['image'], train=True,
                           rngs={'dropout': rng})
      return jnp.sum(OBJECTIVE.loss(logits, data['label']) * data['mask'])

    grads = jax.grad(loss)(head)
    updates, opt_state = tx.update(grads, opt_state, head)
    return {**base, **optax.apply_updates(head, updates)}, opt_state

  params = frozen_state.params
  opt_state = tx.init({k: params[k] for k in head_names})
  hand = _flops(jax.jit(head_only_step).lower(params, opt_state, jax.random.key(0),
                                              data).compile())
  assert frozen <= 1.05 * hand, (frozen, hand)
  assert frozen < 0.6 * full, (frozen, full)


# -- summaries --------------------------------------------------------------------------------


def test_summary_counts_follow_the_freeze():
  config = base_config()
  config.model.name = 'vgg16_transfer'
  config.model.input_shape = (150, 150, 3)
  config.train.param_groups = ('block.*=frozen', '.*=1')
  lines = config_summary(config).splitlines()
  assert 'Total params: 16,812,353' in lines
  assert 'Trainable params: 2,097,665' in lines
  assert 'Non-trainable params: 14,714,688' in lines
  config.train.param_groups = ('block[1-4]_.*=frozen', '.*=1')  # Fine-tuning block5.
  lines = config_summary(config).splitlines()
  assert 'Trainable params: 9,177,089' in lines
  assert 'Non-trainable params: 7,635,264' in lines
  assert any(line.split()[:2] == ['block[1-4]_.*=frozen', '7,635,264'] for line in lines)


def test_bad_groups_fail_the_summary_too():
  config = ml_collections.ConfigDict(base_config().to_dict())
  config.model.name = 'vgg_small'
  config.train.param_groups = ('block5_.*=frozen', '.*=1')  # vgg_small has 3 blocks.
  with pytest.raises(ConfigError, match='block5_'):
    config_summary(config)


def test_a_partitioned_state_round_trips_through_a_checkpoint(tmp_path):
  from cnnjax.training.checkpointing import Checkpoints  # pylint: disable=import-outside-toplevel
  groups = ('block.*=frozen', '.*=0.5')
  state = tiny_state(optimizer='adamw', param_groups=groups)
  state = state.replace(step=3, opt_state=jax.tree.map(lambda x: x + 1, state.opt_state))
  checkpoints = Checkpoints(str(tmp_path / 'checkpoints'))
  try:
    checkpoints.save(1, state, [{'epoch': 1, 'val_loss': 0.5}])
    checkpoints.wait()
    restored, _ = checkpoints.restore(1, tiny_state(optimizer='adamw', param_groups=groups))
  finally:
    checkpoints.close()
  assert restored.frozen == state.frozen and int(restored.step) == 3
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.opt_state),
               jax.device_get(state.opt_state))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.params),
               jax.device_get(state.params))
