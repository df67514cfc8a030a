"""Record 2 on Fashion-MNIST: configs/fashion_mnist_best.py launched once per seed, timed.

    python benchmarks/fashion_mnist_best.py [--seeds 0,1,2] \
        [--out benchmarks/results/fashion-mnist-best-DATE.json]

Each seed runs `python launch.py --config configs/fashion_mnist_best.py --workdir FRESH_DIR
--config.seed=SEED` as a user runs it, timed from the launch to its `test_accuracy:` line (a
config's first launch on a machine includes measuring its process settings, about 40 s). The
best epoch is chosen by val_loss and the test split is evaluated once, at the end of each run.
Printed and written: each run's wall time, test accuracy and validation curve, then the mean and
spread over the seeds. The results file is rewritten after every seed, so a run of several hours
stopped part way keeps the seeds it finished; with `--add` an existing results file keeps its runs
and the seeds it lacks are run and added (three seeds of an hour or more may span sessions, and
machines: each run records the machine it ran on).
"""

import argparse
import importlib.util
import json
import os
import tempfile

from fashion_mnist_speedrun import summary, timed_run
from launch_run import REPO
from machine import machine_description

CONFIG = 'configs/fashion_mnist_best.py'
TARGET = 0.955


def config_settings() -> dict:
  """CONFIG's fields as `get_config` sets them (its docstring may change, its settings not)."""
  spec = importlib.util.spec_from_file_location('record_config', os.path.join(REPO, CONFIG))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return json.loads(json.dumps(module.get_config().to_dict(), default=str))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--out', default='')
  parser.add_argument('--add', action='store_true',
                      help='keep the runs already in --out; run only the seeds it lacks')
  args = parser.parse_args()
  result = {**machine_description(), 'config': CONFIG, 'target': TARGET, 'runs': []}
  if args.add:
    if not args.out or not os.path.exists(args.out):
      raise SystemExit(f'--add needs an existing --out file; {args.out!r} is not one')
    with open(args.out) as f:
      result = json.load(f)
  settings = config_settings()
  if result.get('settings', settings) != settings:
    raise SystemExit(f'{args.out} holds runs of other settings of {CONFIG}; --add only adds seeds '
                     'of the same settings (write a new --out)')
  result['settings'] = settings
  done = {run['seed'] for run in result['runs']}
  print(json.dumps(machine_description()), flush=True)
  with tempfile.TemporaryDirectory() as scratch:
    for seed in (int(s) for s in args.seeds.split(',')):
      if seed in done:
        print(f'seed {seed}: already in {args.out}', flush=True)
        continue
      run = {**timed_run(CONFIG, seed, scratch), 'machine': machine_description()}
      result['runs'].append(run)
      best = min(run['history'], key=lambda r: r['val_loss'])
      print(f"seed {seed}: test_accuracy {run['test_accuracy']:.4f} in {run['seconds'] / 60:.1f} "
            f"min (best epoch {best['epoch']} of {run['epochs']}, val_accuracy "
            f"{best['val_accuracy']:.4f})", flush=True)
      runs = result['runs']
      result['seconds'] = summary([r['seconds'] for r in runs])
      result['test_accuracy'] = summary([r['test_accuracy'] for r in runs])
      result['reached_target'] = sum(r['test_accuracy'] >= TARGET for r in runs)
      if args.out:
        with open(args.out, 'w') as f:
          json.dump(result, f, indent=1)
  a = result['test_accuracy']
  print(f"{len(result['runs'])} seeds: test accuracy {a['mean']:.4f} (min {a['min']:.4f}, max "
        f"{a['max']:.4f}); {result['reached_target']} reached {TARGET}; "
        f"{result['seconds']['mean'] / 60:.1f} min per run")


if __name__ == '__main__':
  main()
