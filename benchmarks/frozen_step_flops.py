"""XLA's FLOP count of a VGG transfer train step: everything trainable, the base frozen, and a
hand-written step that differentiates only the head.

    python benchmarks/frozen_step_flops.py [--out benchmarks/results/frozen-step-flops.json]
    python benchmarks/frozen_step_flops.py --also vgg16_fine_tuning
    python benchmarks/frozen_step_flops.py --config transfer_feature_extraction_augment \
        --also transfer_fine_tuning

The model and batch of `--config` (a module of configs/; by default vgg16_feature_extraction:
VGG16's base + Dense256-Dropout-Dense1 at 150x150, batch 20, RMSprop; transfer_* configs:
vgg_small at 28x28x1, batch 32), with the base frozen by that config's `train.param_groups`;
`--also` adds the step under other configs' param_groups (the fine-tuning ones, with the last
block unfrozen), on the same model and batch. The head is `dense1` and `predictions`, as in both
VGG transfer models. Nothing runs: each step is traced with abstract arrays, compiled, and its
`cost_analysis()['flops']` read. Two more steps differentiate every parameter and drop the base's
gradients (by hand, or through `optax.partition`'s `set_to_zero` alone): XLA prunes the unused
backward pass by itself, so their counts equal the frozen step's. That is why a FLOP count alone
cannot show that cnnjax's step differentiates only the trainable parameters (tests/test_freeze.py
checks that directly, by watching what `jax.value_and_grad` is given); what the count shows is
that a frozen base costs what the head-only step costs.
"""

import argparse
import functools
import importlib
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cnnjax.models import create_model  # pylint: disable=wrong-import-position
from cnnjax.training.losses import get_objective  # pylint: disable=wrong-import-position
from cnnjax.training.optimizers import create_optimizer  # pylint: disable=wrong-import-position
from cnnjax.training.param_groups import frozen_paths, param_groups  # pylint: disable=wrong-import-position
from cnnjax.training.steps import train_step  # pylint: disable=wrong-import-position
from cnnjax.training.train_state import create_train_state  # pylint: disable=wrong-import-position
from machine import machine_description  # pylint: disable=wrong-import-position


def flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops'])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', default='vgg16_feature_extraction',
                      help='a module of configs/ whose model, batch and param_groups to count')
  parser.add_argument('--also', default='',
                      help='comma-separated configs whose param_groups to count the step with too')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  config = importlib.import_module(f'configs.{args.config}').get_config()
  model = create_model(config.model)
  shape = tuple(config.model.input_shape)
  batch_size = config.train.batch_size
  objective = get_objective(config.train.loss)
  tx = create_optimizer(config.train, steps_per_epoch=100)
  batch = {'image': jax.ShapeDtypeStruct((batch_size, *shape), jnp.float32),
           'label': jax.ShapeDtypeStruct((batch_size,), jnp.int32),
           'mask': jax.ShapeDtypeStruct((batch_size,), jnp.float32)}
  params = jax.eval_shape(model.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, *shape), jnp.float32))['params']
  frozen = frozen_paths(params, param_groups(config.train))

  trainable_config = config.train.copy_and_resolve_references()
  trainable_config.param_groups = ()
  tx_all = create_optimizer(trainable_config, steps_per_epoch=100)

  def state(optimizer, frozen_set):
    return jax.eval_shape(lambda: create_train_state(model, optimizer, shape, config.seed,
                                                     frozen=frozen_set))

  step = jax.jit(functools.partial(train_step, objective=objective))
  counts = {}
  started = time.time()
  counts['everything trainable'] = flops(step.lower(state(tx_all, ()), batch).compile())
  counts['base frozen (train.param_groups)'] = flops(step.lower(state(tx, frozen),
                                                                batch).compile())
  # The partitioned optimizer alone (every parameter differentiated, the frozen group's updates
  # set to zero by optax.partition): XLA prunes the base's backward pass here too.
  counts['every parameter differentiated, optax.partition zeroes the base'] = flops(
      step.lower(state(tx, ()), batch).compile())
  for name in (n for n in args.also.split(',') if n):
    other = importlib.import_module(f'configs.{name}').get_config().train
    groups = param_groups(other)
    counts[f'{name}\'s param_groups {tuple(other.param_groups)}'] = flops(step.lower(state(
        create_optimizer(other, steps_per_epoch=100), frozen_paths(params, groups)),
        batch).compile())

  head = ('dense1', 'predictions')
  plain_tx = optax.rmsprop(config.train.learning_rate)

  def loss(params, data, rng):
    logits = model.apply({'params': params}, data['image'], train=True, rngs={'dropout': rng})
    return jnp.sum(objective.loss(logits, data['label']) * data['mask'])

  def head_only(params, opt_state, data, rng):
    base = {k: v for k, v in params.items() if k not in head}
    grads = jax.grad(lambda h: loss({**base, **h}, data, rng))(
        {k: v for k, v in params.items() if k in head})
    updates, opt_state = plain_tx.update(grads, opt_state)
    return optax.apply_updates({k: params[k] for k in head}, updates), opt_state

  def all_then_discard(params, opt_state, data, rng):
    grads = jax.grad(loss)(params, data, rng)
    grads = {k: grads[k] for k in head}
    updates, opt_state = plain_tx.update(grads, opt_state)
    return optax.apply_updates({k: params[k] for k in head}, updates), opt_state

  opt_state = jax.eval_shape(plain_tx.init, {k: params[k] for k in head})
  key = jax.eval_shape(lambda: jax.random.key(0))
  for name, fn in (('hand-written head-only step', head_only),
                   ('every parameter differentiated, base gradients unused', all_then_discard)):
    counts[name] = flops(jax.jit(fn).lower(params, opt_state, batch, key).compile())
  result = {'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
            'machine': machine_description(), 'jax': jax.__version__,
            'command': 'python benchmarks/frozen_step_flops.py ' + ' '.join(sys.argv[1:]),
            'workload': (f'{config.model.name} at {shape}, batch {batch_size}, RMSprop; base '
                         f'frozen by {args.config}\'s param_groups '
                         f'{tuple(config.train.param_groups)}'),
            'gflop_per_step': {k: float(f'{v / 1e9:.4g}') for k, v in counts.items()},
            'seconds': round(time.time() - started, 1)}
  print(json.dumps(result, indent=2))
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(result, f, indent=2)
      f.write('\n')


if __name__ == '__main__':
  main()
