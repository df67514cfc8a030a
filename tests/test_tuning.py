"""Speed choices measured on the machine: convolution formulations (cnnjax/tuning.py) and process
settings (cnnjax/process_settings.py): measured once and then reused, a cache of another CPU or
version ignored, an override wins, the numerics stay those of 'lax'."""

import hashlib
import json
import os
import platform
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import process_settings
from cnnjax import tuning
from cnnjax.config import base_config
from cnnjax.models import create_model
from cnnjax.models import convolution
from cnnjax.models import layers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X_SHAPE, KERNEL_SHAPE = (8, 12, 12, 1), (3, 3, 1, 4)


@pytest.fixture
def measuring(tmp_path, monkeypatch):
  """Measuring on, with a fresh cache directory and the log lines collected."""
  monkeypatch.delenv('CNNJAX_TUNING', raising=False)
  lines = []
  tuning.configure(measure=True, cache_dir=str(tmp_path / 'cache'), log=lines.append)
  tuning.MEASUREMENTS.clear()
  yield lines
  tuning.configure(measure=True, cache_dir='', log=lambda line: print(line, flush=True))


def fake_times(times):
  """A `time_formulation` that returns the given seconds per formulation name."""
  def time_formulation(formulation, *args, **kwargs):
    return times[formulation.args[0]]
  return time_formulation


def trained_conv_choice(x_shape=X_SHAPE, kernel_shape=KERNEL_SHAPE):
  """Traces a jitted kernel gradient of an 'auto' convolution; returns its key's choice."""
  x = jnp.ones(x_shape)
  kernel = jnp.ones(kernel_shape)
  jax.jit(jax.grad(lambda k: convolution.convolve(x, k, (1, 1), 'SAME', 'auto').sum()))(kernel)
  key = tuning.convolution_key(x_shape, kernel_shape, (1, 1), 'SAME', (1, 1), 'float32', 'train')
  return tuning.chosen()[key]['choice']


def test_the_fastest_formulation_is_measured_once_and_then_reused(measuring, monkeypatch):
  monkeypatch.setattr(tuning, 'time_formulation',
                      fake_times({'lax': 3e-3, 'taps': 2e-3, 'im2col': 1e-3}))
  assert trained_conv_choice() == 'im2col'
  assert len(tuning.MEASUREMENTS) == 1 and tuning.MEASUREMENTS[0].startswith('train x=8x12x12x1')
  assert '-> im2col' in measuring[-1]
  with open(tuning.cache_file()) as f:
    stored = json.load(f)
  assert stored['identity'] == tuning.identity()
  assert [entry['choice'] for entry in stored['choices'].values()] == ['im2col']

  # A new process (memory forgotten) reads the cache and measures nothing.
  tuning.configure(measure=True)
  monkeypatch.setattr(tuning, 'time_formulation', lambda *a, **k: pytest.fail('measured again'))
  assert trained_conv_choice() == 'im2col'
  assert len(tuning.MEASUREMENTS) == 1


def test_forward_only_and_trained_layers_are_measured_apart(measuring, monkeypatch):
  """A layer whose kernel is not differentiated is timed forward only, under its own key."""
  monkeypatch.setattr(tuning, 'time_formulation',
                      lambda fn, x, k, dtype, mode: {'train': {'lax': 1, 'taps': 2, 'im2col': 3},
                                                     'predict': {'lax': 3, 'taps': 1,
                                                                 'im2col': 2}}[mode][fn.args[0]])
  x = jnp.ones(X_SHAPE)
  kernel = jnp.ones(KERNEL_SHAPE)
  jax.jit(lambda k: convolution.convolve(x, k, (1, 1), 'SAME', 'auto'))(kernel)
  assert trained_conv_choice() == 'lax'
  assert [key.split()[0] for key in tuning.MEASUREMENTS] == ['predict', 'train']
  assert [tuning.chosen()[key]['choice'] for key in tuning.MEASUREMENTS] == ['taps', 'lax']


def test_a_near_tie_keeps_the_rules_choice(measuring, monkeypatch):
  """A formulation less than tuning.MARGIN faster than the rules' choice (for four input
  channels 'lax', or 'im2col' where YNNPACK's fusions are on) does not replace it: a few timed
  calls scatter by more than that."""
  tie, clear = ((8, 12, 12, 4), (3, 3, 4, 4)), ((8, 10, 10, 4), (3, 3, 4, 4))
  rule = convolution.resolve('auto', 4)
  other = {'lax': 'im2col', 'im2col': 'lax'}[rule]
  monkeypatch.setattr(tuning, 'time_formulation', fake_times({rule: 1.00e-3, other: 0.97e-3}))
  assert trained_conv_choice(*tie) == rule
  assert f"-> {rule} (the rules' choice: nothing was 5% faster)" in measuring[-1]
  monkeypatch.setattr(tuning, 'time_formulation', fake_times({rule: 1.00e-3, other: 0.90e-3}))
  assert trained_conv_choice(*clear) == other
  assert tuning.fastest({'a': 1.0, 'b': 0.96}, default='a') == 'a'
  assert tuning.fastest({'a': 1.0, 'b': 0.94}, default='a') == 'b'
  assert tuning.fastest({'a': 1.0, 'b': 1.2}, default='b') == 'a'


def test_a_cache_from_another_cpu_or_version_is_ignored(measuring, monkeypatch):
  monkeypatch.setattr(tuning, 'time_formulation',
                      fake_times({'lax': 1e-3, 'taps': 2e-3, 'im2col': 3e-3}))
  # A file at this machine's path that says it was measured under another jax version.
  other = {**tuning.identity(), 'jax': '0.0.1'}
  key = tuning.convolution_key(X_SHAPE, KERNEL_SHAPE, (1, 1), 'SAME', (1, 1), 'float32', 'train')
  os.makedirs(os.path.dirname(tuning.cache_file()))
  with open(tuning.cache_file(), 'w') as f:
    json.dump({'identity': other, 'choices': {key: {'choice': 'taps', 'ms': {}}}}, f)
  assert trained_conv_choice() == 'lax'
  assert any(line.startswith(f'tuning: ignoring {tuning.cache_file()}') for line in measuring)
  assert len(tuning.MEASUREMENTS) == 1

  # The same shapes on another CPU model: another file, measured again.
  first_file = tuning.cache_file()
  tuning.configure(measure=True)
  monkeypatch.setattr(tuning, 'cpu_model', lambda: 'Another CPU @ 1.0GHz')
  monkeypatch.setattr(tuning, 'time_formulation',
                      fake_times({'lax': 3e-3, 'taps': 1e-3, 'im2col': 2e-3}))
  assert tuning.cache_file() != first_file
  assert trained_conv_choice() == 'taps'
  assert len(tuning.MEASUREMENTS) == 2


def test_one_cpu_name_of_two_generations_is_two_identities(tmp_path):
  block = ('processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: {family}\nmodel\t\t: 1\n'
           'model name\t: AMD EPYC\nstepping\t: 1\nflags\t\t: fpu sse2 {extra}\n\n')
  older, newer = tmp_path / 'older', tmp_path / 'newer'
  older.write_text(block.format(n=0, family=25, extra='avx2') + block.format(
      n=1, family=25, extra='avx2'))
  newer.write_text(block.format(n=0, family=26, extra='avx2 avx512f'))
  digest = hashlib.sha256(b'avx2 fpu sse2').hexdigest()[:8]  # The sorted flags.
  assert tuning.cpu_model(str(older)) == (
      f'AMD EPYC (family 25, model 1, stepping 1, flags {digest})')
  assert tuning.cpu_model(str(older)) != tuning.cpu_model(str(newer))
  # The same family with other instruction sets (a VM that hides AVX-512) differs too.
  masked = tmp_path / 'masked'
  masked.write_text(block.format(n=0, family=26, extra='avx2'))
  assert tuning.cpu_model(str(masked)) != tuning.cpu_model(str(newer))
  assert tuning.cpu_model(str(tmp_path / 'absent')) == (
      platform.processor() or platform.machine())


def test_an_explicit_implementation_or_measuring_off_is_not_measured(measuring, monkeypatch):
  monkeypatch.setattr(tuning, 'time_formulation', lambda *a, **k: pytest.fail('measured'))
  assert convolution.choose('lax', X_SHAPE, KERNEL_SHAPE, (1, 1), 'SAME',
                            differentiated=True) == 'lax'
  config = base_config()
  config.model.conv_implementation = 'im2col'
  model = create_model(config.model)
  variables = model.init(jax.random.key(0), jnp.ones((2, 28, 28, 1)))
  jax.jit(jax.grad(lambda p: model.apply({'params': p}, jnp.ones((2, 28, 28, 1))).sum()))(
      variables['params'])
  # Measuring off in the config: the rules, whatever the shapes.
  config.tuning.measure = False
  tuning.configure_from(config)
  assert not tuning.measuring()
  assert convolution.choose('auto', X_SHAPE, KERNEL_SHAPE, (1, 1), 'SAME',
                            differentiated=True) == convolution.resolve('auto', 1)
  # The environment wins over the config: the test suite's CNNJAX_TUNING=rules.
  tuning.configure(measure=True)
  monkeypatch.setenv('CNNJAX_TUNING', 'rules')
  assert not tuning.measuring()
  monkeypatch.setenv('CNNJAX_TUNING', 'measure')
  assert tuning.measuring()
  assert tuning.MEASUREMENTS == []


@pytest.mark.parametrize('name', ['small_convnet', 'bn_convnet'])
def test_measured_formulations_compute_what_lax_computes(measuring, name):
  """Really measured (tiny shapes): whatever won, outputs and gradients are those of 'lax'."""
  config = base_config()
  config.model.name = name
  images = jax.random.uniform(jax.random.key(1), (16, 28, 28, 1))

  def outputs_and_grads(implementation):
    config.model.conv_implementation = implementation
    model = create_model(config.model)
    variables = model.init(jax.random.key(0), images[:1])

    def loss(params):
      logits = model.apply({**variables, 'params': params}, images, train=True,
                           rngs={'dropout': jax.random.key(2)}, mutable=['batch_stats'])[0]
      return jnp.sum(logits ** 2), logits
    return jax.jit(jax.grad(loss, has_aux=True))(variables['params'])

  measured_grads, measured_logits = outputs_and_grads('auto')
  assert len(tuning.MEASUREMENTS) == 3  # Each convolution of the model, trained.
  lax_grads, lax_logits = outputs_and_grads('lax')
  np.testing.assert_allclose(measured_logits, lax_logits, rtol=1e-5, atol=1e-5)
  for measured, reference in zip(jax.tree.leaves(measured_grads), jax.tree.leaves(lax_grads)):
    scale = float(jnp.max(jnp.abs(reference)))
    np.testing.assert_allclose(measured, reference, rtol=0, atol=2e-5 * scale)


# -- process settings -----------------------------------------------------------------------------


def settings_config(tmp_path):
  config = base_config()
  config.tuning.cache_dir = str(tmp_path / 'cache')
  return config


def test_process_settings_are_measured_once_per_workload(tmp_path, monkeypatch):
  monkeypatch.setattr(tuning._SETTINGS, 'cache_dir', str(tmp_path / 'cache'))
  environ = {'PATH': os.environ['PATH']}
  monkeypatch.setattr(process_settings.host_memory, 'huge_pages_available', lambda: True)
  timed = []

  def measure(argv, env):
    timed.append(env[process_settings.ENV])
    settings = process_settings.decode(env[process_settings.ENV])
    # The candidate's environment carries it: huge pages asked of glibc, the fusion flag.
    assert ('glibc.malloc.hugetlb=1' in env.get('GLIBC_TUNABLES', '')) == settings.huge_pages
    assert (process_settings.xla_cpu.FLAG + '=' in env['XLA_FLAGS']) != settings.ynn_fusions
    return {'huge_pages=1,ynn_fusions=1': 9.0, 'huge_pages=1,ynn_fusions=0': 7.0,
            'huge_pages=0,ynn_fusions=1': 8.0, 'huge_pages=0,ynn_fusions=0': 6.0}[
                env[process_settings.ENV]]

  config = settings_config(tmp_path)
  settings, source = process_settings.choose(config, ['launch.py'], environ, measure=measure,
                                             log=lambda line: None)
  assert settings == process_settings.Settings(huge_pages=False, ynn_fusions=False)
  assert len(timed) == 4 and source.startswith('measured now')
  # Reused: nothing measured again.
  settings, source = process_settings.choose(config, ['launch.py'], environ, measure=measure,
                                             log=lambda line: None)
  assert settings.encode() == 'huge_pages=0,ynn_fusions=0' and len(timed) == 4
  assert source.startswith('measured earlier')
  # Another workload (batch size): measured for itself.
  config.train.batch_size = 128
  process_settings.choose(config, ['launch.py'], environ, measure=measure, log=lambda l: None)
  assert len(timed) == 8
  # Another model shape set in the config (model.widths): another workload too.
  config.model.widths = (8, 16, 32)
  process_settings.choose(config, ['launch.py'], environ, measure=measure, log=lambda l: None)
  assert len(timed) == 12
  config.model.dropout_rate = 0.25  # Any field of the model group (dropout adds work).
  process_settings.choose(config, ['launch.py'], environ, measure=measure, log=lambda l: None)
  assert len(timed) == 16
  config.model.widths, config.model.dropout_rate = None, None
  # Another CPU model: the cache is ignored.
  config.train.batch_size = 64
  monkeypatch.setattr(tuning, 'cpu_model', lambda: 'Another CPU')
  process_settings.choose(config, ['launch.py'], environ, measure=measure, log=lambda l: None)
  assert len(timed) == 20


def test_process_settings_keep_the_rules_on_a_near_tie(tmp_path, monkeypatch):
  monkeypatch.setattr(tuning._SETTINGS, 'cache_dir', str(tmp_path / 'cache'))
  monkeypatch.setattr(process_settings.host_memory, 'huge_pages_available', lambda: True)
  rules = process_settings.rules().encode()
  assert rules == 'huge_pages=1,ynn_fusions=0'
  times = {'huge_pages=1,ynn_fusions=1': 9.0, rules: 7.0, 'huge_pages=0,ynn_fusions=1': 8.0,
           'huge_pages=0,ynn_fusions=0': 6.8}  # 3% faster than the rules: a near-tie.
  settings, _ = process_settings.choose(
      settings_config(tmp_path), ['launch.py'], {'PATH': os.environ['PATH']},
      measure=lambda argv, env: times[env[process_settings.ENV]], log=lambda line: None)
  assert settings.encode() == rules


def test_process_settings_overrides_win(tmp_path, monkeypatch):
  monkeypatch.setattr(tuning._SETTINGS, 'cache_dir', str(tmp_path / 'cache'))
  monkeypatch.setattr(process_settings.host_memory, 'huge_pages_available', lambda: True)
  timed = []

  def measure(argv, env):
    timed.append(env[process_settings.ENV])
    return 1.0 if env[process_settings.ENV] == 'huge_pages=0,ynn_fusions=1' else 2.0

  config = settings_config(tmp_path)
  base = {'PATH': os.environ['PATH']}
  # The user's environment fixes huge pages (off): only the fusions are measured.
  settings, _ = process_settings.choose(
      config, ['launch.py'], {**base, 'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'},
      measure=measure, log=lambda l: None)
  assert settings.encode() == 'huge_pages=0,ynn_fusions=1'
  assert sorted(timed) == ['huge_pages=0,ynn_fusions=0', 'huge_pages=0,ynn_fusions=1']
  # The config fixes both: nothing measured.
  config.tuning.huge_pages = 'on'
  config.tuning.ynn_fusions = 'off'
  settings, source = process_settings.choose(config, ['launch.py'], base, measure=measure)
  assert settings.encode() == 'huge_pages=1,ynn_fusions=0' and len(timed) == 2
  # Measuring off: the rules.
  config.tuning.huge_pages = 'auto'
  config.tuning.measure = False
  settings, source = process_settings.choose(config, ['launch.py'], base, measure=measure)
  assert settings == process_settings.rules() and source == 'rules (not measured)'
  # Decided settings in the environment (the restarted process, a child, a user): taken as is.
  settings, _ = process_settings.choose(
      config, ['launch.py'], {**base, process_settings.ENV: 'huge_pages=1,ynn_fusions=1'})
  assert settings.encode() == 'huge_pages=1,ynn_fusions=1'
  with pytest.raises(ValueError, match='CNNJAX_PROCESS_SETTINGS'):
    process_settings.decode('huge_pages=yes')
  config.tuning.ynn_fusions = 'maybe'
  with pytest.raises(Exception, match="tuning.ynn_fusions='maybe'"):
    process_settings.choose(config, ['launch.py'], base)


def test_a_candidate_is_timed_by_a_real_launch_child(tmp_path, monkeypatch):
  """`--mode time_steps` in a child process with the candidate's environment: a step time."""
  monkeypatch.chdir(REPO)
  argv = [sys.executable, 'launch.py', '--config', 'configs/fashion_mnist.py']
  env = process_settings.environment(process_settings.Settings(False, False), os.environ)
  ms = process_settings.measure_candidate(argv, {**env, 'CNNJAX_CACHE_DIR': str(tmp_path)})
  assert 0 < ms < 10_000


@pytest.mark.slow
def test_launch_measures_on_the_first_run_and_reuses_on_the_next(tmp_path, monkeypatch):
  """The real path: launch.py times the four process-setting candidates in child processes and
  each convolution in its programs on the first run; the second run measures nothing."""
  monkeypatch.chdir(REPO)
  env = {k: v for k, v in os.environ.items()
         if k not in ('CNNJAX_TUNING', 'GLIBC_TUNABLES', 'XLA_FLAGS', process_settings.ENV)}
  env['CNNJAX_CACHE_DIR'] = str(tmp_path / 'cache')
  command = [sys.executable, 'launch.py', '--config', 'configs/fashion_mnist.py',
             '--config.train.epochs=1', '--config.data.limit_train=640',
             '--config.data.limit_test=128', '--config.train.eval_batch_size=128']

  def run(workdir):
    result = subprocess.run([*command, f'--workdir={tmp_path / workdir}'], env=env,
                            capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.splitlines()

  first = run('first')
  timed = [line for line in first if line.startswith('process settings:') and 'ms per' in line]
  assert len(timed) == (4 if process_settings.host_memory.huge_pages_available() else 2), first
  chosen = [line for line in first if 'measured now' in line]
  assert len(chosen) == 1, first
  # The evaluation step's convolutions (batch 128, forward only) are measured in the run itself.
  assert sum(line.startswith('tuning: predict x=128x') for line in first) == 3, first
  assert any(line.startswith('test_accuracy:') for line in first)

  second = run('second')
  assert not any('ms per train step' in line or line.startswith('tuning:') for line in second), (
      second)
  assert sum('measured earlier' in line for line in second) == 1, second
  # The same settings as the first run chose.
  setting = lambda line: line.split(' (')[0]  # pylint: disable=unnecessary-lambda-assignment
  assert setting(chosen[0]) == setting(next(l for l in second if 'measured earlier' in l))


def test_a_failed_measurement_falls_back_to_the_rules_uncached(tmp_path, monkeypatch):
  monkeypatch.setattr(tuning._SETTINGS, 'cache_dir', str(tmp_path / 'cache'))
  lines = []

  def measure(argv, env):
    raise RuntimeError('timing huge_pages=1,ynn_fusions=1 failed (exit 1): out of memory')

  config = settings_config(tmp_path)
  settings, source = process_settings.choose(config, ['launch.py'], {'PATH': ''},
                                             measure=measure, log=lines.append)
  assert settings == process_settings.rules() and source == 'rules (measuring failed)'
  assert 'out of memory' in lines[-1]
  assert not os.path.exists(tmp_path / 'cache')
