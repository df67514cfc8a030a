"""Fault injection on real `launch.py` processes: a second run on a live run's workdir, `kill -9`,
SIGTERM and a double SIGINT, damaged checkpoints, a config that changes the model or optimizer, a read-only workdir and a full
disk; and the determinism that makes a resumed run comparable to an uninterrupted one.

Every run is the main job's config on a few hundred Fashion-MNIST images (seconds per run) with a
constant learning rate, so that a run resumed with more epochs recomputes the same epochs
bit-identically. The processes share JAX's persistent compilation cache (`compilation_cache`),
and the signal tests one chain of processes in one workdir. Those marked slow (the disk tests,
the signals) take about two minutes more together. The disk tests mount a tmpfs (the tests run as
root) and skip, saying why, where mounting is not permitted.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from cnnjax import data as data_lib
from cnnjax.data.idx import FASHION_MNIST_DIR
from cnnjax.errors import CnnjaxError
from cnnjax.training.checkpointing import Checkpoints
from cnnjax.training.interrupts import Interrupted
from cnnjax.training.train import train_and_evaluate

from conftest import REPO, saved_steps

TIMING = ('epoch_seconds', 'images_per_second')
# 320 images, 10% held out for validation: 288 in batches of 32 (`launch_command`).
STEPS_PER_EPOCH = 9
END_OF_EPOCH_2 = f'resuming from the checkpoint of step {2 * STEPS_PER_EPOCH} (the end of epoch 2/3)'

# What every launch.py process of this module runs with (`compilation_cache` below).
LAUNCH_ENV = {}

# The in-process runs too (conftest.py).
pytestmark = pytest.mark.usefixtures('persistent_compilation_cache')


@pytest.fixture(scope='module', autouse=True)
def compilation_cache(compilation_cache_dir):
  """JAX's persistent compilation cache for this module's launch.py processes: they all compile
  the same steps of the same model, and after the first each loads them from the cache instead
  (half of a process's seconds). The processes, signals, locks and disks stay as real as before;
  the cache is new each test session."""
  LAUNCH_ENV.update(JAX_COMPILATION_CACHE_DIR=compilation_cache_dir,
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  yield
  LAUNCH_ENV.clear()


def launch_command(workdir, data_dir, epochs, *extra):
  return [sys.executable, os.path.join(REPO, 'launch.py'), '--config', 'configs/fashion_mnist.py',
          '--workdir', str(workdir), f'--config.data.dir={data_dir}',
          '--config.data.limit_train=320', '--config.data.limit_test=64',
          '--config.train.batch_size=32', '--config.train.schedule=constant',
          f'--config.train.epochs={epochs}', *extra]


def launch(workdir, data_dir, epochs, *extra):
  return subprocess.run(launch_command(workdir, data_dir, epochs, *extra), cwd=REPO,
                        capture_output=True, text=True, timeout=300,
                        env={**os.environ, **LAUNCH_ENV})


def start(workdir, data_dir, epochs, output=subprocess.PIPE, extra=(), **env):
  """A launch.py process running in the background, its stdout and stderr to `output`."""
  return subprocess.Popen(launch_command(workdir, data_dir, epochs, *extra), cwd=REPO,
                          stdout=output, stderr=output, text=True,
                          env={**os.environ, **LAUNCH_ENV, **env})


def wait_for_a_checkpoint(run, workdir, after=0):
  """Waits until `run` has saved a checkpoint of a step later than `after` (True) or has
  exited (False)."""
  deadline = time.time() + 240
  while max(saved_steps(workdir), default=0) <= after:
    if run.poll() is not None:
      return False
    assert time.time() < deadline, 'the run saved no checkpoint in time'
    time.sleep(0.2)
  return True


def read_history(workdir):
  with open(os.path.join(workdir, 'history.json')) as f:
    return json.load(f)


def without_timing(history):
  return [{k: v for k, v in record.items() if k not in TIMING} for record in history]


def assert_clean_error(run, *fragments):
  assert run.returncode == 2, (run.stdout, run.stderr)
  assert 'Traceback' not in run.stderr, run.stderr
  last = run.stderr.strip().splitlines()[-1]
  assert last.startswith('error: '), run.stderr
  for fragment in fragments:
    assert fragment in last, (fragment, last)


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  """(workdir, data dir) of a finished 2-epoch run; tests copy it, never change it."""
  data_dir = os.environ.get('CNNJAX_DATA_DIR', FASHION_MNIST_DIR)
  workdir = tmp_path_factory.mktemp('finished') / 'run'
  run = launch(workdir, data_dir, 2)
  assert run.returncode == 0, run.stderr
  return workdir, data_dir


def copy_run(finished_run, destination):
  shutil.copytree(finished_run[0], destination)
  return destination


# --- A second run on a live run's workdir, SIGKILL, SIGTERM, a double SIGINT ---------------------
#
# One workdir and one command (40 epochs), run by four real processes in turn, each test checking
# its links of the chain (module fixtures: each link runs once, when a test first needs it):
#   A saves a checkpoint, then is stopped (SIGSTOP) holding the workdir's lock; B is refused;
#   A is killed (SIGKILL); C starts (no stale lock), resumes from A's checkpoint and is stopped by
#   SIGTERM once it has saved one of its own; D resumes from C's and gets two SIGINTs.
# Four processes where separate tests would start six.


@pytest.fixture(scope='module')
def refused_while_live(tmp_path_factory, finished_run):
  """A stopped (SIGSTOP) at a checkpoint, B refused, A killed (SIGKILL)."""
  data_dir = finished_run[1]
  workdir = tmp_path_factory.mktemp('signals') / 'run'
  first = start(workdir, data_dir, 40, output=subprocess.DEVNULL)
  try:
    # A checkpoint is on disk: the run holds the lock.
    assert wait_for_a_checkpoint(first, workdir), f'the first run exited: {first.returncode}'
    os.kill(first.pid, signal.SIGSTOP)  # Alive, holding the lock, and not moving on.
    saved = max(saved_steps(workdir))
    with open(workdir / 'config.json') as f:
      config_before = f.read()
    second = launch(workdir, data_dir, 40)
    with open(workdir / 'config.json') as f:
      config_after = f.read()
  finally:
    first.kill()  # SIGKILL: the kernel releases the lock; nothing else does.
    first.wait()
  return {'workdir': workdir, 'data_dir': data_dir, 'pid': first.pid, 'saved': saved,
          'second': second, 'config_before': config_before, 'config_after': config_after}


@pytest.fixture(scope='module')
def sigterm_after_the_kill(refused_while_live):
  """C: the same command after the kill, stopped by SIGTERM at a checkpoint of its own."""
  workdir = refused_while_live['workdir']
  run = start(workdir, refused_while_live['data_dir'], 40)
  try:
    if wait_for_a_checkpoint(run, workdir, after=refused_while_live['saved']):
      run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=120)  # The tests check how it ended.
  finally:
    run.kill()
  return {'returncode': run.returncode, 'stdout': stdout, 'stderr': stderr,
          'saved': max(saved_steps(workdir), default=0), 'history': read_history(workdir)}


@pytest.fixture(scope='module')
def double_sigint_after_the_sigterm(refused_while_live, sigterm_after_the_kill):
  """D: the same command after C's SIGTERM, sent SIGINT once it has saved a checkpoint, and again
  while it stops. Unbuffered, so its stdout survives the second SIGINT's os._exit."""
  workdir = refused_while_live['workdir']
  run = start(workdir, refused_while_live['data_dir'], 40, PYTHONUNBUFFERED='1')
  try:
    assert wait_for_a_checkpoint(run, workdir, after=sigterm_after_the_kill['saved']), (
        run.communicate())
    saved = max(saved_steps(workdir))
    run.send_signal(signal.SIGINT)
    lines = []
    while not lines or not lines[-1].startswith('SIGINT: stopping'):  # The first is handled.
      lines.append(run.stderr.readline())
      assert lines[-1], ''.join(lines)
    run.send_signal(signal.SIGINT)  # While it finishes the epoch or step in flight.
    stdout, stderr = run.communicate(timeout=60)
  finally:
    run.kill()
  return {'returncode': run.returncode, 'stdout': stdout, 'stderr': ''.join(lines) + stderr,
          'saved': saved, 'saved_after': saved_steps(workdir)}


def test_a_second_run_on_a_live_workdir_is_refused_and_a_killed_run_leaves_no_stale_lock(
    refused_while_live, sigterm_after_the_kill):
  refused = refused_while_live
  assert_clean_error(refused['second'], 'in use by', f'process {refused["pid"]}',
                     f'on host {socket.gethostname()}', 'started 20', '--workdir')
  assert refused['config_after'] == refused['config_before']  # The refused run wrote nothing.
  # The same command after the kill (C) takes the workdir, resumes and trains on.
  third = sigterm_after_the_kill
  assert f'resuming from the checkpoint of step {refused["saved"]} (' in third['stdout'], (
      third['stdout'], third['stderr'])
  assert third['saved'] > refused['saved']
  epochs_done = third['saved'] // STEPS_PER_EPOCH
  assert [r['epoch'] for r in third['history']] == list(range(1, epochs_done + 1))


@pytest.mark.slow
def test_sigterm_stops_at_a_checkpoint_with_code_143_and_the_same_command_resumes(
    refused_while_live, sigterm_after_the_kill, double_sigint_after_the_sigterm):
  workdir = refused_while_live['workdir']
  run = sigterm_after_the_kill
  stderr = run['stderr']
  assert run['returncode'] == 143, stderr
  assert 'Traceback' not in stderr, stderr
  saved = run['saved']
  last = stderr.strip().splitlines()[-1]
  # The checkpoint of the step in flight: within an epoch unless the signal came at its end.
  epoch, steps_done = divmod(saved, STEPS_PER_EPOCH)
  within = (f'the end of epoch {epoch}/40' if not steps_done else
            f'step {steps_done} of {STEPS_PER_EPOCH} of epoch {epoch + 1}/40')
  assert last == (f'stopped by SIGTERM: the checkpoint of step {saved} ({within}) is in '
                  f'{workdir / "checkpoints" / str(saved)}; the same command resumes from it'), last
  resumed = double_sigint_after_the_sigterm  # The same command again (D).
  assert f'resuming from the checkpoint of step {saved} ({within})' in resumed['stdout'], resumed
  assert resumed['saved'] > saved  # It trained on from there.


@pytest.mark.slow
def test_a_second_sigint_exits_at_once_with_code_130(double_sigint_after_the_sigterm):
  run = double_sigint_after_the_sigterm
  stderr = run['stderr']
  assert run['returncode'] == 130, stderr
  assert 'SIGINT again: exiting at once' in stderr and 'Traceback' not in stderr, stderr
  assert 'stopped by SIGINT' not in stderr, stderr  # It did not wait for the orderly stop.
  # The checkpoints complete before it are still there.
  assert max(run['saved_after'], default=0) >= run['saved'], run['saved_after']


# --- A stop within an epoch resumes exactly (in-process) -----------------------------------------

def signal_during_epoch(monkeypatch, epoch, batch_index, signum):
  """Sends this process a real `signum` when the training batches of `epoch` reach `batch_index`
  (from the prefetch thread, a couple of batches ahead of the step: the run stops mid-epoch)."""
  real_batches = data_lib.batches

  def batches(*args, **kwargs):
    iterator = real_batches(*args, **kwargs)
    if not kwargs.get('shuffle') or kwargs.get('epoch') != epoch:
      return iterator

    def signalling():
      for index, batch in enumerate(iterator, start=kwargs.get('first_batch', 0)):
        if index == batch_index:
          os.kill(os.getpid(), signum)
        yield batch
    return signalling()

  monkeypatch.setattr(data_lib, 'batches', batches)


def test_sigterm_within_an_epoch_saves_the_step_in_flight_and_the_rerun_ends_bit_identical(
    tiny_config, tmp_path, monkeypatch):
  """No checkpoints within epochs but the one SIGTERM writes: it holds the step in flight and the
  epoch's partial metric sums, and the resumed run's history, test metrics and parameters equal
  an uninterrupted run's bit for bit (dropout on, so the step's random keys count too)."""
  tiny_config.model.dropout_rate = 0.3
  tiny_config.train.log_every_steps = 5
  reference = train_and_evaluate(tiny_config, str(tmp_path / 'reference'))
  steps_per_epoch = 1024 // 32
  workdir = tmp_path / 'run'
  with monkeypatch.context() as patched:
    signal_during_epoch(patched, epoch=2, batch_index=steps_per_epoch // 2, signum=signal.SIGTERM)
    with pytest.raises(Interrupted) as stopped:
      train_and_evaluate(tiny_config, str(workdir))
  assert stopped.value.exit_code == 143
  step = max(saved_steps(workdir))
  assert steps_per_epoch < step < 2 * steps_per_epoch, step  # Within epoch 2.
  assert str(stopped.value) == (
      f'stopped by SIGTERM: the checkpoint of step {step} (step {step - steps_per_epoch} of '
      f'{steps_per_epoch} of epoch 2/2) is in {workdir / "checkpoints" / str(step)}; the same '
      'command resumes from it')
  assert [r['epoch'] for r in read_history(workdir)] == [1]
  assert train_and_evaluate(tiny_config, str(workdir)) == reference
  assert without_timing(read_history(workdir)) == without_timing(
      read_history(tmp_path / 'reference'))
  assert_same_arrays(final_state(tmp_path / 'reference', 2 * steps_per_epoch),
                     final_state(workdir, 2 * steps_per_epoch))


# --- kill -9 at any instant, within epochs and during checkpoint writes -------------------------

def checkpoints_in_writing(workdir):
  """The temporary directories of checkpoints orbax is writing (renamed to N once complete)."""
  directory = os.path.join(workdir, 'checkpoints')
  return [name for name in os.listdir(directory) if 'orbax-checkpoint-tmp' in name] if (
      os.path.isdir(directory)) else []


def kill_when(run, condition, what):
  """SIGKILLs `run` the first time `condition()` holds (polled every millisecond)."""
  deadline = time.time() + 240
  while not condition():
    assert run.poll() is None, f'the run ended before {what}: {run.communicate()}'
    assert time.time() < deadline, f'no {what} in time'
    time.sleep(0.001)
  run.kill()
  run.wait()


def final_state(workdir, step):
  """The arrays of the checkpoint `step` (parameters, optimizer state, step, key) by path."""
  checkpoints = Checkpoints(os.path.join(workdir, 'checkpoints'))
  try:
    state, _ = checkpoints.restore(step)
  finally:
    checkpoints.close()
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(state)}


def assert_same_arrays(expected, actual):
  assert expected.keys() == actual.keys()
  for path, value in expected.items():
    assert actual[path].dtype == value.dtype and actual[path].tobytes() == value.tobytes(), path


@pytest.mark.slow
def test_kill_9_at_several_instants_even_while_a_checkpoint_is_written_ends_bit_identical(
    tmp_path, finished_run):
  """Checkpoints every 2 steps; SIGKILL (1) while orbax writes the run's first checkpoint, (2) as
  soon as a checkpoint within epoch 2 is complete, (3) while the next one is written; a fourth
  process of the same command finishes. Each resumes from the newest complete checkpoint (within
  an epoch: the next batch, the epoch's metric sums so far), and the run ends where the
  uninterrupted one (`finished_run`, no checkpoints within epochs) ends: the same history, test
  metrics and parameters, bit for bit."""
  workdir = tmp_path / 'run'
  extra = ('--config.train.checkpoint_every_steps=2',)
  data_dir = finished_run[1]
  run = start(workdir, data_dir, 2, output=subprocess.DEVNULL, extra=extra)
  kill_when(run, lambda: checkpoints_in_writing(workdir), 'checkpoint write')
  assert not saved_steps(workdir)  # Killed before its first checkpoint was complete.
  run = start(workdir, data_dir, 2, output=subprocess.DEVNULL, extra=extra)
  kill_when(run, lambda: any(STEPS_PER_EPOCH < step < 2 * STEPS_PER_EPOCH
                             for step in saved_steps(workdir)), 'checkpoint within epoch 2')
  saved = max(saved_steps(workdir))
  run = start(workdir, data_dir, 2, output=subprocess.DEVNULL, extra=extra)
  kill_when(run, lambda: any(int(name.split('.')[0]) > saved
                             for name in checkpoints_in_writing(workdir)), 'later write')
  resumed = launch(workdir, data_dir, 2, *extra)
  assert resumed.returncode == 0, resumed.stderr
  assert 'resuming from the checkpoint of step' in resumed.stdout, resumed.stdout
  assert without_timing(read_history(workdir)) == without_timing(read_history(finished_run[0]))
  with open(workdir / 'test_metrics.json') as f, open(finished_run[0] / 'test_metrics.json') as g:
    assert json.load(f) == json.load(g)
  assert_same_arrays(final_state(finished_run[0], 2 * STEPS_PER_EPOCH),
                     final_state(workdir, 2 * STEPS_PER_EPOCH))


# --- Damaged checkpoints ------------------------------------------------------------------------

def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, finished_run):
  # Truncated files stand for every kind of damage here: `Checkpoints.damage` finds a deleted
  # file as it finds a short one, and test_checkpointing.py checks both kinds in-process; what
  # this test adds is the whole run's fallback, the same for either kind.
  workdir = copy_run(finished_run, tmp_path / 'run')
  before = read_history(workdir)
  data = workdir / 'checkpoints' / str(2 * STEPS_PER_EPOCH) / 'state' / 'd'
  for name in os.listdir(data):
    os.truncate(data / name, os.path.getsize(data / name) // 2)
  run = launch(workdir, finished_run[1], 3)
  assert run.returncode == 0, run.stderr
  assert 'Traceback' not in run.stderr
  assert f'warning: the checkpoint {2 * STEPS_PER_EPOCH} in' in run.stderr, run.stderr
  assert 'damaged' in run.stderr
  assert (f'resuming from the checkpoint of step {STEPS_PER_EPOCH} (the end of epoch 1/3)'
          in run.stdout), run.stdout
  names = os.listdir(workdir / 'checkpoints')
  assert any(name.startswith(f'{2 * STEPS_PER_EPOCH}.corrupt-') for name in names), names
  after = read_history(workdir)
  assert [r['epoch'] for r in after] == [1, 2, 3]
  # Epoch 1 comes from the checkpoint, epoch 2 is recomputed: both as the first run had them.
  assert without_timing(after[:2]) == without_timing(before)


# --- A config that changes the model or the optimizer -------------------------------------------

def test_resuming_with_another_model_or_optimizer_names_the_changed_fields(tmp_path,
                                                                            finished_run):
  workdir = copy_run(finished_run, tmp_path / 'run')
  with open(workdir / 'config.json') as f:
    config_before = f.read()
  run = launch(workdir, finished_run[1], 3, '--config.train.optimizer=sgd',
               '--config.model.dropout_rate=0.5')
  assert_clean_error(run, "train.optimizer from 'rmsprop' to 'sgd'",
                     'model.dropout_rate from None to 0.5', 'new --workdir')
  with open(workdir / 'config.json') as f:
    assert f.read() == config_before


# --- Read-only and full disks -------------------------------------------------------------------

def mount_tmpfs(directory, size):
  os.makedirs(directory)
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(directory)],
                           capture_output=True, text=True)
  if mounted.returncode != 0:
    pytest.skip(f'cannot mount a tmpfs here ({mounted.stderr.strip()}); the test needs root and '
                'the permission to mount')


def umount(directory):
  subprocess.run(['umount', '-l', str(directory)], check=False)


@pytest.mark.slow
def test_a_read_only_or_full_disk_is_a_clear_error_and_the_run_resumes_once_writable(
    tmp_path, finished_run):
  """One finished run on a tmpfs: read-only, then full, then fixed; each failed run leaves it as it
  was, and the run that fails on the full disk is the one that shows the read-only one resumed
  once writable (one launch fewer than a test for each disk)."""
  disk = tmp_path / 'disk'
  mount_tmpfs(disk, '32m')
  try:
    workdir = copy_run(finished_run, disk / 'run')
    before = read_history(workdir)
    subprocess.run(['mount', '-o', 'remount,ro', str(disk)], check=True)
    run = launch(workdir, finished_run[1], 3)
    assert_clean_error(run, str(workdir), 'Read-only file system')
    subprocess.run(['mount', '-o', 'remount,rw', str(disk)], check=True)
    assert read_history(workdir) == before
    # Writable again, but full but for 64 KiB: room for the config, not for epoch 3's checkpoint.
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / 'filler', 'wb') as f:
      f.write(b'\0' * (free - 64 * 1024))
    run = launch(workdir, finished_run[1], 3)
    assert END_OF_EPOCH_2 in run.stdout, run.stdout  # Writable.
    assert_clean_error(run, str(workdir), 'No space left on device', 'resume')
    assert read_history(workdir) == before
    os.remove(disk / 'filler')
    resumed = launch(workdir, finished_run[1], 3)
    assert resumed.returncode == 0, resumed.stderr
    assert END_OF_EPOCH_2 in resumed.stdout
    after = read_history(workdir)
    assert [r['epoch'] for r in after] == [1, 2, 3]
    assert without_timing(after[:2]) == without_timing(before)
  finally:
    umount(disk)


@pytest.mark.slow
def test_a_workdir_turned_read_only_mid_run_is_a_clear_error_keeping_what_was_written(
    tiny_config, tmp_path):
  """A read-only bind mount over the live workdir after epoch 1 (a remount of a file system with
  files open for writing is refused): epoch 2's writes fail, those of epoch 1 stay."""
  workdir = tmp_path / 'run'
  tiny_config.data.limit_train = 320
  tiny_config.data.limit_test = 64
  bound = []

  def read_only_after_epoch_1(epoch, history):
    del history
    deadline = time.time() + 60
    while not saved_steps(workdir):  # Epoch 1's checkpoint reaches the disk first.
      assert time.time() < deadline
      time.sleep(0.05)
    if epoch == 1:
      mounted = subprocess.run(['mount', '--bind', str(workdir), str(workdir)],
                               capture_output=True, text=True)
      if mounted.returncode != 0:
        pytest.skip(f'cannot bind-mount here ({mounted.stderr.strip()}); the test needs root')
      bound.append(workdir)
      subprocess.run(['mount', '-o', 'remount,bind,ro', str(workdir)], check=True)

  try:
    with pytest.raises(CnnjaxError, match='Read-only file system') as error:
      train_and_evaluate(tiny_config, str(workdir), on_epoch_end=read_only_after_epoch_1)
    assert str(workdir) in str(error.value) and 'run the same command again' in str(error.value)
    assert [r['epoch'] for r in read_history(workdir)] == [1]
  finally:
    if bound:
      umount(workdir)
  assert len(saved_steps(workdir)) == 1  # Epoch 1's.
  result = train_and_evaluate(tiny_config, str(workdir))
  assert [r['epoch'] for r in read_history(workdir)] == [1, 2] and result['best_epoch'] in (1, 2)


# --- Determinism --------------------------------------------------------------------------------

def test_the_same_config_and_seed_give_a_bit_identical_history(tmp_path, finished_run):
  """A second process with the same command: the same losses and accuracies to the last bit."""
  workdir = tmp_path / 'again'
  run = launch(workdir, finished_run[1], 2)
  assert run.returncode == 0, run.stderr
  history = without_timing(read_history(workdir))
  assert history == without_timing(read_history(finished_run[0]))
  assert len(history) == 2 and all(r['loss'] > 0 for r in history)
  with open(workdir / 'test_metrics.json') as f, open(finished_run[0] / 'test_metrics.json') as g:
    assert json.load(f) == json.load(g)
