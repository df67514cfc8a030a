"""Tests of the padded random crop (torchvision RandomCrop(size, padding)) and random erasing
(torchvision RandomErasing, Keras 3 RandomErasing): golden results for fixed draws against NumPy,
the sampling against a port of torchvision's get_params and against Keras itself, the integer fast
path against the resample, batching under jit, and the config errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from cnnjax import augment
from cnnjax.augment import erasing
from cnnjax.augment.keras_layers import KerasLayers, KerasLayersParams
from cnnjax.augment.torchvision_transforms import (PAD_MODES, TorchvisionParams,
                                                   TorchvisionTransforms)
from cnnjax.errors import ConfigError

HEIGHT, WIDTH, CHANNELS = 8, 6, 2  # Non-square, to catch row/column mix-ups.
# Everything but RandomCrop, the flip and RandomErasing off; crop_ratio fixed at width / height so
# that the resized crop is always the whole (non-square) image.
TV_OFF = dict(rotation=0.0, shear=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0,
              crop_scale=(1.0, 1.0), crop_ratio=(WIDTH / HEIGHT, WIDTH / HEIGHT),
              horizontal_flip=0.0, normalize_mean=(), normalize_std=())


@pytest.fixture(scope='module')
def image():
  return np.random.default_rng(0).random((HEIGHT, WIDTH, CHANNELS)).astype(np.float32)


def tv_options(**fields):
  return TorchvisionTransforms(**{**TV_OFF, **fields})


def tv_params(**fields):
  defaults = dict(rotation=0.0, crop_top=0, crop_left=0, crop_height=HEIGHT, crop_width=WIDTH,
                  flip=False, shear=0.0, brightness=1.0, contrast=1.0, saturation=1.0, hue=0.0,
                  jitter_order=jnp.arange(1))
  return TorchvisionParams(**{**defaults, **fields})


def np_padded_crop(image, padding, top, left, mode='constant', fill=0.0):
  """torchvision's RandomCrop(size=image size, padding) for a given offset, in NumPy."""
  kwargs = {'constant_values': fill} if mode == 'constant' else {}
  padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)), mode=mode, **kwargs)
  return padded[top:top + image.shape[0], left:left + image.shape[1]]


def np_erased(image, top, left, height, width, value):
  out = np.array(image, copy=True)
  out[top:top + height, left:left + width] = value
  return out


def np_erasing_params(u, height, width, scale, ratio):
  """torchvision's RandomErasing.get_params written out (float64, as its Python arithmetic), fed
  with given uniforms in place of torch's generator: (top, left, h, w), or None if no try fits."""
  area = height * width
  log_ratio = np.log(np.asarray(ratio, np.float32))  # torch.log(torch.tensor(ratio)): float32.
  for t in range(10):
    erase_area = area * float(np.float32(scale[0] + (scale[1] - scale[0]) * u[t]))
    aspect = float(np.exp(np.float32(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[10 + t])))
    h = int(round(math.sqrt(erase_area * aspect)))
    w = int(round(math.sqrt(erase_area / aspect)))
    if not (h < height and w < width):
      continue
    return int(u[20] * (height - h + 1)), int(u[21] * (width - w + 1)), h, w
  return None


# The brief's Fashion-MNIST setting: flip, RandomCrop(28, padding=2), RandomErasing(p=0.5).
BRIEF = dict(rotation=0.0, shear=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0,
             crop_scale=(1.0, 1.0), horizontal_flip=0.5, normalize_mean=(), normalize_std=(),
             crop_padding=2, erasing=0.5)


@pytest.fixture(scope='module')
def brief_draws():
  """4000 draws of the brief's setting on 28x28, but erasing p = 0.3 (p = 0.5 could not tell p
  from 1 - p); one compile, shared by the sampling tests."""
  options = TorchvisionTransforms(**{**BRIEF, 'erasing': 0.3})
  params = jax.jit(jax.vmap(lambda k: options.sample(k, 28, 28)))(
      jax.random.split(jax.random.key(0), 4000))
  return jax.tree.map(np.asarray, params)


def config_for(**fields):
  config = augment.default_config()
  config.kind = 'torchvision'
  for name, value in fields.items():
    setattr(config.torchvision, name, value)  # Typed fields: a misspelt or mistyped value fails.
  return config


# ----- RandomCrop(size, padding): golden, exact, both paths. -----

def test_padded_crop_is_the_numpy_pad_and_slice_exactly(image):
  padding, fill = 3, 0.25
  options = tv_options(crop_padding=padding, fill=fill, horizontal_flip=0.5)
  assert options.is_integer_shift(HEIGHT, WIDTH)
  offsets = [(0, 0), (0, 2 * padding), (2 * padding, 0), (2 * padding, 2 * padding), (3, 3),
             (1, 5), (6, 2)]
  apply = jax.jit(options.apply)
  resample = jax.jit(options.resample)
  for top, left in offsets:
    for flip in (False, True):
      expected = np_padded_crop(image, padding, top, left, fill=fill)
      if flip:  # RandomCrop first, then RandomHorizontalFlip, as in a CIFAR-style Compose.
        expected = expected[:, ::-1]
      params = tv_params(pad_top=top, pad_left=left, flip=flip)
      np.testing.assert_array_equal(np.asarray(apply(jnp.asarray(image), params)), expected)
      np.testing.assert_array_equal(np.asarray(resample(jnp.asarray(image), params)), expected)


@pytest.mark.parametrize('fill_mode', sorted(PAD_MODES))
def test_integer_shift_equals_the_resample_for_every_padding_mode(image, fill_mode):
  """The fast path against the gather, and both against np.pad's mode of the same name mapping
  (edge, reflect, symmetric, wrap: torchvision's padding modes), for every offset and flip;
  padding 10 is larger than the image, where the modes repeat."""
  for padding in (3, 10):
    options = tv_options(crop_padding=padding, fill=0.5, fill_mode=fill_mode, horizontal_flip=0.5)
    span = np.arange(2 * padding + 1)
    tops, lefts, flips = (a.reshape(-1) for a in np.meshgrid(span, span, [False, True],
                                                              indexing='ij'))

    def both(top, left, flip, options=options):
      params = tv_params(pad_top=top, pad_left=left, flip=flip)
      im = jnp.asarray(image)
      return options.integer_shift(im, params), options.resample(im, params)

    fast, general = jax.jit(jax.vmap(both))(tops, lefts, flips)
    np.testing.assert_array_equal(np.asarray(fast), np.asarray(general))
    for k in range(0, len(tops), 7):  # A spread of the draws against NumPy.
      expected = np_padded_crop(image, padding, tops[k], lefts[k], PAD_MODES[fill_mode], 0.5)
      expected = expected[:, ::-1] if flips[k] else expected
      np.testing.assert_array_equal(np.asarray(fast[k]), expected)


def test_fast_path_only_where_it_is_exact():
  assert TorchvisionTransforms(**BRIEF).is_integer_shift(28, 28)  # Default ratio, square image.
  assert not TorchvisionTransforms(**BRIEF).is_integer_shift(12, 10)  # Could crop 11 x 10.
  for change in (dict(rotation=1.0), dict(shear=1.0), dict(crop_scale=(0.8, 1.0)),
                 dict(crop_size=(20,)), dict(fill_mode='wrap'), dict(crop_ratio=(1.1, 1.3))):
    assert not TorchvisionTransforms(**{**BRIEF, **change}).is_integer_shift(28, 28), change


def test_fast_path_equals_the_general_path_for_the_same_draws():
  """The brief's Fashion-MNIST configuration: whole draws (crop, flip, erasing) through `apply`
  (fast path) and through the resample, on 28x28."""
  options = TorchvisionTransforms(**BRIEF)
  images = jnp.asarray(np.random.default_rng(1).random((64, 28, 28, 1)), jnp.float32)
  keys = jax.random.split(jax.random.key(2), 64)

  def both(key, im):
    params = options.sample(key, 28, 28)
    general = options.erase(options.color_jitter(options.resample(im, params), params), params)
    return options.apply(im, params), general, params

  fast, general, params = jax.jit(jax.vmap(both))(keys, images)
  np.testing.assert_array_equal(np.asarray(fast), np.asarray(general))
  assert np.asarray(params.flip).any() and np.asarray(params.erase).any()
  assert len(set(zip(np.asarray(params.pad_top), np.asarray(params.pad_left)))) > 10


def test_padded_crop_offsets_are_uniform_over_0_to_2p(brief_draws):
  top, left = brief_draws.pad_top, brief_draws.pad_left
  assert set(top) == set(range(5)) and set(left) == set(range(5))  # 0 and 2p included.
  joint = np.bincount(top * 5 + left, minlength=25)  # Uniform and independent: 25 cells.
  assert stats.chisquare(joint).pvalue > 1e-3
  assert abs(np.corrcoef(top, left)[0, 1]) < 0.05


def test_new_parts_leave_the_other_draws_unchanged():
  """Switching RandomCrop and RandomErasing on does not change what the lecture's parts draw."""
  key = jax.random.key(5)
  before = jax.jit(lambda k: TorchvisionTransforms(hue=0.1).sample(k, 20, 20))(key)
  after = jax.jit(lambda k: TorchvisionTransforms(hue=0.1, crop_padding=3, erasing=0.5).sample(
      k, 20, 20))(key)
  for name in ('rotation', 'crop_top', 'crop_left', 'crop_height', 'crop_width', 'flip', 'shear',
               'brightness', 'contrast', 'saturation', 'hue', 'jitter_order'):
    np.testing.assert_array_equal(np.asarray(getattr(before, name)),
                                  np.asarray(getattr(after, name)))


# ----- RandomErasing (torchvision): golden, sampling. -----

def test_erasing_a_fixed_box_is_the_numpy_box(image):
  apply = jax.jit(tv_options(erasing=1.0, erasing_value=(0.3, 0.9)).apply)
  for top, left, height, width in ((2, 1, 3, 4), (0, 0, 1, 1), (HEIGHT - 7, WIDTH - 5, 7, 5),
                                   (4, 2, 0, 3)):
    params = tv_params(erase=True, erase_top=top, erase_left=left, erase_height=height,
                       erase_width=width)
    np.testing.assert_array_equal(np.asarray(apply(jnp.asarray(image), params)),
                                  np_erased(image, top, left, height, width, [0.3, 0.9]))
    np.testing.assert_array_equal(  # The coin came up tails (or no try fitted): unchanged.
        np.asarray(apply(jnp.asarray(image), params._replace(erase=False))), image)
  one_value = tv_options(erasing=1.0, erasing_value=(0.7,))
  params = tv_params(erase=True, erase_top=5, erase_left=3, erase_height=2, erase_width=3)
  np.testing.assert_array_equal(np.asarray(one_value.apply(jnp.asarray(image), params)),
                                np_erased(image, 5, 3, 2, 3, 0.7))


def test_erasing_boxes_follow_torchvision_get_params(brief_draws):
  """Over many draws: the box is what torchvision's loop gives for the same uniforms, fits, and
  covers tall and wide shapes; the erasing rate is p."""
  height, width, scale, ratio = 28, 20, (0.02, 0.33), (0.3, 3.3)
  u = np.asarray(jax.random.uniform(jax.random.key(1), (3000, erasing.TORCHVISION_UNIFORMS)))
  boxes = [np.asarray(b) for b in jax.jit(jax.vmap(
      lambda v: erasing.torchvision_box_from_uniforms(v, height, width, scale, ratio)))(u)]
  for k in range(len(u)):
    reference = np_erasing_params(u[k], height, width, scale, ratio)
    assert boxes[4][k] == (reference is not None)
    if reference is not None:
      assert tuple(int(b[k]) for b in boxes[:4]) == reference, k
  top, left, box_h, box_w, found = boxes
  assert found.mean() > 0.99
  top, left, box_h, box_w = top[found], left[found], box_h[found], box_w[found]
  assert (top >= 0).all() and (left >= 0).all() and (box_h < height).all() and (box_w < width).all()
  assert (top + box_h <= height).all() and (left + box_w <= width).all()
  area = box_h * box_w / (height * width)
  assert area.min() < 0.04 and area.max() > 0.25 and area.max() < 0.4
  assert (box_h > 2 * box_w).any() and (box_w > 2 * box_h).any()  # ratio is height / width.
  assert set(top[box_h == 10]) == set(range(height - 10 + 1))  # Offsets reach both ends.

  # In the vocabulary, p = 0.3 on 28x28 (where nearly every draw has a try that fits).
  assert abs(brief_draws.erase.mean() - 0.3) < 0.03
  erased = brief_draws.erase
  top, left = brief_draws.erase_top[erased], brief_draws.erase_left[erased]
  box_h, box_w = brief_draws.erase_height[erased], brief_draws.erase_width[erased]
  assert (box_h < 28).all() and (box_w < 28).all() and (top >= 0).all() and (left >= 0).all()
  assert (top + box_h <= 28).all() and (left + box_w <= 28).all()


def test_erasing_with_no_fitting_try_leaves_the_image_unchanged(image):
  """A box of the whole area is never strictly smaller than the image: all 10 tries fail."""
  options = tv_options(erasing=1.0, erasing_scale=(1.0, 1.0), erasing_ratio=(1.0, 1.0),
                       crop_ratio=(1.0, 1.0))
  square = jnp.broadcast_to(jnp.asarray(np.random.default_rng(4).random((8, 8, 1)), jnp.float32),
                            (50, 8, 8, 1))

  def draw_and_apply(key, im):
    params = options.sample(key, 8, 8)
    return params.erase, options.apply(im, params)

  erased, out = jax.jit(jax.vmap(draw_and_apply))(jax.random.split(jax.random.key(0), 50), square)
  assert not np.asarray(erased).any()
  np.testing.assert_array_equal(np.asarray(out), np.asarray(square))


# ----- The vocabulary through make_augmenter. -----

def brief_config(**fields):
  return config_for(**{**BRIEF, **fields})


def test_make_augmenter_gives_exact_shifts_flips_and_erasures():
  images = np.random.default_rng(2).random((4, 28, 28, 1)).astype(np.float32) + 1  # No 0s.
  augmenter = augment.make_augmenter(brief_config())
  options = augment.vocabulary(brief_config())

  def augment_and_draws(key, images):  # Each image's own draw: keys from split(key, batch).
    draws = jax.vmap(lambda k: options.sample(k, 28, 28))(jax.random.split(key, 4))
    return augmenter(key, images), draws

  out, params = jax.jit(augment_and_draws)(jax.random.key(7), jnp.asarray(images))
  out, params = np.asarray(out), jax.tree.map(np.asarray, params)
  assert out.shape == images.shape and out.dtype == np.float32
  for i in range(4):  # Values: the image's own, and the fill (0) of the padding and the box.
    assert set(np.unique(out[i])) <= set(np.unique(images[i])) | {0.0}
  # Rebuilt in NumPy from the draws.
  for i in range(4):
    expected = np_padded_crop(images[i], 2, params.pad_top[i], params.pad_left[i])
    expected = expected[:, ::-1] if params.flip[i] else expected
    if params.erase[i]:
      expected = np_erased(expected, params.erase_top[i], params.erase_left[i],
                           params.erase_height[i], params.erase_width[i], 0.0)
    np.testing.assert_array_equal(out[i], expected)


def test_each_image_gets_its_own_draw_under_jit_and_vmap():
  augmenter = jax.jit(augment.make_augmenter(brief_config()))
  images = jnp.broadcast_to(jnp.asarray(np.random.default_rng(3).random((8, 8, 1)) + 1,
                                        jnp.float32), (16, 8, 8, 1))
  out = np.asarray(augmenter(jax.random.key(3), images))
  assert len({o.tobytes() for o in out}) > 12  # 25 offsets x 2 flips x boxes: few collisions.
  np.testing.assert_array_equal(np.asarray(augmenter(jax.random.key(3), images)), out)
  assert np.abs(np.asarray(augmenter(jax.random.key(4), images)) - out).max() > 0
  single = augment.vocabulary(brief_config())  # vmap of the one-image function: same per image.
  keys = jax.random.split(jax.random.key(3), 16)
  np.testing.assert_array_equal(np.asarray(jax.jit(single)(keys[5], images[5])), out[5])


def test_parts_off_is_identity(image):
  images = jnp.broadcast_to(jnp.asarray(image), (3, *image.shape))
  for fields in (dict(), dict(erasing=0.0, crop_padding=0), dict(fill_mode='nearest')):
    config = config_for(**{**TV_OFF, **fields})
    out = jax.jit(augment.make_augmenter(config))(jax.random.key(0), images)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(images))
  config = augment.default_config()
  assert (config.torchvision.crop_padding, config.torchvision.erasing) == (0, 0.0)
  assert config.keras_layers.erasing == (0.0, 0.0)


def test_config_errors_name_the_field():
  for fields, field in ((dict(crop_padding=-1), 'crop_padding'),
                        (dict(erasing=1.5), 'erasing'),
                        (dict(erasing=-0.1), 'erasing'),
                        (dict(erasing_scale=(0.5, 0.2)), 'erasing_scale'),
                        (dict(erasing_scale=(0.1, 1.5)), 'erasing_scale'),
                        (dict(erasing_ratio=(0.0, 1.0)), 'erasing_ratio'),
                        (dict(erasing_ratio=(3.0, 1.0)), 'erasing_ratio'),
                        (dict(erasing_value=()), 'erasing_value')):
    with pytest.raises(ConfigError, match=rf'augment\.torchvision\.{field}='):
      augment.make_augmenter(config_for(**{**TV_OFF, **fields}))
  with pytest.raises(ConfigError, match=r'augment\.torchvision\.crop_padding='):
    TorchvisionTransforms(crop_padding=1.5)  # The config's typed field already refuses a float.
  three_values = augment.make_augmenter(config_for(**TV_OFF, erasing=0.5,
                                                   erasing_value=(0.1, 0.2, 0.3)))
  with pytest.raises(ConfigError, match=r'augment\.torchvision\.erasing_value='):
    jax.jit(three_values)(jax.random.key(0), jnp.zeros((2, 8, 8, 2)))  # Raised while tracing.
  for fields, field in ((dict(erasing=(0.5, 0.2)), 'erasing'),
                        (dict(erasing=(0.0, 1.5)), 'erasing'),
                        (dict(erasing_scale=(0.2, 1.1)), 'erasing_scale')):
    config = augment.default_config()
    config.kind = 'keras_layers'
    for name, value in fields.items():
      setattr(config.keras_layers, name, value)
    with pytest.raises(ConfigError, match=rf'augment\.keras_layers\.{field}='):
      augment.make_augmenter(config)


# ----- Keras 3's RandomErasing, against Keras itself. -----

KERAS_OFF = dict(flip='', rotation=0.0, zoom_height=0.0)
# One batch shape for both Keras tests: Keras' eager operations, compiled per shape, are reused.
KERAS_BATCH = (2000, HEIGHT, WIDTH, 1)


def keras_draw(layer, batch):
  """Keras' own draw: its transformation and the box bounds it computed (x0, x1, y0, y1)."""
  bounds = []
  compute = layer._compute_crop_bounds

  def recording(*args, **kwargs):
    start, end = compute(*args, **kwargs)
    bounds.append((np.asarray(start), np.asarray(end)))
    return start, end

  layer._compute_crop_bounds = recording
  transformation = layer.get_random_transformation(batch, training=True)
  (x0, x1), (y0, y1) = bounds  # Keras computes the width's bounds first.
  return transformation, (x0, x1, y0, y1)


def test_keras_erasing_matches_keras(keras):
  """Keras' own draws through our apply, exactly; and our draws against Keras' in distribution."""
  batch = np.random.default_rng(7).random(KERAS_BATCH).astype(np.float32)
  n = len(batch)
  layer = keras.layers.RandomErasing(factor=(0.3, 0.9), scale=(0.1, 0.5), fill_value=0.3,
                                     value_range=(0, 1), seed=5)
  t, (x0, x1, y0, y1) = keras_draw(layer, batch)
  expected = np.asarray(layer.transform_images(batch, t))
  apply_erasing = np.asarray(t['apply_erasing'])
  options = KerasLayers(**KERAS_OFF, erasing=(0.3, 0.9), erasing_scale=(0.1, 0.5),
                        erasing_fill_value=0.3)

  def ours(key, im, *erase):
    fixed = options.apply(im, KerasLayersParams(False, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, *erase))
    return fixed, options.sample(key, HEIGHT, WIDTH)

  got, params = jax.jit(jax.vmap(ours))(jax.random.split(jax.random.key(9), n),
                                         jnp.asarray(batch), apply_erasing, x0, x1, y0, y1)
  np.testing.assert_array_equal(np.asarray(got), expected)
  assert (expected != batch).any() and (expected == batch).all(axis=(1, 2, 3)).any()
  # The rate: probability uniform in (0.3, 0.9), so 0.6; Keras' single float f would be (0, f).
  assert abs(apply_erasing.mean() - 0.6) < 0.04
  assert abs(np.asarray(params.erase).mean() - 0.6) < 0.04
  for side, theirs, ours_bounds in ((WIDTH, (x0, x1), (params.erase_x0, params.erase_x1)),
                                    (HEIGHT, (y0, y1), (params.erase_y0, params.erase_y1))):
    theirs_length, ours_length = theirs[1] - theirs[0], np.asarray(ours_bounds[1] - ours_bounds[0])
    assert stats.ks_2samp(theirs_length, ours_length).pvalue > 1e-3
    assert stats.ks_2samp(theirs[0], np.asarray(ours_bounds[0])).pvalue > 1e-3
    assert ours_length.min() >= math.sqrt(0.1) * side - 1e-4
    assert ours_length.max() <= math.sqrt(0.5) * side + 1e-4


def test_keras_erasing_noise_fill(keras):
  """Keras' default fill: normal noise x value_range[1], clipped. Keras' box, our own noise."""
  batch = np.random.default_rng(8).random(KERAS_BATCH).astype(np.float32)
  layer = keras.layers.RandomErasing(factor=(1.0, 1.0), value_range=(0, 1), seed=6)
  t, (x0, x1, y0, y1) = keras_draw(layer, batch)
  expected = np.asarray(layer.transform_images(batch, t))
  noisy = KerasLayers(**KERAS_OFF, erasing=(1.0, 1.0))

  def ours(im, key, *box):
    erased = noisy.apply(im, KerasLayersParams(False, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, True, *box,
                                               key))
    return erased, erasing.box_mask(box[2], box[0], box[3], box[1], HEIGHT, WIDTH)

  keys = jax.random.split(jax.random.key(0), len(batch))
  got, inside = jax.jit(jax.vmap(ours))(jnp.asarray(batch), keys, x0, x1, y0, y1)
  got, inside = np.asarray(got), np.asarray(inside)
  assert inside.any()
  np.testing.assert_array_equal(got[~inside], expected[~inside])
  np.testing.assert_array_equal(got[~inside], batch[~inside])
  for erased in (got[inside], expected[inside]):
    assert (erased >= 0).all() and (erased <= 1).all()
    assert 0.25 < (erased == 0).mean() < 0.75  # Half the normal noise clips to 0.
