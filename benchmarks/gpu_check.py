"""Everything worth doing on the project's GPU machine, in one run under 8 minutes: one JSON file.

    bash benchmarks/gpu_check.sh OUT_DIR            # on the GPU machine (see gpu_check.sh)
    bash benchmarks/gpu_check.sh --cpu OUT_DIR      # the same phases on the CPU, tiny sizes

Phases, in this order, each in its own process under a time budget (a phase past its budget is
killed and recorded as 'timeout'; a failed phase is recorded and the next one runs; the exit
status is 1 if any phase did not pass):

1. install: the Python packages cnnjax needs that this machine lacks (on the GPU machine:
   ml-collections), pip-installed without network from the wheels that `gpu_wheels.sh` put in
   the carry directory (benchmarks/gpu_carry/wheels), into a directory on every later phase's
   PYTHONPATH;
2. pytest: the tests that run the device code paths (the models, ResNet against torch,
   BatchNorm, the train / eval steps, the training loop end to end), one pytest per file, all
   at once, with
   JAX's float32 matmuls at full precision (`JAX_DEFAULT_MATMUL_PRECISION=highest`: the tests'
   tolerances are the CPU's, and TF32 would miss them by design, not by a bug);
3. parallel: the single-device, sharded-jit and pmap train steps on this machine's one device
   (`tests/multidevice_checks.py`; a convnet with dropout and a BatchNorm net): the same losses
   and parameters, and on a GPU the same as XLA:CPU's (full precision on both);
4. main_job: `launch.py --config configs/fashion_mnist.py`, the README's main job end to end
   (Fashion-MNIST from the carry directory); its test accuracy, epoch times and images/s;
5. resnet50_train: ResNet50 (torchvision's v1.5) training in bfloat16 at 224x224 with a large
   batch (256): cnnjax's train step, XLA's FLOP count of it, images/s and the share of the
   H200's dense bf16 peak (790 TFLOP/s, measured on these machines) and of the bf16 matmul peak
   measured in the same process;
6. speed: `speed_suite.py`'s workloads, cnnjax in float32 and bfloat16 and PyTorch on CUDA
   (float32 as it comes, and bfloat16 autocast with channels-last and cuDNN's autotuning), the
   new zoo workloads first; its JSON is kept whole in this file.

`--cpu` runs every phase on the CPU (JAX_PLATFORMS=cpu, torch on the CPU) at tiny sizes: the
main job on 1,024 images for one epoch, ResNet-8 instead of ResNet50, one small speed workload,
a handful of tests. tests/test_gpu_check.py runs it that way.

The JSON (OUT_DIR/gpu_check.json) holds, per phase: status ('ok', 'failed', 'timeout',
'skipped'), seconds, budget_s, the error and the output's tail, and the phase's results; plus
the machine (GPU, driver), the versions and the environment the phases ran with. All phases'
output goes to OUT_DIR/gpu_check.log.
"""

import argparse
import datetime
import glob
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CARRY = os.path.join(HERE, 'gpu_carry')  # Filled by gpu_wheels.sh; git-ignored.

# The H200's dense bfloat16 matrix peak as measured on this workplace's machines (an 8192^3
# product through PyTorch: 769-798 TFLOP/s; /work/.library/device/KINDS.md).
H200_BF16_PEAK_TFLOPS = 790.0
# Whole run on the GPU machine: under 8 minutes, the machine's start and transfers aside.
TOTAL_BUDGET_S = 450
PHASES = ('install', 'pytest', 'parallel', 'main_job', 'resnet50_train', 'speed')
# Seconds per phase on the GPU machine (16 cores; compiles and cuDNN autotuning dominate), and
# on the CPU at --cpu's tiny sizes. A phase gets at most what is left of the total budget.
BUDGETS = {
    'gpu': {'install': 40, 'pytest': 110, 'parallel': 45, 'main_job': 80, 'resnet50_train': 80,
            'speed': 230},
    # Generous: the 2-core CPU machine is shared, and a loaded one runs these 3x slower.
    'cpu': {'install': 60, 'pytest': 150, 'parallel': 150, 'main_job': 150,
            'resnet50_train': 150, 'speed': 240},
}
# Imported by cnnjax (or by the phases) at module level; ml_collections is the one the GPU
# machine lacks. tensorflow_datasets is imported only by the 'tfds' data source, which no phase
# uses (the tests that need it skip without it).
REQUIRED_MODULES = ('jax', 'flax', 'optax', 'orbax.checkpoint', 'ml_collections', 'numpy',
                    'absl', 'yaml', 'h5py', 'PIL', 'matplotlib', 'tqdm', 'torch', 'pytest',
                    'tensorboardX', 'google.protobuf')

# The tests of the device code paths (models, BatchNorm, the steps, the training loop end to
# end), each file run by its own pytest, side by side; the convolution formulations and the
# augmentations (106 tests) are left out for time. On the 2-core CPU under load these 90 tests
# took 13.5 min one after another, test_train.py's five 4.5 min of it.
# Deselected: the slow end-to-end runs (-m 'not slow'), tensorflow-datasets' mock-data run
# (absent there) and the Keras comparisons (no Keras there: they skip by themselves).
PYTEST_GPU = ('tests/test_train.py', 'tests/test_models.py', 'tests/test_batch_norm.py',
              'tests/test_steps.py', 'tests/test_resnet.py', 'tests/test_inception_v3.py')
PYTEST_CPU = ('tests/test_steps.py::test_metric_sums_add_up_to_the_mean',)
PYTEST_DESELECT = 'not tfds'

# The speed suite on the GPU: the new zoo workloads first (a timeout keeps what was measured).
SPEED_GPU = dict(
    workloads=('resnet50_predict_224,inceptionv3_predict_299,resnet18_train_224,'
               'vgg16_predict_224,small_convnet,cats_vs_dogs_150,vgg16_frozen_150'),
    frameworks=('cnnjax;cnnjax,bf16;torch,device=cuda;'
                'torch,device=cuda,bf16,channels_last,cudnn_benchmark'),
    steps_scale='10', rounds='3', peak_size='8192')
SPEED_CPU = dict(workloads='small_convnet', frameworks='cnnjax;torch,bf16',
                 steps_scale='0.03', rounds='1', peak_size='256')


def tail(text: str, chars: int = 3000) -> str:
  return text[-chars:] if text else ''


def run_command(command: list[str], env: dict, timeout: float, log) -> tuple[int | None, str]:
  """Runs `command` in its own process group; (exit code or None on timeout, output).

  On timeout the whole group is killed (a phase's children too: the speed suite's workers).
  """
  with tempfile.TemporaryFile('w+') as out:
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                               start_new_session=True, text=True)
    code, output = finish(process, out, max(timeout, 1))
  log.write(f'$ {" ".join(command)}\n{output}\n')
  log.flush()
  return code, output


def finish(process: subprocess.Popen, out, timeout: float) -> tuple[int | None, str]:
  """Waits up to `timeout` s for `process` (killing its whole group past it); (exit code or None
  on timeout, what it wrote to the file `out`)."""
  try:
    code = process.wait(timeout=timeout)
  except subprocess.TimeoutExpired:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    code = None
  out.seek(0)
  return code, out.read()


class Context:
  """What the phases share: the mode, paths, environment, log and the clock."""

  def __init__(self, cpu: bool, out_dir: str, carry: str, budget_s: float):
    self.cpu = cpu
    self.mode = 'cpu' if cpu else 'gpu'
    self.out_dir = out_dir
    self.carry = carry
    self.work = tempfile.mkdtemp(prefix='gpu_check_')
    self.site = os.path.join(self.work, 'site')
    self.deadline = time.monotonic() + budget_s
    log_path = os.path.join(out_dir, 'gpu_check.log')
    self.log = open(log_path, 'w')  # pylint: disable=consider-using-with
    env = dict(os.environ, PYTHONUNBUFFERED='1',
               # Phases run one after another, but a phase's processes live side by side (the
               # speed suite's workers, pytest's subprocesses): no process takes 75% of the GPU.
               XLA_PYTHON_CLIENT_PREALLOCATE='false')
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO, env.get('PYTHONPATH', '')) if p)
    if cpu:
      env['JAX_PLATFORMS'] = 'cpu'
      env['CUDA_VISIBLE_DEVICES'] = ''
    data = os.path.join(carry, 'fashion-mnist')
    if os.path.isdir(data):
      env['CNNJAX_DATA_DIR'] = data
    self.env = env

  def remaining(self) -> float:
    return self.deadline - time.monotonic()

  def close(self) -> None:
    self.log.close()
    shutil.rmtree(self.work, ignore_errors=True)

  def python(self, args: list[str], timeout: float, env: dict | None = None):
    return run_command([sys.executable, *args], env or self.env, timeout, self.log)


class PhaseError(Exception):
  """A phase ran but did not pass; `results` keeps what it measured."""

  def __init__(self, message: str, results: dict | None = None, output: str = ''):
    super().__init__(message)
    self.results = results or {}
    self.output = output


class PhaseTimeout(PhaseError):
  pass


def run_python_phase(ctx: Context, args: list[str], timeout: float, env: dict | None = None):
  """Runs a Python phase process; its output, or PhaseTimeout / PhaseError."""
  code, output = ctx.python(args, timeout, env)
  if code is None:
    raise PhaseTimeout(f'killed after {timeout:.0f} s (its budget)', output=output)
  if code != 0:
    raise PhaseError(f'exit status {code}', output=output)
  return output


# -- 1. install -----------------------------------------------------------------------------------


def phase_install(ctx: Context, timeout: float) -> dict:
  missing = [m for m in REQUIRED_MODULES if importlib.util.find_spec(m.split('.')[0]) is None
             or (m == 'orbax.checkpoint' and importlib.util.find_spec(m) is None)]
  wheels = sorted(glob.glob(os.path.join(ctx.carry, 'wheels', '*.whl')))
  results = {'missing_before': missing, 'wheels': [os.path.basename(w) for w in wheels]}
  if not missing:
    return results
  if not wheels:
    raise PhaseError(f'missing modules {missing} and no wheels in {ctx.carry}/wheels: run '
                     'benchmarks/gpu_wheels.sh where pip reaches PyPI, and carry that directory',
                     results)
  code, output = run_command(
      [sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', '--no-compile',
       '--no-cache-dir', '--target', ctx.site, *wheels], ctx.env, timeout, ctx.log)
  if code != 0:
    raise PhaseError(f'pip install failed ({code})', results, output)
  ctx.env['PYTHONPATH'] = os.pathsep.join((ctx.site, ctx.env['PYTHONPATH']))
  sys.path.insert(0, ctx.site)
  importlib.invalidate_caches()
  still = [m for m in missing if importlib.util.find_spec(m.split('.')[0]) is None]
  results['installed_into'] = ctx.site
  results['missing_after'] = still
  if still:
    raise PhaseError(f'still missing after installing the wheels: {still}', results, output)
  return results


# -- 2. pytest ------------------------------------------------------------------------------------


def junit_counts(path: str) -> dict:
  """Test counts and the tests that did not pass, from pytest's JUnit XML."""
  root = ElementTree.parse(path).getroot()
  suites = [root] if root.tag == 'testsuite' else list(root)
  counts = {k: sum(int(s.get(k, 0)) for s in suites)
            for k in ('tests', 'failures', 'errors', 'skipped')}
  counts['passed'] = counts['tests'] - counts['failures'] - counts['errors'] - counts['skipped']
  counts['not_passed'] = [
      f"{case.get('classname')}::{case.get('name')}: {(case[0].get('message') or '')[:200]}"
      for suite in suites for case in suite.iter('testcase')
      if len(case) and case[0].tag in ('failure', 'error')]
  return counts


def phase_pytest(ctx: Context, timeout: float) -> dict:
  """One pytest process per file, all at once (the GPU machine has 16 cores and the GPU room
  for all; on the CPU one file), so that a file past the budget costs only its own results."""
  chosen = PYTEST_CPU if ctx.cpu else PYTEST_GPU
  files = [f for f in chosen if os.path.exists(os.path.join(REPO, f.split('::')[0]))]
  env = dict(ctx.env, JAX_DEFAULT_MATMUL_PRECISION='highest')
  results = {'selection': f"-m 'not slow' -k '{PYTEST_DESELECT}'",
             'jax_default_matmul_precision': 'highest', 'files': {},
             'missing_files': [f for f in chosen if f not in files]}
  running = []
  start = time.monotonic()
  for i, test_file in enumerate(files):
    junit = os.path.join(ctx.work, f'pytest-{i}.xml')
    log_path = os.path.join(ctx.work, f'pytest-{i}.log')
    out = open(log_path, 'w+')  # pylint: disable=consider-using-with
    command = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-m', 'not slow',
               '-k', PYTEST_DESELECT, f'--junitxml={junit}', test_file]
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                               start_new_session=True, text=True)
    running.append((test_file, junit, out, process, command))
  totals = dict.fromkeys(('tests', 'passed', 'failures', 'errors', 'skipped'), 0)
  not_passed, unfinished, outputs = [], [], []
  for test_file, junit, out, process, command in running:
    code, output = finish(process, out, max(start + timeout - time.monotonic(), 0.1))
    out.close()
    ctx.log.write(f'$ {" ".join(command)}\n{output}\n')
    entry = {'seconds': round(time.monotonic() - start, 1), 'exit_status': code}
    if code is None:
      entry['status'] = 'timeout'
      unfinished.append(test_file)
      outputs.append(output)
    elif os.path.exists(junit):
      counts = junit_counts(junit)
      not_passed += counts.pop('not_passed')
      entry.update(counts)
      for k in totals:
        totals[k] += counts[k]
      if code != 0:
        outputs.append(output)
    else:
      entry['status'] = 'no report'
      outputs.append(output)
    results['files'][test_file] = entry
  ctx.log.flush()
  results.update(totals, not_passed=not_passed[:30])
  output = '\n'.join(outputs)
  if unfinished:
    raise PhaseTimeout(f'killed after {timeout:.0f} s (its budget): {unfinished}', results,
                       output)
  if totals['failures'] or totals['errors'] or any(
      e.get('exit_status') != 0 for e in results['files'].values()):
    raise PhaseError(f"{totals['failures']} failed, {totals['errors']} errors: "
                     f"{not_passed[:3]}", results, output)
  if not totals['passed']:
    raise PhaseError('no test passed', results, output)
  return results


# -- 3. parallel ----------------------------------------------------------------------------------


def parallel_models(cpu: bool) -> tuple[str, ...]:
  """multidevice_checks' models: a convnet with dropout and a BatchNorm net (--cpu: the first)."""
  return ('convnet',) if cpu else ('convnet', 'batch_norm')


def _max_relative_difference(a: dict, b: dict) -> float:
  import numpy as np  # pylint: disable=import-outside-toplevel
  worst = 0.0
  for name in a:
    x, y = np.asarray(a[name], np.float64), np.asarray(b[name], np.float64)
    worst = max(worst, float(np.max(np.abs(x - y) / (np.abs(y) + 1e-6), initial=0.0)))
  return worst


def parallel_in_process(cpu: bool,
                        modes: tuple[str, ...] = ('single', 'sharded', 'pmap')) -> dict:
  """The wrappers on this process's device(s), from tests/multidevice_checks.py."""
  sys.path.insert(0, os.path.join(REPO, 'tests'))
  import jax  # pylint: disable=import-outside-toplevel
  import multidevice_checks  # pylint: disable=import-outside-toplevel
  results = {'devices': [str(d) for d in jax.devices()]}
  for model in parallel_models(cpu):
    runs = {mode: multidevice_checks.check_steps(mode, 3 if cpu else 6, model)
            for mode in modes}
    results[model] = {
        mode: {'losses': run['losses'], 'eval': run['eval'], 'step': run['step'],
               'devices': run['devices']} for mode, run in runs.items()}
    results[model]['params_single'] = runs['single']['params']
    for mode in modes[1:]:
      results[model][f'{mode}_vs_single_max_rel_diff'] = {
          'losses': _max_relative_difference(
              {'l': runs[mode]['losses']}, {'l': runs['single']['losses']}),
          'params': _max_relative_difference(runs[mode]['params'], runs['single']['params'])}
  return results


def phase_parallel(ctx: Context, timeout: float) -> dict:
  start = time.monotonic()
  out = os.path.join(ctx.work, 'parallel.json')
  env = dict(ctx.env, JAX_DEFAULT_MATMUL_PRECISION='highest')
  output = run_python_phase(ctx, [__file__, '--phase', 'parallel', '--phase-out', out]
                            + (['--cpu'] if ctx.cpu else []), timeout, env)
  with open(out) as f:
    results = json.load(f)
  problems = []
  for model in parallel_models(ctx.cpu):
    for mode in ('sharded', 'pmap'):
      diff = results[model][f'{mode}_vs_single_max_rel_diff']
      if diff['losses'] > 1e-4 or diff['params'] > 1e-3:
        problems.append(f'{model} {mode} differs from single: {diff}')
    losses = results[model]['single']['losses']
    if losses[0] == losses[-1]:
      problems.append(f'{model}: the loss did not move ({losses})')
  if not ctx.cpu:
    # The same single-device steps on XLA:CPU, in a fresh process: the GPU's arithmetic agrees.
    cpu_out = os.path.join(ctx.work, 'parallel_cpu.json')
    cpu_env = dict(env, JAX_PLATFORMS='cpu')
    run_python_phase(ctx, [__file__, '--phase', 'parallel', '--phase-out', cpu_out,
                           '--modes', 'single'],
                     min(ctx.remaining(), timeout - (time.monotonic() - start)), cpu_env)
    with open(cpu_out) as f:
      on_cpu = json.load(f)
    for model in ('convnet', 'batch_norm'):
      diff = {'losses': _max_relative_difference({'l': results[model]['single']['losses']},
                                                 {'l': on_cpu[model]['single']['losses']}),
              'params': _max_relative_difference(results[model]['params_single'],
                                                 on_cpu[model]['params_single'])}
      results[model]['gpu_vs_cpu_max_rel_diff'] = diff
      if diff['losses'] > 1e-3:
        problems.append(f'{model}: GPU losses differ from XLA:CPU\'s: {diff}')
  for model in parallel_models(ctx.cpu):
    results[model].pop('params_single')
  if problems:
    raise PhaseError('; '.join(problems), results, output)
  return results


# -- 4. main job ----------------------------------------------------------------------------------


def phase_main_job(ctx: Context, timeout: float) -> dict:
  workdir = os.path.join(ctx.work, 'fashion_mnist')
  command = ['launch.py', '--config', 'configs/fashion_mnist.py', '--workdir', workdir]
  if ctx.cpu:
    command += ['--config.train.epochs=1', '--config.data.limit_train=640',
                '--config.data.limit_test=128']
  output = run_python_phase(ctx, command, timeout)
  results = {'command': ' '.join(command[:4]) + (' (--cpu: 1 epoch, 640 images)' if ctx.cpu
                                                  else ''),
             'data_dir': ctx.env.get('CNNJAX_DATA_DIR', 'default')}
  with open(os.path.join(workdir, 'test_metrics.json')) as f:
    results['test_metrics'] = json.load(f)
  with open(os.path.join(workdir, 'history.json')) as f:  # cnnjax.training.history's file.
    history = json.load(f)
  results['epochs'] = [{k: e[k] for k in ('epoch', 'val_accuracy', 'epoch_seconds',
                                          'images_per_second') if k in e} for e in history]
  accuracy = results['test_metrics'].get('test_accuracy', 0.0)
  # The config reached 0.9117 on the CPU (configs/fashion_mnist.py); 576 images for one epoch
  # only learn something.
  floor = 0.2 if ctx.cpu else 0.9
  if not accuracy > floor:
    raise PhaseError(f'test_accuracy {accuracy} is not above {floor}', results, output)
  return results


# -- 5. ResNet50 training in bfloat16 -------------------------------------------------------------


def resnet50_in_process(cpu: bool) -> dict:
  """cnnjax's train step (as `Parallel('single')` jits it) for ResNet50 in bfloat16: FLOPs,
  images/s and the share of the bf16 peak."""
  import functools  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from cnnjax.config import base_config  # pylint: disable=import-outside-toplevel
  from cnnjax.models import create_model  # pylint: disable=import-outside-toplevel
  from cnnjax.models.resnet import ResNet  # pylint: disable=import-outside-toplevel
  from cnnjax.training import steps  # pylint: disable=import-outside-toplevel
  from cnnjax.training.losses import get_objective  # pylint: disable=import-outside-toplevel
  from cnnjax.training.optimizers import create_optimizer  # pylint: disable=import-outside-toplevel
  from cnnjax.training.train_state import create_train_state  # pylint: disable=import-outside-toplevel

  if cpu:  # The plumbing, not the figure: a one-block ResNet of 8 channels on 16x16x1.
    name, shape, batch, classes, timed, peak_size = 'tiny ResNet', (16, 16, 1), 8, 10, 3, 256
    model = ResNet(stage_sizes=(1,), widths=(8,), block='basic', stem='small', stem_features=8,
                   num_outputs=classes, dtype=jnp.bfloat16)
  else:
    name, shape, batch, classes, timed, peak_size = 'resnet50', (224, 224, 3), 256, 1000, 20, 8192
    model = create_model(ml_collections.ConfigDict(
        {'name': name, 'num_outputs': classes, 'dtype': 'bfloat16'}))
  device = jax.devices()[0]
  train = base_config().train
  train.optimizer, train.learning_rate = 'sgd', 0.1
  objective = get_objective('sparse_categorical_crossentropy')
  state = jax.device_put(create_train_state(model, create_optimizer(train, 1000), shape, seed=0),
                         device)
  rng = np.random.default_rng(0)
  # Two batches made on the device once: the step's arithmetic, not the host's copies, is timed.
  batches = [jax.device_put({'image': rng.random((batch, *shape), dtype=np.float32),
                             'label': rng.integers(0, classes, batch).astype(np.int32),
                             'mask': np.ones(batch, np.float32)}, device) for _ in range(2)]
  start = time.perf_counter()
  step = jax.jit(functools.partial(steps.train_step, objective=objective), donate_argnums=0)
  compiled = step.lower(state, batches[0]).compile()
  compile_seconds = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost['flops'])
  for i in range(3):  # Warm-up.
    state, sums = compiled(state, batches[i % 2])
  jax.block_until_ready(sums)
  seconds = []
  for _ in range(3):  # Best of three timings of `timed` steps each.
    start = time.perf_counter()
    for i in range(timed):
      state, sums = compiled(state, batches[i % 2])
    jax.block_until_ready((state, sums))
    seconds.append((time.perf_counter() - start) / timed)
  loss = float(sums['loss']) / float(sums['count'])
  step_seconds = min(seconds)

  a = jax.random.normal(jax.random.key(0), (peak_size, peak_size), jnp.bfloat16)
  dot = jax.jit(jnp.dot)
  dot(a, a).block_until_ready()
  best = float('inf')
  for _ in range(5):
    start = time.perf_counter()
    jax.block_until_ready([dot(a, a) for _ in range(10)])
    best = min(best, (time.perf_counter() - start) / 10)
  matmul_tflops = 2 * peak_size ** 3 / best / 1e12

  achieved = flops / step_seconds / 1e12
  results = {
      'model': name, 'input_shape': list(shape), 'batch': batch, 'dtype': 'bfloat16',
      'optimizer': 'sgd', 'device': device.device_kind, 'compile_seconds': compile_seconds,
      'flops_per_step': flops, 'step_seconds_best': step_seconds, 'step_seconds': seconds,
      'images_per_second': batch / step_seconds, 'achieved_tflops': achieved,
      'matmul_bf16_peak_tflops_measured': matmul_tflops,
      'share_of_measured_matmul_peak': achieved / matmul_tflops, 'final_loss': loss,
  }
  if not cpu:
    results['share_of_h200_bf16_peak'] = achieved / H200_BF16_PEAK_TFLOPS
    stats = device.memory_stats() or {}
    results['device_peak_mib'] = stats.get('peak_bytes_in_use', 0) / 2**20
  return results


def phase_resnet50_train(ctx: Context, timeout: float) -> dict:
  out = os.path.join(ctx.work, 'resnet50.json')
  output = run_python_phase(ctx, [__file__, '--phase', 'resnet50_train', '--phase-out', out]
                            + (['--cpu'] if ctx.cpu else []), timeout)
  with open(out) as f:
    results = json.load(f)
  if not (results['flops_per_step'] > 0 and results['images_per_second'] > 0
          and results['final_loss'] == results['final_loss']):
    raise PhaseError('no FLOPs, no speed or a NaN loss', results, output)
  return results


# -- 6. the speed suite ---------------------------------------------------------------------------


def phase_speed(ctx: Context, timeout: float) -> dict:
  settings = SPEED_CPU if ctx.cpu else SPEED_GPU
  out = os.path.join(ctx.work, 'speed.json')
  command = [os.path.join(HERE, 'speed_suite.py'), '--workloads', settings['workloads'],
             '--frameworks', settings['frameworks'], '--steps-scale', settings['steps_scale'],
             '--rounds', settings['rounds'], '--peak-size', settings['peak_size'],
             '--parallel-start', '--out', out, '--log-dir', os.path.join(ctx.work, 'speed_logs')]
  code, output = ctx.python(command, timeout)
  results = {'command': ' '.join(['speed_suite.py', *command[1:-4]])}
  if os.path.exists(out):  # Written after every workload: a timeout keeps what was measured.
    with open(out) as f:
      results['suite'] = json.load(f)
    results['summary'] = {
        workload: {name: ({'images_per_second': row['images_per_second_best'],
                           'achieved_gflops': row.get('achieved_gflops'),
                           'dtype': row.get('dtype'), 'device_peak_mib': row.get('device_peak_mib')}
                          if 'images_per_second_best' in row else {'error': row.get('error')})
                   for name, row in result['rows'].items()}
        for workload, result in results['suite'].get('workloads', {}).items()}
  if code is None:
    raise PhaseTimeout(f'killed after {timeout:.0f} s (its budget)', results, output)
  if code != 0:
    raise PhaseError(f'speed_suite.py exit status {code}', results, output)
  failed = [f'{w}/{n}: {r["error"]}' for w, rows in results.get('summary', {}).items()
            for n, r in rows.items() if 'error' in r]
  if failed or not results.get('summary'):
    raise PhaseError('rows failed: ' + '; '.join(failed) if failed else 'nothing measured',
                     results, output)
  return results


PHASE_FUNCTIONS = {'install': phase_install, 'pytest': phase_pytest, 'parallel': phase_parallel,
                   'main_job': phase_main_job, 'resnet50_train': phase_resnet50_train,
                   'speed': phase_speed}


# -- the run --------------------------------------------------------------------------------------


def machine(ctx: Context) -> dict:
  found = {'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
           'host': platform.node(), 'cpus': os.cpu_count(), 'python': sys.version.split()[0]}
  if shutil.which('nvidia-smi') and not ctx.cpu:
    smi = subprocess.run(['nvidia-smi', '--query-gpu=name,driver_version,memory.total',
                          '--format=csv,noheader'], capture_output=True, text=True, check=False)
    found['gpu'] = smi.stdout.strip() or smi.stderr.strip()[-300:]
  from importlib import metadata  # pylint: disable=import-outside-toplevel
  versions = {}
  for package in ('jax', 'jaxlib', 'jax-cuda13-plugin', 'jax-cuda12-plugin', 'flax', 'optax',
                  'orbax-checkpoint', 'ml-collections', 'torch', 'numpy', 'keras',
                  'tensorflow-datasets'):
    try:
      versions[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      pass
  found['versions'] = versions
  return found


def run_phases(ctx: Context, phases: list[str], functions: dict | None = None,
               budgets: dict | None = None) -> dict:
  """Runs each phase in turn within its budget and what is left of the total; never raises."""
  functions = functions or PHASE_FUNCTIONS
  budgets = budgets or BUDGETS[ctx.mode]
  record = {}
  for name in phases:
    left = ctx.remaining()
    budget = min(budgets[name], left)
    entry = {'budget_s': round(budget, 1)}
    print(f'gpu_check: {name} (budget {budget:.0f} s)', file=sys.stderr, flush=True)
    if left < 5:
      entry.update(status='skipped', error='the total time budget is spent')
      record[name] = entry
      continue
    start = time.monotonic()
    try:
      entry['results'] = functions[name](ctx, budget)
      entry['status'] = 'ok'
    except PhaseError as e:
      entry.update(status='timeout' if isinstance(e, PhaseTimeout) else 'failed', error=str(e),
                   results=e.results, output_tail=tail(e.output))
    except Exception as e:  # pylint: disable=broad-except
      entry.update(status='failed', error=f'{type(e).__name__}: {e}',
                   output_tail=tail(traceback.format_exc()))
    entry['seconds'] = round(time.monotonic() - start, 1)
    print(f'gpu_check: {name} {entry["status"]} in {entry["seconds"]} s'
          + (f': {entry["error"][:300]}' if 'error' in entry else ''), file=sys.stderr,
          flush=True)
    record[name] = entry
  return record


def write_json(path: str, value: dict) -> None:
  with open(path + '.tmp', 'w') as f:
    json.dump(value, f, indent=1, default=str)
  os.replace(path + '.tmp', path)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('out_dir', nargs='?', help='where gpu_check.json and gpu_check.log go')
  parser.add_argument('--cpu', action='store_true', help='the CPU, tiny sizes, no GPU parts')
  parser.add_argument('--phases', default=','.join(PHASES), help=f'a subset of {PHASES}')
  parser.add_argument('--budget-s', type=float, default=TOTAL_BUDGET_S,
                      help='the whole run\'s time budget in seconds')
  parser.add_argument('--carry', default=CARRY,
                      help='the directory gpu_wheels.sh filled: wheels/ and fashion-mnist/')
  parser.add_argument('--phase', help=argparse.SUPPRESS)  # A phase's own process.
  parser.add_argument('--phase-out', help=argparse.SUPPRESS)
  parser.add_argument('--modes', default='single,sharded,pmap', help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.phase == 'parallel':
    write_json(args.phase_out, parallel_in_process(args.cpu, tuple(args.modes.split(','))))
    return 0
  if args.phase == 'resnet50_train':
    write_json(args.phase_out, resnet50_in_process(args.cpu))
    return 0
  if not args.out_dir:
    parser.error('name the output directory')
  phases = [p for p in args.phases.split(',') if p]
  unknown = [p for p in phases if p not in PHASES]
  if unknown:
    parser.error(f'unknown phase(s) {unknown}; choose from {PHASES}')
  os.makedirs(args.out_dir, exist_ok=True)
  ctx = Context(args.cpu, args.out_dir, args.carry, args.budget_s)
  started = time.monotonic()
  report = {'mode': ctx.mode, 'machine': machine(ctx), 'budget_s': args.budget_s,
            'environment': {k: ctx.env[k] for k in ('XLA_PYTHON_CLIENT_PREALLOCATE',
                                                    'JAX_PLATFORMS', 'CNNJAX_DATA_DIR',
                                                    'XLA_FLAGS') if k in ctx.env},
            'phases_asked': phases}
  path = os.path.join(args.out_dir, 'gpu_check.json')
  write_json(path, report)
  report['phases'] = run_phases(ctx, phases)
  report['seconds'] = round(time.monotonic() - started, 1)
  report['passed'] = all(p['status'] == 'ok' for p in report['phases'].values())
  write_json(path, report)
  ctx.close()
  print(json.dumps({name: {k: v for k, v in entry.items() if k in ('status', 'seconds', 'error')}
                    for name, entry in report['phases'].items()}, indent=1))
  print(f'gpu_check: {"passed" if report["passed"] else "FAILED"} in {report["seconds"]} s; '
        f'wrote {path}')
  return 0 if report['passed'] else 1


if __name__ == '__main__':
  sys.exit(main())
