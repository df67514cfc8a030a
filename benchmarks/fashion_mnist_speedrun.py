"""Record 1 on Fashion-MNIST: the speed run's wall time to its test accuracy against the main job's.

    python benchmarks/fashion_mnist_speedrun.py [--seeds 0,1,2,3,4] \
        [--out benchmarks/results/fashion-mnist-speedrun-DATE.json]

For each seed, the main job (configs/fashion_mnist.py) and the speed run
(configs/fashion_mnist_speedrun.py) are launched back to back as a user launches them,
`python launch.py --config CONFIG --workdir FRESH_DIR --config.seed=SEED`, and each is timed from
the launch to the moment its `test_accuracy:` line is printed: start-up, data loading,
compilation, training, validation and the test all count. Each config is first launched once,
untimed (1 epoch on 3,000 images, without the test), so that every timed run finds the process
settings and convolution formulations launch.py measures on a config's first run already cached.
The order alternates from seed to seed (main job first on even seeds), so a drift of the
machine's speed hits both alike. Printed: a row
per run, then the mean and spread of each config's wall time and accuracy, the ratio of the mean
times, and how many speed runs reached 0.93.

The test split is only read by the runs' final evaluation; nothing here chooses anything from it.
"""

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launch_run import launch_run  # pylint: disable=wrong-import-position
from machine import machine_description  # pylint: disable=wrong-import-position

CONFIGS = {'main job': 'configs/fashion_mnist.py',
           'speed run': 'configs/fashion_mnist_speedrun.py'}
TARGET = 0.93


def timed_run(config: str, seed: int, scratch: str) -> dict:
  """One launch.py run: seconds from the launch to its `test_accuracy:` line, and the accuracy."""
  run = launch_run(config, scratch, f'seed={seed}')
  if run.test_accuracy is None:
    raise RuntimeError(f'{shlex.join(run.command)} printed no test_accuracy')
  return {'config': config, 'seed': seed, 'seconds': run.seconds_to_test,
          'test_accuracy': run.test_accuracy, 'epochs': len(run.history),
          'training_seconds': sum(r['epoch_seconds'] for r in run.history),
          'history': run.history}


def warm_up(config: str, scratch: str) -> None:
  """One short untimed launch of `config` (1 epoch on 3,000 images, no test), so that each timed
  run finds its process settings and convolution formulations measured and cached, as a user's
  second run of a config does (the first one measures them: about 40 s on 2 cores)."""
  launch_run(config, scratch, 'train.epochs=1', 'data.limit_train=3000',
             'train.evaluate_test=False')


def summary(values: list[float]) -> dict[str, float]:
  return {'mean': statistics.mean(values), 'min': min(values), 'max': max(values),
          'stdev': statistics.stdev(values) if len(values) > 1 else 0.0}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--seeds', default='0,1,2,3,4')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  seeds = [int(s) for s in args.seeds.split(',')]
  print(json.dumps(machine_description()))
  runs = []
  with tempfile.TemporaryDirectory() as scratch:
    for name, config in CONFIGS.items():
      warm_up(config, scratch)
      print(f'{name}: warmed up (process settings and convolution choices cached)', flush=True)
    for i, seed in enumerate(seeds):
      order = list(CONFIGS) if i % 2 == 0 else list(reversed(CONFIGS))
      for name in order:
        run = timed_run(CONFIGS[name], seed, scratch)
        run['name'] = name
        runs.append(run)
        print(f"seed {seed} {name:9s} {run['seconds']:6.1f} s to test_accuracy "
              f"{run['test_accuracy']:.4f} ({run['epochs']} epochs, "
              f"{run['training_seconds']:.1f} s of them training)", flush=True)
  result = {**machine_description(), 'seeds': seeds, 'runs': runs}
  for name in CONFIGS:
    mine = [r for r in runs if r['name'] == name]
    result[name] = {'seconds': summary([r['seconds'] for r in mine]),
                    'test_accuracy': summary([r['test_accuracy'] for r in mine]),
                    'reached_0.93': sum(r['test_accuracy'] >= TARGET for r in mine)}
    s, a = result[name]['seconds'], result[name]['test_accuracy']
    print(f"{name}: {s['mean']:.1f} s (min {s['min']:.1f}, max {s['max']:.1f}, stdev "
          f"{s['stdev']:.1f}); test accuracy {a['mean']:.4f} (min {a['min']:.4f}, max "
          f"{a['max']:.4f}); {result[name]['reached_0.93']}/{len(mine)} reached {TARGET}")
  result['time_ratio'] = (result['speed run']['seconds']['mean']
                          / result['main job']['seconds']['mean'])
  print(f"speed run / main job wall time: {result['time_ratio']:.3f}")
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(result, f, indent=1)
    print(f'written to {args.out}')


if __name__ == '__main__':
  main()
