"""Parameter groups (`train.param_groups`): which parameters train, at which learning rate.

`train.param_groups` freezes parts of a model or gives them their own learning rate: an ordered tuple of 'PATTERN=VALUE' strings, where PATTERN is a regular expression over
'/'-joined parameter paths (it must match a whole path, 'block5_conv1/kernel', or a leading part of
one, 'block5_conv1') and VALUE is 'frozen' or a multiplier of the learning rate ('0.1'). The first
matching group wins; every parameter must fall in a group and every pattern must match a parameter
(a typo is an error, not a silently trainable layer). For example, the reference's fine-tuning of
VGG16's last block: ('block[1-4]_.*=frozen', 'block5_.*=1', '.*=1').

One concept used by several parts: the optimizer (`cnnjax.training.optimizers`) partitions its
update by the groups (frozen parameters keep no optimizer state and no weight decay), the train
step (`cnnjax.training.steps`) differentiates only the trainable parameters (`TrainState.frozen`),
so nothing is back-propagated below the lowest trainable layer, and runs the BatchNorm layers of
frozen parts in inference mode; the summary counts frozen parameters as non-trainable, and
`model.init_from` matches its `init_layers` patterns the same way (`path_matches`).
"""

import dataclasses
import re
from typing import Any, Mapping, Sequence

from flax import traverse_util

from cnnjax.errors import ConfigError

FROZEN = 'frozen'
_SHOWN = 40  # Paths listed in full in an error message before it abbreviates.


def param_paths(params: Mapping[str, Any]) -> list[str]:
  """The '/'-joined paths of a parameter tree's leaves ('block1_conv1/kernel', ...)."""
  return list(traverse_util.flatten_dict(dict(params), sep='/'))


def path_matches(pattern: re.Pattern, path: str) -> bool:
  """Whether `pattern` matches the whole path or one of its leading parts ('fc1' -> 'fc1/bias')."""
  parts = path.split('/')
  return any(pattern.fullmatch('/'.join(parts[:i])) for i in range(1, len(parts) + 1))


def _listing(paths: Sequence[str]) -> str:
  shown = ', '.join(paths[:_SHOWN])
  return shown + (f' and {len(paths) - _SHOWN} more' if len(paths) > _SHOWN else '')


@dataclasses.dataclass(frozen=True)
class ParamGroup:
  """One 'PATTERN=VALUE' entry of `train.param_groups`.

  Attributes:
    pattern: the regular expression, as written.
    multiplier: the learning-rate multiplier, or None for a frozen group.
  """

  pattern: str
  multiplier: float | None

  @property
  def frozen(self) -> bool:
    return self.multiplier is None

  @property
  def label(self) -> str:
    """The `optax.partition` label: 'frozen', or 'lr_x<multiplier>' (shared by equal ones)."""
    return FROZEN if self.frozen else f'lr_x{self.multiplier:g}'

  @property
  def value(self) -> str:
    return FROZEN if self.frozen else f'{self.multiplier:g}'


def parse_param_groups(specs: Sequence[str]) -> tuple[ParamGroup, ...]:
  """`train.param_groups` as ParamGroups; a malformed entry is a ConfigError naming it."""
  if isinstance(specs, str):
    raise ConfigError(f'train.param_groups={specs!r} must be a tuple of \'PATTERN=VALUE\' '
                      f'strings, e.g. ({specs!r},)')
  groups = []
  for spec in specs:
    pattern, sep, value = str(spec).rpartition('=')
    if not sep or not pattern:
      raise ConfigError(f'train.param_groups entry {spec!r} is not \'PATTERN=VALUE\'; write e.g. '
                        "'block[1-4]_.*=frozen' or 'block5_.*=0.1'")
    try:
      re.compile(pattern)
    except re.error as e:
      raise ConfigError(f'train.param_groups entry {spec!r}: {pattern!r} is not a regular '
                        f'expression ({e})') from e
    value = value.strip()
    if value == FROZEN:
      groups.append(ParamGroup(pattern, None))
      continue
    try:
      multiplier = float(value)
    except ValueError:
      multiplier = -1.0
    if not multiplier > 0:
      raise ConfigError(f'train.param_groups entry {spec!r}: the value must be {FROZEN!r} or a '
                        f'positive learning-rate multiplier such as 1 or 0.1, not {value!r}')
    groups.append(ParamGroup(pattern, multiplier))
  return tuple(groups)


def param_groups(train_config) -> tuple[ParamGroup, ...]:
  """The config's parameter groups; empty when everything trains at the learning rate."""
  return parse_param_groups(train_config.get('param_groups', ()) or ())


def assign_groups(params: Mapping[str, Any],
                  groups: Sequence[ParamGroup]) -> dict[str, ParamGroup]:
  """Each parameter path's group (the first whose pattern matches it).

  Args:
    params: a parameter tree (arrays or shape structs).
    groups: from `parse_param_groups`; must not be empty.

  Raises:
    ConfigError: listing the parameters no pattern matches, or the patterns matching nothing.
  """
  paths = param_paths(params)
  compiled = [(group, re.compile(group.pattern)) for group in groups]
  assigned, unmatched = {}, []
  for path in paths:
    group = next((g for g, pattern in compiled if path_matches(pattern, path)), None)
    if group is None:
      unmatched.append(path)
    else:
      assigned[path] = group
  unused = [g for g, pattern in compiled if not any(path_matches(pattern, p) for p in paths)]
  layers = list(dict.fromkeys(path.split('/')[0] for path in paths))
  problems = []
  if unmatched:
    problems.append(f'{len(unmatched)} parameter(s) match no group: {_listing(unmatched)}; end '
                    "the groups with a catch-all such as '.*=1' or '.*=frozen'")
  if unused:
    problems.append('pattern(s) matching no parameter (a typo?): '
                    + ', '.join(repr(f'{g.pattern}={g.value}') for g in unused))
  if problems:
    raise ConfigError('train.param_groups does not fit the model: ' + '; '.join(problems)
                      + f'. The model\'s layers are: {_listing(layers)}')
  return assigned


def partition_labels(params: Mapping[str, Any], groups: Sequence[ParamGroup]) -> Any:
  """A tree like `params` holding each leaf's `optax.partition` label."""
  assigned = assign_groups(params, groups)
  return traverse_util.unflatten_dict({p: g.label for p, g in assigned.items()}, sep='/')


def frozen_paths(params: Mapping[str, Any], groups: Sequence[ParamGroup]) -> tuple[str, ...]:
  """The '/'-joined paths of the frozen parameters (for `TrainState.frozen`)."""
  if not groups:
    return ()
  return tuple(p for p, g in assign_groups(params, groups).items() if g.frozen)
