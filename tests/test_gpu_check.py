"""benchmarks/gpu_check.sh: every phase runs and reports on the CPU (--cpu), a failed or slow
phase is recorded and the next one runs, and the install phase installs missing packages from
carried wheels without network."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
import gpu_check  # pylint: disable=wrong-import-position


@pytest.fixture(scope='module')
def cpu_run(tmp_path_factory):
  """One `gpu_check.sh --cpu` run: (exit status, its JSON)."""
  out = tmp_path_factory.mktemp('gpu_check')
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_PLATFORMS')}
  run = subprocess.run(['bash', os.path.join(REPO, 'benchmarks', 'gpu_check.sh'), '--cpu',
                        str(out), '--budget-s', '400'], capture_output=True, text=True, env=env,
                       timeout=600, check=False)
  with open(out / 'gpu_check.json') as f:
    report = json.load(f)
  assert (out / 'gpu_check.log').stat().st_size > 0
  return run.returncode, report, run.stdout + run.stderr


@pytest.mark.slow
def test_cpu_run_passes_every_phase_and_records_its_results(cpu_run):
  code, report, output = cpu_run
  phases = report['phases']
  assert list(phases) == list(gpu_check.PHASES), output[-2000:]
  failed = {name: entry.get('error') for name, entry in phases.items() if entry['status'] != 'ok'}
  assert not failed and code == 0 and report['passed'], (failed, output[-3000:])
  assert report['mode'] == 'cpu' and report['environment']['JAX_PLATFORMS'] == 'cpu'
  assert 'ml-collections' in report['machine']['versions']

  assert phases['install']['results']['missing_before'] == []
  tests = phases['pytest']['results']
  assert tests['passed'] > 0 and tests['failures'] == tests['errors'] == 0
  for model in gpu_check.parallel_models(cpu=True):
    parallel = phases['parallel']['results'][model]
    assert set(parallel) >= {'single', 'sharded', 'pmap'}
    assert parallel['pmap_vs_single_max_rel_diff']['params'] < 1e-3
  main_job = phases['main_job']['results']
  assert main_job['test_metrics']['test_accuracy'] > 0.2 and len(main_job['epochs']) == 1
  assert main_job['data_dir'] != 'default' or not os.path.isdir(gpu_check.CARRY)
  resnet = phases['resnet50_train']['results']
  assert resnet['dtype'] == 'bfloat16' and resnet['flops_per_step'] > 0
  assert 0 < resnet['share_of_measured_matmul_peak'] < 2
  speed = phases['speed']['results']['summary']['small_convnet']
  assert set(speed) == {'cnnjax', 'torch,bf16'}
  assert all(row['images_per_second'] > 0 for row in speed.values())
  assert speed['cnnjax']['achieved_gflops'] > 0 and speed['torch,bf16']['dtype'] == 'bfloat16'


@pytest.fixture
def make_context(tmp_path):
  """A function: a --cpu Context writing into tmp_path; closed after the test."""
  made = []

  def make(budget_s=60.0, carry=None):
    made.append(gpu_check.Context(cpu=True, out_dir=str(tmp_path),
                                  carry=str(carry or tmp_path), budget_s=budget_s))
    return made[-1]
  yield make
  for ctx in made:
    ctx.close()


def test_a_failed_or_slow_phase_is_recorded_and_the_next_one_runs(make_context):
  ctx = make_context()
  ran = []

  def fails(ctx, timeout):
    del ctx, timeout
    ran.append('fails')
    raise gpu_check.PhaseError('it broke', {'partial': 1}, output='traceback here')

  def hangs(ctx, timeout):
    ran.append('hangs')
    return gpu_check.run_python_phase(ctx, ['-c', 'import time; time.sleep(30)'], timeout)

  def crashes(ctx, timeout):
    del ctx, timeout
    ran.append('crashes')
    raise KeyError('missing')

  def passes(ctx, timeout):
    del ctx, timeout
    ran.append('passes')
    return {'value': 2}

  functions = {'a': fails, 'b': hangs, 'c': crashes, 'd': passes}
  record = gpu_check.run_phases(ctx, list(functions), functions,
                                {'a': 10, 'b': 2, 'c': 10, 'd': 10})
  assert ran == ['fails', 'hangs', 'crashes', 'passes']
  assert record['a']['status'] == 'failed' and record['a']['error'] == 'it broke'
  assert record['a']['results'] == {'partial': 1} and record['a']['output_tail'] == 'traceback here'
  assert record['b']['status'] == 'timeout' and record['b']['seconds'] < 10
  assert record['c']['status'] == 'failed' and 'KeyError' in record['c']['error']
  assert record['d'] == {'budget_s': 10, 'results': {'value': 2}, 'status': 'ok',
                         'seconds': record['d']['seconds']}


def test_phases_past_the_total_budget_are_skipped(make_context):
  ctx = make_context(budget_s=3.0)
  record = gpu_check.run_phases(ctx, ['a'], {'a': lambda ctx, timeout: {}}, {'a': 10})
  assert record['a']['status'] == 'skipped' and 'budget' in record['a']['error']


def probe_wheel(directory, name='cnnjax_gpu_check_probe'):
  """A minimal pure-Python wheel of one module."""
  path = os.path.join(directory, f'{name}-0.1-py3-none-any.whl')
  info = f'{name}-0.1.dist-info'
  files = {f'{name}/__init__.py': 'VALUE = 42\n',
           f'{info}/METADATA': f'Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n',
           f'{info}/WHEEL': ('Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n'
                             'Tag: py3-none-any\n')}
  files[f'{info}/RECORD'] = ''.join(f'{f},,\n' for f in [*files, f'{info}/RECORD'])
  with zipfile.ZipFile(path, 'w') as z:
    for f, text in files.items():
      z.writestr(f, text)
  return path


def test_install_puts_missing_modules_on_the_phases_path(tmp_path, monkeypatch, make_context):
  name = 'cnnjax_gpu_check_probe'
  monkeypatch.setattr(gpu_check, 'REQUIRED_MODULES', ('json', name))
  monkeypatch.setattr(sys, 'path', list(sys.path))
  (tmp_path / 'wheels').mkdir()
  ctx = make_context(carry=tmp_path)
  with pytest.raises(gpu_check.PhaseError, match=f"missing modules \\['{name}'\\].*gpu_wheels.sh"):
    gpu_check.phase_install(ctx, 60)

  probe_wheel(str(tmp_path / 'wheels'))
  results = gpu_check.phase_install(ctx, 60)
  assert results['missing_before'] == [name] and results['missing_after'] == []
  run = subprocess.run([sys.executable, '-c', f'import {name}; print({name}.VALUE)'],
                       env=ctx.env, capture_output=True, text=True, check=True)
  assert run.stdout.strip() == '42'
