"""cnnjax against Keras 3 (JAX backend) and PyTorch, side by side in one run on this machine.

    python benchmarks/speed_suite.py [--quick] [--out benchmarks/results/cpu-2026-11-23.json]
    python benchmarks/speed_suite.py --workloads small_convnet --frameworks cnnjax,cnnjax,bf16

Workloads (same architecture, optimizer RMSprop and batch in every framework; random data):

- small_convnet: the main job's convnet, Conv32-P-Conv64-P-Conv64-Flatten-Dense64-Dense10 on
  28x28x1, batch 64, softmax cross-entropy;
- cats_vs_dogs_150: Conv32/64/128/128 each pooled - Flatten - Dense512 - Dense1 on 150x150x3,
  batch 32, sigmoid + binary cross-entropy;
- vgg16_frozen_150: VGG16's convolutional base, frozen, under a new Flatten - Dense256 - Dropout -
  Dense1 head, 150x150x3, batch 20 (only the head is differentiated);
- vgg16_predict_224: VGG16 with its top, inference at 224x224x3, batch 8;
- resnet50_predict_224: ResNet50 with its 1000-class top, inference (BatchNorm with its moving
  statistics) at 224x224x3, batch 8. Two architectures: cnnjax 'resnet50' and PyTorch run
  torchvision's v1.5 (a stage's stride on the 3x3 convolution), cnnjax 'resnet50_keras' (the row
  'cnnjax,model=resnet50_keras') and Keras' `applications.ResNet50` run v1 (the stride on the
  first 1x1 convolution; 6% fewer FLOPs);
- resnet18_train_224: ResNet18 (torchvision's layout; Keras has none in `applications`, so the
  suite builds it from Keras layers in that layout: `speed_workers.keras_resnet18`), training at
  224x224x3, batch 16, 1000 classes, BatchNorm statistics updated;
- inceptionv3_predict_299: InceptionV3 as Keras builds it (cnnjax 'inception_v3', Keras'
  `applications.InceptionV3`, and a torch.nn model of the same architecture,
  `benchmarks/torch_models.py`), inference at 299x299x3, batch 8;
- small_convnet_fashion_mnist (not in the default run): small_convnet trained on the real
  Fashion-MNIST training set, the same batches in the same order in every framework, scored on
  the 10,000 test images after every epoch: the same accuracy after the same number of epochs?
  The warm-up epoch is the first epoch of training, so `--rounds R` trains R + 1 epochs.

Each (workload, framework) row runs in its own process (`speed_workers.py`), so each framework
is imported alone and its peak resident memory is its own. The workers of a workload are started
and warmed up one after the other (compilation and one warm-up epoch), then timed in rounds: each
round asks every worker in turn (the order rotating between rounds) for one epoch of the same
batches, so slow drifts of the machine's load hit every framework alike. The table gives the best
epoch (and the median) in images per second. The achieved GFLOP/s of every row is the FLOP count
of the cnnjax float32 step (XLA's cost analysis of the compiled step: the same architecture and
batch, so the same arithmetic) divided by the row's time per step, and its share of the matmul
peak measured in the same run (a large `jnp.dot` in the row's compute dtype). Each row is
credited with the FLOPs of its own architecture ('architecture' in the JSON; the ResNet50s
differ) and compared only with rivals of that architecture: the 'vs torch' and 'vs keras'
columns divide by the best PyTorch eager row ('torch', 'torch,hugepages=on', 'torch,threads=1',
'torch,device=cuda', ...) and the best Keras row of the same architecture. The JSON keeps every epoch time, the load average before and after each
workload, the versions and the machine; the peak is measured before and after the workloads and
the better one kept.

On a GPU (`benchmarks/gpu_check.py` runs it so) cnnjax and Keras rows run on JAX's default
device, PyTorch rows with 'device=cuda' ('bf16' autocast, 'channels_last' as options),
`--parallel-start` warms a workload's workers up side by side, `--peak-size 8192` fills the GPU
for the peak, and the table adds each row's peak device memory.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from cnnjax import host_memory  # Imports no JAX.
from cnnjax.progress import Progress  # Neither.
from machine import machine_description
from speed_workers import WORKLOADS, real_data

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, 'speed_workers.py')
# Rows per workload. 'threads=1' rows run a framework on one intra-op thread: on a machine shared
# with other jobs, PyTorch's two OpenMP threads spin-wait for each other and lose up to 10x, so
# the comparison takes each framework's best row as well as its default one.
# 'ynn=on' / 'ynn=off': XLA:CPU with or without its YNNPACK fusions (cnnjax's rows without them
# unless 'ynn=on'; Keras with them, XLA's default). 'hugepages=on' / 'hugepages=off': the worker
# process started with or without glibc's malloc asking for transparent huge pages (cnnjax's rows
# with them unless 'hugepages=off': `cnnjax.host_memory`; the others without, their default).
# cnnjax's rows measure each 'auto' convolution's formulation on this machine at their first
# trace (`cnnjax.tuning`, cached in the user's cache directory); 'rules' takes the rules measured
# on the 2-core AMD EPYC instead (CNNJAX_TUNING=rules: with huge pages and no fusions, what
# launch.py ran until 2026-11-30). launch.py picks the process settings by timing the four
# combinations of huge pages and fusions (`cnnjax.process_settings`), so "cnnjax as launched" is
# the best of the four cnnjax rows that are not 'rules'. The rivals are also measured with the
# rules' process settings ('keras,ynn=off,hugepages=on', 'torch,hugepages=on').
CNNJAX_SETTINGS = ('cnnjax', 'cnnjax,hugepages=off', 'cnnjax,ynn=on', 'cnnjax,ynn=on,hugepages=off')
FRAMEWORKS = (*CNNJAX_SETTINGS, 'cnnjax,rules', 'keras', 'keras,ynn=off,hugepages=on', 'torch',
              'torch,hugepages=on', 'torch,threads=1', 'torch_compile')
DEFAULT_FRAMEWORKS = {
    'small_convnet': FRAMEWORKS,
    # bfloat16 compute (float32 parameters) on both sides: whether XLA:CPU and PyTorch's
    # autocast use the CPU's bf16 units (AMX, AVX512-BF16) for a training and an inference job.
    'cats_vs_dogs_150': (*FRAMEWORKS, 'cnnjax,bf16', 'torch,bf16'),
    # VGG16's convolutions name no formulation: the module default, 'lax'; 'conv=auto' measures
    # each of them as the convnets' are.
    'vgg16_frozen_150': (*FRAMEWORKS, 'cnnjax,conv=auto'),
    'vgg16_predict_224': (*FRAMEWORKS, 'cnnjax,conv=auto', 'cnnjax,bf16', 'torch,bf16'),
    'small_convnet_fashion_mnist': (*CNNJAX_SETTINGS, 'cnnjax,rules', 'keras',
                                    'keras,ynn=off,hugepages=on', 'torch', 'torch,hugepages=on'),
    # The zoo's models: one cnnjax row per architecture that a rival runs (ResNet50: v1.5 as
    # torchvision builds it, v1 as Keras does).
    'resnet50_predict_224': (*CNNJAX_SETTINGS, 'cnnjax,rules', 'cnnjax,model=resnet50_keras',
                             'keras', 'keras,ynn=off,hugepages=on', 'torch', 'torch,hugepages=on',
                             'torch_compile'),
    'resnet18_train_224': (*CNNJAX_SETTINGS, 'cnnjax,rules', 'keras',
                           'keras,ynn=off,hugepages=on', 'torch', 'torch,hugepages=on',
                           'torch_compile'),
    'inceptionv3_predict_299': (*CNNJAX_SETTINGS, 'cnnjax,rules', 'keras',
                                'keras,ynn=off,hugepages=on', 'torch', 'torch,hugepages=on',
                                'torch_compile'),
}
# The default run: the speed workloads (the real-data one is asked for by name).
DEFAULT_WORKLOADS = ('small_convnet', 'cats_vs_dogs_150', 'vgg16_frozen_150', 'vgg16_predict_224',
                     'resnet50_predict_224', 'resnet18_train_224', 'inceptionv3_predict_299')


def load_average() -> list[float]:
  with open('/proc/loadavg') as f:
    return [float(v) for v in f.read().split()[:3]]


def versions() -> dict[str, str]:
  from importlib import metadata  # pylint: disable=import-outside-toplevel
  found = {'python': sys.version.split()[0]}
  for package in ('jax', 'jaxlib', 'flax', 'optax', 'keras', 'torch', 'numpy'):
    try:
      found[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      pass
  return found


def row_environment(framework: str) -> dict[str, str]:
  """The environment a row's worker process starts with: its huge-page setting (see FRAMEWORKS)
  in GLIBC_TUNABLES, which glibc reads only at start-up; its XLA flags are set by the worker."""
  family, *options = framework.split(',')
  env = dict(os.environ, KERAS_BACKEND='jax', PYTHONPATH=os.pathsep.join(
      p for p in (os.path.dirname(HERE), HERE, os.environ.get('PYTHONPATH', '')) if p))
  huge = 'hugepages=on' in options or (family == 'cnnjax' and 'hugepages=off' not in options)
  tunables = [t for t in env.get(host_memory.ENV, '').split(':')
              if t and t.split('=', 1)[0] != host_memory.TUNABLE]
  env[host_memory.ENV] = ':'.join([*tunables, f'{host_memory.TUNABLE}={int(huge)}'])
  # A workload's workers live side by side: on a GPU, JAX's default of taking 75% of its memory
  # at start-up would leave the second worker none. (No effect on the CPU.)
  env.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  if family == 'cnnjax':  # Measured convolution formulations, or the rules ('rules').
    env['CNNJAX_TUNING'] = 'rules' if 'rules' in options else 'measure'
  return env


class Worker:
  """One (workload, framework) process speaking `speed_workers.py`'s line protocol.

  It starts at once and compiles and warms up on its own; `read` waits for its 'ready' answer.
  """

  def __init__(self, workload: str, framework: str, steps: int, log_dir: str):
    self.framework = framework
    safe = framework.replace(',', '_').replace('=', '-')
    self.log_path = os.path.join(log_dir, f'{workload}-{safe}.log')
    env = row_environment(framework)
    self.log = open(self.log_path, 'w')  # pylint: disable=consider-using-with
    self.process = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, WORKER, workload, framework, '--steps', str(steps)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
        bufsize=1)

  def read(self) -> dict:
    line = self.process.stdout.readline()
    if not line:
      self.log.flush()
      with open(self.log_path) as f:
        tail = [l.strip() for l in f.read().strip().splitlines()[-1:]]
      return {'error': f'worker exited ({self.process.wait()}): {" ".join(tail)}'[:300]}
    return json.loads(line)

  def ask(self, command: str) -> dict:
    self.process.stdin.write(command + '\n')
    self.process.stdin.flush()
    return self.read()

  def close(self) -> dict:
    answer = self.ask('quit') if self.process.poll() is None else {}
    self.process.wait()
    self.log.close()
    return answer


def measure_peak(torch_device: str = 'cpu', size: int = 4096) -> dict:
  """The matmul peak of JAX (its default device) and of torch (on `torch_device`), in GFLOP/s."""
  peak = {}
  for framework, name in (('jax', 'jax'), ('torch', f'torch,device={torch_device}')):
    run = subprocess.run([sys.executable, WORKER, 'peak', name, '--peak-size', str(size)],
                         capture_output=True, text=True,
                         env=dict(os.environ, KERAS_BACKEND='jax'), check=False)
    try:
      peak[framework] = json.loads(run.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
      peak[framework] = {'error': run.stderr.strip()[-300:]}
  return peak


def row_architecture(result: dict, framework: str) -> str:
  return result['rows'][framework].get('architecture', '')


def reference_speeds(result: dict) -> dict[tuple[str, str], float]:
  """{(family, architecture): best images/s} of the rivals' rows ('torch' is PyTorch eager)."""
  best = {}
  for name, row in result['rows'].items():
    family = name.split(',')[0]
    ips = row.get('images_per_second_best')
    if family in ('torch', 'keras') and ips:
      key = (family, row_architecture(result, name))
      best[key] = max(best.get(key, 0.0), ips)
  return best


def run_workload(workload: str, frameworks: list[str], steps: int, rounds: int,
                 log_dir: str, parallel_start: bool = False) -> dict:
  """Starts and warms up every framework's worker, then times them in interleaved rounds.

  With `parallel_start` the workers compile and warm up at the same time (a machine with cores
  to spare: the GPU machine), else one after the other; the timed rounds are the same.
  """
  batch = WORKLOADS[workload][1]
  result = {'batch_size': batch, 'steps_per_epoch': steps, 'load_before': load_average(),
            'rows': {}}
  workers = []
  started = []
  for framework in frameworks:
    print(f'  {workload}: starting {framework}', file=sys.stderr, flush=True)
    started.append((framework, Worker(workload, framework, steps, log_dir)))
    if not parallel_start:
      started[-1] = (framework, started[-1][1], started[-1][1].read())
  for framework, worker, *answered in started:
    ready = answered[0] if answered else worker.read()
    if 'error' in ready:
      worker.close()
      result['rows'][framework] = {'error': ready['error']}
      print(f'    failed: {ready["error"]}', file=sys.stderr, flush=True)
      continue
    ready.pop('ready', None)
    result['rows'][framework] = {**ready, 'epoch_seconds': []}
    workers.append(worker)
  # A bar on a terminal, a line every 30 s in a log (cnnjax/progress.py): the timed epochs.
  with Progress(f'  {workload}: timing', rounds * len(workers), 'epoch') as progress:
    for r in range(rounds):
      shift = r % max(len(workers), 1)
      for worker in workers[shift:] + workers[:shift]:
        answer = worker.ask('run')
        progress.update()
        row = result['rows'][worker.framework]
        if 'error' in answer:
          row['error'] = answer['error']
          continue
        row['epoch_seconds'].append(answer['seconds'])
        if real_data(workload):  # Not timed.
          scored = worker.ask('evaluate')
          row.setdefault('test_accuracy_by_epoch', []).append(scored.get('test_accuracy'))
        time.sleep(0.2)  # Lets spinning thread pools (OpenMP) go idle before the next worker.
  for worker in workers:
    result['rows'][worker.framework].update(worker.close())
  result['load_after'] = load_average()

  # XLA's FLOP count of the cnnjax float32 step of each architecture: a row is credited with
  # the FLOPs of its own architecture (ResNet50 v1 and v1.5 differ), none if cnnjax ran no such
  # row.
  flops_by_architecture = {}
  for name, row in result['rows'].items():
    if (name.split(',')[0] == 'cnnjax' and row.get('dtype') == 'float32'
        and 'flops_per_step' in row):
      flops_by_architecture.setdefault(row.get('architecture', ''), row['flops_per_step'])
  result['flops_per_step_by_architecture'] = flops_by_architecture
  result['flops_per_step'] = next(iter(flops_by_architecture.values()), None)
  for row in result['rows'].values():
    seconds = row.get('epoch_seconds')
    if not seconds:
      continue
    images = batch * steps
    row['images_per_second_best'] = images / min(seconds)
    row['images_per_second_median'] = images / float(np.median(seconds))
    flops = flops_by_architecture.get(row.get('architecture', ''))
    if flops:
      row['achieved_gflops'] = flops * steps / min(seconds) / 1e9
  return result


def print_table(results: dict) -> None:
  peaks = results['matmul_peak_gflops'].get('jax', {})
  torch_peaks = results['matmul_peak_gflops'].get('torch', {})
  print(f"\n{results['machine']['machine']}; matmul peak (jnp.dot "
        f"{peaks.get('size', 4096)}^2, {peaks.get('device', '?')}): f32 "
        f"{peaks.get('float32', float('nan')):.0f} GFLOP/s; bf16 "
        f"{peaks.get('bfloat16', float('nan')):.0f}; torch ({torch_peaks.get('device', '?')}) "
        f"f32 {torch_peaks.get('float32', float('nan')):.0f}, "
        f"bf16 {torch_peaks.get('bfloat16', float('nan')):.0f}")
  print('% peak: against the matmul peak of the row\'s compute dtype; vs torch / vs keras: '
        'against the best PyTorch eager / Keras row of the same architecture')
  header = (f"{'workload':24} {'framework':28} {'img/s best':>10} {'median':>8} {'vs torch':>8} "
            f"{'vs keras':>8} {'GFLOP/s':>8} {'% peak':>6} {'maxrss MiB':>10} "
            f"{'dev MiB':>7}  load  architecture")
  print(header)
  print('-' * len(header))
  for workload, result in results['workloads'].items():
    rows = result['rows']
    ref = reference_speeds(result)
    load = f"{result['load_before'][0]:.1f}->{result['load_after'][0]:.1f}"
    for framework, row in rows.items():
      if 'error' in row and not row.get('epoch_seconds'):
        print(f"{workload:24} {framework:28} failed: {row['error'][:80]}")
        continue
      ips = row['images_per_second_best']
      arch = row.get('architecture', '')
      ratio = {k: f'{ips / ref[(k, arch)]:.2f}x' if ref.get((k, arch)) else '-'
               for k in ('torch', 'keras')}
      gflops = row.get('achieved_gflops')
      peak = peaks.get(row.get('dtype', 'float32'))
      share = f'{100 * gflops / peak:.0f}' if gflops and peak else '-'
      device_mib = f"{row['device_peak_mib']:,.0f}" if 'device_peak_mib' in row else '-'
      print(f"{workload:24} {framework:28} {ips:>10,.1f} "
            f"{row['images_per_second_median']:>8,.1f} {ratio['torch']:>8} {ratio['keras']:>8} "
            f"{gflops or 0:>8.1f} {share:>6} {row.get('maxrss_mib', 0):>10,.0f} "
            f"{device_mib:>7}  {load}  {arch if arch != workload else ''}")
      if row.get('test_accuracy_by_epoch'):
        print(f"{'':24} {'':28} test accuracy after epochs 2..: "
              + ' '.join(f'{a:.4f}' if a is not None else '-'
                         for a in row['test_accuracy_by_epoch']))


def write(results: dict, path: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + '.tmp', 'w') as f:
    json.dump(results, f, indent=1)
  os.replace(path + '.tmp', path)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true',
                      help='fewer batches per epoch and fewer rounds (a smoke run)')
  parser.add_argument('--out', default='', help='write the results here as JSON')
  parser.add_argument('--workloads', default=','.join(DEFAULT_WORKLOADS),
                      help=f'comma-separated, from {sorted(WORKLOADS)}')
  parser.add_argument('--frameworks', default='',
                      help="';'-separated rows (default: DEFAULT_FRAMEWORKS): cnnjax, keras, "
                           "torch, torch_compile, with options after commas such as "
                           "'cnnjax,bf16', 'cnnjax,conv=im2col', 'torch,threads=1'")
  parser.add_argument('--rounds', type=int, default=0, help='timed epochs per row (default 3)')
  parser.add_argument('--steps-scale', type=float, default=1.0,
                      help='multiplies every workload\'s batches per epoch')
  parser.add_argument('--log-dir', default='/tmp/speed_suite_logs')
  parser.add_argument('--parallel-start', action='store_true',
                      help="start and warm up a workload's workers at the same time (a machine "
                           'with cores to spare, e.g. the GPU machine); the timing is unchanged')
  parser.add_argument('--peak-size', type=int, default=4096,
                      help='size of the matmul-peak matrices (8192 on a GPU)')
  args = parser.parse_args()

  unknown = [w for w in args.workloads.split(',') if w not in WORKLOADS]
  if unknown:
    parser.error(f'unknown workload(s) {unknown}; choose from {sorted(WORKLOADS)}')
  os.makedirs(args.log_dir, exist_ok=True)
  rounds = args.rounds or (2 if args.quick else 3)
  chosen = [f for f in args.frameworks.split(';') if f]
  torch_device = 'cuda' if any('device=cuda' in f for f in chosen) else 'cpu'
  results = {'machine': {**machine_description(), 'load_average_start': load_average()},
             'versions': versions(), 'quick': args.quick, 'rounds': rounds,
             'note': ('rows of one workload are interleaved round by round and the best epoch '
                      'of each row is reported; the load averages (machine, and each '
                      "workload's load_before) say what else ran.")}
  print('measuring the matmul peak', file=sys.stderr, flush=True)
  results['matmul_peak_gflops'] = measure_peak(torch_device, args.peak_size)
  results['workloads'] = {}
  for workload in args.workloads.split(','):
    default_steps = WORKLOADS[workload][4]
    steps = max(1, round(default_steps * args.steps_scale / (4 if args.quick else 1)))
    frameworks = chosen or list(DEFAULT_FRAMEWORKS[workload])
    results['workloads'][workload] = run_workload(workload, frameworks, steps, rounds,
                                                  args.log_dir, args.parallel_start)
    if args.out:  # After every workload, so that a failure later keeps what was measured.
      write(results, args.out)
  results['machine']['load_average_end'] = load_average()
  # The peak again after the workloads: the best of the two is the machine's, not the load's.
  results['matmul_peak_gflops_start'] = results['matmul_peak_gflops']
  end = measure_peak(torch_device, args.peak_size)
  results['matmul_peak_gflops_end'] = end
  results['matmul_peak_gflops'] = {
      f: {d: (max(v, end.get(f, {}).get(d, 0)) if isinstance(v, float) else v)
          for d, v in values.items()}
      for f, values in results['matmul_peak_gflops'].items()}
  print_table(results)
  if args.out:
    write(results, args.out)
    print(f'\nwrote {args.out}')


if __name__ == '__main__':
  main()
