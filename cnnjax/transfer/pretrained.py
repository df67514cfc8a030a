"""Initializing a model from pretrained weights: `model.init_from` and `model.init_layers`.

`init_from` names where the weights come from:

- a weight file in any format `cnnjax.weights` reads (Keras' ImageNet .h5 files, a Keras 3
  .weights.h5, torchvision's .pth), read by the name table registered for `model.name`
  (`cnnjax.weights.load_weights`: VGG16's names for `vgg16`, `vgg16_base` and the base of
  `vgg16_transfer`, torchvision's for the ResNets, ...);
- the workdir of a cnnjax run: the variables of its best checkpoint (by val_loss), e.g. a
  pretraining run, or phase 1 of a fine-tuning.

`init_layers` are regular expressions over '/'-joined variable paths, matched as in
`train.param_groups` (a whole path or a leading part: 'block.*' takes every block's kernel and
bias), in each collection: a BatchNorm layer's moving statistics ('batch_stats') come with its
scale and offset ('params'). The variables they match are taken from the weights, and each must
be there with the model's shape; every other variable keeps its fresh initialization (a new
head). `cnnjax.weights.merge_variables` does the merge and lists every mismatch in one error. What was
taken, what is new and what the weights held but was left out is printed, so a run's log says
exactly which layers are pretrained.
"""

import os
import re
from typing import Any, Callable, Mapping

import jax
import numpy as np
from flax import traverse_util

from cnnjax.errors import ConfigError, DataError
from cnnjax.training.checkpointing import Checkpoints
from cnnjax.training.param_groups import path_matches
from cnnjax.weights import load_weights, merge_variables, weight_table

Variables = Mapping[str, Mapping[str, Any]]


def load_run_variables(workdir: str) -> tuple[dict, int]:
  """The variables of the best checkpoint (lowest val_loss) of the cnnjax run in `workdir`.

  Returns:
    ({'params': ..., 'batch_stats': ...} as nested dicts of NumPy arrays (no 'batch_stats' for
    a model without BatchNorm), the checkpoint's epoch).

  Raises:
    DataError: when the directory holds no finished checkpoint.
  """
  directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
  if not os.path.isdir(directory):
    raise DataError(f'model.init_from={workdir!r} is a directory without checkpoints/: give the '
                    'workdir of a finished cnnjax run (train it first with launch.py --workdir) '
                    'or a weight file')
  checkpoints = Checkpoints(directory)
  try:
    step = checkpoints.best_step()
    if step is None:
      raise DataError(f'{directory} holds no finished checkpoint: let the run in {workdir!r} '
                      'finish at least one epoch first')
    # Restored as saved (no target needed): only the parameters and statistics are used.
    state, history = checkpoints.restore(step)
  finally:
    checkpoints.close()
  # The variables the run evaluated: its moving average when it kept one (train.ema_decay).
  source = state['ema'] if state.get('ema') else state
  variables = {'params': jax.tree.map(np.asarray, source['params'])}
  if source.get('batch_stats'):
    variables['batch_stats'] = jax.tree.map(np.asarray, source['batch_stats'])
  return variables, int(history[-1]['epoch'])


def load_pretrained(source: str, model_name: str) -> tuple[dict, str]:
  """The variables `model.init_from` names, and a description of where they came from."""
  if os.path.isdir(source):
    variables, epoch = load_run_variables(source)
    return variables, f'the best checkpoint (epoch {epoch}) of the run in {source}'
  if not os.path.exists(source):
    raise DataError(
        f'model.init_from={source!r} does not exist. It must be a weight file or the workdir of '
        f'a cnnjax run (train that run first). {weight_table(model_name).where_to_get}')
  return load_weights(source, model_name), source


def _layers(paths) -> str:
  names = list(dict.fromkeys(p.split('/')[0] for p in paths))
  return ', '.join(names) if names else 'none'


def init_from_pretrained(variables: Variables, source: str, init_layers, model_name: str,
                         log: Callable[[str], None] = print) -> dict:
  """`variables` with those matching `init_layers` replaced by those of `source`.

  Args:
    variables: the model's freshly initialized variables ('params' and any 'batch_stats').
    source: `model.init_from`: a weight file or a cnnjax run's workdir.
    init_layers: `model.init_layers`: regexes of the variable paths to take.
    model_name: `model.name`, which picks the weight file's name table.
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
  loaded, where = load_pretrained(source, model_name)
  flat_loaded = _flatten_collections(loaded)
  unused = [p.pattern for p in patterns
            if not any(path_matches(p, path) for _, path in flat_loaded)]
  if unused:
    raise ConfigError(f'model.init_layers pattern(s) {unused} match nothing in {where}; it '
                      f'holds the layers {_layers(path for _, path in flat_loaded)}')
  take = lambda path: any(path_matches(p, path) for p in patterns)
  taken = {key: v for key, v in flat_loaded.items() if take(key[1])}
  new = [path for _, path in _flatten_collections(variables) if not take(path)]
  try:
    merged = merge_variables(variables, _unflatten_collections(taken),
                             allow_missing=[re.escape(p) for p in new], source=where)
  except DataError as e:
    # merge_variables' closing advice speaks of its allow_missing argument; say it in config
    # terms.
    listing = '\n'.join(line for line in str(e).splitlines()
                        if not line.startswith('Check the model variant'))
    raise DataError(f'{listing}\nThe variables taken are those matching '
                    f'model.init_layers={tuple(init_layers)}: narrow it to the layers that fit '
                    '(the others start fresh), or change the model.') from e
  left_out = [path for (_, path) in flat_loaded if not take(path)]
  statistics = sum(1 for collection, _ in taken if collection != 'params')
  log(f'init_from: {where}\n'
      f'  taken ({len(taken) - statistics} parameters'
      f'{f", {statistics} BatchNorm statistics" if statistics else ""}): '
      f'{_layers(path for _, path in taken)}\n'
      f'  new (freshly initialized): {_layers(new)}\n'
      f'  in the weights but not taken: {_layers(left_out)}')
  return merged


def _flatten_collections(variables: Variables) -> dict[tuple[str, str], Any]:
  """{(collection, '/'-joined path): leaf} of a variables dict."""
  return {(collection, path): leaf for collection, tree in variables.items()
          for path, leaf in traverse_util.flatten_dict(dict(tree), sep='/').items()}


def _unflatten_collections(flat: Mapping[tuple[str, str], Any]) -> dict:
  collections: dict[str, dict] = {}
  for (collection, path), leaf in flat.items():
    collections.setdefault(collection, {})[path] = leaf
  return {c: traverse_util.unflatten_dict(tree, sep='/') for c, tree in collections.items()}
