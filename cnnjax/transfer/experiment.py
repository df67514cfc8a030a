"""Transfer learning shown offline: pretrain on 8 Fashion-MNIST classes, transfer to the other 2.

    python -m cnnjax.transfer.experiment --workdir runs/transfer --output docs/transfer_results.md

(from the repository root). No ImageNet weights or cats-vs-dogs photos can be had offline, so the
reference's transfer chapter is replayed at a small scale on real data: `vgg_small` (VGG16's layer
names, three blocks) is pretrained on the 8 classes other than T-shirt/top and Shirt
(configs/fashion_mnist_8class.py), then the held-out pair, the two classes the pretraining never
saw, becomes a small-data task with the reference's split sizes, 1,000 / 500 / 1,000 images per
class (configs/transfer_fashion_mnist.py). Each workflow is one config, trained by the ordinary
loop (`cnnjax.training.train.train_and_evaluate`) in `<workdir>/<name>`:

- scratch, scratch_augment: no pretrained weights (the baselines, without and with
  augmentation);
- feature_extraction: (1) fast feature extraction, the head trained on cached base features;
- feature_extraction_augment: (2) frozen base + new head trained end to end with augmentation;
- fine_tuning: (3) phase 2 from (2)'s best checkpoint with the last block unfrozen;
- end_to_end: (4) everything trains, the base at 0.1x the head's learning rate.

`--base resnet_small` runs the same study with `resnet_small` (a BatchNorm ResNet-8 in
torchvision's layout, cnnjax/models/resnet.py) as the base: pretraining
configs/fashion_mnist_8class_resnet.py, then configs/transfer_resnet_*.py (the same workflows; the
head is the one-unit `fc`, the last stage unfrozen by the fine-tuning is `layer3`). Each base is
one entry of `BASES` (its pretraining, its runs, how the results describe its model).

Each transfer run is repeated for several seeds (`--seeds`, default 0,1,2: the new layers'
initialization, batch order, dropout and augmentation) and the table gives the mean and the spread,
since a single test accuracy on 2,000 images is only good to about +-0.8 points. Runs are
resumable: a finished run is only re-tested when the command is run again. The results table
(markdown) goes to `--output`, with the machine, versions and date; every row's figures also go to
`<workdir>/transfer_results.json`.
"""

import argparse
import dataclasses
import datetime
import importlib.util
import os
import platform
import sys
import time
from typing import Callable

import flax
import jax
import ml_collections
import optax
import orbax.checkpoint

from cnnjax.errors import CnnjaxError, ConfigError
from cnnjax.training import history as history_lib
from cnnjax.training.history import read_history
from cnnjax.models import create_model
from cnnjax.training.param_groups import frozen_paths, param_groups
from cnnjax.summary import abstract_variables, parameter_counts, trainable_predicate

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'configs')

# (run name, config file, what the table calls it, which run's workdir init_from points at).
PRETRAIN = ('pretrain', 'fashion_mnist_8class', 'pretraining on the 8 other classes', None)
RUNS = (
    ('scratch', 'transfer_scratch', 'from scratch', None),
    ('scratch_augment', 'transfer_scratch_augment', 'from scratch, with augmentation', None),
    ('feature_extraction', 'transfer_feature_extraction', '(1) fast feature extraction',
     'pretrain'),
    ('feature_extraction_augment', 'transfer_feature_extraction_augment',
     '(2) frozen base + new head, with augmentation', 'pretrain'),
    ('fine_tuning', 'transfer_fine_tuning', '(3) fine-tuning: phase 2 from (2), block3 unfrozen',
     'feature_extraction_augment'),
    ('end_to_end', 'transfer_end_to_end', '(4) end to end, base lr x0.1', 'pretrain'),
)
RESNET_PRETRAIN = ('pretrain', 'fashion_mnist_8class_resnet',
                   'pretraining on the 8 other classes', None)
RESNET_RUNS = (
    ('scratch', 'transfer_resnet_scratch', 'from scratch', None),
    ('scratch_augment', 'transfer_resnet_scratch_augment', 'from scratch, with augmentation',
     None),
    ('feature_extraction', 'transfer_resnet_feature_extraction', '(1) fast feature extraction',
     'pretrain'),
    ('feature_extraction_augment', 'transfer_resnet_feature_extraction_augment',
     '(2) frozen base + new head, with augmentation', 'pretrain'),
    ('fine_tuning', 'transfer_resnet_fine_tuning',
     '(3) fine-tuning: phase 2 from (2), layer3 unfrozen', 'feature_extraction_augment'),
    ('end_to_end', 'transfer_resnet_end_to_end', '(4) end to end, base lr x0.1', 'pretrain'),
)
SEEDS = (0, 1, 2)


@dataclasses.dataclass(frozen=True)
class Base:
  """One pretrained base the study can use (`--base`).

  Attributes:
    pretrain: (run name, config file, title, None) of the pretraining on the 8 other classes.
    runs: (run name, config file, title, init run) of each transfer workflow; the init run is
      'pretrain' (the pretraining's workdir), another run's name (its workdir for the same seed)
      or None (from scratch).
    model: how the results document describes the model (markdown).
  """

  pretrain: tuple[str, str, str, None]
  runs: tuple[tuple[str, str, str, str | None], ...]
  model: str


BASES = {
    'vgg_small': Base(
        PRETRAIN, RUNS,
        '`vgg_small` (VGG16\'s layer names: block1_conv1 32, block2_conv1 64, block3_conv1..2 64 '
        'filters, then Flatten - dense1 256 - Dropout 0.5 - predictions)'),
    'resnet_small': Base(
        RESNET_PRETRAIN, RESNET_RUNS,
        '`resnet_small` (a BatchNorm ResNet-8 in torchvision\'s layout: conv1 3x3 16 - bn1, one '
        'BasicBlock per stage, layer1 16, layer2 32, layer3 64 channels, global average pooling, '
        'fc; the transfer runs\' head is a new one-unit fc on the 64 pooled features)'),
}


def base_spec(name: str) -> Base:
  """`BASES[name]`, or a ConfigError naming the bases."""
  if name not in BASES:
    raise ConfigError(f'--base {name!r} is not one of {sorted(BASES)}')
  return BASES[name]


def load_config(name: str, config_dir: str = CONFIG_DIR) -> ml_collections.ConfigDict:
  """`get_config()` of configs/<name>.py."""
  path = os.path.join(config_dir, f'{name}.py')
  if not os.path.isfile(path):
    raise ConfigError(f'no config file {path}: run the experiment from a checkout of the '
                      'repository (the configs/ directory sits next to cnnjax/)')
  if os.path.dirname(config_dir) not in sys.path:
    sys.path.insert(0, os.path.dirname(config_dir))  # The configs import each other.
  spec = importlib.util.spec_from_file_location(f'transfer_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def quick(config: ml_collections.ConfigDict, name: str) -> None:
  """Shrinks a run to seconds (for tests): a few images per class, one or two epochs."""
  config.data.per_class = (150, 40, 40) if name == 'pretrain' else (48, 16, 32)
  config.train.epochs = 1 if name == 'pretrain' else 2
  config.train.batch_size = 16
  config.train.eval_batch_size = 64


def _counts(config: ml_collections.ConfigDict, image_shape) -> dict[str, int]:
  model = create_model(config.model)
  variables = abstract_variables(model, image_shape)
  frozen = frozen_paths(variables['params'], param_groups(config.train))
  return parameter_counts(variables, trainable_predicate(frozen))


def _train(name: str, config_name: str, title: str, config: ml_collections.ConfigDict,
           run_dir: str, log: Callable[[str], None]) -> dict:
  """Trains one run and returns its result row."""
  from cnnjax.training.train import train_and_evaluate  # pylint: disable=import-outside-toplevel
  log(f'\n=== {name} (seed {config.seed}): {title} ({config_name}.py) -> {run_dir}')
  result = train_and_evaluate(config, run_dir)
  history = read_history(run_dir)
  counts = _counts(config, tuple(config.model.input_shape))
  return {
      'name': name, 'title': title, 'config': f'configs/{config_name}.py', 'seed': config.seed,
      'test_accuracy': result['test_accuracy'], 'test_loss': result['test_loss'],
      'best_epoch': result['best_epoch'], 'epochs': len(history),
      'best_val_accuracy': next(e['val_accuracy'] for e in history
                                if e['epoch'] == result['best_epoch']),
      'train_seconds': sum(e['epoch_seconds'] for e in history),
      'trainable': counts['trainable'], 'non_trainable': counts['non_trainable'],
      'init_layers': (', '.join(config.model.init_layers) if config.model.init_from else '-'),
      'param_groups': ', '.join(config.train.param_groups) or 'all at 1x',
      'learning_rate': config.train.learning_rate,
      'augment': config.augment.kind,
      'cache_features': bool(config.train.cache_features),
  }


def run_experiment(workdir: str, *, seeds=SEEDS, fast: bool = False, base: str = 'vgg_small',
                   log: Callable[[str], None] = print) -> tuple[dict, list[dict]]:
  """Pretrains `base` once, then trains every one of its runs once per seed.

  Returns:
    (the pretraining's row, one row per run and seed). Runs go to `workdir/pretrain` and
    `workdir/<name>/seed<seed>`; a seed changes the new layers' initialization, the batch order,
    dropout and augmentation, not the data subsets (data.seed) nor the pretrained base.
  """
  spec = base_spec(base)
  name, config_name, title, _ = spec.pretrain
  config = load_config(config_name)
  if fast:
    quick(config, name)
  pretrain = _train(name, config_name, title, config, os.path.join(workdir, name), log)
  rows = []
  for seed in seeds:
    for name, config_name, title, init_run in spec.runs:
      config = load_config(config_name)
      config.seed = seed
      if init_run == 'pretrain':
        config.model.init_from = os.path.join(workdir, 'pretrain')
      elif init_run is not None:
        config.model.init_from = os.path.join(workdir, init_run, f'seed{seed}')
      if fast:
        quick(config, name)
      rows.append(_train(name, config_name, title, config,
                         os.path.join(workdir, name, f'seed{seed}'), log))
  return pretrain, rows


def _machine() -> str:
  model = platform.processor() or 'unknown CPU'
  try:
    with open('/proc/cpuinfo') as f:
      model = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
  except (OSError, StopIteration):
    pass
  devices = jax.devices()
  accelerator = ('no GPU' if devices[0].platform == 'cpu'
                 else f'{len(devices)} x {devices[0].device_kind}')
  return f'{os.cpu_count()}-core {model} CPU, {accelerator}'


def results_markdown(pretrain: dict, rows: list[dict], command: str,
                     total_seconds: float, base: str = 'vgg_small') -> str:
  """The results as a markdown document: one line per workflow, mean and spread over seeds."""
  seeds = sorted({row['seed'] for row in rows})
  lines = [
      '# Transfer learning offline: Fashion-MNIST, 8 classes -> T-shirt/top vs Shirt',
      '',
      f'Measured {datetime.date.today().isoformat()} on a {_machine()}; Python '
      f'{platform.python_version()}, jax {jax.__version__}, flax {flax.__version__}, optax '
      f'{optax.__version__}, orbax-checkpoint {orbax.checkpoint.__version__}. One command, '
      f'{total_seconds / 60:.0f} minutes in all:',
      '',
      '```bash',
      command,
      '```',
      '',
      f'{base_spec(base).model} is pretrained on the 8 '
      'classes other than T-shirt/top (0) and Shirt (6) '
      f'(`{pretrain["config"]}`: {pretrain["epochs"]} epochs, '
      f'{pretrain["train_seconds"]:.0f} s, test accuracy {pretrain["test_accuracy"]:.4f} over '
      'those 8 classes). The two held-out classes, never seen in pretraining, then form a small '
      'binary task with the reference\'s split sizes, 1,000 / 500 / 1,000 images per class '
      '(training and validation images drawn from the training split, test images from the '
      'test split, seeded: `data.classes`, `data.per_class`). Each row is one config trained by '
      '`launch.py`\'s loop; its test accuracy is that of the best epoch by val_loss, on the '
      f'2,000 test images, as the mean and the spread (min-max) over seeds {seeds} (a seed '
      'changes the new layers\' initialization, the batch order, dropout and augmentation; the '
      'data and the pretrained base stay). The standard error of one accuracy near 0.86 on '
      '2,000 images is about 0.008.',
      '',
      '| workflow | config | pretrained layers | param_groups | trainable / frozen params '
      '| lr | augment | epochs | train time | best val acc | test acc, mean (min-max) |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ]
  names = list(dict.fromkeys(row['name'] for row in rows))
  for name in names:
    group = [row for row in rows if row['name'] == name]
    first = group[0]
    acc = [row['test_accuracy'] for row in group]
    val = sum(row['best_val_accuracy'] for row in group) / len(group)
    seconds = sum(row['train_seconds'] for row in group) / len(group)
    augment = 'none' if first['augment'] == 'none' else 'flip, rotate, zoom'
    mode = ' (cached features)' if first['cache_features'] else ''
    lines.append(
        f"| {first['title']}{mode} | `{first['config'].split('/')[-1]}` | "
        f"{first['init_layers']} | `{first['param_groups']}` | {first['trainable']:,} / "
        f"{first['non_trainable']:,} | {first['learning_rate']:g} | {augment} | "
        f"{first['epochs']} | {seconds:.0f} s | {val:.4f} | "
        f"**{sum(acc) / len(acc):.4f}** ({min(acc):.4f}-{max(acc):.4f}) |")
  lines += ['', 'Per seed (test accuracy):', '',
            '| workflow | ' + ' | '.join(f'seed {s}' for s in seeds) + ' |',
            '| --- |' + ' --- |' * len(seeds)]
  for name in names:
    by_seed = {row['seed']: row['test_accuracy'] for row in rows if row['name'] == name}
    title = next(row['title'] for row in rows if row['name'] == name)
    lines.append(f'| {title} | ' + ' | '.join(f'{by_seed[s]:.4f}' for s in seeds) + ' |')
  return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', default='runs/transfer',
                      help='where the runs go, one directory each (resumable)')
  parser.add_argument('--output', default='',
                      help='the markdown results file (default: <workdir>/transfer_results.md)')
  parser.add_argument('--fast', action='store_true',
                      help='a few images and epochs per run: checks the pipeline in a minute')
  parser.add_argument('--seeds', default=','.join(str(s) for s in SEEDS),
                      help='comma-separated run seeds of the transfer runs (default %(default)s)')
  parser.add_argument('--base', default='vgg_small', choices=sorted(BASES),
                      help='the pretrained base and its workflows (default %(default)s)')
  args = parser.parse_args(argv)
  output = args.output or os.path.join(args.workdir, 'transfer_results.md')
  seeds = tuple(int(s) for s in args.seeds.split(',') if s.strip())
  start = time.perf_counter()
  try:
    pretrain, rows = run_experiment(args.workdir, seeds=seeds, fast=args.fast, base=args.base)
  except CnnjaxError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  command = 'python -m cnnjax.transfer.experiment ' + ' '.join(
      sys.argv[1:] if argv is None else argv)
  text = results_markdown(pretrain, rows, command.strip(), time.perf_counter() - start,
                          base=args.base)
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  with open(output, 'w') as f:
    f.write(text)
  history_lib.write_json(os.path.join(args.workdir, 'transfer_results.json'),
                         {'pretrain': pretrain, 'runs': rows})
  print('\n' + text)
  print(f'written to {output}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
