"""Single-device, sharded-jit and pmap steps agree; checkpoints move between device counts.

JAX fixes the device count at start-up, so the multi-device work runs in fresh processes with
8 fake CPU devices (tests/multidevice_checks.py); these tests compare what they print.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cnnjax import xla_cpu
from cnnjax.data.idx import FASHION_MNIST_DIR
from cnnjax.training import parallel as parallel_lib
from cnnjax.transfer.pretrained import load_run_variables

from conftest import REPO, saved_steps

CHECKS = os.path.join(REPO, 'tests', 'multidevice_checks.py')


def run_checks(devices, *checks, cache_dir):
  """The results of `checks` (each a tuple of arguments) run in one fresh process with `devices`
  CPU devices: one JAX start-up for all of them. Checks that compile what an earlier one did
  (the same step saved, restored, 'auto' as 'sharded') load it from JAX's persistent compilation
  cache in `cache_dir` instead. XLA runs as `launch.py` runs it (YNNPACK's fusions off), so the
  convnets' 'auto' convolution is what users train with: 'taps' for the one-channel first layer,
  'lax' after it (`cnnjax.models.convolution.resolve`)."""
  env = {**os.environ, 'XLA_FLAGS': f'{device_flag(devices)["XLA_FLAGS"]} {xla_cpu.FLAG}=',
         'JAX_COMPILATION_CACHE_DIR': cache_dir, 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0'}
  argv = [str(arg) for i, check in enumerate(checks) for arg in (('+',) if i else ()) + check]
  run = subprocess.run([sys.executable, CHECKS, *argv], capture_output=True, text=True,
                       env=env, cwd=REPO, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  results = json.loads(run.stdout.strip().splitlines()[-1])
  assert len(results) == len(checks)
  return dict(zip(checks, results))


def result(results, *check):
  """One check's result; a check that raised fails here with its traceback."""
  found = results[check]
  assert 'failed' not in found, found['failed']
  return found


# Steps dispatched back to back in the queued check: XLA:CPU deadlocks past 32 sharded steps
# in flight (`parallel.MAX_STEPS_IN_FLIGHT`'s comment).
QUEUED_STEPS = 100
SAVES = [(8, 'sharded', 1, 'single'), (8, 'pmap', 1, 'single'), (1, 'single', 8, 'sharded'),
         (1, 'single', 8, 'pmap')]


@pytest.fixture(scope='module')
def checks(tmp_path_factory, compilation_cache_dir):
  """Every check of the tests below, run in three processes instead of one each (JAX's start-up
  in a process with 8 fake devices costs seconds): one device, then 8, then one again.

  The checkpoint tests still save in one process and restore in another: each restore reads a
  directory written by an earlier process with the other device count.
  """
  directory = tmp_path_factory.mktemp('checkpoints')
  saved_in = lambda devices, mode: str(directory / f'{devices}_{mode}')
  single = [('steps', 'single', 6), ('steps', 'single', 6, 'batch_norm'),
            ('save', 'single', saved_in(1, 'single'), 'batch_norm')]
  multi = ([('steps', mode, 6) for mode in ('sharded', 'pmap', 'auto')]
           + [('steps', mode, 6, 'batch_norm') for mode in ('sharded', 'pmap')]
           + [('bad_batch', mode) for mode in ('sharded', 'pmap')]
           + [('save', mode, saved_in(8, mode), 'batch_norm') for mode in ('sharded', 'pmap')]
           + [('restore', mode, saved_in(1, 'single'), 'batch_norm')
              for mode in ('sharded', 'pmap')]
           + [('queued', mode, QUEUED_STEPS) for mode in ('sharded', 'pmap')])
  restores = ([('restore', 'single', saved_in(8, mode), 'batch_norm')
               for mode in ('sharded', 'pmap')]
              + [('restore_as_saved', saved_in(8, mode)) for mode in ('sharded', 'pmap')])
  results = {}
  for devices, group in ((1, single), (8, multi), (1, restores)):
    results.update(run_checks(devices, *group, cache_dir=compilation_cache_dir))
  results['checkpoints'] = {
      (save_devices, save_mode, restore_devices, restore_mode): (
          results[('save', save_mode, saved_in(save_devices, save_mode), 'batch_norm')],
          results[('restore', restore_mode, saved_in(save_devices, save_mode), 'batch_norm')])
      for save_devices, save_mode, restore_devices, restore_mode in SAVES}
  results['as_saved'] = {mode: results[('restore_as_saved', saved_in(8, mode))]
                         for mode in ('sharded', 'pmap')}
  return results


def assert_same_params(a, b, rtol=1e-5, atol=1e-6):
  assert a.keys() == b.keys()
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize('mode', ['sharded', 'pmap', 'auto'])
def test_multi_device_steps_reach_the_single_device_parameters(checks, mode):
  """With dropout on: example keys come from global indices, so the masks agree too."""
  single = result(checks, 'steps', 'single', 6)
  multi = result(checks, 'steps', mode, 6)
  assert single['devices'] == 1
  assert multi['devices'] == 8 and multi['mode'] == ('sharded' if mode == 'auto' else mode)
  assert multi['step'] == single['step'] == 6
  np.testing.assert_allclose(multi['losses'], single['losses'], rtol=1e-5)
  np.testing.assert_allclose([multi['eval'][k] for k in ('loss', 'correct', 'count')],
                             [single['eval'][k] for k in ('loss', 'correct', 'count')], rtol=1e-5)
  assert_same_params(multi['params'], single['params'])
  # The parameters moved: the comparison is not between two untouched initializations.
  assert multi['losses'][0] != multi['losses'][-1]


@pytest.mark.parametrize('mode', ['sharded', 'pmap'])
def test_batch_norm_on_8_devices_matches_one(checks, mode):
  """BatchNorm normalizes with the global batch's statistics on every wrapper: the sharded jit
  through XLA's partitioning, pmap through the model's `axis_name` (`Parallel.adapt_model`).
  Per-device statistics (2 rows each) would give other losses, parameters and moving averages."""
  multi = result(checks, 'steps', mode, 6, 'batch_norm')
  single = result(checks, 'steps', 'single', 6, 'batch_norm')
  assert single['devices'] == 1
  assert multi['devices'] == 8 and multi['step'] == single['step'] == 6
  np.testing.assert_allclose(multi['losses'], single['losses'], rtol=1e-5)
  np.testing.assert_allclose([multi['eval'][k] for k in ('loss', 'correct', 'count')],
                             [single['eval'][k] for k in ('loss', 'correct', 'count')], rtol=1e-5)
  assert_same_params(multi['params'], single['params'])
  stats = [name for name in single['params'] if 'batch_stats' in name]
  assert len(stats) == 4  # bn1 and bn2, mean and var: they are compared above.
  assert all(any(v not in (0.0, 1.0) for v in single['params'][name]) for name in stats)


@pytest.mark.parametrize('save_devices,save_mode,restore_devices,restore_mode', SAVES)
def test_checkpoints_move_between_device_counts(checks, save_devices, save_mode,
                                                restore_devices, restore_mode):
  # The BatchNorm model: parameters, moving statistics, optimizer state and random key all move.
  saved, restored = checks['checkpoints'][(save_devices, save_mode, restore_devices,
                                           restore_mode)]
  for found in (saved, restored):
    assert 'failed' not in found, found['failed']
  assert (saved['devices'], restored['devices']) == (save_devices, restore_devices)
  assert_same_params(saved['params'], restored['params'], rtol=0, atol=0)
  assert restored['history'] == [{'epoch': 1, 'val_loss': 1.0}]
  assert restored['step_after'] == 4


@pytest.mark.parametrize('mode', ['sharded', 'pmap'])
def test_a_checkpoint_of_8_devices_restores_without_a_target_on_one(checks, mode):
  """What `model.init_from` of a run's workdir and the visualize job do: orbax alone would ask
  for the 8 devices that wrote the arrays ("Topology mismatch detected")."""
  restored = checks['as_saved'][mode]
  assert 'failed' not in restored, restored['failed']
  saved = checks['checkpoints'][(8, mode, 1, 'single')][0]
  assert restored['devices'] == 1
  assert restored['params'].keys() < saved['params'].keys()
  assert_same_params(restored['params'], {k: saved['params'][k] for k in restored['params']},
                     rtol=0, atol=0)


@pytest.mark.parametrize('mode', ['sharded', 'pmap'])
def test_hundreds_of_queued_steps_finish_in_every_mode(checks, mode):
  """The training loop dispatches steps without waiting for them; XLA:CPU's in-process
  all-reduce deadlocks when more than 32 sharded steps are queued per device, which the loop's
  bound on steps in flight prevents. Evaluation steps do not chain through the state and stay
  unbounded."""
  assert parallel_lib.MAX_STEPS_IN_FLIGHT <= 32
  found = result(checks, 'queued', mode, QUEUED_STEPS)
  assert found['step'] == QUEUED_STEPS
  assert found['eval_count'] == QUEUED_STEPS * 16 and np.isfinite(found['last_loss'])


@pytest.mark.parametrize('mode', ['sharded', 'pmap'])
def test_batch_that_does_not_split_is_a_clear_error(checks, mode):
  found = result(checks, 'bad_batch', mode)
  assert found['error'] == 'ConfigError'
  assert 'train.batch_size=17' in found['message'] and 'multiple of 8' in found['message']


def launch_flags(data_dir, mode):
  return ['--config', 'configs/fashion_mnist.py', f'--config.data.dir={data_dir}',
          '--config.data.limit_train=1280', '--config.data.limit_test=256',
          '--config.train.epochs=2', '--config.train.batch_size=32',
          '--config.train.eval_batch_size=128', '--config.model.dropout_rate=0.2',
          f'--config.train.parallel={mode}']


LAUNCH = [sys.executable, os.path.join(REPO, 'launch.py')]


def device_flag(n):
  return {'XLA_FLAGS': f'--xla_force_host_platform_device_count={n}'}


@pytest.fixture(scope='module')
def one_process_run(tmp_path_factory):
  """A function: (devices, mode) -> (workdir, stdout) of the tiny main-job run in one process
  with that many devices; each run is launched once per module, so the main-loop test's 4-device
  runs are also the one-process references of the two-process test."""
  runs = {}
  data_dir = os.environ.get('CNNJAX_DATA_DIR', FASHION_MNIST_DIR)

  def run(devices, mode, *extra_flags):
    if (devices, mode, extra_flags) not in runs:
      workdir = tmp_path_factory.mktemp(f'{mode}_{devices}') / 'run'
      launched = subprocess.run([*LAUNCH, *launch_flags(data_dir, mode), *extra_flags,
                                 '--workdir', str(workdir)],
                                capture_output=True, text=True, cwd=REPO, timeout=600,
                                env={**os.environ, **device_flag(devices)})
      assert launched.returncode == 0, launched.stderr[-3000:]
      runs[(devices, mode, extra_flags)] = workdir, launched.stdout
    return runs[(devices, mode, extra_flags)]
  return run


def read_run(workdir):
  with open(workdir / 'history.json') as f:
    history = json.load(f)
  with open(workdir / 'test_metrics.json') as f:
    return history, json.load(f)


def assert_runs_agree(one, two, epochs=2, rel=1e-5):
  """The runs in workdirs `one` and `two` agree in every history value and test metric."""
  (one_history, one_test), (two_history, two_test) = read_run(one), read_run(two)
  assert len(one_history) == len(two_history) == epochs
  for ours, reference in zip(two_history, one_history):
    for key in ('loss', 'val_loss', 'accuracy', 'val_accuracy'):
      assert ours[key] == pytest.approx(reference[key], rel=rel), key
  for key in ('test_loss', 'test_accuracy'):
    assert two_test[key] == pytest.approx(one_test[key], rel=rel), key
  return one_history


@pytest.mark.slow
def test_main_loop_on_4_devices_matches_one(one_process_run):
  """The training loop end to end with each wrapper reaches the same accuracy.

  Step for step the wrappers agree to float precision on 8 devices (tests above). Over 80 steps
  the rounding differences between a 32-row convolution on one device and 8-row ones on four
  grow, as they do in any chaotic optimization, so one device is compared loosely; sharded and
  pmap run the same per-device shapes and must agree tightly. Four devices (not eight): the
  same multi-device loop, and these runs are also the two-process test's references.
  """
  results = {}
  for devices, mode in [(1, 'single'), (4, 'sharded'), (4, 'pmap')]:
    workdir, stdout = one_process_run(devices, mode)
    assert f'{mode} step on {devices} device(s)' in stdout
    results[mode] = read_run(workdir)
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


# Two epochs of two steps: few enough that the runs stay equal to float rounding (see below).
FEW_STEPS = ('--config.data.limit_train=72',)


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['sharded', 'pmap'])
def test_two_processes_match_one_process_with_as_many_devices(tmp_path, one_process_run, mode):
  """JAX's distributed runtime on localhost: 2 processes x 2 CPU devices against 1 x 4, each as
  `launch.py` runs it ('taps' first convolution, then 'lax').

  Each process reads its own rows of every global batch, only process 0 writes files, and the
  checkpoints are written by orbax from both processes. The two runs differ only in how the
  all-reduce adds the devices' gradients (gloo across processes, in order within one), so they
  agree to float rounding step by step; over many steps those rounding differences grow as in
  any chaotic optimization (the long runs of 2026-11-30: 0.1-1% apart in val_loss after 36
  steps, with 'lax' and 'taps' alike; README, Many devices and many hosts), so four steps are
  compared, tightly. RMSprop divides each gradient by the root of its running mean square, which
  turns a rounding difference in a near-zero gradient into a visible one in its parameter:
  parameters are compared within 2e-4 of each array's largest value (5e-5 seen), losses to 1e-5.
  """
  one, _ = one_process_run(4, mode, *FEW_STEPS)
  data_dir = os.environ.get('CNNJAX_DATA_DIR', FASHION_MNIST_DIR)
  port = free_port()
  processes = [subprocess.Popen(
      [*LAUNCH, *launch_flags(data_dir, mode), *FEW_STEPS, '--workdir', str(tmp_path / 'two')],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env={**os.environ, **device_flag(2), 'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}',
           'JAX_NUM_PROCESSES': '2', 'JAX_PROCESS_ID': str(i)}) for i in range(2)]
  outputs = [p.communicate(timeout=600) for p in processes]
  for p, (_, err) in zip(processes, outputs):
    assert p.returncode == 0, err[-3000:]
  assert 'test_accuracy:' in outputs[0][0] and 'test_accuracy:' not in outputs[1][0]
  assert f'{mode} step on 4 device(s), 2 process(es)' in outputs[0][0]

  one_history = assert_runs_agree(one, tmp_path / 'two')
  one_params = load_run_variables(str(one))[0]['params']
  two_params = load_run_variables(str(tmp_path / 'two'))[0]['params']
  for name in one_params:
    for kind in one_params[name]:
      reference, ours = one_params[name][kind], two_params[name][kind]
      assert np.max(np.abs(ours - reference)) <= 2e-4 * np.max(np.abs(reference)), (name, kind)
  assert one_history[1]['loss'] < one_history[0]['loss']  # The runs trained.


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_at_one_checkpoint(tmp_path):
  """A preemption notice that reaches one host only: SIGTERM to process 1 of two. Both stop at
  the same step (they agree every few steps), write its checkpoint together, exit with 143 and
  say where it is; the same command on both resumes from it."""
  data_dir = os.environ.get('CNNJAX_DATA_DIR', FASHION_MNIST_DIR)
  workdir = tmp_path / 'two'

  def start_pair(epochs):
    port = free_port()
    return [subprocess.Popen(
        [*LAUNCH, *launch_flags(data_dir, 'sharded'), f'--config.train.epochs={epochs}',
         '--workdir', str(workdir)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, **device_flag(2), 'JAX_COORDINATOR_ADDRESS':
                        f'127.0.0.1:{port}', 'JAX_NUM_PROCESSES': '2', 'JAX_PROCESS_ID': str(i)})
        for i in range(2)]

  pair = start_pair(40)
  try:
    deadline = time.time() + 300
    while not saved_steps(workdir):  # Training: the end of epoch 1 is on disk.
      assert all(p.poll() is None for p in pair), [p.communicate() for p in pair]
      assert time.time() < deadline, 'no checkpoint in time'
      time.sleep(0.2)
    pair[1].send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=300) for p in pair]
  finally:
    for p in pair:
      p.kill()
  assert [p.returncode for p in pair] == [143, 143], [err[-2000:] for _, err in outputs]
  step = max(saved_steps(workdir))
  for _, err in outputs:
    last = err.strip().splitlines()[-1]
    assert last.startswith(f'stopped by SIGTERM: the checkpoint of step {step} ('), last
    assert last.endswith('the same command resumes from it'), last
  resumed = start_pair(2)
  outputs = [p.communicate(timeout=600) for p in resumed]
  assert [p.returncode for p in resumed] == [0, 0], [err[-2000:] for _, err in outputs]
  assert f'resuming from the checkpoint of step {step} (' in outputs[0][0], outputs[0][0]
