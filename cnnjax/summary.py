"""A Keras-style model summary: each layer's name, type, output shape and parameter count.

The shapes come from tracing the model (`jax.eval_shape`), so a summary costs no computation and no
memory even for a large model. Trainable and non-trainable totals follow a `trainable` predicate on
parameter paths, so a frozen part of the model shows as non-trainable; variables outside the
'params' collection (such as batch statistics) are always non-trainable, as in Keras.
`model_summary` and `config_summary` (what `launch.py --mode summary` prints) take the predicate
from `train.param_groups` and add a table of the groups with their parameter counts.
"""

from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnnjax import tuning
from cnnjax.models import create_model
from cnnjax.models.layer_outputs import layer_outputs, layer_types
from cnnjax.training.param_groups import ParamGroup, assign_groups, frozen_paths, param_groups

ParamPath = tuple[str, ...]
_WIDTHS = (29, 26, 10)  # Keras 2's columns; the first widens for long layer names.


def abstract_variables(model: nn.Module, input_shape: Sequence[int]) -> Mapping[str, Any]:
  """The model's variables as shapes only, for a batch of one `input_shape` image."""
  images = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  return jax.eval_shape(model.init, jax.random.key(0), images)


def _path_names(path) -> ParamPath:
  return tuple(str(getattr(key, 'key', key)) for key in path)


def parameter_counts(variables: Mapping[str, Any],
                     trainable: Callable[[ParamPath], bool] | None = None) -> dict[str, int]:
  """Counts of all, trainable and non-trainable parameters.

  Args:
    variables: a model's variables (arrays or shape structs).
    trainable: a predicate on a parameter's path within 'params' (e.g. ('conv1', 'kernel'));
      None means every parameter in 'params' trains.
  """
  counts = {'total': 0, 'trainable': 0, 'non_trainable': 0}
  for collection, tree in variables.items():
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      size = int(np.prod(leaf.shape))
      counts['total'] += size
      trains = collection == 'params' and (trainable is None or trainable(_path_names(path)))
      counts['trainable' if trains else 'non_trainable'] += size
  return counts


def _layer_sizes(variables: Mapping[str, Any]) -> dict[str, int]:
  sizes: dict[str, int] = {}
  for tree in variables.values():
    for name, subtree in tree.items():
      sizes[name] = sizes.get(name, 0) + sum(int(np.prod(x.shape)) for x in jax.tree.leaves(subtree))
  return sizes


def _row(widths: Sequence[int], *cells: str) -> str:
  return ''.join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()


def summary(model: nn.Module, input_shape: Sequence[int], *, variables: Mapping[str, Any] | None = None,
            trainable: Callable[[ParamPath], bool] | None = None, name: str | None = None) -> str:
  """The summary table as Keras 2 prints it, with `Total params: N` lines with thousands separators.

  Args:
    model: a Flax module whose layers are direct, named submodules.
    input_shape: one image's shape, e.g. (28, 28, 1); the batch axis shows as None.
    variables: the model's variables; None traces `model.init` (shapes only).
    trainable: see `parameter_counts`.
    name: the model's name in the heading; defaults to the module's class name.
  """
  if variables is None:
    variables = abstract_variables(model, input_shape)
  images = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  types = layer_types(model, variables, images)
  with tuning.rules_only():  # Shapes only: nothing here is worth measuring.
    shapes = jax.eval_shape(lambda v, x: layer_outputs(model, v, x), variables, images)
  sizes = _layer_sizes(variables)
  labels = {layer: f'{layer} ({layer_type})' for layer, layer_type in types.items()}
  longest = max(map(len, labels.values()), default=0)
  widths = (_WIDTHS[0] if longest <= _WIDTHS[0] else longest + 1, *_WIDTHS[1:])
  rule, double_rule = '_' * sum(widths), '=' * sum(widths)
  lines = [f'Model: "{name or type(model).__name__}"', rule,
           _row(widths, 'Layer (type)', 'Output Shape', 'Param #'), double_rule]
  for i, (layer, label) in enumerate(labels.items()):
    shape = '(None, ' + ', '.join(str(d) for d in shapes[layer].shape[1:]) + ')'
    lines.append(_row(widths, label, shape, f'{sizes.get(layer, 0):,}'))
    lines.append(double_rule if i == len(labels) - 1 else rule)
  counts = parameter_counts(variables, trainable)
  lines += [f"Total params: {counts['total']:,}", f"Trainable params: {counts['trainable']:,}",
            f"Non-trainable params: {counts['non_trainable']:,}", rule]
  return '\n'.join(lines)


def trainable_predicate(frozen: Sequence[str]) -> Callable[[ParamPath], bool] | None:
  """The `trainable` predicate of a set of frozen '/'-joined paths (None when nothing is frozen)."""
  if not frozen:
    return None
  frozen = frozenset(frozen)
  return lambda path: '/'.join(path) not in frozen


def param_group_lines(params: Mapping[str, Any], groups: Sequence[ParamGroup]) -> list[str]:
  """One line per parameter group: its pattern, what it does and how many parameters it won."""
  sizes = {g: 0 for g in groups}
  flat = {'/'.join(_path_names(path)): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
  for path, group in assign_groups(params, groups).items():
    sizes[group] += int(np.prod(flat[path].shape))
  lines = ['Parameter groups (train.param_groups; the first match wins):']
  width = max(len(f'{g.pattern}={g.value}') for g in groups) + 2
  for group, size in sizes.items():
    what = 'frozen' if group.frozen else f'learning rate x{group.multiplier:g}'
    lines.append(f'  {f"{group.pattern}={group.value}".ljust(width)}{size:>12,}  {what}')
  return lines


def model_summary(model: nn.Module, input_shape: Sequence[int], train_config,
                  name: str | None = None) -> str:
  """`summary` with trainable counts and a group table from `train_config.param_groups`."""
  variables = abstract_variables(model, input_shape)
  groups = param_groups(train_config)
  frozen = frozen_paths(variables['params'], groups)
  text = summary(model, input_shape, variables=variables, trainable=trainable_predicate(frozen),
                 name=name)
  if groups:
    text += '\n' + '\n'.join(param_group_lines(variables['params'], groups))
  return text


def config_summary(config) -> str:
  """What `launch.py --mode summary` prints: the config's model at `model.input_shape`.

  The trainable / non-trainable totals follow `train.param_groups`; with `model.init_from` a last
  line says where the pretrained parameters come from (nothing is loaded for a summary).
  """
  text = model_summary(create_model(config.model), config.model.input_shape, config.train,
                       name=config.model.name)
  init_from = config.model.get('init_from', '')
  if init_from:
    layers = ', '.join(config.model.get('init_layers', ()))
    text += (f'\nInitialized from (model.init_from): {init_from}\n  taken (model.init_layers): '
             f'{layers}; every other parameter is new (freshly initialized)')
  return text
