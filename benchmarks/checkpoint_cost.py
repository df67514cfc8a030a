"""What checkpoints within epochs cost: the main job's throughput with and without them, and the
time to save a large model's state.

    python benchmarks/checkpoint_cost.py [--rounds 3] [--out benchmarks/results/checkpoint-cost.json]

Part 1, the main job (configs/fashion_mnist.py on all of Fashion-MNIST, a `launch.py` process per
run): two epochs per run, epoch 2's training images/s from its history.json (epoch 1 compiles). Runs without
checkpoints within epochs, with the default (`train.checkpoint_every_minutes` = 5: an epoch of
this job is shorter than that, so it writes none and costs nothing), and every 100 and every 25
steps, interleaved over rounds so that drifts of the machine hit every setting alike. From the
slowdown of the frequent settings follows the cost of one checkpoint, and from that the cost of
the default interval: one checkpoint's seconds / 300 s.

Part 2, a large state: the seconds `Checkpoints.save` blocks the training loop (orbax copies the
arrays to the host, then writes in the background) and the seconds until the checkpoint is on
disk, for ResNet50's train state with AdamW (parameters, two moments, BatchNorm statistics:
about 300 MB). The background write shares the machine's cores with training, so the bound on the
default interval's cost is the whole write's seconds / 300 s.
"""

import argparse
import json
import os
import statistics
import sys
import subprocess
import tempfile
import time

import jax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from cnnjax.config import base_config  # pylint: disable=wrong-import-position
from cnnjax.models import create_model  # pylint: disable=wrong-import-position
from cnnjax.training.checkpointing import Checkpoints  # pylint: disable=wrong-import-position
from cnnjax.training.optimizers import create_optimizer  # pylint: disable=wrong-import-position
from cnnjax.training.train_state import create_train_state  # pylint: disable=wrong-import-position
from machine import machine_description  # pylint: disable=wrong-import-position

DEFAULT_MINUTES = base_config().train.checkpoint_every_minutes
TRAIN_IMAGES = 54_000  # Fashion-MNIST's 60,000 less the 10% held out for validation.
BATCH_SIZE = base_config().train.batch_size  # The main job's: 64.
# (name, checkpoint_every_steps, checkpoint_every_minutes)
SETTINGS = (('none', 0, 0.0), ('default', 0, DEFAULT_MINUTES), ('every_100_steps', 100, 0.0),
            ('every_25_steps', 25, 0.0))


def main_job_throughput(setting, scratch: str) -> tuple[float, int]:
  """(epoch 2's training images/s, checkpoints written within epoch 2) of one launch.py run."""
  name, every_steps, every_minutes = setting
  workdir = tempfile.mkdtemp(prefix=f'{name}-', dir=scratch)
  subprocess.run([sys.executable, os.path.join(REPO, 'launch.py'), '--config',
                  'configs/fashion_mnist.py', '--workdir', workdir, '--config.train.epochs=2',
                  f'--config.train.checkpoint_every_steps={every_steps}',
                  f'--config.train.checkpoint_every_minutes={every_minutes}'],
                 cwd=REPO, check=True, stdout=subprocess.DEVNULL)
  with open(os.path.join(workdir, 'history.json')) as f:
    history = json.load(f)
  steps_per_epoch = TRAIN_IMAGES // BATCH_SIZE
  # Epoch 2's checkpoints within it (the one at its last step is the end-of-epoch checkpoint).
  saves = sum(1 for step in range(steps_per_epoch + 1, 2 * steps_per_epoch)
              if every_steps and step % every_steps == 0)
  return history[1]['images_per_second'], saves


def large_state_save(scratch: str) -> dict:
  config = base_config()
  config.model.name = 'resnet50'
  config.train.optimizer = 'adamw'
  model = create_model(config.model)
  state = create_train_state(model, create_optimizer(config.train, 100), (224, 224, 3), 0)
  size = sum(getattr(leaf, 'nbytes', 0) for leaf in jax.tree.leaves(state))
  blocking, total = [], []
  checkpoints = Checkpoints(os.path.join(scratch, 'large'))
  for step in range(1, 4):
    start = time.perf_counter()
    checkpoints.save(step, state, [{'epoch': step, 'val_loss': 1.0}])
    blocking.append(time.perf_counter() - start)
    checkpoints.wait()
    total.append(time.perf_counter() - start)
  checkpoints.close()
  return {'state_bytes': size, 'blocking_seconds': blocking, 'total_seconds': total,
          'default_interval_cost_bound': statistics.median(total) / (60 * DEFAULT_MINUTES)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  results = {**machine_description(), 'jax': jax.__version__,
             'default_every_minutes': DEFAULT_MINUTES}
  with tempfile.TemporaryDirectory(prefix='checkpoint-cost-') as scratch:
    rates = {name: [] for name, _, _ in SETTINGS}
    saves = {}
    for round_index in range(args.rounds):
      for setting in SETTINGS:
        rate, saves[setting[0]] = main_job_throughput(setting, scratch)
        rates[setting[0]].append(rate)
        print(f'round {round_index + 1}: {setting[0]}: {rate:,.0f} images/s', flush=True)
    none = statistics.median(rates['none'])
    epoch_seconds = TRAIN_IMAGES // BATCH_SIZE * BATCH_SIZE / none
    main_job = {}
    for name, _, _ in SETTINGS:
      median = statistics.median(rates[name])
      row = {'images_per_second': rates[name], 'median': median,
             'slowdown': 1 - median / none, 'checkpoints_per_epoch': saves[name]}
      if saves[name]:
        row['seconds_per_checkpoint'] = (none / median - 1) * epoch_seconds / saves[name]
        row['default_interval_cost'] = row['seconds_per_checkpoint'] / (60 * DEFAULT_MINUTES)
      main_job[name] = row
      print(f'{name}: median {median:,.0f} images/s ({100 * row["slowdown"]:+.2f}% slower than '
            f'none), {saves[name]} checkpoints in the epoch' + (
                f', {row["seconds_per_checkpoint"]:.3f} s each -> '
                f'{100 * row["default_interval_cost"]:.3f}% at one per {DEFAULT_MINUTES:g} min'
                if saves[name] else ''), flush=True)
    results['main_job'] = main_job
    results['resnet50_adamw_state'] = large = large_state_save(scratch)
    print(f'ResNet50 + AdamW state, {large["state_bytes"] / 2**20:,.0f} MiB: save blocks '
          f'{statistics.median(large["blocking_seconds"]):.2f} s, on disk after '
          f'{statistics.median(large["total_seconds"]):.2f} s -> at most '
          f'{100 * large["default_interval_cost_bound"]:.2f}% at one per {DEFAULT_MINUTES:g} min',
          flush=True)
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(results, f, indent=2)
    print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
