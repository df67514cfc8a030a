"""Single-device, sharded-jit and pmap steps agree; checkpoints move between device counts.

JAX fixes the device count at start-up, so the multi-device work runs in fresh processes with
8 fake CPU devices (tests/multidevice_checks.py); these tests compare what they print.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

CHECKS = os.path.join(REPO, 'tests', 'multidevice_checks.py')


def run_check(devices, *args):
  env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
  run = subprocess.run([sys.executable, CHECKS, *map(str, args)], capture_output=True, text=True,
                       env=env, cwd=REPO, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  return json.loads(run.stdout.strip().splitlines()[-1])


def assert_same_params(a, b, rtol=1e-5, atol=1e-6):
  assert a.keys() == b.keys()
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol, err_msg=name)


@pytest.fixture(scope='module')
def single():
  return run_check(1, 'steps', 'single', 6)


@pytest.fixture(scope='module')
def single_batch_norm():
  return run_check(1, 'steps', 'single', 6, 'batch_norm')


@pytest.mark.parametrize('mode', ['sharded', 'pmap', 'auto'])
def test_multi_device_steps_reach_the_single_device_parameters(single, mode):
  """With dropout on: example keys come from global indices, so the masks agree too."""
  multi = run_check(8, 'steps', mode, 6)
  assert multi['devices'] == 8 and multi['mode'] == ('sharded' if mode == 'auto' else mode)
  assert multi['step'] == single['step'] == 6
  np.testing.assert_allclose(multi['losses'], single['losses'], rtol=1e-5)
  np.testing.assert_allclose([multi['eval'][k] for k in ('loss', 'correct', 'count')],
                             [single['eval'][k] for k in ('loss', 'correct', 'count')], rtol=1e-5)
  assert_same_params(multi['params'], single['params'])
  # The parameters moved: the comparison is not between two untouched initializations.
  assert multi['losses'][0] != multi['losses'][-1]


@pytest.mark.parametrize('mode', ['sharded', 'pmap'])
def test_batch_norm_on_8_devices_matches_one(single_batch_norm, mode):
  """BatchNorm normalizes with the global batch's statistics on every wrapper: the sharded jit
  through XLA's partitioning, pmap through the model's `axis_name` (`Parallel.adapt_model`).
  Per-device statistics (2 rows each) would give other losses, parameters and moving averages."""
  multi = run_check(8, 'steps', mode, 6, 'batch_norm')
  single = single_batch_norm
  assert multi['devices'] == 8 and multi['step'] == single['step'] == 6
  np.testing.assert_allclose(multi['losses'], single['losses'], rtol=1e-5)
  np.testing.assert_allclose([multi['eval'][k] for k in ('loss', 'correct', 'count')],
                             [single['eval'][k] for k in ('loss', 'correct', 'count')], rtol=1e-5)
  assert_same_params(multi['params'], single['params'])
  stats = [name for name in single['params'] if 'batch_stats' in name]
  assert len(stats) == 4  # bn1 and bn2, mean and var: they are compared above.
  assert all(any(v not in (0.0, 1.0) for v in single['params'][name]) for name in stats)


@pytest.mark.parametrize('save_devices,save_mode,restore_devices,restore_mode', [
    (8, 'sharded', 1, 'single'),
    (8, 'pmap', 1, 'single'),
    (1, 'single', 8, 'sharded'),
    (1, 'single', 8, 'pmap'),
])
def test_checkpoints_move_between_device_counts(tmp_path, save_devices, save_mode,
                                                restore_devices, restore_mode):
  directory = str(tmp_path / 'checkpoints')
  # The BatchNorm model: parameters, moving statistics, optimizer state and random key all move.
  saved = run_check(save_devices, 'save', save_mode, directory, 'batch_norm')
  restored = run_check(restore_devices, 'restore', restore_mode, directory, 'batch_norm')
  assert (saved['devices'], restored['devices']) == (save_devices, restore_devices)
  assert_same_params(saved['params'], restored['params'], rtol=0, atol=0)
  assert restored['history'] == [{'epoch': 1, 'val_loss': 1.0}]
  assert restored['step_after'] == 4


@pytest.mark.parametrize('mode', ['sharded', 'pmap'])
def test_batch_that_does_not_split_is_a_clear_error(mode):
  result = run_check(8, 'bad_batch', mode)
  assert result['error'] == 'ConfigError'
  assert 'train.batch_size=17' in result['message'] and 'multiple of 8' in result['message']


@pytest.mark.slow
def test_main_loop_on_8_devices_matches_one(tmp_path, tiny_config):
  """The training loop end to end with each wrapper reaches the same accuracy.

  Step for step the wrappers agree to float precision (tests above). Over 80 steps the rounding
  differences between a 32-row convolution on one device and 4-row ones on eight grow, as they do
  in any chaotic optimization, so one device is compared loosely; sharded and pmap run the same
  per-device shapes and must agree tightly.
  """
  results = {}
  for devices, mode in [(1, 'single'), (8, 'sharded'), (8, 'pmap')]:
    workdir = tmp_path / mode
    env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
    run = subprocess.run(
        [sys.executable, os.path.join(REPO, 'launch.py'), '--config', 'configs/fashion_mnist.py',
         '--workdir', str(workdir), f'--config.data.dir={tiny_config.data.dir}',
         '--config.data.limit_train=1280', '--config.data.limit_test=256',
         '--config.train.epochs=2', '--config.train.batch_size=32',
         '--config.train.eval_batch_size=128', '--config.model.dropout_rate=0.2',
         f'--config.train.parallel={mode}'],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f'{mode} step on {devices} device(s)' in run.stdout
    with open(workdir / 'history.json') as f:
      history = json.load(f)
    with open(workdir / 'test_metrics.json') as f:
      results[mode] = (history, json.load(f))
  single_history, single_test = results['single']
  for mode in ('sharded', 'pmap'):
    history, test = results[mode]
    assert len(history) == len(single_history) == 2
    for ours, reference in zip(history, single_history):
      for key in ('loss', 'val_loss'):
        assert ours[key] == pytest.approx(reference[key], rel=2e-2)
      for key in ('accuracy', 'val_accuracy'):
        assert ours[key] == pytest.approx(reference[key], abs=0.02)
    assert test['test_accuracy'] == pytest.approx(single_test['test_accuracy'], abs=0.02)
  for ours, reference in zip(results['pmap'][0], results['sharded'][0]):
    for key in ('loss', 'accuracy', 'val_loss', 'val_accuracy'):
      assert ours[key] == pytest.approx(reference[key], rel=1e-5)


def free_port():
  import socket  # pylint: disable=import-outside-toplevel
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['sharded', 'pmap'])
def test_two_processes_match_one_process_with_as_many_devices(tmp_path, tiny_config, mode):
  """JAX's distributed runtime on localhost: 2 processes x 2 CPU devices against 1 x 4.

  Each process reads its own rows of every global batch, only process 0 writes files, and the
  checkpoints are written by orbax from both processes.
  """
  flags = ['--config', 'configs/fashion_mnist.py', f'--config.data.dir={tiny_config.data.dir}',
           '--config.data.limit_train=1280', '--config.data.limit_test=256',
           '--config.train.epochs=2', '--config.train.batch_size=32',
           '--config.train.eval_batch_size=128', '--config.model.dropout_rate=0.2',
           f'--config.train.parallel={mode}']
  launch = [sys.executable, os.path.join(REPO, 'launch.py')]
  device_flag = lambda n: {'XLA_FLAGS': f'--xla_force_host_platform_device_count={n}'}

  one = subprocess.run([*launch, *flags, '--workdir', str(tmp_path / 'one')], cwd=REPO,
                       capture_output=True, text=True, env={**os.environ, **device_flag(4)},
                       timeout=600)
  assert one.returncode == 0, one.stderr[-3000:]

  port = free_port()
  processes = [subprocess.Popen(
      [*launch, *flags, '--workdir', str(tmp_path / 'two')], cwd=REPO, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True,
      env={**os.environ, **device_flag(2), 'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}',
           'JAX_NUM_PROCESSES': '2', 'JAX_PROCESS_ID': str(i)}) for i in range(2)]
  outputs = [p.communicate(timeout=600) for p in processes]
  for p, (_, err) in zip(processes, outputs):
    assert p.returncode == 0, err[-3000:]
  assert 'test_accuracy:' in outputs[0][0] and 'test_accuracy:' not in outputs[1][0]
  assert f'{mode} step on 4 device(s), 2 process(es)' in outputs[0][0]

  histories = []
  for run in ('one', 'two'):
    with open(tmp_path / run / 'history.json') as f:
      histories.append(json.load(f))
  # Gloo's cross-process all-reduce adds in another order than the in-process one: equal to
  # float rounding, grown a little over 80 steps.
  assert len(histories[0]) == len(histories[1]) == 2
  for ours, reference in zip(*histories):
    for key in ('loss', 'val_loss'):
      assert ours[key] == pytest.approx(reference[key], rel=2e-2)
    for key in ('accuracy', 'val_accuracy'):
      assert ours[key] == pytest.approx(reference[key], abs=0.01)
  with open(tmp_path / 'two' / 'test_metrics.json') as f:
    two = json.load(f)
  with open(tmp_path / 'one' / 'test_metrics.json') as f:
    assert two['test_accuracy'] == pytest.approx(json.load(f)['test_accuracy'], abs=0.01)
