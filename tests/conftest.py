"""Shared fixtures: a tiny training config on a slice of the real Fashion-MNIST files, and the
process environment launch.py sets up."""

import os
import subprocess
import sys

import pytest

from cnnjax.config import base_config
from cnnjax.data.idx import FASHION_MNIST_DIR

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The suite runs on the rules, in this process and in every launch.py it starts: measuring each
# convolution and process setting (cnnjax/tuning.py, cnnjax/process_settings.py) would make the
# tests slower and their formulations depend on the machine's load. tests/test_tuning.py turns
# measuring on where it tests it.
os.environ['CNNJAX_TUNING'] = 'rules'


@pytest.fixture
def tiny_config():
  """The main job's config on 1,280 training / 256 test images, 2 epochs: seconds, not minutes."""
  data_dir = os.environ.get('CNNJAX_DATA_DIR', FASHION_MNIST_DIR)
  assert os.path.isdir(data_dir), (
      f'the Fashion-MNIST IDX files are missing from {data_dir}: run scripts/setup.sh '
      '(it installs the Debian package dataset-fashion-mnist)')
  config = base_config()
  config.data.dir = data_dir
  config.data.limit_train = 1280
  config.data.limit_test = 256
  config.data.val_fraction = 0.2
  config.train.epochs = 2
  config.train.batch_size = 32
  config.train.eval_batch_size = 128
  return config


@pytest.fixture
def launch_environment():
  """A function: GLIBC_TUNABLES and XLA_FLAGS as launch.py's process sees them after its start-up
  (any restart included), run in a fresh process whose environment has neither variable but the
  `extra` ones; returns that process's output, lines 'TUNABLES=...' and 'FLAGS=...'."""
  script = ('import runpy, sys, os\n'
            'sys.argv = ["launch.py", "--config", "configs/fashion_mnist.py", "--mode", "summary"]\n'
            'try:\n'
            '  runpy.run_path("launch.py", run_name="__main__")\n'
            'except SystemExit:\n'
            '  pass\n'
            'print("TUNABLES=" + os.environ.get("GLIBC_TUNABLES", "<unset>"))\n'
            'print("FLAGS=" + os.environ.get("XLA_FLAGS", ""))\n')

  def run(extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ('GLIBC_TUNABLES', 'XLA_FLAGS')}
    return subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          env={**env, **extra}, check=True, cwd=REPO).stdout
  return run


@pytest.fixture(scope='session')
def compilation_cache_dir(tmp_path_factory):
  """A directory for JAX's persistent compilation cache, new each session (see
  `persistent_compilation_cache`); launch.py processes get it as JAX_COMPILATION_CACHE_DIR."""
  return str(tmp_path_factory.mktemp('jax_compilation_cache'))


@pytest.fixture(scope='module')
def persistent_compilation_cache(compilation_cache_dir):
  """JAX's persistent compilation cache, on in this process for one module's tests (opt in with
  `pytestmark = pytest.mark.usefixtures('persistent_compilation_cache')`).

  Every `train_and_evaluate` jits its steps anew, so a run that compiles what an earlier one did
  (a resumed run, a run of the same model) compiles it all again: seconds a run. With the cache it
  loads the executables instead. What runs is the same; only XLA's compilation is skipped.
  """
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  previous = (jax.config.jax_compilation_cache_dir,
              jax.config.jax_persistent_cache_min_compile_time_secs)
  compilation_cache.set_cache_dir(compilation_cache_dir)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  compilation_cache.reset_cache()  # JAX reads the settings at its next compilation.
  yield compilation_cache_dir
  compilation_cache.set_cache_dir(previous[0])
  jax.config.update('jax_persistent_cache_min_compile_time_secs', previous[1])
  compilation_cache.reset_cache()


def saved_steps(workdir):
  """The steps of a run's complete checkpoints (orbax renames a finished one to its number)."""
  directory = os.path.join(workdir, 'checkpoints')
  return [int(name) for name in os.listdir(directory) if name.isdigit()] if os.path.isdir(
      directory) else []


@pytest.fixture(scope='module')
def keras():
  """Keras 3 on its JAX backend, the reference of the Keras-layer augmentation tests."""
  os.environ.setdefault('KERAS_BACKEND', 'jax')
  keras = pytest.importorskip('keras')
  if keras.backend.backend() != 'jax':
    pytest.skip('needs KERAS_BACKEND=jax')
  return keras
