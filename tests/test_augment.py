"""Tests of cnnjax.augment: golden resamples against scipy.ndimage, sampled ranges, batching/jit,
and the Keras 3 conventions checked against Keras itself."""

import colorsys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage, stats

from cnnjax import augment
from cnnjax.augment import color, geometry
from cnnjax.augment.image_data_generator import ImageDataGenerator, ImageDataGeneratorParams
from cnnjax.augment.keras_layers import KerasLayers, KerasLayersParams
from cnnjax.augment.torchvision_transforms import TorchvisionParams, TorchvisionTransforms
from cnnjax.errors import ConfigError

HEIGHT, WIDTH, CHANNELS = 12, 10, 3  # Non-square, to catch row/column mix-ups.
TOLERANCE = 1e-4  # On [0, 1] images; float32 against scipy's float64.
DRAWS = 2000


@pytest.fixture(scope='module')
def image():
  return np.random.default_rng(0).random((HEIGHT, WIDTH, CHANNELS)).astype(np.float32)


# ----- Reference geometry, written out in NumPy (x = column, y = row; output -> input maps). -----

def np_translation(tx, ty):
  return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], np.float64)


def np_rotation(degrees):
  t = np.deg2rad(degrees)
  return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])


def np_about_center(m, height=HEIGHT, width=WIDTH):
  cx, cy = (width - 1) / 2, (height - 1) / 2
  return np_translation(cx, cy) @ m @ np_translation(-cx, -cy)


def np_keras_shear(degrees):
  s = np.deg2rad(degrees)
  return np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])


def np_flip(horizontal, vertical, height=HEIGHT, width=WIDTH):
  return np_about_center(np.diag([-1.0 if horizontal else 1.0, -1.0 if vertical else 1.0, 1.0]),
                         height, width)


def scipy_resample(image, matrix, mode, cval=0.0, output_shape=None):
  """scipy.ndimage.affine_transform(order=1) per channel; the (x, y) matrix turned to (row, col)."""
  rowcol = np.array([[matrix[1, 1], matrix[1, 0]], [matrix[0, 1], matrix[0, 0]]])
  offset = np.array([matrix[1, 2], matrix[0, 2]])
  return np.stack([
      ndimage.affine_transform(image[..., c].astype(np.float64), rowcol, offset,
                               output_shape=output_shape, order=1, mode=mode, cval=cval)
      for c in range(image.shape[-1])], axis=-1)


def max_error(ours, reference):
  return float(np.max(np.abs(np.asarray(ours, np.float64) - reference)))


# ----- The gather against scipy.ndimage.affine_transform. -----

@pytest.mark.parametrize('fill_mode', augment.FILL_MODES)
def test_resample_matches_scipy_for_every_fill_mode(image, fill_mode):
  rng = np.random.default_rng(1)
  for scale in (0.8, 1.5, 3.0):  # 3.0 reaches several periods outside the image.
    theta = rng.uniform(-1, 1)
    matrix = np.array([[scale * np.cos(theta), -np.sin(theta), rng.uniform(-8, 8)],
                       [np.sin(theta), scale * np.cos(theta), rng.uniform(-8, 8)], [0, 0, 1]])
    ours = augment.affine_resample(jnp.asarray(image), matrix, fill_mode=fill_mode, cval=0.25)
    assert max_error(ours, scipy_resample(image, matrix, fill_mode, 0.25)) < TOLERANCE


@pytest.mark.parametrize('fill_mode', augment.FILL_MODES)
def test_identity_and_flips_are_exact(image, fill_mode):
  identity = augment.affine_resample(jnp.asarray(image), np.eye(3), fill_mode=fill_mode, cval=7.0)
  np.testing.assert_array_equal(np.asarray(identity), image)
  flipped = augment.affine_resample(jnp.asarray(image), geometry.flip(True, True, HEIGHT, WIDTH),
                                    fill_mode=fill_mode, cval=7.0)
  np.testing.assert_allclose(np.asarray(flipped), image[::-1, ::-1], atol=1e-6)


def test_resample_output_shape_and_unsupported_mode(image):
  out = augment.affine_resample(jnp.asarray(image), np.diag([2.0, 0.5, 1.0]), output_shape=(5, 7))
  assert out.shape == (5, 7, CHANNELS)
  reference = scipy_resample(image, np.diag([2.0, 0.5, 1.0]), 'nearest', output_shape=(5, 7))
  assert max_error(out, reference) < TOLERANCE
  with pytest.raises(ValueError, match='fill_mode'):
    augment.affine_resample(jnp.asarray(image), np.eye(3), fill_mode='bogus')


# ----- ImageDataGenerator: every geometric op, fixed parameters, every fill mode. -----

IDG_CASES = {
    # name: (ImageDataGeneratorParams fields, the NumPy reference matrix)
    'rotation': ((23.0, 0, 0, 0, 1, 1, False, False), np_about_center(np_rotation(23.0))),
    'shift': ((0, 2.6, -1.7, 0, 1, 1, False, False), np_about_center(np_translation(2.6, -1.7))),
    'shear': ((0, 0, 0, 25.0, 1, 1, False, False), np_about_center(np_keras_shear(25.0))),
    'zoom': ((0, 0, 0, 0, 0.8, 1.3, False, False),
             np_about_center(np.diag([0.8, 1.3, 1.0]))),
    'horizontal_flip': ((0, 0, 0, 0, 1, 1, True, False), np_flip(True, False)),
    'vertical_flip': ((0, 0, 0, 0, 1, 1, False, True), np_flip(False, True)),
    'fused': ((-31.0, 1.3, 2.2, 14.0, 1.15, 0.85, True, False),
              np_about_center(np_rotation(-31.0) @ np_translation(1.3, 2.2) @ np_keras_shear(14.0)
                              @ np.diag([1.15, 0.85, 1.0])) @ np_flip(True, False)),
}


@pytest.mark.parametrize('fill_mode', ('nearest', 'reflect', 'wrap', 'constant'))
@pytest.mark.parametrize('case', sorted(IDG_CASES))
def test_image_data_generator_ops_match_scipy(image, case, fill_mode):
  fields, matrix = IDG_CASES[case]
  options = ImageDataGenerator(fill_mode=fill_mode, cval=0.5)
  ours = options.apply(jnp.asarray(image), ImageDataGeneratorParams(*fields))
  assert max_error(ours, scipy_resample(image, matrix, fill_mode, 0.5)) < TOLERANCE


def test_geometric_ops_ignore_the_value_range(image):
  params = ImageDataGeneratorParams(*IDG_CASES['fused'][0])
  options = ImageDataGenerator(fill_mode='reflect')
  scaled = options.apply(jnp.asarray(image * 255), params)
  np.testing.assert_allclose(np.asarray(scaled), 255 * np.asarray(options.apply(image, params)),
                             rtol=1e-5, atol=1e-3)


def test_directions_as_the_eye_sees_them():
  """A bright pixel right of the centre moves up under +90 degrees (counter-clockwise)."""
  square = np.zeros((9, 9, 1), np.float32)
  square[4, 6] = 1
  rotated = ImageDataGenerator().apply(jnp.asarray(square),
                                       ImageDataGeneratorParams(90.0, 0, 0, 0, 1, 1, False, False))
  assert np.unravel_index(np.argmax(rotated[..., 0]), (9, 9)) == (2, 4)
  layers = KerasLayers(flip='')
  shifted = layers.apply(jnp.asarray(square),  # RandomTranslation: positive = right and down.
                         KerasLayersParams(False, 0.0, 1.0, 1.0, 2.0, 1.0, 1.0))
  assert np.unravel_index(np.argmax(shifted[..., 0]), (9, 9)) == (5, 8)


# ----- Keras layers and torchvision geometry against scipy. -----

def test_keras_layers_fused_matches_scipy(image):
  params = KerasLayersParams(True, 21.0, 0.9, 1.25, 1.5, -2.0, 1.0)
  reference = (np_flip(True, False) @ np_about_center(np_rotation(21.0))
               @ np_about_center(np.diag([0.9, 1.25, 1.0])) @ np_translation(-1.5, 2.0))
  for keras_mode, scipy_mode in (('reflect', 'reflect'), ('constant', 'grid-constant'),
                                 ('wrap', 'grid-wrap'), ('nearest', 'nearest')):
    options = KerasLayers(flip='horizontal', fill_mode=keras_mode, fill_value=0.5)
    ours = options.apply(jnp.asarray(image), params)
    assert max_error(ours, scipy_resample(image, reference, scipy_mode, 0.5)) < TOLERANCE


def tv_params(**fields):
  defaults = dict(rotation=0.0, crop_top=0, crop_left=0, crop_height=HEIGHT, crop_width=WIDTH,
                  flip=False, shear=0.0, brightness=1.0, contrast=1.0, saturation=1.0, hue=0.0,
                  jitter_order=jnp.arange(3))
  return TorchvisionParams(**{**defaults, **fields})


def test_torchvision_identity_draw_is_identity(image):
  options = TorchvisionTransforms(crop_scale=(1, 1), crop_ratio=(1, 1))
  np.testing.assert_allclose(np.asarray(options.apply(jnp.asarray(image), tv_params())), image,
                             atol=1e-6)


def test_torchvision_fused_matches_scipy(image):
  """Rotation, crop to 8x7 resized to 12x10, flip, then an x-shear of torchvision's sign."""
  params = tv_params(rotation=17.0, crop_top=2, crop_left=1, crop_height=8, crop_width=7,
                     flip=True, shear=-12.0)
  sx, sy = 7 / WIDTH, 8 / HEIGHT
  crop = np.array([[sx, 0, 1 + 0.5 * sx - 0.5], [0, sy, 2 + 0.5 * sy - 0.5], [0, 0, 1]])
  shear = np.array([[1, np.tan(np.deg2rad(-12.0)), 0], [0, 1, 0], [0, 0, 1]])
  reference = (np_about_center(np_rotation(17.0)) @ crop @ np_flip(True, False)
               @ np_about_center(shear))
  options = TorchvisionTransforms(brightness=0, contrast=0, saturation=0)
  ours = options.apply(jnp.asarray(image), params)
  assert max_error(ours, scipy_resample(image, reference, 'grid-constant')) < TOLERANCE


def test_crop_and_resize_matches_torch_interpolate(image):
  torch = pytest.importorskip('torch')
  chw = torch.from_numpy(image).permute(2, 0, 1)[None]
  for out_shape in ((17, 13), (7, 6)):
    expected = torch.nn.functional.interpolate(chw, size=out_shape, mode='bilinear',
                                               align_corners=False, antialias=False)
    expected = expected[0].permute(1, 2, 0).numpy()
    matrix = geometry.crop_and_resize(0, 0, HEIGHT, WIDTH, *out_shape)
    ours = augment.affine_resample(jnp.asarray(image), matrix, output_shape=out_shape)
    assert max_error(ours, expected) < TOLERANCE


# ----- Sampled parameter ranges. -----

def draw(options, height=HEIGHT, width=WIDTH, n=DRAWS):
  keys = jax.random.split(jax.random.key(42), n)
  params = jax.jit(jax.vmap(lambda k: options.sample(k, height, width)))(keys)
  return jax.tree.map(np.asarray, params)


def assert_uniform(values, low, high):
  values = np.asarray(values, np.float64)
  assert values.min() >= low and values.max() <= high
  if low < 0 < high:
    assert (values < 0).any() and (values > 0).any()
  assert stats.kstest(values, stats.uniform(low, high - low).cdf).pvalue > 1e-3


def assert_coin(flags, p=0.5):
  assert abs(np.mean(flags) - p) < 0.05


def test_image_data_generator_ranges():
  params = draw(ImageDataGenerator(vertical_flip=True))
  assert_uniform(params.rotation, -40, 40)
  assert_uniform(params.shift_x, -0.2 * WIDTH, 0.2 * WIDTH)
  assert_uniform(params.shift_y, -0.2 * HEIGHT, 0.2 * HEIGHT)
  assert_uniform(params.shear, -0.2, 0.2)
  assert_uniform(params.zoom_x, 0.8, 1.2)
  assert_uniform(params.zoom_y, 0.8, 1.2)
  assert abs(np.corrcoef(params.zoom_x, params.zoom_y)[0, 1]) < 0.1  # Drawn independently.
  assert_coin(params.flip_horizontal)
  assert_coin(params.flip_vertical)
  pixels = draw(ImageDataGenerator(width_shift_range=3, height_shift_range=0,
                                   horizontal_flip=False, zoom_range=(0.5, 0.6)), n=500)
  assert_uniform(pixels.shift_x, -3, 3)
  assert not pixels.shift_y.any() and not pixels.flip_horizontal.any()
  assert_uniform(pixels.zoom_x, 0.5, 0.6)


def test_keras_layers_ranges():
  params = draw(KerasLayers(translation_height=0.1, translation_width=0.3, contrast=0.4))
  assert_uniform(params.rotation, -36, 36)  # RandomRotation(0.1): a tenth of a full turn.
  assert_uniform(params.zoom_y, 0.8, 1.2)
  np.testing.assert_array_equal(params.zoom_x, params.zoom_y)  # width_factor None keeps aspect.
  assert_uniform(params.shift_x, -0.3 * WIDTH, 0.3 * WIDTH)
  assert_uniform(params.shift_y, -0.1 * HEIGHT, 0.1 * HEIGHT)
  assert_uniform(params.contrast, 0.6, 1.4)
  assert_coin(params.flip)
  both = draw(KerasLayers(zoom_height=0.1, zoom_width=0.5), n=500)
  assert_uniform(both.zoom_x, 0.5, 1.5)
  assert_uniform(both.zoom_y, 0.9, 1.1)


def test_torchvision_ranges():
  options = TorchvisionTransforms(hue=0.1)
  params = draw(options, height=150, width=150)
  assert_uniform(params.rotation, -40, 40)
  assert_uniform(params.shear, -20, 20)
  assert_uniform(params.brightness, 0.8, 1.2)
  assert_uniform(params.saturation, 0.8, 1.2)
  assert_uniform(params.hue, -0.1, 0.1)
  assert_coin(params.flip)
  top, left = params.crop_top, params.crop_left
  crop_h, crop_w = params.crop_height, params.crop_width
  assert (top >= 0).all() and (left >= 0).all()
  assert (top + crop_h <= 150).all() and (left + crop_w <= 150).all()
  area = crop_h * crop_w / 150**2
  assert area.min() > 0.79 and area.max() <= 1.0  # Up to 1.2 asked; larger crops do not fit.
  ratio = crop_w / crop_h
  assert ratio.min() > 0.74 and ratio.max() < 1.35
  assert len(np.unique(area)) > 100 and (top > 0).any() and (left > 0).any()
  orders = {tuple(order) for order in params.jitter_order}
  assert len(orders) == 24  # All permutations of the four ColorJitter operations occur.


def test_random_resized_crop_falls_back_to_a_central_crop():
  """Crops that can never fit (scale > 1) leave torchvision's fallback: the ratio-clamped centre."""
  for (height, width), expected in (((40, 40), (0, 0, 40, 40)), ((20, 60), (0, 16, 20, 27))):
    box = augment.random_resized_crop_box(jax.random.key(0), height, width, scale=(2.0, 3.0),
                                          ratio=(3 / 4, 4 / 3))
    assert tuple(int(v) for v in box) == expected


# ----- Batches, evaluation, jit. -----

def config_for(kind, **fields):
  config = augment.default_config()
  config.kind = kind
  for name, value in fields.items():
    setattr(config[kind], name, value)  # Typed fields: a misspelt or mistyped value fails here.
  return config


@pytest.mark.parametrize('kind', ('image_data_generator', 'keras_layers', 'torchvision'))
def test_each_image_gets_its_own_transform_under_jit(image, kind):
  augmenter = jax.jit(augment.make_augmenter(config_for(kind)))
  images = jnp.broadcast_to(jnp.asarray(image), (6, *image.shape))
  out = np.asarray(augmenter(jax.random.key(3), images))
  assert out.shape == images.shape and out.dtype == np.float32
  for i in range(6):
    for j in range(i):
      assert np.abs(out[i] - out[j]).max() > 1e-3
  np.testing.assert_array_equal(np.asarray(augmenter(jax.random.key(3), images)), out)
  assert np.abs(np.asarray(augmenter(jax.random.key(4), images)) - out).max() > 1e-3


def test_identity_for_none_and_at_evaluation(image):
  images = jnp.broadcast_to(jnp.asarray(image), (4, *image.shape))
  none = augment.make_augmenter(augment.default_config())
  np.testing.assert_array_equal(np.asarray(jax.jit(none)(jax.random.key(0), images)), images)
  for kind in ('image_data_generator', 'keras_layers'):
    augmenter = augment.make_augmenter(config_for(kind))
    np.testing.assert_array_equal(np.asarray(augmenter(None, images, train=False)), images)
  torchvision = augment.make_augmenter(config_for('torchvision'))
  np.testing.assert_allclose(np.asarray(torchvision(None, images, train=False)),
                             (np.asarray(images) - 0.5) / 0.5, atol=1e-6)
  unnormalized = augment.make_augmenter(config_for('torchvision', normalize_mean=(),
                                                   normalize_std=()))
  np.testing.assert_array_equal(np.asarray(unnormalized(None, images, train=False)), images)


def test_all_parts_off_is_identity(image):
  images = jnp.broadcast_to(jnp.asarray(image), (3, *image.shape))
  configs = [
      config_for('image_data_generator', rotation_range=0.0, width_shift_range=0.0,
                 height_shift_range=0.0, shear_range=0.0, zoom_range=0.0,
                 horizontal_flip=False),
      config_for('keras_layers', flip='', rotation=0.0, zoom_height=0.0),
      config_for('torchvision', rotation=0.0, crop_scale=(1.0, 1.0),
                 crop_ratio=(WIDTH / HEIGHT, WIDTH / HEIGHT), horizontal_flip=0.0, shear=0.0,
                 brightness=0.0, contrast=0.0, saturation=0.0, normalize_mean=(),
                 normalize_std=()),
  ]
  for config in configs:
    out = jax.jit(augment.make_augmenter(config))(jax.random.key(0), images)
    np.testing.assert_allclose(np.asarray(out), images, atol=1e-5)


def test_config_errors_name_the_field():
  with pytest.raises(ConfigError, match='augment.kind'):
    augment.make_augmenter(config_for('albumentations'))
  with pytest.raises(ConfigError, match=r'augment.image_data_generator.fill_mode'):
    augment.make_augmenter(config_for('image_data_generator', fill_mode='mirror'))
  with pytest.raises(ConfigError, match=r'augment.keras_layers.flip'):
    augment.make_augmenter(config_for('keras_layers', flip='diagonal'))
  with pytest.raises(ConfigError, match=r'augment.keras_layers.zoom_height'):
    augment.make_augmenter(config_for('keras_layers', zoom_height=1.5))
  with pytest.raises(ConfigError, match=r'augment.torchvision.crop_scale'):
    augment.make_augmenter(config_for('torchvision', crop_scale=(1.2, 0.8)))
  config = config_for('keras_layers')
  config.keras_layers.zoom_factor = 0.3
  with pytest.raises(ConfigError, match='zoom_factor'):
    augment.make_augmenter(config)
  bad_normalize = augment.make_augmenter(config_for('torchvision', normalize_mean=(0.5, 0.5),
                                                    normalize_std=(0.5, 0.5)))
  with pytest.raises(ConfigError, match='normalize_mean'):
    bad_normalize(None, jnp.zeros((1, 4, 4, 3)), train=False)


def test_default_config_holds_the_reference_defaults():
  config = augment.default_config()
  assert config.kind == 'none'
  assert (config.image_data_generator.rotation_range, config.image_data_generator.zoom_range,
          config.image_data_generator.fill_mode) == (40.0, 0.2, 'nearest')
  assert (config.keras_layers.flip, config.keras_layers.rotation,
          config.keras_layers.zoom_height) == ('horizontal', 0.1, 0.2)
  assert (config.torchvision.rotation, config.torchvision.crop_scale,
          config.torchvision.shear) == (40.0, (0.8, 1.2), 20.0)
  config.kind = 'keras_layers'
  config.keras_layers.zoom_width = 0.3  # A None default still takes a number.
  assert augment.vocabulary(config).zoom_width == 0.3


# ----- Colour. -----

def test_hsv_matches_colorsys_and_round_trips():
  rgb = np.random.default_rng(5).random((200, 3)).astype(np.float32)
  rgb[:5] = [[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 0, 0], [0.2, 0.9, 0.9]]
  hsv = np.asarray(jax.jit(color.rgb_to_hsv)(jnp.asarray(rgb)))
  np.testing.assert_allclose(hsv, [colorsys.rgb_to_hsv(*p) for p in rgb], atol=1e-5)
  np.testing.assert_allclose(np.asarray(jax.jit(color.hsv_to_rgb)(jnp.asarray(hsv))), rgb,
                             atol=1e-5)


def test_color_jitter_operations(image):
  grey = image @ np.array([0.2989, 0.587, 0.114], np.float32)
  np.testing.assert_allclose(color.adjust_brightness(image, 1.5), np.clip(image * 1.5, 0, 1),
                             atol=1e-6)
  np.testing.assert_allclose(color.adjust_contrast(image, 0.7),
                             np.clip(0.7 * image + 0.3 * grey.mean(), 0, 1), atol=1e-6)
  np.testing.assert_allclose(color.adjust_saturation(image, 1.3),
                             np.clip(1.3 * image - 0.3 * grey[..., None], 0, 1), atol=1e-6)
  hue = np.asarray(jax.jit(color.adjust_hue)(image, 0.25))
  expected = [colorsys.hsv_to_rgb((h + 0.25) % 1, s, v)
              for h, s, v in (colorsys.rgb_to_hsv(*p) for p in image.reshape(-1, 3))]
  np.testing.assert_allclose(hue.reshape(-1, 3), expected, atol=1e-5)
  single = image[..., :1]
  np.testing.assert_array_equal(color.adjust_saturation(single, 0.0), single)
  np.testing.assert_array_equal(color.adjust_hue(single, 0.3), single)


def test_color_jitter_follows_the_drawn_order(image):
  options = TorchvisionTransforms(rotation=0, shear=0, horizontal_flip=0, crop_scale=(1, 1),
                                  crop_ratio=(1, 1), brightness=0.5, contrast=0.5, saturation=0.5)
  params = tv_params(brightness=1.4, contrast=0.6, saturation=1.7,
                     jitter_order=jnp.array([2, 0, 1]))
  expected = color.adjust_contrast(color.adjust_brightness(color.adjust_saturation(
      image, 1.7), 1.4), 0.6)
  ours = jax.jit(options.apply)(jnp.asarray(image), params)
  np.testing.assert_allclose(ours, expected, atol=1e-5)


# ----- Preview. -----

def test_preview_grid_writes_a_png(image, tmp_path):
  def augmenter(key, images):  # Stands in for a real augmenter: the grid is what is tested.
    return images * jax.random.uniform(key, (images.shape[0], 1, 1, 1))

  path = augment.preview_grid(jax.random.key(0), jnp.asarray(image), augmenter,
                              str(tmp_path / 'grid.png'), title='ImageDataGenerator')
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


# ----- Against Keras 3 itself. -----

@pytest.mark.filterwarnings('ignore:Please import `affine_transform`:DeprecationWarning')
def test_image_data_generator_matches_keras_on_square_images(keras):
  legacy = pytest.importorskip('keras.src.legacy.preprocessing.image')
  square = np.random.default_rng(6).random((11, 11, 3)).astype(np.float32)
  for fill_mode in ('nearest', 'reflect', 'wrap', 'constant'):
    expected = legacy.apply_affine_transform(square, theta=17, tx=1.7, ty=-2.3, shear=12, zx=0.8,
                                             zy=1.15, row_axis=0, col_axis=1, channel_axis=2,
                                             fill_mode=fill_mode, cval=0.5, order=1)
    params = ImageDataGeneratorParams(17.0, 1.7, -2.3, 12.0, 0.8, 1.15, False, False)
    ours = ImageDataGenerator(fill_mode=fill_mode, cval=0.5).apply(jnp.asarray(square), params)
    assert max_error(ours, expected) < TOLERANCE
  generator = legacy.ImageDataGenerator(rotation_range=40, width_shift_range=0.2,
                                        height_shift_range=0.2, shear_range=20, zoom_range=0.2,
                                        horizontal_flip=True, vertical_flip=True,
                                        fill_mode='reflect')
  flips = set()
  for seed in range(8):  # Keras' own draws, flips included, through both implementations.
    t = generator.get_random_transform(square.shape, seed=seed)
    params = ImageDataGeneratorParams(t['theta'], t['tx'], t['ty'], t['shear'], t['zx'], t['zy'],
                                      bool(t['flip_horizontal']), bool(t['flip_vertical']))
    flips.add((params.flip_horizontal, params.flip_vertical))
    ours = ImageDataGenerator(fill_mode='reflect').apply(jnp.asarray(square), params)
    assert max_error(ours, generator.apply_transform(square, t)) < TOLERANCE
  assert len(flips) == 4


def test_keras_layers_match_keras(keras):
  batch = np.random.default_rng(7).random((6, HEIGHT, WIDTH, CHANNELS)).astype(np.float32)
  zeros, ones = np.zeros(6, np.float32), np.ones(6, np.float32)

  def ours(options, *fields):
    apply = jax.vmap(lambda im, *p: options.apply(im, KerasLayersParams(*p)))
    return apply(jnp.asarray(batch), *[jnp.asarray(f) for f in fields])

  def theirs(layer):
    transformation = layer.get_random_transformation(batch, training=True)
    return transformation, np.asarray(layer.transform_images(batch, transformation))

  no_flip = np.zeros(6, bool)
  for fill_mode in ('reflect', 'nearest', 'wrap', 'constant'):  # Keras' names, mapped to scipy's.
    options = KerasLayers(flip='', fill_mode=fill_mode, fill_value=0.3)
    t, expected = theirs(keras.layers.RandomRotation(0.2, fill_mode=fill_mode, fill_value=0.3,
                                                     seed=1))
    got = ours(options, no_flip, np.asarray(t['angle']), ones, ones, zeros, zeros, ones)
    assert max_error(got, expected) < TOLERANCE
  for fill_mode in ('reflect', 'constant'):
    options = KerasLayers(flip='', fill_mode=fill_mode, fill_value=0.3)
    t, expected = theirs(keras.layers.RandomZoom((-0.3, 0.3), (-0.4, 0.4), fill_mode=fill_mode,
                                                 fill_value=0.3, seed=2))
    got = ours(options, no_flip, zeros, np.asarray(t['width_zoom'])[:, 0],
               np.asarray(t['height_zoom'])[:, 0], zeros, zeros, ones)
    assert max_error(got, expected) < TOLERANCE
    t, expected = theirs(keras.layers.RandomTranslation(0.3, 0.4, fill_mode=fill_mode,
                                                        fill_value=0.3, seed=3))
    shifts = np.asarray(t['translations'])
    got = ours(options, no_flip, zeros, ones, ones, shifts[:, 0], shifts[:, 1], ones)
    assert max_error(got, expected) < TOLERANCE
  for mode in ('horizontal', 'vertical', 'horizontal_and_vertical'):
    t, expected = theirs(keras.layers.RandomFlip(mode, seed=4))
    flips = np.asarray(t['flips']).reshape(-1)
    assert flips.any() and not flips.all()
    got = ours(KerasLayers(flip=mode), flips, zeros, ones, ones, zeros, zeros, ones)
    assert max_error(got, expected) < 1e-6
  t, expected = theirs(keras.layers.RandomContrast((0.5, 0.5), value_range=(0, 1), seed=5))
  factors = np.asarray(t['contrast_factor']).reshape(-1)
  got = ours(KerasLayers(flip='', contrast=0.5), no_flip, zeros, ones, ones, zeros, zeros, factors)
  assert max_error(got, expected) < TOLERANCE
