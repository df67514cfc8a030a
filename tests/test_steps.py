"""Train and eval steps: masks, metric sums, dropout keys per step, augmentation inside the step,
and that training learns."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnnjax import augment
from cnnjax.training.losses import get_objective
from cnnjax.models.convnet import ConvNet
from cnnjax.training.parallel import create_parallel
from cnnjax.training.steps import add_metrics, eval_step, summarize, train_images
from cnnjax.training.train_state import create_train_state

OBJECTIVE = get_objective('sparse_categorical_crossentropy')


def jit_steps(objective):
  """The single-device jitted train and eval steps, as the training loop runs them."""
  single = create_parallel('single', objective)
  return single.train_step, single.eval_step


def tiny_state(dropout_rate=0.0, learning_rate=1e-2):
  model = ConvNet(conv_features=(4,), num_outputs=3, hidden_units=(8,), dropout_rate=dropout_rate)
  return create_train_state(model, optax.adam(learning_rate), (8, 8, 1), seed=0)


def batch(n=6, seed=0, mask=None):
  rng = np.random.default_rng(seed)
  return {'image': jnp.asarray(rng.random((n, 8, 8, 1), dtype=np.float32)),
          'label': jnp.asarray(rng.integers(0, 3, n).astype(np.int32)),
          'mask': jnp.ones(n) if mask is None else jnp.asarray(mask, jnp.float32)}


def test_masked_rows_count_nowhere():
  state = tiny_state()
  full = batch(4)
  padded = {k: jnp.concatenate([v, v[:2] * 0 + (7 if k == 'image' else 0)]) for k, v in full.items()}
  padded['mask'] = jnp.array([1, 1, 1, 1, 0, 0], jnp.float32)
  a = eval_step(state, full, objective=OBJECTIVE)
  b = eval_step(state, padded, objective=OBJECTIVE)
  np.testing.assert_allclose(a['loss'], b['loss'], rtol=1e-6)
  assert float(b['count']) == 4.0
  # The gradient ignores padded rows too: one step on either batch gives the same parameters.
  train_step, _ = jit_steps(OBJECTIVE)
  after_full, _ = train_step(tiny_state(), full)
  after_padded, _ = train_step(tiny_state(), padded)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7),
               after_full.params, after_padded.params)


def test_metric_sums_add_up_to_the_mean():
  state = tiny_state()
  _, evaluate = jit_steps(OBJECTIVE)
  b1, b2 = batch(4, seed=1), batch(6, seed=2)
  total = add_metrics(add_metrics(None, evaluate(state, b1)), evaluate(state, b2))
  merged = {k: jnp.concatenate([b1[k], b2[k]]) for k in b1}
  np.testing.assert_allclose(summarize(total)['loss'], summarize(evaluate(state, merged))['loss'],
                             rtol=1e-5)
  assert summarize(total)['accuracy'] == summarize(evaluate(state, merged))['accuracy']


def test_dropout_key_changes_with_the_step_and_is_reproducible():
  state = tiny_state(dropout_rate=0.5)
  assert not np.array_equal(jax.random.key_data(state.step_key()),
                            jax.random.key_data(state.replace(step=1).step_key()))
  train_step, _ = jit_steps(OBJECTIVE)
  a, _ = train_step(tiny_state(dropout_rate=0.5), batch())
  b, _ = train_step(tiny_state(dropout_rate=0.5), batch())
  jax.tree.map(np.testing.assert_array_equal, a.params, b.params)


def test_training_fits_a_small_batch():
  train_step, evaluate = jit_steps(OBJECTIVE)
  state, data = tiny_state(), batch(12, seed=3)
  before = summarize(evaluate(state, data))['loss']
  for _ in range(60):
    state, _ = train_step(state, data)
  after = summarize(evaluate(state, data))
  assert int(state.step) == 60
  assert after['loss'] < 0.5 * before
  assert after['accuracy'] == 1.0


def augment_config(kind, **fields):
  config = augment.default_config()
  config.kind = kind
  for name, value in fields.items():
    setattr(config[kind], name, value)
  return config


def test_augmentation_runs_inside_the_train_step_per_example_and_step():
  augmenter = augment.make_augmenter(augment_config('image_data_generator'))
  state = tiny_state()
  images = batch(6)['image']
  first = train_images(state, images, augmenter)
  # Every example gets its own transform, and the next step draws new ones.
  assert not np.allclose(first[0], first[1])
  same_image = jnp.broadcast_to(images[:1], images.shape)
  augmented = np.asarray(train_images(state, same_image, augmenter))
  assert len({a.tobytes() for a in augmented}) == len(augmented)
  later = train_images(state.replace(step=state.step + 1), images, augmenter)
  assert not np.allclose(first, later)
  # Example i's transform depends on i and the step only, not on the batch it sits in.
  np.testing.assert_array_equal(np.asarray(train_images(state, images[:3], augmenter)),
                                np.asarray(first[:3]))
  # The step trains on the augmented batch: different parameters than without augmentation.
  plain_step = create_parallel('single', OBJECTIVE).train_step
  augmented_step = create_parallel('single', OBJECTIVE, augmenter).train_step
  plain, _ = plain_step(tiny_state(), batch(6))
  augmented_state, _ = augmented_step(tiny_state(), batch(6))
  assert not all(jax.tree.leaves(jax.tree.map(np.allclose, plain.params, augmented_state.params)))


def test_evaluation_gets_preprocessing_but_no_random_change():
  state = tiny_state()
  data = batch(6)
  geometric = augment.make_augmenter(augment_config('image_data_generator'))
  np.testing.assert_array_equal(
      eval_step(state, data, objective=OBJECTIVE, augment=geometric)['loss'],
      eval_step(state, data, objective=OBJECTIVE)['loss'])
  # torchvision's Normalize is preprocessing: it applies at evaluation too.
  normalizing = augment.make_augmenter(augment_config('torchvision'))
  shifted = dict(data, image=(data['image'] - 0.5) / 0.5)
  np.testing.assert_allclose(
      eval_step(state, data, objective=OBJECTIVE, augment=normalizing)['loss'],
      eval_step(state, shifted, objective=OBJECTIVE)['loss'], rtol=1e-6)


def test_sgd_step_follows_the_gradient_of_the_batch_mean_loss():
  # Plain SGD moves the parameters by learning_rate x the gradient itself, so this pins the
  # gradient's scale (Adam and RMSprop divide it away): the summed gradient over the batch must be
  # divided by the example count, or the step is batch_size times too large.
  model = ConvNet(conv_features=(4,), num_outputs=3, hidden_units=(8,))
  learning_rate = 0.1
  state = create_train_state(model, optax.sgd(learning_rate), (8, 8, 1), seed=0)
  data = batch(6, seed=4)

  def mean_loss(params):
    logits = model.apply({'params': params}, data['image'], train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, data['label']).mean()

  expected = jax.tree.map(lambda p, g: p - learning_rate * g, state.params,
                          jax.grad(mean_loss)(state.params))
  train_step, _ = jit_steps(OBJECTIVE)
  after, _ = train_step(state, data)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7),
               after.params, expected)


def test_dropout_is_active_in_the_train_step_and_off_in_evaluation():
  data = batch(12, seed=5)
  train_step, evaluate = jit_steps(OBJECTIVE)
  with_dropout, without = tiny_state(dropout_rate=0.5), tiny_state(dropout_rate=0.0)
  jax.tree.map(np.testing.assert_array_equal, with_dropout.params, without.params)
  # Evaluation ignores the rate: the same loss with or without dropout, call after call.
  eval_loss = summarize(evaluate(with_dropout, data))['loss']
  assert eval_loss == summarize(evaluate(without, data))['loss']
  assert eval_loss == summarize(evaluate(with_dropout, data))['loss']
  # Training draws masks: the step's loss (before its update) differs from the dropout-free one.
  _, train_sums = train_step(with_dropout, data)
  _, plain_sums = train_step(without, data)
  np.testing.assert_allclose(summarize(plain_sums)['loss'], eval_loss, rtol=1e-6)
  assert abs(summarize(train_sums)['loss'] - eval_loss) > 1e-3
