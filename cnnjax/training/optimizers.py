"""Optimizers and learning-rate schedules chosen by a config's `train` group.

- 'rmsprop' as Keras defines it (rho 0.9, epsilon 1e-7 added outside the square root), the
  reference material's optimizer;
- 'adam' with optional L2 weight decay added to the gradient, as PyTorch's Adam(weight_decay=...)
  in the PyTorch lecture;
- 'adamw', Adam with decoupled weight decay;
- 'sgd' with (optionally Nesterov) momentum.

Schedules: 'constant', 'cosine' (to 0 over the run), 'warmup_cosine' (linear warm-up from 0 for
`warmup_epochs`, then cosine to 0), 'warmup_linear' (linear warm-up from 0, then linear decay to 0:
the triangle of airbench's CIFAR-10 speed runs), 'one_cycle' (Smith & Topin 2017, "Super-
Convergence"; PyTorch's `OneCycleLR` with its defaults, step for step: cosine from
learning_rate / 25 up to learning_rate over the first `warmup_epochs` (0: the first 30% of the
run), then cosine down to learning_rate / 25 / 1e4; momentum is not cycled) and
'exponential' (times `decay_rate` per epoch).

Parameter groups (`train.param_groups`, `cnnjax.training.param_groups`) freeze parts of a model
or give them their own learning rate: the optimizer is then an `optax.partition` whose frozen
group is `optax.set_to_zero()` (no optimizer state, no weight decay) and where each multiplier
gets its own copy of the optimizer with the schedule scaled. Gradient clipping
(`grad_clip_norm`) sees the trainable parameters only.
"""

import jax.numpy as jnp
import optax

from cnnjax.errors import ConfigError
from cnnjax.training.param_groups import param_groups, partition_labels

SCHEDULES = ('constant', 'cosine', 'warmup_cosine', 'warmup_linear', 'one_cycle', 'exponential')
OPTIMIZERS = ('rmsprop', 'adam', 'adamw', 'sgd')


def learning_rate_schedule(train_config, steps_per_epoch: int) -> optax.Schedule:
  """The learning rate as a function of the step."""
  lr = train_config.learning_rate
  name = train_config.schedule
  total_steps = max(train_config.epochs * steps_per_epoch, 1)
  if name == 'constant':
    return optax.constant_schedule(lr)
  if name == 'cosine':
    return optax.cosine_decay_schedule(lr, total_steps)
  warmup = int(train_config.warmup_epochs * steps_per_epoch)
  if name in ('warmup_cosine', 'warmup_linear', 'one_cycle') and warmup >= total_steps:
    raise ConfigError(f'train.warmup_epochs={train_config.warmup_epochs} is not shorter than '
                      f'train.epochs={train_config.epochs}; shorten the warm-up')
  if name == 'warmup_cosine':
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total_steps)
  if name == 'warmup_linear':
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup),
                                 optax.linear_schedule(lr, 0.0, total_steps - warmup)], [warmup])
  if name == 'one_cycle':
    return one_cycle_schedule(total_steps, lr, warmup / total_steps if warmup else 0.3)
  if name == 'exponential':
    return optax.exponential_decay(lr, steps_per_epoch, train_config.decay_rate)
  raise ConfigError(f'train.schedule={name!r} is not a known schedule; choose one of {SCHEDULES}')


def one_cycle_schedule(total_steps: int, peak_value: float, pct_start: float = 0.3,
                       div_factor: float = 25.0, final_div_factor: float = 1e4) -> optax.Schedule:
  """PyTorch's `OneCycleLR(max_lr=peak_value, total_steps=total_steps)` with cosine annealing.

  Step s of the run (0 for the first update) gets PyTorch's learning rate of its step s: cosine
  from peak / div_factor up to peak until step pct_start * total_steps - 1, then cosine down to
  peak / div_factor / final_div_factor at step total_steps - 1 (PyTorch's phase ends; optax's
  `cosine_onecycle_schedule` puts them one step later and ends one step after the run).
  """
  initial = peak_value / div_factor
  final = initial / final_div_factor
  peak_step = float(pct_start * total_steps) - 1
  last_step = float(total_steps - 1)

  def anneal(start, end, fraction):
    return end + (start - end) / 2 * (jnp.cos(jnp.pi * fraction) + 1)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    # PyTorch divides by peak_step; below 1 only step 0 rises, from its start either way, and
    # at 0 PyTorch raises ZeroDivisionError where a plain division would give NaN here.
    rising = anneal(initial, peak_value, step / max(peak_step, 1.0))
    falling = anneal(peak_value, final,
                     jnp.clip((step - peak_step) / (last_step - peak_step), 0.0, 1.0))
    return jnp.where(step <= peak_step, rising, falling)

  return schedule


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
