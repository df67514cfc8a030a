"""Initializing a model from pretrained weights: `model.init_from` and `model.init_layers`.

`init_from` names where the weights come from:

- a weight file of VGG16 in any format `cnnjax.weights` reads (Keras' ImageNet .h5 files, a Keras 3
  .weights.h5, torchvision's .pth); its layers carry VGG16's names (block1_conv1 ... fc1, fc2,
  predictions), the names of `vgg16`, `vgg16_base` and the base of `vgg16_transfer`;
- the workdir of a cnnjax run: the parameters of its best checkpoint (by val_loss), e.g. a
  pretraining run, or phase 1 of a fine-tuning.

`init_layers` are regular expressions over '/'-joined parameter paths, matched as in
`train.param_groups` (a whole path or a leading part: 'block.*' takes every block's kernel and
bias). The parameters they match are taken from the weights, and each must be there with the
model's shape; every other parameter of the model keeps its fresh initialization (a new head).
`cnnjax.weights.merge_params` does the merge and lists every mismatch in one error. What was
taken, what is new and what the weights held but was left out is printed, so a run's log says
exactly which layers are pretrained.
"""

import os
import re
from typing import Any, Callable, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from cnnjax.errors import ConfigError, DataError
from cnnjax.training.param_groups import param_paths, path_matches
from cnnjax.weights import merge_params
from cnnjax.weights.vgg16 import WHERE_TO_GET, load_vgg16_weights

Params = Mapping[str, Any]


def _val_loss(metrics: dict[str, float]) -> float:
  return metrics['val_loss']


def load_run_params(workdir: str) -> tuple[dict, int]:
  """The parameters of the best checkpoint (lowest val_loss) of the cnnjax run in `workdir`.

  Returns:
    (nested dicts of NumPy arrays, the checkpoint's epoch).

  Raises:
    DataError: when the directory holds no finished checkpoint.
  """
  directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
  if not os.path.isdir(directory):
    raise DataError(f'model.init_from={workdir!r} is a directory without checkpoints/: give the '
                    'workdir of a finished cnnjax run (train it first with launch.py --workdir) '
                    'or a weight file')
  options = ocp.CheckpointManagerOptions(best_fn=_val_loss, best_mode='min', create=False)
  manager = ocp.CheckpointManager(directory, options=options, item_names=('state', 'history'))
  try:
    epoch = manager.best_step()
    if epoch is None:
      raise DataError(f'{directory} holds no finished checkpoint: let the run in {workdir!r} '
                      'finish at least one epoch first')
    # Restored as saved (no target needed): only the parameters are used.
    restored = manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  finally:
    manager.close()
  params = jax.tree.map(np.asarray, restored['state']['params'])
  return params, int(epoch)


def load_pretrained(source: str) -> tuple[dict, str]:
  """The parameters `model.init_from` names, and a description of where they came from."""
  if os.path.isdir(source):
    params, epoch = load_run_params(source)
    return params, f'the best checkpoint (epoch {epoch}) of the run in {source}'
  if not os.path.exists(source):
    raise DataError(
        f'model.init_from={source!r} does not exist. It must be a weight file or the workdir of '
        f'a cnnjax run (train that run first). For VGG16\'s ImageNet weights: {WHERE_TO_GET}')
  return load_vgg16_weights(source), source


def _layers(paths) -> str:
  names = list(dict.fromkeys(p.split('/')[0] for p in paths))
  return ', '.join(names) if names else 'none'


def init_from_pretrained(params: Params, source: str, init_layers,
                         log: Callable[[str], None] = print) -> dict:
  """`params` with the parameters matching `init_layers` replaced by those of `source`.

  Args:
    params: the model's freshly initialized parameters.
    source: `model.init_from`: a weight file or a cnnjax run's workdir.
    init_layers: `model.init_layers`: regexes of the parameters to take.
    log: where the account of taken / new / left-out layers goes.

  Raises:
    ConfigError: an init_layers pattern matches nothing in the weights (a typo, or the wrong
      file).
    DataError: the file is missing or unreadable, or a taken parameter is missing from it or has
      another shape (all listed at once).
  """
  if isinstance(init_layers, str):
    init_layers = (init_layers,)
  try:
    patterns = [re.compile(p) for p in init_layers]
  except re.error as e:
    raise ConfigError(f'model.init_layers={tuple(init_layers)}: not a regular expression '
                      f'({e})') from e
  if not patterns:
    raise ConfigError('model.init_layers is empty while model.init_from is set; name the layers '
                      "to take, e.g. ('block.*',) for a conv base or ('.*',) for everything")
  loaded, where = load_pretrained(source)
  flat_loaded = traverse_util.flatten_dict(dict(loaded), sep='/')
  unused = [p.pattern for p in patterns
            if not any(path_matches(p, path) for path in flat_loaded)]
  if unused:
    raise ConfigError(f'model.init_layers pattern(s) {unused} match nothing in {where}; it '
                      f'holds the layers {_layers(flat_loaded)}')
  take = lambda path: any(path_matches(p, path) for p in patterns)
  taken = {p: v for p, v in flat_loaded.items() if take(p)}
  model_paths = param_paths(params)
  new = [p for p in model_paths if not take(p)]
  try:
    merged = merge_params(params, traverse_util.unflatten_dict(taken, sep='/'),
                          allow_missing=[re.escape(p) for p in new], source=where)
  except DataError as e:
    # merge_params' closing advice speaks of its allow_missing argument; say it in config terms.
    listing = '\n'.join(line for line in str(e).splitlines()
                        if not line.startswith('Check the model variant'))
    raise DataError(f'{listing}\nThe parameters taken are those matching '
                    f'model.init_layers={tuple(init_layers)}: narrow it to the layers that fit '
                    '(the others start fresh), or change the model.') from e
  left_out = [p for p in flat_loaded if not take(p)]
  log(f'init_from: {where}\n'
      f'  taken ({len(taken)} parameters): {_layers(taken)}\n'
      f'  new (freshly initialized): {_layers(new)}\n'
      f'  in the weights but not taken: {_layers(left_out)}')
  return merged
