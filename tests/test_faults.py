"""Fault injection on real `launch.py` processes: a second run on a live run's workdir, `kill -9`,
SIGTERM and a double SIGINT, damaged checkpoints, a config that changes the model or optimizer, a read-only workdir and a full
disk; and the determinism that makes a resumed run comparable to an uninterrupted one.

Every run is the main job's config on a few hundred Fashion-MNIST images (seconds per run) with a
constant learning rate, so that a run resumed with more epochs recomputes the same epochs
bit-identically. Those marked slow (the disk tests, a second kind of damage, the signals) take about three
minutes more together. The disk tests mount a tmpfs (the tests run as root) and skip, saying why, where
mounting is not permitted.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from cnnjax.data.idx import FASHION_MNIST_DIR
from cnnjax.errors import CnnjaxError
from cnnjax.training.train import train_and_evaluate

from conftest import REPO

TIMING = ('epoch_seconds', 'images_per_second')


def launch_command(workdir, data_dir, epochs, *extra):
  return [sys.executable, os.path.join(REPO, 'launch.py'), '--config', 'configs/fashion_mnist.py',
          '--workdir', str(workdir), f'--config.data.dir={data_dir}',
          '--config.data.limit_train=320', '--config.data.limit_test=64',
          '--config.train.batch_size=32', '--config.train.schedule=constant',
          f'--config.train.epochs={epochs}', *extra]


def launch(workdir, data_dir, epochs, *extra):
  return subprocess.run(launch_command(workdir, data_dir, epochs, *extra), cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def read_history(workdir):
  with open(os.path.join(workdir, 'history.json')) as f:
    return json.load(f)


def saved_epochs(workdir):
  """The epochs whose checkpoints are complete (orbax renames a finished one to its number)."""
  directory = os.path.join(workdir, 'checkpoints')
  return [int(name) for name in os.listdir(directory) if name.isdigit()] if os.path.isdir(
      directory) else []


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


# --- A second run on a live run's workdir -------------------------------------------------------

def test_a_second_run_on_a_live_workdir_is_refused_and_a_killed_run_leaves_no_stale_lock(
    tmp_path, finished_run):
  data_dir = finished_run[1]
  workdir = tmp_path / 'run'
  first = subprocess.Popen(launch_command(workdir, data_dir, 40), cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 240
    while not saved_epochs(workdir):  # A checkpoint is on disk: the run holds the lock.
      assert first.poll() is None and time.time() < deadline, 'the first run did not start'
      time.sleep(0.2)
    os.kill(first.pid, signal.SIGSTOP)  # Alive, holding the lock, and not moving on.
    epochs_done = max(saved_epochs(workdir))
    with open(workdir / 'config.json') as f:
      config_before = f.read()
    second = launch(workdir, data_dir, 40)
    assert_clean_error(second, 'in use by', f'process {first.pid}',
                       f'on host {socket.gethostname()}', 'started 20', '--workdir')
    with open(workdir / 'config.json') as f:
      assert f.read() == config_before  # The refused run wrote nothing.
  finally:
    first.kill()  # SIGKILL: the kernel releases the lock; nothing else does.
    first.wait()
  third = launch(workdir, data_dir, epochs_done + 1)
  assert third.returncode == 0, third.stderr
  assert f'resuming from the checkpoint of epoch {epochs_done}' in third.stdout
  assert [r['epoch'] for r in read_history(workdir)] == list(range(1, epochs_done + 2))


# --- Signals ------------------------------------------------------------------------------------

def start_and_wait_for_a_checkpoint(workdir, data_dir):
  run = subprocess.Popen(launch_command(workdir, data_dir, 40), cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 240
  while not saved_epochs(workdir):
    assert run.poll() is None and time.time() < deadline, 'the run did not start'
    time.sleep(0.2)
  return run


@pytest.mark.slow
def test_sigterm_stops_at_a_checkpoint_with_code_143_and_the_same_command_resumes(
    tmp_path, finished_run):
  workdir = tmp_path / 'run'
  run = start_and_wait_for_a_checkpoint(workdir, finished_run[1])
  try:
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=120)
  finally:
    run.kill()
  assert run.returncode == 143, stderr
  assert 'Traceback' not in stderr, stderr
  saved = max(saved_epochs(workdir))
  last = stderr.strip().splitlines()[-1]
  assert last.startswith('stopped by SIGTERM: the checkpoint of epoch '
                         f'{saved} is in {workdir / "checkpoints" / str(saved)}'), last
  assert last.endswith('the same command resumes from it'), last
  resumed = launch(workdir, finished_run[1], saved + 1)
  assert resumed.returncode == 0, resumed.stderr
  assert f'resuming from the checkpoint of epoch {saved}' in resumed.stdout


@pytest.mark.slow
def test_a_second_sigint_exits_at_once_with_code_130(tmp_path, finished_run):
  workdir = tmp_path / 'run'
  run = start_and_wait_for_a_checkpoint(workdir, finished_run[1])
  try:
    run.send_signal(signal.SIGINT)
    lines = []
    while not lines or not lines[-1].startswith('SIGINT: stopping'):  # The first is handled.
      lines.append(run.stderr.readline())
      assert lines[-1], ''.join(lines)
    run.send_signal(signal.SIGINT)  # While it finishes the epoch or step in flight.
    _, stderr = run.communicate(timeout=60)
    stderr = ''.join(lines) + stderr
  finally:
    run.kill()
  assert run.returncode == 130, stderr
  assert 'SIGINT again: exiting at once' in stderr and 'Traceback' not in stderr, stderr
  assert 'stopped by SIGINT' not in stderr, stderr  # It did not wait for the orderly stop.
  assert saved_epochs(workdir)  # The checkpoints complete before it are still there.


# --- Damaged checkpoints ------------------------------------------------------------------------

@pytest.mark.parametrize('damage', ['truncate', pytest.param('delete', marks=pytest.mark.slow)])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, finished_run,
                                                                     damage):
  workdir = copy_run(finished_run, tmp_path / 'run')
  before = read_history(workdir)
  data = workdir / 'checkpoints' / '2' / 'state' / 'd'
  for name in os.listdir(data):
    if damage == 'truncate':
      os.truncate(data / name, os.path.getsize(data / name) // 2)
    else:
      os.remove(data / name)
  run = launch(workdir, finished_run[1], 3)
  assert run.returncode == 0, run.stderr
  assert 'Traceback' not in run.stderr
  assert 'warning: the checkpoint of epoch 2' in run.stderr and 'damaged' in run.stderr
  assert 'resuming from the checkpoint of epoch 1' in run.stdout
  names = os.listdir(workdir / 'checkpoints')
  assert any(name.startswith('2.corrupt-') for name in names), names  # Moved aside, kept.
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
def test_a_read_only_workdir_is_a_clear_error_and_the_run_resumes_once_writable(tmp_path,
                                                                                 finished_run):
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
    resumed = launch(workdir, finished_run[1], 3)
    assert resumed.returncode == 0, resumed.stderr
    assert 'resuming from the checkpoint of epoch 2' in resumed.stdout
    assert without_timing(read_history(workdir)[:2]) == without_timing(before)
  finally:
    umount(disk)


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_is_a_clear_error_and_the_run_resumes(tmp_path,
                                                                               finished_run):
  disk = tmp_path / 'disk'
  mount_tmpfs(disk, '32m')
  try:
    workdir = copy_run(finished_run, disk / 'run')
    before = read_history(workdir)
    # Fill the disk but for 64 KiB: room for the config, not for epoch 3's checkpoint.
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / 'filler', 'wb') as f:
      f.write(b'\0' * (free - 64 * 1024))
    run = launch(workdir, finished_run[1], 3)
    assert_clean_error(run, str(workdir), 'No space left on device', 'resume')
    assert read_history(workdir) == before
    os.remove(disk / 'filler')
    resumed = launch(workdir, finished_run[1], 3)
    assert resumed.returncode == 0, resumed.stderr
    assert 'resuming from the checkpoint of epoch 2' in resumed.stdout
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
    while 1 not in saved_epochs(workdir):  # Epoch 1's checkpoint reaches the disk first.
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
  assert saved_epochs(workdir) == [1]
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
