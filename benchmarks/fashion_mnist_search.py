"""Choosing a Fashion-MNIST config's settings on the validation split: one launch per trial.

    python benchmarks/fashion_mnist_search.py --config configs/fashion_mnist_speedrun.py \\
        --trial 'model.first_stride=2' --trial 'model.first_stride=2 train.epochs=4' \\
        [--common 'tuning.huge_pages=off tuning.ynn_fusions=off'] [--seed 0] \\
        [--out benchmarks/results/fashion-mnist-search-DATE.json] [--keep runs/search]

Each trial is the config with the trial's `FIELD=VALUE` overrides (and the `--common` ones),
launched as a user launches it, `python launch.py --config CONFIG --workdir FRESH_DIR
--config.FIELD=VALUE ... --config.train.evaluate_test=False`, one after the other in this
process's order. `train.evaluate_test=False` stops each run at its best epoch by val_loss without
evaluating any model on the test split, so nothing chosen from this table has seen a test score.
Recorded per trial: the wall time from the launch to the process's exit, each epoch's training
accuracy (on the augmented batches), val_accuracy, val_loss and training seconds, and the best
epoch. Fixing the process settings in `--common` (`tuning.huge_pages`,
`tuning.ynn_fusions`) keeps launch.py from measuring them anew for each new model (about 40 s on
2 cores), which would otherwise count in the first trial of each.

`--keep DIR` keeps each trial's workdir (its checkpoints, history and curves) under DIR instead of
a temporary folder: a trial chosen afterwards can then be tested without training it again, by
its own launch command with `--config.train.evaluate_test=True` added (the run resumes from its
last checkpoint, has no epochs left, and evaluates its best epoch by val_loss on the test split).
"""

import argparse
import contextlib
import json
import os
import shlex
import tempfile

from launch_run import launch_run
from machine import machine_description


def run_trial(config: str, overrides: list[str], seed: int, scratch: str) -> dict:
  """One launch.py run without the test: its command, wall time and history."""
  run = launch_run(config, scratch, f'seed={seed}', 'train.evaluate_test=False', *overrides)
  if run.test_accuracy is not None:
    raise RuntimeError(f'{shlex.join(run.command)} evaluated the test split')
  best = min(run.history, key=lambda r: r['val_loss'])
  return {'overrides': overrides, 'seed': seed, 'command': shlex.join(run.command),
          'wall_seconds': run.seconds,
          'best_epoch': best['epoch'], 'best_val_accuracy': best['val_accuracy'],
          'best_val_loss': best['val_loss'],
          'epochs': [{k: r[k] for k in ('epoch', 'accuracy', 'val_accuracy', 'val_loss',
                                        'epoch_seconds')}
                     for r in run.history]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True)
  parser.add_argument('--trial', action='append', default=[],
                      help="space-separated FIELD=VALUE overrides; '' is the config as it is")
  parser.add_argument('--common', default='', help='overrides every trial takes')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--out', default='')
  parser.add_argument('--keep', default='',
                      help='keep each trial\'s workdir under this folder (default: deleted)')
  args = parser.parse_args()
  trials = args.trial or ['']
  report = {'machine': machine_description(), 'config': args.config, 'common': args.common,
            'load_before': os.getloadavg(), 'trials': []}
  print(report['machine'], flush=True)
  if args.keep:
    os.makedirs(args.keep, exist_ok=True)
  workdirs = (contextlib.nullcontext(os.path.abspath(args.keep)) if args.keep
              else tempfile.TemporaryDirectory(prefix='fashion-mnist-search-'))
  with workdirs as scratch:
    for trial in trials:
      overrides = args.common.split() + trial.split()
      result = run_trial(args.config, overrides, args.seed, scratch)
      report['trials'].append(result)
      curve = ' '.join(f"{r['val_accuracy']:.4f}" for r in result['epochs'])
      print(f"{trial or '(as configured)'}: best epoch {result['best_epoch']} val_accuracy "
            f"{result['best_val_accuracy']:.4f}, {result['wall_seconds']:.1f} s "
            f"(epochs {sum(r['epoch_seconds'] for r in result['epochs']):.1f} s; "
            f"val_accuracy by epoch {curve})", flush=True)
      report['load_after'] = os.getloadavg()
      if args.out:  # After every trial: a long search stopped part way keeps what it measured.
        with open(args.out, 'w') as f:
          json.dump(report, f, indent=1)
  if args.out:
    print(f'written {args.out}')


if __name__ == '__main__':
  main()
