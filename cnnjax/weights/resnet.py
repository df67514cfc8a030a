"""torchvision ResNet state dicts as `cnnjax.models.resnet` variables.

cnnjax's ResNet carries torchvision's module names, so a state-dict key split on '.' is the
variable's path; only the last part changes, with the array's layout:

  conv `weight` (OIHW)       -> params .../kernel (HWIO: transpose (2, 3, 1, 0))
  fc `weight` (out, in)      -> params fc/kernel (in, out: transposed)
  BatchNorm `weight`, `bias` -> params .../scale, .../bias; `bias` of fc -> params fc/bias
  `running_mean`, `running_var` -> batch_stats .../mean, .../var
  `num_batches_tracked`      -> ignored (Flax's BatchNorm has no counter; torch uses it only for
                                momentum=None)

Any other key stays under its own path in 'params', so `merge_variables` lists it as not in the
model instead of dropping it. The file's architecture is read from its keys (`identify`): a
bottleneck file has `layer1.0.conv3.weight`, the depth comes from the blocks of each stage, the
width and groups from `layer1.0.conv2.weight` (wide ResNets and ResNeXts share resnet50's keys).
A file of another depth than the model's is refused with both names.

cnnjax never downloads; torchvision's ImageNet files (`preprocess_input(x, mode='torch')`) are
listed in WHERE_TO_GET.
"""

import numpy as np

from cnnjax.errors import DataError
from cnnjax.weights import files, registry

URLS = {
    'resnet18': 'https://download.pytorch.org/models/resnet18-f37072fd.pth',
    'resnet34': 'https://download.pytorch.org/models/resnet34-b627a593.pth',
    'resnet50': 'https://download.pytorch.org/models/resnet50-0676ba61.pth',
    'resnet50 (IMAGENET1K_V2)': 'https://download.pytorch.org/models/resnet50-11ad3fa6.pth',
}
WHERE_TO_GET = ('Download torchvision\'s ImageNet weights, '
                + ', '.join(f'{name}: {url}' for name, url in URLS.items())
                + ', and pass the downloaded file\'s path (inputs: preprocess_input mode '
                "'torch').")
MODELS = ('resnet18', 'resnet34', 'resnet50')

_BN_STATISTICS = {'running_mean': 'mean', 'running_var': 'var'}
_IGNORED = ('num_batches_tracked',)


def _insert(tree: dict, path: list[str], value) -> None:
  for part in path[:-1]:
    tree = tree.setdefault(part, {})
  tree[path[-1]] = value


def variables_from_state_dict(state_dict: dict[str, np.ndarray]) -> dict[str, dict]:
  """A torchvision ResNet state dict -> {'params': ..., 'batch_stats': ...} (nested dicts)."""
  variables: dict[str, dict] = {'params': {}, 'batch_stats': {}}
  for key, value in state_dict.items():
    *module, kind = key.split('.')
    if kind in _IGNORED:
      continue
    if kind in _BN_STATISTICS:
      _insert(variables['batch_stats'], module + [_BN_STATISTICS[kind]], value)
      continue
    if kind == 'weight' and np.ndim(value) == 4:
      value, kind = np.transpose(value, (2, 3, 1, 0)), 'kernel'  # OIHW -> HWIO.
    elif kind == 'weight' and np.ndim(value) == 2:
      value, kind = np.transpose(value), 'kernel'  # (out, in) -> (in, out).
    elif kind == 'weight' and np.ndim(value) == 1:
      kind = 'scale'  # BatchNorm's gamma.
    _insert(variables['params'], module + [kind], value)
  if not variables['batch_stats']:
    del variables['batch_stats']
  return variables


def _blocks(names: set[str], stage: int) -> int:
  """How many blocks `layer{stage}` has (its blocks' conv1 kernels)."""
  count = 0
  while f'layer{stage}.{count}.conv1.weight' in names:
    count += 1
  return count


def identify(weight_file: files.WeightFile) -> str | None:
  """'resnet18', 'resnet34', 'resnet50' (or 'resnet101', 'wide_resnet50_2', 'resnext50_32x4d',
  ...) for a torchvision ResNet state dict, from its keys and two shapes; None for anything else
  (Keras files included)."""
  if weight_file.format != files.TORCH:
    return None
  names = set(weight_file.names)
  if not {'conv1.weight', 'bn1.weight', 'layer1.0.conv1.weight'} <= names:
    return None
  stages = [_blocks(names, stage) for stage in (1, 2, 3, 4)]
  bottleneck = 'layer1.0.conv3.weight' in names
  depth = (3 if bottleneck else 2) * sum(stages) + 2
  conv2 = np.shape(weight_file.arrays.get('layer1.0.conv2.weight', ()))
  if len(conv2) == 4 and conv2[1] and conv2[0] != conv2[1]:
    groups = conv2[0] // conv2[1]
    return f'resnext{depth}_{groups}x{conv2[1]}d'
  if len(conv2) == 4 and conv2[0] != 64:
    return f'wide_resnet{depth}_{conv2[0] // 64}'
  return f'resnet{depth}'


def to_variables(weight_file: files.WeightFile, model_name: str) -> dict[str, dict]:
  """The file's variables for `model_name`; a DataError if the file is another ResNet."""
  found = identify(weight_file)
  if model_name in MODELS and found and found != model_name:
    raise DataError(f'{weight_file.path!r} holds {found} weights (torchvision), not '
                    f'{model_name}: use model.name={found!r} if cnnjax has it, or the '
                    f'{model_name} file. {WHERE_TO_GET}')
  return variables_from_state_dict(weight_file.arrays)


registry.register_weights(registry.WeightTable(
    family='ResNet (torchvision)', models=MODELS, to_variables=to_variables, identify=identify,
    where_to_get=WHERE_TO_GET, preprocess={files.TORCH: 'torch'}))
