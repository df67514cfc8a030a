"""The training techniques of the Fashion-MNIST records: label smoothing, the moving average of
the variables, test-time augmentation and the warm-up / one-cycle schedules, each against an
independent computation (PyTorch's loss and scheduler, NumPy), and all of them through the
training loop."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax.config import base_config
from cnnjax.errors import ConfigError
from cnnjax.models.convnet import ConvNet
from cnnjax.training.checkpointing import Checkpoints
from cnnjax.training.losses import get_objective
from cnnjax.training.optimizers import learning_rate_schedule
from cnnjax.training.parallel import create_parallel
from cnnjax.training.steps import eval_step
from cnnjax.training.test_time import TestTimeAugmentation, translate
from cnnjax.training.train import train_and_evaluate
from cnnjax.training.train_state import create_train_state

torch = pytest.importorskip('torch')


def test_label_smoothing_is_pytorchs_cross_entropy_with_label_smoothing():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(7, 5)).astype(np.float32) * 3
  labels = rng.integers(0, 5, 7)
  for a in (0.0, 0.1, 0.2):
    ours = get_objective('sparse_categorical_crossentropy', a).loss(jnp.asarray(logits),
                                                                    jnp.asarray(labels))
    reference = torch.nn.CrossEntropyLoss(label_smoothing=a, reduction='none')(
        torch.from_numpy(logits), torch.from_numpy(labels))
    np.testing.assert_allclose(ours, reference.numpy(), rtol=1e-5)
  # Accuracy does not change with smoothing.
  smoothed = get_objective('sparse_categorical_crossentropy', 0.2)
  np.testing.assert_array_equal(smoothed.correct(jnp.asarray(logits), jnp.asarray(labels)),
                                (logits.argmax(-1) == labels).astype(np.float32))


def test_binary_label_smoothing_moves_targets_towards_one_half():
  logits = np.array([[1.5], [-0.3], [0.2]], np.float32)
  labels = np.array([1, 0, 0])
  targets = labels * 0.8 + 0.1  # Keras' BinaryCrossentropy(label_smoothing=0.2).
  p = 1 / (1 + np.exp(-logits[:, 0]))
  expected = -(targets * np.log(p) + (1 - targets) * np.log(1 - p))
  ours = get_objective('binary_crossentropy', 0.2).loss(jnp.asarray(logits), jnp.asarray(labels))
  np.testing.assert_allclose(ours, expected, rtol=1e-5)


def test_label_smoothing_outside_0_1_is_named():
  with pytest.raises(ConfigError, match='train.label_smoothing=1.0'):
    get_objective('sparse_categorical_crossentropy', 1.0)


def tiny_state(ema_decay=0.0, learning_rate=0.1):
  model = ConvNet(conv_features=(4,), num_outputs=3, hidden_units=(8,))
  return create_train_state(model, optax.sgd(learning_rate), (8, 8, 1), seed=0,
                            ema_decay=ema_decay)


def batch(n=6, seed=0):
  rng = np.random.default_rng(seed)
  return {'image': jnp.asarray(rng.random((n, 8, 8, 1), dtype=np.float32)),
          'label': jnp.asarray(rng.integers(0, 3, n).astype(np.int32)),
          'mask': jnp.ones(n)}


def test_the_moving_average_follows_its_update_rule_and_is_what_evaluation_uses():
  objective = get_objective('sparse_categorical_crossentropy')
  train_step = create_parallel('single', objective).train_step
  state = tiny_state(ema_decay=0.9)
  average = jax.tree.map(np.asarray, state.variables())
  for n in range(1, 5):
    state, _ = train_step(state, batch(seed=n))
    decay = min(0.9, (1 + n) / (10 + n))  # tf.train.ExponentialMovingAverage(num_updates=n)
    average = jax.tree.map(lambda a, new, d=decay: d * a + (1 - d) * np.asarray(new), average,
                           state.variables())
    jax.tree.map(lambda ours, expected: np.testing.assert_allclose(ours, expected, rtol=1e-6),
                 state.ema, average)
  # The same parameters as a run without the average: it only watches.
  plain = tiny_state()
  for n in range(1, 5):
    plain, _ = train_step(plain, batch(seed=n))
  jax.tree.map(np.testing.assert_array_equal, plain.params, state.params)
  # Evaluation uses the average, not the parameters.
  images = batch(seed=9)
  sums = eval_step(state, images, objective=objective)
  logits = state.apply_fn(state.ema, images['image'], train=False)
  expected = float(jnp.sum(objective.loss(logits, images['label'])))
  assert float(sums['loss']) == pytest.approx(expected, rel=1e-6)
  raw = float(eval_step(plain, images, objective=objective)['loss'])
  assert raw != pytest.approx(expected, rel=1e-5)  # So the check above tells them apart.


def test_ema_decay_outside_0_1_is_named():
  with pytest.raises(ConfigError, match='train.ema_decay=1.0'):
    tiny_state(ema_decay=1.0)


def test_translate_moves_content_with_zero_fill():
  image = np.arange(1, 26, dtype=np.float32).reshape(1, 5, 5, 1)
  np.testing.assert_array_equal(translate(jnp.asarray(image), 2, 1)[0, ..., 0],
                                np.pad(image[0, :3, :4, 0], ((2, 0), (1, 0))))
  np.testing.assert_array_equal(translate(jnp.asarray(image), -1, -2)[0, ..., 0],
                                np.pad(image[0, 1:, 2:, 0], ((0, 1), (0, 2))))


def test_test_time_augmentation_averages_the_logits_of_every_view():
  rng = np.random.default_rng(1)
  images = rng.random((3, 6, 6, 1), dtype=np.float32)
  weights = rng.normal(size=(6 * 6, 4)).astype(np.float32)
  # A model whose logits depend on where every pixel is, so each view gives its own logits.
  apply = lambda x: x.reshape(x.shape[0], -1) @ weights
  pad = lambda x, dy, dx: np.roll(np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), (dy, dx),
                                  (1, 2))[:, 1:-1, 1:-1]
  views = []
  for view in (images, images[:, :, ::-1]):
    views += [view, pad(view, 1, 1), pad(view, -1, -1)]
  expected = np.mean([apply(v) for v in views], axis=0)
  tta = TestTimeAugmentation(flip=True, shift=1)
  assert tta.num_views == 6
  np.testing.assert_allclose(tta.logits(apply, jnp.asarray(images)), expected, rtol=1e-5)
  flip_only = TestTimeAugmentation(flip=True)
  np.testing.assert_allclose(flip_only.logits(apply, jnp.asarray(images)),
                             (apply(images) + apply(images[:, :, ::-1])) / 2, rtol=1e-5)
  with pytest.raises(ConfigError, match='train.tta_shift=-1'):
    TestTimeAugmentation(shift=-1)


def test_warmup_linear_is_a_triangle():
  config = base_config().train
  config.epochs, config.learning_rate, config.warmup_epochs = 10, 0.2, 2
  config.schedule = 'warmup_linear'
  schedule = learning_rate_schedule(config, steps_per_epoch=5)
  values = [float(schedule(step)) for step in (0, 5, 10, 30, 50)]
  np.testing.assert_allclose(values, [0.0, 0.1, 0.2, 0.1, 0.0], atol=1e-7)


def test_one_cycle_follows_pytorchs_one_cycle_lr():
  config = base_config().train
  config.epochs, config.learning_rate, config.schedule = 4, 0.4, 'one_cycle'
  steps_per_epoch = 25
  schedule = learning_rate_schedule(config, steps_per_epoch)
  total = config.epochs * steps_per_epoch
  parameter = torch.nn.Parameter(torch.zeros(1))
  optimizer = torch.optim.SGD([parameter], lr=0.4)
  reference = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.4, total_steps=total,
                                                  cycle_momentum=False)
  expected = []
  for _ in range(total):
    expected.append(optimizer.param_groups[0]['lr'])
    optimizer.step()
    reference.step()
  ours = [float(schedule(step)) for step in range(total)]
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)  # float32 vs float64
  assert ours[0] == pytest.approx(0.4 / 25)
  assert max(ours) == pytest.approx(0.4)


def test_one_cycle_of_a_few_steps_stays_finite():
  # warmup 1 step of 10: PyTorch's rising phase would end at step 0 (and divide by zero).
  config = base_config().train
  config.epochs, config.learning_rate, config.schedule = 10, 0.4, 'one_cycle'
  config.warmup_epochs = 1
  schedule = learning_rate_schedule(config, steps_per_epoch=1)
  values = [float(schedule(step)) for step in range(10)]
  assert np.all(np.isfinite(values))
  assert values[0] == pytest.approx(0.4 / 25)
  assert values[-1] == pytest.approx(0.4 / 25 / 1e4)


def test_the_techniques_together_through_the_training_loop(tiny_config, tmp_path):
  """Label smoothing, the moving average and flip + shift views in one run: the test metrics are
  those of the best checkpoint's AVERAGE with the views and the smoothed loss, recomputed here."""
  config = tiny_config
  config.data.limit_test = 64
  config.train.label_smoothing = 0.1
  config.train.ema_decay = 0.9
  config.train.tta_flip = True
  config.train.tta_shift = 1
  config.train.schedule = 'one_cycle'
  workdir = str(tmp_path / 'run')
  result = train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['train']['ema_decay'] == 0.9
  checkpoints = Checkpoints(os.path.join(workdir, 'checkpoints'))
  state, _ = checkpoints.restore(checkpoints.best_step())
  checkpoints.close()
  from cnnjax import data as data_lib
  from cnnjax.models import create_model
  test = data_lib.load_datasets(config.data).test
  model = create_model(config.model)
  tta = TestTimeAugmentation(flip=True, shift=1)
  images = jnp.asarray(test.images)
  logits = tta.logits(lambda x: model.apply(state['ema'], x, train=False), images)
  labels = jnp.asarray(test.labels)
  loss = float(jnp.mean(get_objective('sparse_categorical_crossentropy', 0.1).loss(logits, labels)))
  accuracy = float(jnp.mean(jnp.argmax(logits, -1) == labels))
  assert result['test_loss'] == pytest.approx(loss, rel=1e-5)
  assert result['test_accuracy'] == pytest.approx(accuracy)
  # The average is not the parameters (it would be, were it never updated or always copied).
  differs = jax.tree.map(lambda a, b: not np.allclose(a, b), state['ema']['params'],
                         state['params'])
  assert any(jax.tree.leaves(differs))


def test_tta_with_cached_features_is_a_config_error(tiny_config, tmp_path):
  tiny_config.train.tta_flip = True
  tiny_config.train.cache_features = True
  tiny_config.model.name = 'small_convnet'
  tiny_config.train.param_groups = ('dense.*=1', 'predictions.*=1', '.*=frozen')
  with pytest.raises(ConfigError, match='train.tta_flip'):
    train_and_evaluate(tiny_config, str(tmp_path / 'run'))
