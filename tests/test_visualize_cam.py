"""Class activation maps: known answers on hand-set models, agreement between methods, gradients
against finite differences, batching, many classes at once, and a model-randomization check."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
import pytest
from matplotlib import colors

from cnnjax.config import base_config
from cnnjax.errors import ConfigError
from cnnjax.models import create_model, layers
from cnnjax.models.convnet import ConvNet
from cnnjax.visualize import cam, overlay
from cnnjax.visualize.layer_probe import apply_perturbed

from test_visualize_filter_patterns import RecordedProgress

X = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)  # The one 2x2 image of the hand-set models.


class TinyGap(nn.Module):
  """1x1 linear conv (2 channels) - global average pooling - dense (3 classes)."""

  @nn.compact
  def __call__(self, x, train=False):
    x = layers.Conv2D(2, (1, 1), activation='linear', name='conv')(x)
    x = layers.GlobalAveragePooling2D(name='gap')(x)
    return layers.Dense(3, name='dense')(x)


class TinyFlat(nn.Module):
  """1x1 linear conv (1 channel) - flatten - dense (num_outputs)."""

  num_outputs: int = 2

  @nn.compact
  def __call__(self, x, train=False):
    x = layers.Conv2D(1, (1, 1), activation='linear', name='conv')(x)
    x = layers.Flatten(name='flatten')(x)
    return layers.Dense(self.num_outputs, name='dense')(x)


class Float64Net(nn.Module):
  """The small convnet's layers (ReLU convs, max-pooling, a ReLU dense layer) in float64 to the end
  (ConvNet returns float32 logits, too coarse for finite differences)."""

  @nn.compact
  def __call__(self, x, train=False):
    f64 = jnp.float64
    x = layers.Conv2D(8, dtype=f64, name='conv1')(x)
    x = layers.MaxPooling2D(name='pool1')(x)
    x = layers.Conv2D(16, dtype=f64, name='conv2')(x)
    x = layers.MaxPooling2D(name='pool2')(x)
    x = layers.Flatten(name='flatten')(x)
    x = layers.Dense(32, activation='relu', dtype=f64, name='dense1')(x)
    return layers.Dense(10, dtype=f64, name='predictions')(x)


# conv: A0 = x, A1 = 2x. dense: logits = (mean A0, mean A1 + 0.5, -mean A0 + mean A1).
GAP_PARAMS = {'conv': {'kernel': jnp.array([[[[1.0, 2.0]]]]), 'bias': jnp.zeros(2)},
              'dense': {'kernel': jnp.array([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]]),
                        'bias': jnp.array([0.0, 0.5, 0.0])}}
# conv: A = 3x. dense: V per flattened position (row-major) and class.
V = np.array([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.0], [2.0, 3.0]], np.float32)
FLAT_PARAMS = {'conv': {'kernel': jnp.full((1, 1, 1, 1), 3.0), 'bias': jnp.zeros(1)},
               'dense': {'kernel': jnp.asarray(V), 'bias': jnp.array([0.25, -0.5])}}


def maps_of(model, params, images, targets, method, **kwargs):
  result = cam.class_activation_maps(model, {'params': params}, images, targets, method=method,
                                     **kwargs)
  return np.asarray(result.maps)


@pytest.fixture(scope='module')
def gap_net():
  model = create_model(_gap_config())
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  images = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
  return model, variables, images


def _gap_config():
  config = base_config().model
  config.name = 'small_convnet_gap'
  return config


def test_known_answers_on_a_gap_model():
  model, images = TinyGap(), jnp.asarray(X)[None, :, :, None]
  weights = np.asarray(GAP_PARAMS['dense']['kernel'])  # (channels, classes)
  features = np.stack([X, 2 * X], axis=-1)             # (2, 2, channels)
  for c in range(3):
    cam_map = features @ weights[:, c]
    np.testing.assert_allclose(maps_of(model, GAP_PARAMS, images, [c], 'cam')[0], cam_map)
    grads = np.broadcast_to(weights[:, c] / 4, features.shape)  # d mean / d position = 1/4.
    np.testing.assert_allclose(maps_of(model, GAP_PARAMS, images, [c], 'grad_cam')[0],
                               cam_map / 4, rtol=1e-6)
    np.testing.assert_allclose(maps_of(model, GAP_PARAMS, images, [c], 'hires_cam')[0],
                               (grads * features).sum(-1), rtol=1e-6)
    np.testing.assert_allclose(maps_of(model, GAP_PARAMS, images, [c], 'layer_cam')[0],
                               (np.maximum(grads, 0) * features).sum(-1), rtol=1e-6)
    # Grad-CAM++ by its closed form, channel by channel.
    denominator = 2 * grads ** 2 + features.sum((0, 1)) * grads ** 3
    alpha = np.where(denominator != 0, grads ** 2 / np.where(denominator != 0, denominator, 1), 0)
    plus_plus = features @ (alpha * np.maximum(grads, 0)).sum((0, 1))
    np.testing.assert_allclose(maps_of(model, GAP_PARAMS, images, [c], 'grad_cam_plus_plus')[0],
                               plus_plus, rtol=1e-5)
  # Class 2 weighs channel 0 negatively: LayerCAM drops it, Grad-CAM++ too (1/7 of channel 1).
  np.testing.assert_allclose(maps_of(model, GAP_PARAMS, images, [2], 'layer_cam')[0], X / 2)
  np.testing.assert_allclose(maps_of(model, GAP_PARAMS, images, [2], 'grad_cam_plus_plus')[0],
                             2 * X / 7, rtol=1e-5)
  # Eigen-CAM: the channels are x and 2x, rank one along (1, 2) / sqrt(5): sqrt(5) x.
  np.testing.assert_allclose(maps_of(model, GAP_PARAMS, images, [0], 'eigen_cam')[0],
                             math.sqrt(5) * X, rtol=1e-5)


def test_score_cam_by_hand():
  model, images = TinyGap(), jnp.asarray(X)[None, :, :, None]
  # Both channels (x and 2x) scale to the same mask (x - 1) / 3 at the image's own size.
  masked = X * (X - 1) / 3
  pooled = masked.mean()
  logits = np.array([pooled, 2 * pooled + 0.5, pooled])
  probabilities = np.exp(logits) / np.exp(logits).sum()
  for c in range(3):
    np.testing.assert_allclose(maps_of(model, GAP_PARAMS, images, [c], 'score_cam')[0],
                               probabilities[c] * 3 * X, rtol=1e-5)


def test_hires_cam_is_each_positions_contribution():
  model, images = TinyFlat(), jnp.asarray(X)[None, :, :, None]
  features = 3 * X
  for c in range(2):
    contribution = V[:, c].reshape(2, 2) * features
    hires = maps_of(model, FLAT_PARAMS, images, [c], 'hires_cam')[0]
    np.testing.assert_allclose(hires, contribution, rtol=1e-6)
    logit = model.apply({'params': FLAT_PARAMS}, images)[0, c]
    np.testing.assert_allclose(hires.sum(), logit - FLAT_PARAMS['dense']['bias'][c], rtol=1e-6)
    np.testing.assert_allclose(maps_of(model, FLAT_PARAMS, images, [c], 'grad_cam')[0],
                               V[:, c].mean() * features, rtol=1e-6)


def test_a_binary_models_class_0_is_the_negative_log_odds():
  model, images = TinyFlat(num_outputs=1), jnp.asarray(X)[None, :, :, None]
  params = {'conv': FLAT_PARAMS['conv'],
            'dense': {'kernel': jnp.asarray(V[:, :1]), 'bias': jnp.array([0.1])}}
  result = cam.class_activation_maps(model, {'params': params}, images, [[0, 1]])
  np.testing.assert_allclose(result.maps[0, 0], -result.maps[0, 1])
  p = jax.nn.sigmoid(model.apply({'params': params}, images)[0, 0])
  np.testing.assert_allclose(result.probabilities[0], [1 - p, p], rtol=1e-6, atol=1e-6)


def test_cam_equals_grad_cam_up_to_a_positive_scale(gap_net):
  model, variables, images = gap_net
  cam_result = cam.class_activation_maps(model, variables, images, method='cam')
  grad_result = cam.class_activation_maps(model, variables, images, method='grad_cam')
  assert cam_result.layer == grad_result.layer == 'conv3'
  np.testing.assert_array_equal(cam_result.targets, grad_result.targets)
  h, w = cam_result.maps.shape[1:]
  np.testing.assert_allclose(cam_result.maps / (h * w), grad_result.maps, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(cam.normalize_maps(cam_result.maps),
                             cam.normalize_maps(grad_result.maps), atol=1e-5)


def test_gradients_match_finite_differences():
  # In float64, so that a tiny step (which crosses no ReLU or max-pool switch) is still exact.
  with jax.enable_x64(True):
    model = Float64Net()
    variables = jax.jit(model.init)(jax.random.key(2), jnp.zeros((1, 28, 28, 1)))
    variables = jax.tree.map(lambda x: x.astype(jnp.float64), variables)
    images = jax.random.uniform(jax.random.key(3), (2, 28, 28, 1), jnp.float64)
    targets = jnp.array([3, 7])
    for layer in ('conv2', 'pool1'):
      features, grads, _, _ = cam.features_and_gradients(model, variables, images, layer,
                                                         targets)
      assert grads.dtype == jnp.float64

      def score(delta, n):
        outputs, _ = apply_perturbed(model, variables, images, layer, delta)
        return float(cam.class_scores(outputs)[n, targets[n]])

      # Positions where the layer's output is positive: a ReLU left at exactly 0 ties with its
      # neighbours in the next max-pooling, where the function has no derivative to compare.
      positive = np.argwhere(np.asarray(features) > 0)
      rng = np.random.default_rng(0)
      for row in rng.choice(len(positive), 8, replace=False):
        index = tuple(int(i) for i in positive[row])
        n = index[0]
        eps = 1e-6
        bump = jnp.zeros(features.shape, jnp.float64).at[index].set(eps)
        finite = (score(bump, n) - score(-bump, n)) / (2 * eps)
        np.testing.assert_allclose(grads[index], finite, rtol=1e-5, atol=1e-9)
      # An image's score does not depend on the other images' features.
      other = jnp.zeros(features.shape).at[1].set(1.0)
      assert score(other, 0) == pytest.approx(score(jnp.zeros(features.shape), 0), abs=1e-12)


@pytest.mark.parametrize('method', cam.METHODS)
def test_a_batch_gives_the_maps_of_one_image_at_a_time(gap_net, method):
  model, variables, images = gap_net
  targets = np.array([1, 4, 9])
  batch = cam.class_activation_maps(model, variables, images, targets, method=method)
  for n in range(3):
    single = cam.class_activation_maps(model, variables, images[n:n + 1], targets[n:n + 1],
                                       method=method)
    np.testing.assert_allclose(batch.maps[n], single.maps[0], rtol=1e-4, atol=1e-6)
  assert np.all(np.isfinite(batch.maps))


@pytest.mark.parametrize('method', ['cam', 'grad_cam', 'layer_cam', 'score_cam', 'eigen_cam'])
def test_many_classes_in_one_call(gap_net, method):
  model, variables, images = gap_net
  classes = np.tile(np.arange(10), (3, 1))
  many = cam.class_activation_maps(model, variables, images, classes, method=method)
  assert many.maps.shape[:2] == (3, 10)
  np.testing.assert_array_equal(many.targets, classes)
  for c in (0, 5, 9):
    one = cam.class_activation_maps(model, variables, images, classes[:, c], method=method)
    np.testing.assert_allclose(many.maps[:, c], one.maps, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('targets', ['predicted', np.array([[1, 4], [9, 0], [2, 2]])])
def test_score_cam_a_few_channels_per_call_gives_the_one_calls_maps(gap_net, monkeypatch,
                                                                    targets):
  """conv3's 64 channels 24 per call (3 calls, the last padded with repeats): the maps, targets
  and probabilities of one call, and the progress counted per call in masked images."""
  model, variables, images = gap_net
  RecordedProgress.last = None
  monkeypatch.setattr(cam, 'Progress', RecordedProgress)
  whole = cam.class_activation_maps(model, variables, images, targets, method='score_cam',
                                    batch_size=16)
  assert RecordedProgress.last is None  # One call: no progress.
  stepped = cam.class_activation_maps(model, variables, images, targets, method='score_cam',
                                      batch_size=16, channels_per_call=24)
  progress = RecordedProgress.last
  assert (progress.description, progress.total, progress.unit) == ('Score-CAM of conv3', 3 * 64,
                                                                   'masked image')
  assert progress.updates == [3 * 24, 3 * 24, 3 * 16]
  assert stepped.layer == whole.layer and stepped.method == 'score_cam'
  np.testing.assert_array_equal(stepped.targets, whole.targets)
  np.testing.assert_allclose(stepped.probabilities, whole.probabilities, rtol=1e-6)
  assert stepped.maps.shape == whole.maps.shape
  np.testing.assert_allclose(stepped.maps, whole.maps, rtol=1e-5, atol=1e-7)
  assert np.abs(np.asarray(whole.maps)).max() > 1e-3  # Maps worth comparing.


def test_targets(gap_net):
  model, variables, images = gap_net
  result = cam.class_activation_maps(model, variables, images)
  np.testing.assert_array_equal(result.targets, model.apply(variables, images).argmax(-1))
  np.testing.assert_allclose(result.probabilities, jax.nn.softmax(model.apply(variables, images)),
                             rtol=1e-5)
  with pytest.raises(ConfigError, match=r'shape \(3,\)'):
    cam.class_activation_maps(model, variables, images, [1, 2])
  with pytest.raises(ConfigError, match=r'\[0, 10\)'):
    cam.class_activation_maps(model, variables, images, [1, 2, 10])
  with pytest.raises(ConfigError, match='integer'):
    cam.class_activation_maps(model, variables, images, [1.0, 2.0, 3.0])
  with pytest.raises(ConfigError, match='predicted'):
    cam.class_activation_maps(model, variables, images, 'best')
  with pytest.raises(ConfigError, match='score_cam'):
    cam.class_activation_maps(model, variables, images, method='gradcam')
  with pytest.raises(ConfigError, match="no layer named 'conv7'"):
    cam.class_activation_maps(model, variables, images, layer='conv7')


def test_cam_needs_global_average_pooling():
  model = create_model(base_config().model)
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  with pytest.raises(ConfigError, match='Grad-CAM'):
    cam.class_activation_maps(model, variables, jnp.zeros((1, 28, 28, 1)), method='cam')
  assert cam.last_conv_layer(model, variables, jnp.zeros((1, 28, 28, 1))) == 'conv3'


def test_eigen_cam_sign_is_fixed():
  rng = np.random.default_rng(0)
  features = jnp.asarray(rng.random((2, 4, 5, 6)), jnp.float32)
  maps = np.asarray(cam.eigen_cam_map(features))
  for n in range(2):
    flat = np.asarray(features[n]).reshape(20, 6).astype(np.float64)
    direction = np.linalg.svd(flat)[2][0]
    projection = flat @ direction
    np.testing.assert_allclose(maps[n].ravel(), projection * np.sign(projection.sum()), rtol=1e-4)
  assert np.all(maps >= -1e-6)  # Non-negative activations: a non-negative map.
  # The sign follows the data, not the SVD: the same map for A and -A.
  np.testing.assert_allclose(cam.eigen_cam_map(-features), maps, rtol=1e-4, atol=1e-6)


def test_normalization_and_upsampling():
  maps = jnp.array([[[0.0, 0.0], [0.0, 0.0]], [[-1.0, -2.0], [-3.0, 0.0]],
                    [[-1.0, 2.0], [4.0, 1.0]]])
  normalized = np.asarray(cam.normalize_maps(maps))
  np.testing.assert_array_equal(normalized[0], 0)  # All zero stays zero, not NaN.
  np.testing.assert_array_equal(normalized[1], 0)  # Nothing positive: zero after the ReLU.
  np.testing.assert_allclose(normalized[2], [[0, 0.5], [1, 0.25]])
  up = np.asarray(cam.upsample(normalized, (4, 4)))
  assert up.shape == (3, 4, 4)
  # Half-pixel centres, edges repeated: output (3, 2) samples input (1.25 -> 1, 0.75).
  np.testing.assert_allclose(up[2, 0, 0], 0.0)
  np.testing.assert_allclose(up[2, 3, 2], 0.25 * 1 + 0.75 * 0.25)
  assert up.min() >= 0 and up.max() <= 1


def test_jet_and_overlays():
  values = np.linspace(0, 1, 257)
  fine = colors.LinearSegmentedColormap('jet', matplotlib.colormaps['jet']._segmentdata, N=2 ** 16)
  np.testing.assert_allclose(overlay.jet(values), fine(values)[:, :3], atol=1e-3)
  images = jnp.full((1, 2, 2, 1), 0.5)
  heat = jnp.array([[[0.0, 1.0], [0.5, 0.25]]])
  added = overlay.superimpose(images, heat)
  np.testing.assert_allclose(added, jnp.clip(0.5 + 0.4 * overlay.jet(heat), 0, 1))
  blended = overlay.superimpose(images, heat, 0.3, mode='blend')
  np.testing.assert_allclose(blended, 0.7 * 0.5 + 0.3 * overlay.jet(heat), rtol=1e-6)
  assert added.shape == (1, 2, 2, 3)
  with pytest.raises(ValueError, match='upsample'):
    overlay.superimpose(images, jnp.zeros((1, 3, 3)))
  with pytest.raises(ValueError, match='mode'):
    overlay.superimpose(images, heat, mode='multiply')


def blob_images(seed, count, size=16):
  """Noise with a bright 3x3 blob: in the left half for class 0, the right half for class 1."""
  rng = np.random.default_rng(seed)
  images = rng.normal(0, 0.05, (count, size, size, 1)).astype(np.float32)
  labels = np.arange(count) % 2
  rows = rng.integers(0, size - 3, count)
  cols = rng.integers(0, size // 2 - 3, count) + labels * (size // 2)
  for i in range(count):
    images[i, rows[i]:rows[i] + 3, cols[i]:cols[i] + 3] += 1.0
  return images, labels.astype(np.int32)


def test_maps_of_a_randomized_model_differ_from_the_trained_models():
  """Adebayo et al.'s model-randomization test: a map that survives random weights explains
  nothing. Train a tiny convnet to tell where a blob is, then compare its Grad-CAM maps with
  those of the same architecture freshly initialized."""
  model = ConvNet(conv_features=(8, 8), num_outputs=2, head='gap')
  images, labels = blob_images(0, 512)
  params = jax.jit(model.init)(jax.random.key(0), images[:1])['params']
  tx = optax.adam(1e-2)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits = model.apply({'params': p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  opt_state = tx.init(params)
  for i in range(150):
    batch = slice(i * 32 % 512, i * 32 % 512 + 32)
    params, opt_state = step(params, opt_state, images[batch], labels[batch])
  trained = {'params': params}
  randomized = jax.jit(model.init)(jax.random.key(1), images[:1])
  test_images, test_labels = blob_images(1, 64)
  assert (model.apply(trained, test_images).argmax(-1) == test_labels).mean() > 0.95

  def heat(variables):
    result = cam.class_activation_maps(model, variables, test_images, test_labels, layer='conv2')
    return np.asarray(cam.heatmaps(result, (16, 16)))

  def on_the_blob_side(maps):
    left, right = maps[..., :8].sum((1, 2)), maps[..., 8:].sum((1, 2))
    share = np.where(test_labels == 0, left, right) / np.maximum(left + right, 1e-9)
    return (share > 0.5).mean()

  trained_maps, random_maps = heat(trained), heat(randomized)
  assert on_the_blob_side(trained_maps) >= 0.75
  assert on_the_blob_side(random_maps) <= 0.5
  correlations = [np.corrcoef(a.ravel(), b.ravel())[0, 1] if a.std() and b.std() else 0.0
                  for a, b in zip(trained_maps, random_maps)]
  assert np.mean(correlations) < 0.5
