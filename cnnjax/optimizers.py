"""Optimizers and learning-rate schedules chosen by a config's `train` group.

- 'rmsprop' as Keras defines it (rho 0.9, epsilon 1e-7 added outside the square root), the
  reference material's optimizer;
- 'adam' with optional L2 weight decay added to the gradient, as PyTorch's Adam(weight_decay=...)
  in the PyTorch lecture;
- 'adamw', Adam with decoupled weight decay;
- 'sgd' with (optionally Nesterov) momentum.

Schedules: 'constant', 'cosine' (to 0 over the run), 'warmup_cosine' (linear warm-up for
`warmup_epochs`, then cosine) and 'exponential' (times `decay_rate` per epoch).

Parameter groups (`train.param_groups`) freeze parts of a model or give them their own learning
rate: an ordered tuple of 'PATTERN=VALUE' strings, where PATTERN is a regular expression over
'/'-joined parameter paths (it must match a whole path, 'block5_conv1/kernel', or a leading part of
one, 'block5_conv1') and VALUE is 'frozen' or a multiplier of the learning rate ('0.1'). The first
matching group wins; every parameter must fall in a group and every pattern must match a parameter
(a typo is an error, not a silently trainable layer). For example, the reference's fine-tuning of
VGG16's last block: ('block[1-4]_.*=frozen', 'block5_.*=1', '.*=1'). The optimizer is then an
`optax.partition`: frozen parameters go to `optax.set_to_zero()` and keep no optimizer state and no
weight decay; each multiplier gets its own copy of the optimizer with the schedule scaled.
Gradient clipping (`grad_clip_norm`) sees the trainable parameters only. The train step
(`cnnjax.steps`) differentiates the trainable parameters alone (`TrainState.frozen`), so nothing
is back-propagated below the lowest trainable layer.
"""

import dataclasses
import re
from typing import Any, Mapping, Sequence

import optax
from flax import traverse_util

from cnnjax.errors import ConfigError

SCHEDULES = ('constant', 'cosine', 'warmup_cosine', 'exponential')
OPTIMIZERS = ('rmsprop', 'adam', 'adamw', 'sgd')
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


def learning_rate_schedule(train_config, steps_per_epoch: int) -> optax.Schedule:
  """The learning rate as a function of the step."""
  lr = train_config.learning_rate
  name = train_config.schedule
  total_steps = max(train_config.epochs * steps_per_epoch, 1)
  if name == 'constant':
    return optax.constant_schedule(lr)
  if name == 'cosine':
    return optax.cosine_decay_schedule(lr, total_steps)
  if name == 'warmup_cosine':
    warmup = int(train_config.warmup_epochs * steps_per_epoch)
    if warmup >= total_steps:
      raise ConfigError(f'train.warmup_epochs={train_config.warmup_epochs} is not shorter than '
                        f'train.epochs={train_config.epochs}; shorten the warm-up')
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total_steps)
  if name == 'exponential':
    return optax.exponential_decay(lr, steps_per_epoch, train_config.decay_rate)
  raise ConfigError(f'train.schedule={name!r} is not a known schedule; choose one of {SCHEDULES}')


def _group_optimizer(train_config, schedule: optax.Schedule) -> optax.GradientTransformation:
  """The optimizer of one group of parameters, with its weight decay."""
  name = train_config.optimizer
  weight_decay = train_config.weight_decay
  if name == 'rmsprop':
    tx = optax.rmsprop(schedule, decay=0.9, eps=1e-7, eps_in_sqrt=False)
  elif name == 'adam':
    tx = optax.adam(schedule)
  elif name == 'adamw':
    tx = optax.adamw(schedule, weight_decay=weight_decay)
  elif name == 'sgd':
    tx = optax.sgd(schedule, momentum=train_config.momentum or None,
                   nesterov=train_config.nesterov)
  else:
    raise ConfigError(f'train.optimizer={name!r} is not a known optimizer; choose one of '
                      f'{OPTIMIZERS}')
  if weight_decay and name != 'adamw':
    # L2 regularisation in the gradient, as PyTorch's weight_decay and Keras' kernel_regularizer.
    tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
  return tx


def _scaled(schedule: optax.Schedule, multiplier: float) -> optax.Schedule:
  if multiplier == 1:
    return schedule
  return lambda step: multiplier * schedule(step)


def create_optimizer(train_config, steps_per_epoch: int) -> optax.GradientTransformation:
  """The optax transformation the config asks for, with its schedule and weight decay.

  With `train.param_groups`, an `optax.partition` over the groups' labels (see the module
  docstring): the labels come from the parameters' paths when the optimizer is initialized, so
  the same call serves any model the groups fit.
  """
  if train_config.learning_rate <= 0:
    raise ConfigError(f'train.learning_rate must be positive, not {train_config.learning_rate}')
  schedule = learning_rate_schedule(train_config, steps_per_epoch)
  groups = param_groups(train_config)
  if not groups:
    tx = _group_optimizer(train_config, schedule)
  else:
    transforms = {}
    for group in groups:
      if group.label not in transforms:
        transforms[group.label] = (optax.set_to_zero() if group.frozen else _group_optimizer(
            train_config, _scaled(schedule, group.multiplier)))
    tx = optax.partition(transforms, lambda params: partition_labels(params, groups))
  if train_config.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(train_config.grad_clip_norm), tx)
  return tx
