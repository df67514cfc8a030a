"""Training and evaluation of a config in a workdir: the main job's loop.

`train_and_evaluate(config, workdir)` trains for `train.epochs`, validating after every epoch; after
each epoch it checkpoints, writes `history.json` and the learning curves. Within epochs it
checkpoints every `train.checkpoint_every_steps` steps and every `train.checkpoint_every_minutes`
minutes (`checkpointing.SaveSchedule`), and on SIGTERM / SIGINT. Run again on the same workdir, it
resumes from the latest checkpoint (weights, optimizer state, random key, history, and within an
epoch its position and metric sums) and ends bit-identical to an uninterrupted run on the CPU: an
epoch's shuffle depends only on (seed, epoch), so the resumed epoch continues with the next
batch, and a step's dropout key only on (seed, step). Finally it restores the checkpoint with
the best val_loss, evaluates it on the test split and writes `test_metrics.json`.

Transfer learning (`cnnjax.transfer`) goes through the same loop: `data.classes` / `data.per_class`
select a small-data task as the data load (`cnnjax.data.subsets`), `model.init_from` merges pretrained parameters into
the fresh ones (a fresh run only: a resumed run restores its own), `train.param_groups` freezes
parameters or scales their learning rate, and `train.cache_features` trains the head on the
frozen base's cached features instead of on images.

Faults (tests/test_faults.py): a run holds `workdir/.lock` (`workdir_lock`: a second run on the
workdir is refused, naming the holder); resuming with a config that changes the model or the
optimizer (`_STATE_FIELDS`) is an error naming the changed fields; a damaged latest checkpoint is
moved aside and the run falls back to the one before (`checkpointing`); a read-only or full disk
is one `CnnjaxError` naming the path, the files written before it intact; SIGTERM / SIGINT stop
the run at a checkpoint of the step in flight with exit code 143 / 130 (`interrupts`).
"""

import functools
import json
import math
import os
import re
import signal
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from cnnjax import augment as augment_lib
from cnnjax import data as data_lib
from cnnjax.training import history as history_lib
from cnnjax.training import test_time
from cnnjax.training.checkpointing import Checkpoints, Position, SaveSchedule, disk_error_reason
from cnnjax.training.event_log import EventLog, event_directory
from cnnjax.training.interrupts import AGREE_EVERY_STEPS, Interrupted, StopRequests, agreed
from cnnjax.training.workdir_lock import WorkdirLock
from cnnjax.errors import CnnjaxError, ConfigError
from cnnjax.training.learning_curves import plot_learning_curves
from cnnjax.training.losses import get_objective
from cnnjax.models import create_model
from cnnjax.training.optimizers import create_optimizer, learning_rate_schedule
from cnnjax.training.param_groups import frozen_paths, param_groups
from cnnjax.training.parallel import Parallel, create_parallel
from cnnjax.progress import Progress
from cnnjax.training.progress import EpochProgress
from cnnjax.training.steps import add_metrics, summarize
from cnnjax.summary import abstract_variables, model_summary
from cnnjax.training.train_state import TrainState, create_train_state, init_variables
from cnnjax.transfer.features import check_feature_model, feature_datasets
from cnnjax.transfer.pretrained import init_from_pretrained

EpochCallback = Callable[[int, history_lib.History], None]


def evaluate(parallel: Parallel, state: TrainState,
             dataset: data_lib.ArrayDataset | data_lib.StreamingDataset,
             batch_size: int) -> dict[str, float]:
  """Mean loss and accuracy over a whole dataset (padded last batch masked out)."""
  sums = None
  with Progress('evaluating', len(dataset), 'image',
                enabled=jax.process_index() == 0) as progress:
    for index, batch in enumerate(data_lib.prefetch(data_lib.batches(dataset, batch_size,
                                                                      host=parallel.host()))):
      # The global batch's examples (this process may hold only its rows of it).
      progress.update(min(batch_size, len(dataset) - index * batch_size))
      batch = parallel.place_batch(batch)
      sums = add_metrics(sums, parallel.eval_step(state, batch))
  return summarize(sums)


def _augmenter(config: ml_collections.ConfigDict) -> augment_lib.Augmenter | None:
  """The config's augmentation (None when `augment.kind` is 'none' and nothing preprocesses)."""
  if 'augment' not in config:
    return None
  augmenter = augment_lib.make_augmenter(config.augment)
  return None if augmenter.is_identity else augmenter


def _check_augmented_shape(augmenter: augment_lib.Augmenter, kind: str, image_shape: tuple,
                           batch_size: int) -> None:
  """Traces the augmentation once, so a bad setting fails now, not inside the first step."""
  images = jax.ShapeDtypeStruct((batch_size, *image_shape), jax.numpy.float32)
  keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), batch_size))
  for name, out in (('training', jax.eval_shape(augmenter.train_images, keys, images)),
                    ('evaluation', jax.eval_shape(augmenter.eval_images, images))):
    if out.shape != images.shape:
      raise ConfigError(
          f'augment.kind={kind!r} turns {name} batches of shape '
          f'{images.shape} into {out.shape}; the model needs one image shape for training and '
          'evaluation, so set the output size to the data\'s image size (data.image_size)')


# Fields a resumed run must not change: they change the model or the optimizer, so the
# checkpoints' state does not fit the new one (or fits it but means something else). Every
# `model.*` field is one, but those read only by a fresh run.
_STATE_FIELDS = ('train.optimizer', 'train.momentum', 'train.nesterov', 'train.weight_decay',
                 'train.grad_clip_norm', 'train.param_groups', 'train.cache_features',
                 'train.ema_decay')
# Read only by a fresh run (init_from), or not by training at all (input_shape: the summary's).
_FRESH_RUN_ONLY_FIELDS = ('model.init_from', 'model.init_layers', 'model.input_shape')


def _has_checkpoints(workdir: str) -> bool:
  directory = os.path.join(workdir, 'checkpoints')
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def _check_state_fields(resolved: dict, previous: dict, workdir: str) -> None:
  """Refuses to resume with a config that changes the model or the optimizer (`_STATE_FIELDS`)."""
  changes = []
  for group, fields in resolved.items():
    if not isinstance(fields, dict):
      continue
    for key, value in fields.items():
      name = f'{group}.{key}'
      if ((group == 'model' and name not in _FRESH_RUN_ONLY_FIELDS) or name in _STATE_FIELDS) \
          and previous.get(group, {}).get(key) != value:
        changes.append(f'{name} from {previous.get(group, {}).get(key)!r} to {value!r}')
  if changes:
    raise ConfigError(
        f'{workdir} holds the checkpoints of a run with another model or optimizer; this config '
        f'changes {"; ".join(changes)}. Resuming would restore a state that does not fit: use a '
        'new --workdir for the new config, or the config that wrote the checkpoints')


def _save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the resolved config; says which fields differ from the one a resumed run used."""
  path = os.path.join(workdir, 'config.json')
  resolved = json.loads(config.to_json_best_effort())
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    if _has_checkpoints(workdir):
      _check_state_fields(resolved, previous, workdir)
    changed = [f'{group}.{key}' for group, fields in resolved.items() if isinstance(fields, dict)
               for key, value in fields.items()
               if previous.get(group, {}).get(key) != value]
    changed += [key for key, value in resolved.items()
                if not isinstance(value, dict) and previous.get(key) != value]
    if changed:
      print(f'note: resuming in {workdir} with changed config fields: {", ".join(changed)}')
  history_lib.write_json(path, resolved)


def _profile_steps(train_config: ml_collections.ConfigDict, total_steps: int) -> tuple[int, int]:
  """`train.profile_steps` checked: (first, last) global steps to trace, or (0, 0) for none."""
  steps = tuple(train_config.get('profile_steps') or ())
  if not steps:
    return 0, 0
  if (len(steps) != 2 or not all(isinstance(s, int) for s in steps)
      or not 1 <= steps[0] <= steps[1] <= total_steps):
    raise ConfigError(f'train.profile_steps={steps} must be two steps (first, last) with 1 <= '
                      f'first <= last <= {total_steps} (the run\'s last step), e.g. (20, 25): '
                      'a few steps after the first, which compiles; () traces nothing')
  return steps


def _epoch_line(epoch: int, epochs: int, record: dict[str, float]) -> str:
  return (f"epoch {epoch}/{epochs} - {record['epoch_seconds']:.1f}s - "
          f"{record['images_per_second']:,.0f} images/s - loss: {record['loss']:.4f} - "
          f"accuracy: {record['accuracy']:.4f} - val_loss: {record['val_loss']:.4f} - "
          f"val_accuracy: {record['val_accuracy']:.4f}")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       on_epoch_end: EpochCallback | None = None) -> dict[str, float]:
  """Trains `config` in `workdir` (resuming if it holds checkpoints) and tests the best epoch.

  Args:
    config: the experiment's config (see `cnnjax.config.base_config`).
    workdir: where checkpoints, history, figures and the resolved config go.
    on_epoch_end: called as `on_epoch_end(epoch, history)` after each epoch is saved.

  Returns:
    The test metrics: test_loss, test_accuracy and best_epoch (with `train.evaluate_test` False:
    best_epoch and its val_loss and val_accuracy; the test split is not evaluated).

  Raises:
    Interrupted: on SIGTERM / SIGINT, once the last checkpoint is on disk
      (`cnnjax.training.interrupts`: launch.py exits with code 143 / 130).
    CnnjaxError: besides bad input, when another live run holds the workdir
      (`cnnjax.training.workdir_lock`) and when the workdir is read-only or its disk is full
      (the message names the path; what was written before stays intact).
  """
  if config.train.epochs < 1:
    raise ConfigError(f'train.epochs must be at least 1, not {config.train.epochs}')
  try:
    os.makedirs(workdir, exist_ok=True)
    with WorkdirLock(workdir, enabled=jax.process_index() == 0), StopRequests() as stop:
      return _train_and_evaluate(config, workdir, on_epoch_end, stop)
  except Exception as e:  # pylint: disable=broad-except
    disk_error = _disk_error(e, workdir)
    if disk_error is None:
      raise
    raise disk_error from e


def _disk_error(error: BaseException, workdir: str) -> CnnjaxError | None:
  """A clear CnnjaxError for a read-only or full workdir anywhere in `error`'s chain, else None."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, CnnjaxError):
      return None
    reason = disk_error_reason(error)
    if reason is not None:
      # The file that failed: an OSError's filename, else the first path in the workdir that a
      # wrapped error's text quotes (TensorStore's do), else the workdir.
      workdir = os.path.abspath(workdir)
      quoted = re.findall(r'"(' + re.escape(workdir) + r'[^"]*)"', str(error))
      path = getattr(error, 'filename', None) or (quoted[-1] if quoted else workdir)
      return CnnjaxError(
          f'cannot write {path}: {reason}. The checkpoints and history written before it are '
          'intact; make room (or make the workdir writable) and run the same command again to '
          'resume, or use another --workdir')
    error = error.__cause__ or error.__context__
  return None


def _where(position: Position, epochs: int) -> str:
  """'the checkpoint of step 700 (the end of epoch 2/5)' or '... (step 30 of 100 of epoch 3/5)'."""
  within = ('the end of' if position.epoch_ended else
            f'step {position.steps_done} of {position.steps_per_epoch} of')
  return f'the checkpoint of step {position.step} ({within} epoch {position.epoch}/{epochs})'


def _check_epoch_length(position: Position, steps_per_epoch: int, directory: str) -> None:
  """Refuses to resume a run whose epochs have another number of steps than its checkpoints'."""
  if position.steps_per_epoch != steps_per_epoch:
    raise ConfigError(
        f'the checkpoints in {directory} were written with {position.steps_per_epoch} steps per '
        f'epoch and this config makes {steps_per_epoch}: train.batch_size or the training data '
        '(data.limit_train, data.validation_split, ...) changed, so the run cannot continue where '
        'it was; use the config that wrote them, or a new --workdir')


def _interrupted(checkpoints: Checkpoints, signum: int, epochs: int) -> Interrupted:
  """The stop on signal `signum` (`cnnjax.training.interrupts`), once the last checkpoint is on
  disk."""
  checkpoints.wait()
  saved = checkpoints.latest_step()
  where = ('no checkpoint had been written yet, so the same command starts the run again'
           if saved is None else
           f'{_where(checkpoints.position(saved), epochs)} is in '
           f'{os.path.join(checkpoints.directory, str(saved))}; the same command resumes from it')
  return Interrupted(signum, f'stopped by {signal.Signals(signum).name}: {where}')


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                        on_epoch_end: EpochCallback | None, stop: StopRequests) -> dict[str, float]:
  """`train_and_evaluate` inside the workdir's lock, stopping at a step's end on a signal."""
  train_config = config.train
  writer = jax.process_index() == 0  # Only one process writes files other than checkpoints.
  log = print if writer else lambda *args, **kwargs: None
  augmenter = _augmenter(config)
  if train_config.get('cache_features') and augmenter is not None:
    raise ConfigError(
        'train.cache_features=True runs the conv base once per image, so the images cannot be '
        f'augmented (augment.kind={config.augment.kind!r}); set augment.kind=\'none\', or train '
        'the frozen base with the head end to end (train.cache_features=False)')
  tta = test_time.from_config(train_config)
  if train_config.get('cache_features') and tta is not None:
    raise ConfigError(
        'train.cache_features=True evaluates the head on cached features, which have no views to '
        f'average (train.tta_flip={train_config.tta_flip}, train.tta_shift='
        f'{train_config.tta_shift}); turn test-time augmentation off, or train end to end')
  parallel = create_parallel(train_config.parallel,
                             get_objective(train_config.loss,
                                           float(train_config.get('label_smoothing', 0.0))),
                             augmenter, tta)
  parallel.check_batch_size(train_config.batch_size, 'train.batch_size')
  parallel.check_batch_size(train_config.eval_batch_size, 'train.eval_batch_size')
  if writer:
    _save_config(config, workdir)

  datasets = data_lib.load_datasets(config.data)
  if augmenter is not None:
    _check_augmented_shape(augmenter, config.augment.kind, datasets.image_shape,
                           train_config.batch_size)
    if writer and augmenter.image_augmenter is not None:
      # What the model will see: nine draws of the augmentation on the first training image.
      augment_lib.preview_grid(jax.random.key(config.seed), datasets.train.take(slice(0, 1))[0],
                               augmenter, os.path.join(workdir, 'augmentation_preview.png'),
                               title=f'augment.kind={config.augment.kind!r}')
  batch_size = train_config.batch_size
  steps_per_epoch = data_lib.num_batches(len(datasets.train), batch_size, drop_remainder=True)
  model = parallel.adapt_model(create_model(config.model))
  image_shape = datasets.image_shape
  # train.param_groups: which parameters are frozen (checked against the model here, so a
  # pattern that fits nothing fails before anything is computed).
  frozen = frozen_paths(abstract_variables(model, image_shape)['params'],
                        param_groups(train_config))
  tx = create_optimizer(train_config, steps_per_epoch)
  schedule = learning_rate_schedule(train_config, steps_per_epoch)
  log(model_summary(model, image_shape, train_config, name=config.model.name))

  checkpoints = Checkpoints(os.path.join(workdir, 'checkpoints'))
  save_schedule = SaveSchedule(int(train_config.get('checkpoint_every_steps') or 0),
                               float(train_config.get('checkpoint_every_minutes') or 0))
  history: history_lib.History = []
  log_every = int(train_config.get('log_every_steps') or 0)
  profile_first, profile_last = _profile_steps(train_config, train_config.epochs * steps_per_epoch)
  events = EventLog(workdir, enabled=False)
  try:
    resuming = checkpoints.latest_step() is not None
    variables = init_variables(model, image_shape, config.seed)
    if config.model.get('init_from') and not resuming:  # A resumed run has its own weights.
      variables = init_from_pretrained(variables, config.model.init_from,
                                       config.model.init_layers, config.model.name, log=log)
    apply_fn = None
    if train_config.get('cache_features'):
      base_paths = check_feature_model(model, image_shape, frozen)
      apply_fn = functools.partial(model.apply, from_features=True)
    state = parallel.place_state(create_train_state(
        model, tx, image_shape, config.seed, variables=variables, frozen=frozen,
        apply_fn=apply_fn, ema_decay=float(train_config.get('ema_decay', 0.0))))
    position = None  # Where the resumed run continues (checkpointing.Position).
    if resuming:  # The newest readable checkpoint: damaged ones are moved aside.
      restored, history, position = checkpoints.restore_latest(parallel.to_checkpoint(state))
      _check_epoch_length(position, steps_per_epoch, checkpoints.directory)
      state = parallel.place_state(restored)
      log(f'resuming from {_where(position, train_config.epochs)} in {checkpoints.directory}')
    events = EventLog(workdir, enabled=writer, first_step=position.step + 1 if position else 1)
    events.text(position.step if position else 0, 'config', str(config))
    if position is None:
      events.image(0, 'augmentation_preview', os.path.join(workdir, 'augmentation_preview.png'))
    if apply_fn is not None:
      variables = jax.device_get(parallel.to_checkpoint(state).variables())
      datasets = feature_datasets(model, variables, base_paths, datasets, workdir,
                                  train_config.eval_batch_size, log=log)
    log(f'data: {datasets.name}: {len(datasets.train):,} train / {len(datasets.validation):,} '
        f'validation / {len(datasets.test):,} test {"features" if apply_fn else "images"} of '
        f'{datasets.image_shape}; {parallel.mode} step on {parallel.num_devices} device(s), '
        f'{jax.process_count()} process(es)')

    first_epoch = 1 if position is None else position.epoch + position.epoch_ended
    for epoch in range(first_epoch, train_config.epochs + 1):
      # A signal during start-up or validation. The agreed value decides, never the local flag,
      # which a signal may set after the agreement: every process must decide alike.
      signum, = agreed(stop.signum or 0)
      if signum:
        raise _interrupted(checkpoints, signum, train_config.epochs)
      # A run resumed within this epoch starts where its checkpoint was: the same next batch,
      # the epoch's metric sums so far, and the last TensorBoard point's.
      partial = position if position is not None and position.epoch == epoch else None
      steps_done = partial.steps_done if partial else 0
      sums = partial.sums if partial else None  # NumPy: the first step's sum puts them on device.
      progress = EpochProgress(f'epoch {epoch}/{train_config.epochs}', steps_per_epoch, batch_size,
                               interactive=None if writer else False)
      epoch_start_step = (epoch - 1) * steps_per_epoch
      start = time.perf_counter() - (partial.seconds if partial else 0.0)
      # The last point logged: the epoch's sums then, its step and time (a window's metrics are
      # the difference of the running sums, computed on the device).
      logged = partial.logged if partial and partial.logged else {
          'sums': None, 'step': epoch_start_step}
      logged_sums, logged_step, logged_time = logged['sums'], logged['step'], time.perf_counter()
      train_batches = data_lib.batches(datasets.train, batch_size, host=parallel.host(),
                                       shuffle=True, seed=config.seed, epoch=epoch,
                                       drop_remainder=True, first_batch=steps_done)
      for batch in data_lib.prefetch(train_batches):
        step = epoch_start_step + steps_done + 1
        if writer and step == profile_first:
          jax.profiler.start_trace(event_directory(workdir), create_perfetto_trace=True)
        state, step_sums = parallel.train_step(state, parallel.place_batch(batch))
        sums = add_metrics(sums, step_sums)
        progress.update(sums)
        steps_done += 1
        if writer and step == profile_last:
          jax.block_until_ready(state)
          jax.profiler.stop_trace()
          log(f'profile of steps {profile_first}-{profile_last} in {event_directory(workdir)} '
              '(tensorboard --logdir: the Profile tab)')
        if writer and log_every and step % log_every == 0:
          window = sums if logged_sums is None else jax.tree.map(jnp.subtract, sums, logged_sums)
          metrics, now = summarize(window), time.perf_counter()
          events.scalars(step, {
              'train/loss': metrics['loss'], 'train/accuracy': metrics['accuracy'],
              'train/learning_rate': float(schedule(step)),
              'train/images_per_second': (step - logged_step) * batch_size / (now - logged_time)})
          logged_sums, logged_step, logged_time = sums, step, now
        if steps_done == steps_per_epoch:
          break  # The end-of-epoch checkpoint follows validation.
        if jax.process_count() > 1 and step % AGREE_EVERY_STEPS:
          continue  # Processes decide together, every few steps (`interrupts`).
        signum, time_due = agreed(stop.signum or 0, save_schedule.time_due())
        if signum or time_due or save_schedule.steps_due(step):
          checkpoints.save(step, parallel.to_checkpoint(state), history, Position(
              epoch=epoch, steps_done=steps_done, steps_per_epoch=steps_per_epoch,
              sums=sums, seconds=time.perf_counter() - start,
              logged=None if logged_sums is None else {'step': logged_step, 'sums': logged_sums}))
          save_schedule.saved()
        if signum:
          progress.close()
          raise _interrupted(checkpoints, signum, train_config.epochs)
      train_metrics = summarize(sums)
      seconds = time.perf_counter() - start
      progress.close()
      if not math.isfinite(train_metrics['loss']):
        raise CnnjaxError(
            f'the training loss became {train_metrics["loss"]} in epoch {epoch}; the run stops '
            f'here and keeps the checkpoints of epochs up to {epoch - 1}. Lower '
            f'train.learning_rate (now {train_config.learning_rate}) or clip gradients with '
            'train.grad_clip_norm')
      val_metrics = evaluate(parallel, state, datasets.validation, train_config.eval_batch_size)
      history.append({
          'epoch': epoch,
          'loss': train_metrics['loss'],
          'accuracy': train_metrics['accuracy'],
          'val_loss': val_metrics['loss'],
          'val_accuracy': val_metrics['accuracy'],
          'learning_rate': float(schedule(epoch * steps_per_epoch)),
          'epoch_seconds': seconds,
          'images_per_second': steps_per_epoch * batch_size / seconds,
      })
      epoch_end_step = epoch * steps_per_epoch
      checkpoints.save(epoch_end_step, parallel.to_checkpoint(state), history, Position(
          epoch=epoch, steps_done=steps_per_epoch, steps_per_epoch=steps_per_epoch))
      save_schedule.saved()
      if writer:
        history_lib.write_history(workdir, history)
        plot_learning_curves(history, os.path.join(workdir, 'learning_curves.png'),
                             title=config.model.name)
        plot_learning_curves(history, os.path.join(workdir, 'learning_curves_smoothed.png'),
                             smoothing=train_config.smoothing, title=config.model.name)
      events.scalars(epoch_end_step, {f'epoch/{key}': value for key, value in history[-1].items()
                                      if key not in ('epoch', 'epoch_seconds')})
      events.image(epoch_end_step, 'learning_curves', os.path.join(workdir, 'learning_curves.png'))
      events.flush()
      log(_epoch_line(epoch, train_config.epochs, history[-1]), flush=True)
      if on_epoch_end is not None:
        on_epoch_end(epoch, history)

    checkpoints.wait()
    best_state, best_history = checkpoints.restore(checkpoints.best_step(),
                                                   parallel.to_checkpoint(state))
    best_epoch = best_history[-1]['epoch']
    if train_config.get('evaluate_test', True):
      test_metrics = evaluate(parallel, parallel.place_state(best_state), datasets.test,
                              train_config.eval_batch_size)
      events.scalars(train_config.epochs * steps_per_epoch,
                     {'test/loss': test_metrics['loss'],
                      'test/accuracy': test_metrics['accuracy']})
  finally:
    events.close()
    checkpoints.close()  # Waits for a save in flight, so none is lost on an error.

  log(f'best epoch by val_loss: {best_epoch}')
  if not train_config.get('evaluate_test', True):
    # Choosing settings on the validation split: no model is evaluated on the test split.
    log('test split not evaluated (train.evaluate_test=False)')
    return {'best_epoch': best_epoch, 'val_loss': best_history[-1]['val_loss'],
            'val_accuracy': best_history[-1]['val_accuracy']}
  result = {'test_loss': test_metrics['loss'], 'test_accuracy': test_metrics['accuracy'],
            'best_epoch': best_epoch}
  if writer:
    history_lib.write_json(os.path.join(workdir, 'test_metrics.json'), result)
  log(f"test_accuracy: {result['test_accuracy']:.4f}")
  return result
