"""Checks that need several devices, run by tests/test_parallel.py in a fresh process.

JAX fixes its device count when it starts, so the checks run as
`XLA_FLAGS=--xla_force_host_platform_device_count=N python tests/multidevice_checks.py CHECK ARGS
[+ CHECK ARGS ...]`: the checks separated by '+' run one after the other in the same process (one
JAX start-up for all), which prints one JSON line, the list of their results (what the tests
assert on).
"""

import json
import sys
import traceback

import jax
import numpy as np
import optax

from cnnjax import augment
from cnnjax.training.checkpointing import Checkpoints
from cnnjax.training.losses import get_objective
from cnnjax.models.convnet import ConvNet
from cnnjax.training.parallel import create_parallel
from cnnjax.training.steps import add_metrics
from cnnjax.training.train_state import create_train_state

from batch_norm_model import TinyBatchNormNet

OBJECTIVE = get_objective('sparse_categorical_crossentropy')
GLOBAL_BATCH = 16


def _augmenter():
  config = augment.default_config()
  config.kind = 'image_data_generator'  # Per-example transforms must not depend on the devices.
  return augment.make_augmenter(config)


AUGMENTER = _augmenter()


def tiny_state(parallel, model='convnet'):
  """The state of a tiny model: 'convnet' (with dropout) or 'batch_norm' (two BatchNorm layers)."""
  if model == 'convnet':
    module = ConvNet(conv_features=(4,), num_outputs=3, hidden_units=(8,), dropout_rate=0.3)
  else:
    module = TinyBatchNormNet()
  return create_train_state(parallel.adapt_model(module), optax.adamw(1e-2, weight_decay=1e-3),
                            (8, 8, 1), seed=0)


def global_batch(step):
  rng = np.random.default_rng(step)
  return {'image': rng.random((GLOBAL_BATCH, 8, 8, 1), dtype=np.float32),
          'label': rng.integers(0, 3, GLOBAL_BATCH).astype(np.int32),
          'mask': np.ones(GLOBAL_BATCH, np.float32)}


def train(mode, num_steps, model='convnet'):
  parallel = create_parallel(mode, OBJECTIVE, AUGMENTER)
  parallel.check_batch_size(GLOBAL_BATCH, 'train.batch_size')
  state = parallel.place_state(tiny_state(parallel, model))
  losses = []
  for step in range(num_steps):
    state, sums = parallel.train_step(state, parallel.place_batch(global_batch(step)))
    losses.append(float(sums['loss']) / float(sums['count']))
  eval_sums = parallel.eval_step(state, parallel.place_batch(global_batch(100)))
  return parallel, state, losses, {k: float(v) for k, v in eval_sums.items()}


def flat_params(parallel, state):
  """Every leaf the comparison covers: parameters, BatchNorm statistics, optimizer state, key."""
  state = jax.device_get(parallel.to_checkpoint(state))
  return flat({'params': state.params, 'batch_stats': state.batch_stats,
               'opt_state': state.opt_state, 'rng': state.rng})


def flat(tree):
  """{key path: the leaf's values as a list}, for JSON and comparison."""
  return {jax.tree_util.keystr(path): np.asarray(v).ravel().tolist()
          for path, v in jax.tree_util.tree_leaves_with_path(tree)}


def check_steps(mode, num_steps, model='convnet'):
  parallel, state, losses, eval_sums = train(mode, int(num_steps), model)
  return {'devices': parallel.num_devices, 'mode': parallel.mode, 'losses': losses,
          'eval': eval_sums, 'params': flat_params(parallel, state),
          'step': int(jax.device_get(parallel.to_checkpoint(state).step))}


def check_save(mode, directory, model='convnet'):
  parallel, state, _, _ = train(mode, 3, model)
  checkpoints = Checkpoints(directory)
  checkpoints.save(1, parallel.to_checkpoint(state), [{'epoch': 1, 'val_loss': 1.0}])
  checkpoints.close()
  return {'devices': parallel.num_devices, 'params': flat_params(parallel, state)}


def check_restore(mode, directory, model='convnet'):
  parallel = create_parallel(mode, OBJECTIVE)
  like = parallel.to_checkpoint(parallel.place_state(tiny_state(parallel, model)))
  checkpoints = Checkpoints(directory)
  restored, history = checkpoints.restore(checkpoints.latest_step(), like)
  checkpoints.close()
  state = parallel.place_state(restored)
  params = flat_params(parallel, state)
  # The restored state trains on: one more step runs on this layout (and donates `state`).
  state, _ = parallel.train_step(state, parallel.place_batch(global_batch(3)))
  return {'devices': parallel.num_devices, 'params': params, 'history': history,
          'step_after': int(jax.device_get(parallel.to_checkpoint(state).step))}


def check_queued(mode, num_steps):
  """`num_steps` train steps, then as many evaluation steps, each dispatched without reading a
  result until the end, as the training loop does (`MAX_STEPS_IN_FLIGHT` paces the train steps).
  """
  num_steps = int(num_steps)
  parallel = create_parallel(mode, OBJECTIVE, AUGMENTER)
  state = parallel.place_state(tiny_state(parallel))
  batches = [parallel.place_batch(global_batch(i)) for i in range(4)]
  for step in range(num_steps):
    state, sums = parallel.train_step(state, batches[step % 4])
  eval_sums = None
  for step in range(num_steps):
    eval_sums = add_metrics(eval_sums, parallel.eval_step(state, batches[step % 4]))
  return {'step': int(jax.device_get(parallel.to_checkpoint(state).step)),
          'last_loss': float(sums['loss']), 'eval_count': float(eval_sums['count'])}


def check_restore_as_saved(directory):
  """The latest checkpoint in `directory` restored without a target (as `model.init_from` of a
  run's workdir reads one), whatever devices wrote it."""
  checkpoints = Checkpoints(directory)
  state, _ = checkpoints.restore(checkpoints.latest_step())
  checkpoints.close()
  return {'devices': jax.device_count(),
          'params': flat({'params': state['params'], 'batch_stats': state['batch_stats']})}


def check_bad_batch(mode):
  parallel = create_parallel(mode, OBJECTIVE)
  try:
    parallel.check_batch_size(GLOBAL_BATCH + 1, 'train.batch_size')
  except Exception as e:  # pylint: disable=broad-except
    return {'error': type(e).__name__, 'message': str(e)}
  return {'error': None}


def run_checks(argv):
  """The checks of `argv`, separated by '+': one result each, or the traceback of its failure.

  Several checks share one process, and so one JAX start-up (seconds each); a failing check
  fails only the tests that read its result.
  """
  results = []
  commands = [[]]
  for arg in argv:
    if arg == '+':
      commands.append([])
    else:
      commands[-1].append(arg)
  for check, *args in commands:
    try:
      results.append(globals()[f'check_{check}'](*args))
    except Exception:  # pylint: disable=broad-except
      results.append({'failed': traceback.format_exc()})
  return results


if __name__ == '__main__':
  print(json.dumps(run_checks(sys.argv[1:])))
