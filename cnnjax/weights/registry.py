"""One registry from a model name to the name table that puts weight files into its variables.

Weight loading has three layers, each knowing one thing:

- readers (`files.read_weights`) know file formats: a Keras legacy HDF5 file, a Keras 3
  `.weights.h5` and a torch state dict each come back as the file's own names and arrays (a
  `WeightFile`), with no idea of any model;
- a family's name table (`vgg16`, `resnet`, `resnet_keras`, ...) knows how one architecture's
  names in each format map onto its cnnjax variables, `{'params': ..., 'batch_stats': ...}`;
- this registry maps each registered model name (`model.name`) to its family's table, so that
  `load_weights(path, 'resnet50')` works for any model, and a new family is one
  `register_weights` call, not a new branch in the callers.

Each table also says whether a file looks like its architecture (`identify`), so a file of the
wrong architecture is an error that names the architecture it does look like.
"""

import dataclasses
import os
from typing import Any, Callable, Mapping, Sequence

from cnnjax.errors import DataError
from cnnjax.weights import files

Variables = dict[str, Any]  # {'params': nested dicts of arrays, 'batch_stats': ...}


@dataclasses.dataclass(frozen=True)
class WeightTable:
  """How one architecture family's weight files map onto its models' variables.

  Attributes:
    family: a short name for messages ('VGG16', 'ResNet (torchvision)').
    models: the registered model names (`model.name`) whose variables these files provide.
    to_variables: `(weight_file, model_name) -> variables`: the file's arrays under the model's
      variable paths (nested dicts of NumPy arrays, 'params' and, with BatchNorm,
      'batch_stats'). Names it does not know stay under the file's name, so that a merge lists
      them as not in the model instead of dropping them.
    identify: `weight_file -> architecture name or None`: whether the file looks like one of
      this family's architectures (e.g. 'resnet50'), from its names alone.
    where_to_get: where a user gets the real files (cnnjax never downloads).
    preprocess: `preprocess_input` mode the weights expect, by file format
      (`files.FORMATS`).
  """

  family: str
  models: tuple[str, ...]
  to_variables: Callable[['files.WeightFile', str], Variables]
  identify: Callable[['files.WeightFile'], str | None]
  where_to_get: str
  preprocess: Mapping[str, str]


_TABLES: dict[str, WeightTable] = {}


def register_weights(table: WeightTable) -> None:
  """Makes `table` the loader of every model it names (replacing an earlier registration)."""
  for name in table.models:
    _TABLES[name] = table


def weight_table(model_name: str) -> WeightTable:
  """The table registered for `model_name`; a DataError naming the models that have one."""
  _register_builtin_tables()
  if model_name not in _TABLES:
    raise DataError(f'no pretrained-weight loader for model.name={model_name!r}; weight files '
                    f'load into {sorted(_TABLES)} (or register a WeightTable with '
                    'cnnjax.weights.register_weights)')
  return _TABLES[model_name]


def tables() -> tuple[WeightTable, ...]:
  """Every registered table, once each."""
  _register_builtin_tables()
  return tuple({id(t): t for t in _TABLES.values()}.values())


def identify_architecture(weight_file: 'files.WeightFile') -> str | None:
  """The architecture a weight file looks like ('vgg16', 'resnet50', ...), or None."""
  for table in tables():
    found = table.identify(weight_file)
    if found:
      return found
  return None


def load_weights(path: str | os.PathLike, model_name: str) -> Variables:
  """The variables a weight file holds for `model_name`, in whichever format the file is.

  Args:
    path: a Keras legacy HDF5, Keras 3 `.weights.h5` or torch state-dict file.
    model_name: a registered model name (`model.name`), e.g. 'vgg16', 'resnet50'.

  Returns:
    {'params': ..., 'batch_stats': ...} (no 'batch_stats' for models without BatchNorm) as
    nested dicts of NumPy arrays, for `merge_variables`. Nothing is checked against a model here.

  Raises:
    DataError: the file is missing or unreadable, or it does not look like this model's family
      (the message names the architecture it looks like, when it looks like a known one).
  """
  table = weight_table(model_name)
  path = files.require_file(path, table.where_to_get)
  weight_file = files.read_weights(path)
  if table.identify(weight_file) is None:
    other = identify_architecture(weight_file)
    looks = (f'it looks like {other} weights' if other else
             'it does not look like any architecture cnnjax knows')
    raise DataError(f'{path!r} does not hold {table.family} weights for model.name='
                    f'{model_name!r}: {looks}. Use a model that fits the file, or the right file: '
                    f'{table.where_to_get}')
  return table.to_variables(weight_file, model_name)


def preprocess_mode(path: str | os.PathLike, model_name: str) -> str:
  """The `preprocess_input` mode the weights in `path` expect."""
  table = weight_table(model_name)
  kind = files.detect_format(path)
  if kind not in table.preprocess:
    raise DataError(f'{path!r} is a {kind} file, a format {table.family} weights do not come in '
                    f'({", ".join(sorted(table.preprocess))}); use the right file: '
                    f'{table.where_to_get}')
  return table.preprocess[kind]


_BUILTIN_MODULES: Sequence[str] = ('cnnjax.weights.vgg16', 'cnnjax.weights.resnet_keras',
                                    'cnnjax.weights.resnet', 'cnnjax.weights.inception_v3')


def _register_builtin_tables() -> None:
  """Imports the built-in families' modules, each of which registers its table."""
  import importlib  # pylint: disable=import-outside-toplevel
  for module in _BUILTIN_MODULES:
    importlib.import_module(module)
