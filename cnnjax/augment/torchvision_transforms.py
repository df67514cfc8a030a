"""The PyTorch lecture's torchvision training transform, on the device.

The lecture composes `RandomRotation(40)`, `RandomResizedCrop(size, scale=(0.8, 1.2))`,
`RandomHorizontalFlip()`, `RandomAffine(degrees=0, shear=20)`, `ColorJitter(0.2, 0.2, 0.2)` and
`Normalize(mean=[0.5] * 3, std=[0.5] * 3)`. Two more torchvision transforms, off by default, extend
it: `RandomCrop(size, padding)` (before everything else) and `RandomErasing` (after ColorJitter).
Sampling follows `torchvision.transforms`:
- RandomCrop(size=input size, padding=p, fill, padding_mode): pad each side by p pixels, then
  crop the input's size at a uniform integer offset (top, left) in [0, 2p] x [0, 2p]
  (`RandomCrop.get_params`: `torch.randint(0, h - th + 1)`), i.e. an integer translation by
  (left - p, top - p), exact (no interpolation). It comes FIRST, where a CIFAR-style Compose puts
  it (`RandomCrop(32, padding=4)`, then `RandomHorizontalFlip()`). The padding is `fill_mode`:
  'grid-constant' (or 'constant') is padding_mode='constant' with `fill`, 'nearest' is 'edge',
  'mirror' is 'reflect', 'reflect' is 'symmetric';
- RandomRotation(d): angle uniform in [-d, d] degrees, positive = counter-clockwise, about the
  centre, fill 0;
- RandomResizedCrop(size, scale, ratio): up to 10 tries of area = scale x image area and
  log-uniform aspect ratio, rounded to whole pixels and kept if it fits, at a uniform integer
  offset; else the central crop with the ratio clamped into range. Then a bilinear resize to
  `size` (pixel areas aligned edge to edge; no antialiasing, which matters only when shrinking
  by a large factor);
- RandomHorizontalFlip(p): flip with probability p;
- RandomAffine(shear=s): x-shear angle uniform in [-s, s] degrees (torchvision's sign: output
  (x, y) reads input x + tan(shear) y about the centre);
- ColorJitter(b, c, s, h): factors uniform in [max(0, 1 - b), 1 + b] (likewise c, s) and hue
  shift in [-h, h], applied in a random order per image (a random permutation, as torchvision);
- RandomErasing(p, scale, ratio, value): with probability p, torchvision's box (up to 10 tries;
  `ratio` is box height / width; no box that fits leaves the image unchanged; see
  `cnnjax.augment.erasing`) set to `value`. It acts on the transformed image, after ColorJitter.
  torchvision erases the tensor after ToTensor and usually after Normalize; here Normalize is
  separate and comes last, so `erasing_value` is in PIXEL units (the value range of the input):
  torchvision's Normalize-then-RandomErasing(value=v) is erasing_value = mean + v x std per
  channel, and its default value=0 is erasing_value = normalize_mean. value='random' (noise) is
  not offered;
- Normalize(mean, std): `(x - mean) / std` per channel. It is preprocessing, not augmentation:
  the lecture's test transform applies it too, so `cnnjax.augment.make_augmenter` applies it to
  evaluation batches as well.

torchvision resamples at each geometric step (rotation and shear with nearest-neighbour by
default). Here padded crop, rotation, crop-and-resize, flip and shear compose into one matrix and
one bilinear gather with 'grid-constant' fill (torchvision's zero padding, blended at the edge as
its bilinear grid sampling does). The one difference the fusion makes: content that an earlier
step pushed out of the frame is lost in torchvision but may be brought back by a later step here
(with a padded crop, the padding too: the fill appears only where the composed map reads outside
the input); and upsampling at a crop's border blends in the pixel just outside the crop where
torchvision repeats the border pixel.

When the only geometric parts on are the padded crop and the flip (rotation = shear = 0, a crop
that is always the whole image: crop_scale (1, 1) on a square image with 1 in crop_ratio, or
crop_ratio fixed at width / height; no resize), every output pixel is an input pixel or the fill,
and `apply` skips the gather: `jnp.pad` + `jax.lax.dynamic_slice` + `jnp.where(flip,
image[:, ::-1], image)`, equal to the resample's result (tested) and much cheaper on CPU. Not for
fill_mode 'wrap' (scipy's period n - 1, which no padding mode has).

Cost: on XLA:CPU, saturation and hue (which read the three channels of each pixel) make XLA
recompute the resample inside their fusions, so ColorJitter makes this vocabulary about 5x slower
than its geometric part alone (about 550 vs 2,700 images/s of CPU time at 150x150, batch 32).
"""

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from cnnjax.augment import color, geometry
from cnnjax.augment import erasing as erasing_ops
from cnnjax.augment.resample import FILL_MODES, affine_resample
from cnnjax.errors import ConfigError

_CROP_TRIES = 10  # torchvision's RandomResizedCrop.get_params tries this many times.
JITTER_OPS = ('brightness', 'contrast', 'saturation', 'hue')
# The resampler's fill modes that `jnp.pad` reproduces exactly at integer shifts (the fast path).
PAD_MODES = {'grid-constant': 'constant', 'constant': 'constant', 'nearest': 'edge',
             'mirror': 'reflect', 'reflect': 'symmetric', 'grid-wrap': 'wrap'}


class TorchvisionParams(NamedTuple):
  """One image's draw: degrees, crop box (pixels), flip flag, degrees, jitter factors and order.

  The last fields (defaults: off) are RandomCrop's padded-crop offset (each in [0, 2 padding]) and
  RandomErasing's box [erase_top, erase_top + erase_height) x [erase_left, erase_left +
  erase_width) with its flag `erase` (the coin came up and a try fitted).
  """
  rotation: jax.Array
  crop_top: jax.Array
  crop_left: jax.Array
  crop_height: jax.Array
  crop_width: jax.Array
  flip: jax.Array
  shear: jax.Array
  brightness: jax.Array
  contrast: jax.Array
  saturation: jax.Array
  hue: jax.Array
  jitter_order: jax.Array  # A permutation of the enabled jitter operations.
  pad_top: jax.Array | int = 0
  pad_left: jax.Array | int = 0
  erase: jax.Array | bool = False
  erase_top: jax.Array | int = 0
  erase_left: jax.Array | int = 0
  erase_height: jax.Array | int = 0
  erase_width: jax.Array | int = 0


def _crop_box_from_uniforms(u: jax.Array, height: int, width: int, scale,
                            ratio) -> tuple[jax.Array, ...]:
  """`random_resized_crop_box` from 2 * _CROP_TRIES + 2 uniforms in [0, 1)."""
  area = height * width
  target_area = area * (scale[0] + (scale[1] - scale[0]) * u[:_CROP_TRIES])
  log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
  aspect = jnp.exp(log_low + (log_high - log_low) * u[_CROP_TRIES:2 * _CROP_TRIES])
  # Python's round (half to even), like torchvision's int(round(...)).
  crop_w = jnp.round(jnp.sqrt(target_area * aspect)).astype(jnp.int32)
  crop_h = jnp.round(jnp.sqrt(target_area / aspect)).astype(jnp.int32)
  fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
  first = jnp.argmax(fits)  # The first try that fits, as torchvision's loop returns it.

  # The fallback: a central crop of the whole image, its aspect ratio clamped into `ratio`.
  in_ratio = width / height
  if in_ratio < min(ratio):
    fallback_w, fallback_h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    fallback_w, fallback_h = int(round(height * max(ratio))), height
  else:
    fallback_w, fallback_h = width, height
  found = jnp.any(fits)
  crop_h = jnp.where(found, crop_h[first], fallback_h)
  crop_w = jnp.where(found, crop_w[first], fallback_w)
  # Uniform integer offsets in [0, height - crop_h] and [0, width - crop_w].
  top = jnp.floor(u[2 * _CROP_TRIES] * (height - crop_h + 1)).astype(jnp.int32)
  left = jnp.floor(u[2 * _CROP_TRIES + 1] * (width - crop_w + 1)).astype(jnp.int32)
  top = jnp.where(found, top, (height - fallback_h) // 2)
  left = jnp.where(found, left, (width - fallback_w) // 2)
  return top, left, crop_h, crop_w


def random_resized_crop_box(key: jax.Array, height: int, width: int, scale=(0.08, 1.0),
                            ratio=(3 / 4, 4 / 3)) -> tuple[jax.Array, ...]:
  """torchvision's `RandomResizedCrop.get_params`: (top, left, crop height, crop width), int32.

  Up to 10 tries of area = uniform(scale) x image area and aspect ratio log-uniform in `ratio`,
  rounded to whole pixels; the first that fits is placed at a uniform integer offset. If none
  fits, the central crop of the whole image with its aspect ratio clamped into `ratio`.
  """
  u = jax.random.uniform(key, (2 * _CROP_TRIES + 2,), jnp.float32)
  return _crop_box_from_uniforms(u, height, width, scale, ratio)


@dataclasses.dataclass(frozen=True)
class TorchvisionTransforms:
  """The lecture's training transform; each part is off at 0 (or, for the crop, scale=(1, 1)).

  Attributes:
    crop_padding: RandomCrop(size=input size, padding=crop_padding) pixels per side; 0 for none.
    rotation: RandomRotation degrees.
    crop_size: RandomResizedCrop output (height, width); () keeps the input's size.
    crop_scale: RandomResizedCrop scale (fractions of the image area).
    crop_ratio: RandomResizedCrop ratio (width / height bounds).
    horizontal_flip: RandomHorizontalFlip probability.
    shear: RandomAffine shear degrees (x-shear).
    brightness: ColorJitter brightness.
    contrast: ColorJitter contrast.
    saturation: ColorJitter saturation.
    hue: ColorJitter hue (at most 0.5).
    erasing: RandomErasing p (probability of erasing a box); 0 for none.
    erasing_scale: RandomErasing scale (fractions of the image area).
    erasing_ratio: RandomErasing ratio (box height / width bounds).
    erasing_value: RandomErasing value in pixel units (one value serves all channels, or one per
      channel); torchvision's Normalize-then-erase value 0 is `normalize_mean` here.
    normalize_mean: Normalize mean per channel (one value serves all); () for no Normalize.
    normalize_std: Normalize std per channel.
    fill_mode: how the resample fills outside the image (`cnnjax.augment.resample` modes), and
      RandomCrop's padding mode.
    fill: the fill value (torchvision's `fill`), RandomCrop's too.
    value_range: (low, high) of the pixel values, where ColorJitter clips.
  """
  crop_padding: int = 0
  rotation: float = 40.0
  crop_size: tuple[int, ...] = ()
  crop_scale: tuple[float, float] = (0.8, 1.2)
  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
  horizontal_flip: float = 0.5
  shear: float = 20.0
  brightness: float = 0.2
  contrast: float = 0.2
  saturation: float = 0.2
  hue: float = 0.0
  erasing: float = 0.0
  erasing_scale: tuple[float, float] = (0.02, 0.33)
  erasing_ratio: tuple[float, float] = (0.3, 3.3)
  erasing_value: tuple[float, ...] = (0.0,)
  normalize_mean: tuple[float, ...] = (0.5,)
  normalize_std: tuple[float, ...] = (0.5,)
  fill_mode: str = 'grid-constant'
  fill: float = 0.0
  value_range: tuple[float, float] = (0.0, 1.0)

  def __post_init__(self):
    where = 'augment.torchvision'
    for name in ('rotation', 'shear', 'brightness', 'contrast', 'saturation', 'hue'):
      if getattr(self, name) < 0:
        raise ConfigError(f'{where}.{name}={getattr(self, name)!r} is negative: give the '
                          'half-width of the range (the draw is symmetric)')
    if self.hue > 0.5:
      raise ConfigError(f'{where}.hue={self.hue!r}: torchvision allows hue in [0, 0.5]')
    for name in ('horizontal_flip', 'erasing'):
      if not 0 <= getattr(self, name) <= 1:
        raise ConfigError(f'{where}.{name}={getattr(self, name)!r} is a probability: '
                          'use a value in [0, 1]')
    if (isinstance(self.crop_padding, bool) or not isinstance(self.crop_padding, int)
        or self.crop_padding < 0):
      raise ConfigError(f'{where}.crop_padding={self.crop_padding!r}: give the padding per side '
                        'as a whole number of pixels >= 0 (0 for no RandomCrop)')
    low, high = self.erasing_scale
    if not 0 <= low <= high <= 1:
      raise ConfigError(f'{where}.erasing_scale={self.erasing_scale!r}: use fractions of the '
                        'image area, a pair 0 <= low <= high <= 1')
    low, high = self.erasing_ratio
    if not 0 < low <= high:
      raise ConfigError(f'{where}.erasing_ratio={self.erasing_ratio!r}: use a pair '
                        '0 < low <= high (box height / width)')
    if not self.erasing_value:
      raise ConfigError(f'{where}.erasing_value=(): give one value for all channels, or one per '
                        'channel')
    if len(self.crop_size) not in (0, 1, 2) or any(s <= 0 for s in self.crop_size):
      raise ConfigError(f'{where}.crop_size={self.crop_size!r}: use () for the input size, (s,) '
                        'for s x s, or (height, width)')
    for name in ('crop_scale', 'crop_ratio'):
      low, high = getattr(self, name)
      if not 0 < low <= high:
        raise ConfigError(f'{where}.{name}={getattr(self, name)!r}: use a pair 0 < low <= high')
    if len(self.normalize_mean) != len(self.normalize_std):
      raise ConfigError(f'{where}.normalize_mean={self.normalize_mean!r} and normalize_std='
                        f'{self.normalize_std!r} differ in length: give one value per channel '
                        '(or one for all) in both')
    if any(s <= 0 for s in self.normalize_std):
      raise ConfigError(f'{where}.normalize_std={self.normalize_std!r} has a value <= 0')
    if self.fill_mode not in FILL_MODES:
      raise ConfigError(f'{where}.fill_mode={self.fill_mode!r} is not one of {FILL_MODES}')

  @property
  def jitter_ops(self) -> tuple[str, ...]:
    """The ColorJitter operations that are on (nonzero), in torchvision's order."""
    return tuple(name for name in JITTER_OPS if getattr(self, name) > 0)

  def output_size(self, height: int, width: int) -> tuple[int, int]:
    if not self.crop_size:
      return height, width
    return tuple(self.crop_size) * 2 if len(self.crop_size) == 1 else tuple(self.crop_size)

  def sample(self, key: jax.Array, height: int, width: int) -> TorchvisionParams:
    """Draws one image's transform."""
    # One draw of uniforms for the whole transform: a single random-bits computation to compile.
    u = jax.random.uniform(key, (11 + 2 * _CROP_TRIES + 2,), jnp.float32)

    def factor(i, amount):
      low = max(0.0, 1 - amount)
      return low + (1 + amount - low) * u[i]

    top, left, crop_h, crop_w = _crop_box_from_uniforms(u[11:], height, width, self.crop_scale,
                                                        self.crop_ratio)
    extra = {}
    # The parts added after the lecture's draw from their own uniforms, so that switching them on
    # leaves the draws of the others as they were.
    n_pad = 2 if self.crop_padding else 0
    n_erase = 1 + erasing_ops.TORCHVISION_UNIFORMS if self.erasing > 0 else 0
    if n_pad + n_erase:
      v = jax.random.uniform(jax.random.fold_in(key, 1), (n_pad + n_erase,), jnp.float32)
    if n_pad:
      # torch.randint(0, 2p + 1): uniform over 0..2p (the minimum guards float32 rounding up).
      span = 2 * self.crop_padding
      extra['pad_top'], extra['pad_left'] = (
          jnp.minimum(jnp.floor(v[i] * (span + 1)).astype(jnp.int32), span) for i in (0, 1))
    if n_erase:
      out_h, out_w = self.output_size(height, width)
      e_top, e_left, e_h, e_w, found = erasing_ops.torchvision_box_from_uniforms(
          v[n_pad + 1:], out_h, out_w, self.erasing_scale, self.erasing_ratio)
      extra.update(erase=(v[n_pad] < self.erasing) & found, erase_top=e_top, erase_left=e_left,
                   erase_height=e_h, erase_width=e_w)
    return TorchvisionParams(
        rotation=(2 * u[0] - 1) * self.rotation,
        crop_top=top, crop_left=left, crop_height=crop_h, crop_width=crop_w,
        flip=u[1] < self.horizontal_flip,
        shear=(2 * u[2] - 1) * self.shear,
        brightness=factor(3, self.brightness),
        contrast=factor(4, self.contrast),
        saturation=factor(5, self.saturation),
        hue=(2 * u[6] - 1) * self.hue,
        # Sorting uniforms gives a uniformly random permutation (torch.randperm's distribution).
        jitter_order=jnp.argsort(u[7:7 + max(len(self.jitter_ops), 1)]),
        **extra)

  def matrix(self, params: TorchvisionParams, height: int, width: int) -> jax.Array:
    """The output-to-input map of padded crop, rotation, crop-and-resize, flip and shear in order.

    The padded crop reads the input at (x + left - p, y + top - p): an integer translation, so a
    resample through it alone (or with the flip) is exact.
    """
    out_h, out_w = self.output_size(height, width)
    padded_crop = geometry.identity()
    if self.crop_padding:
      padded_crop = geometry.translation(params.pad_left - self.crop_padding,
                                         params.pad_top - self.crop_padding)
    rotation = geometry.about_center(geometry.rotation(params.rotation), height, width)
    crop = geometry.crop_and_resize(params.crop_top, params.crop_left, params.crop_height,
                                    params.crop_width, out_h, out_w)
    flip = geometry.flip(params.flip, False, out_h, out_w)
    shear = geometry.about_center(geometry.shear_x(jnp.tan(jnp.deg2rad(params.shear))),
                                  out_h, out_w)
    return padded_crop @ rotation @ crop @ flip @ shear

  def is_integer_shift(self, height: int, width: int) -> bool:
    """Whether the geometry is always a padded crop and a flip (`apply` then skips the gather).

    True when rotation and shear are off, the output keeps the input's size, and the resized crop
    is always the whole image: crop_scale (1, 1) with either a square image and 1 in crop_ratio
    (any other box of that area is too tall or too wide to fit, and the fallback is the whole
    image) or crop_ratio fixed at width / height.
    """
    low, high = self.crop_ratio
    whole_crop = (tuple(self.crop_scale) == (1, 1)
                  and ((height == width and low <= 1 <= high)
                       or low == high == width / height))
    return (self.rotation == 0 and self.shear == 0 and whole_crop
            and self.output_size(height, width) == (height, width)
            and self.fill_mode in PAD_MODES)

  def integer_shift(self, image: jax.Array, params: TorchvisionParams) -> jax.Array:
    """The padded crop and the flip without a resample: pad, dynamic slice, mirror.

    Equal to `affine_resample` through `matrix` when `is_integer_shift` holds (tested); the result
    is in the input's float dtype (float32 for integer images), as the resample's.
    """
    height, width, channels = image.shape
    dtype = image.dtype if jnp.issubdtype(image.dtype, jnp.floating) else jnp.float32
    image = image.astype(dtype)
    p = self.crop_padding
    if p:
      mode = PAD_MODES[self.fill_mode]
      kwargs = {'constant_values': jnp.asarray(self.fill, dtype)} if mode == 'constant' else {}
      padded = jnp.pad(image, ((p, p), (p, p), (0, 0)), mode=mode, **kwargs)
      image = jax.lax.dynamic_slice(padded, (params.pad_top, params.pad_left, 0),
                                    (height, width, channels))
    if self.horizontal_flip > 0:
      image = jnp.where(params.flip, image[:, ::-1], image)
    return image

  def erase(self, image: jax.Array, params: TorchvisionParams) -> jax.Array:
    """RandomErasing: the draw's box set to `erasing_value` when `params.erase`."""
    if not self.erasing > 0:
      return image
    height, width, channels = image.shape
    if len(self.erasing_value) not in (1, channels):
      raise ConfigError(f'augment.torchvision.erasing_value={self.erasing_value!r} has '
                        f'{len(self.erasing_value)} values for images with {channels} '
                        'channel(s): give one value per channel, or one for all')
    mask = erasing_ops.box_mask(params.erase_top, params.erase_left,
                                params.erase_top + params.erase_height,
                                params.erase_left + params.erase_width, height, width)
    return erasing_ops.erase(image, mask & params.erase, self.erasing_value)

  def color_jitter(self, image: jax.Array, params: TorchvisionParams) -> jax.Array:
    """ColorJitter's enabled operations in the draw's order."""
    ops = self.jitter_ops
    if not ops:
      return image
    branches = [
        lambda im, name=name: getattr(color, f'adjust_{name}')(im, getattr(params, name),
                                                                self.value_range)
        for name in ops]
    for step in range(len(ops)):
      image = jax.lax.switch(params.jitter_order[step], branches, image)
    return image

  def resample(self, image: jax.Array, params: TorchvisionParams) -> jax.Array:
    """The geometric parts through one bilinear resample (the general path)."""
    height, width = image.shape[:2]
    return affine_resample(image, self.matrix(params, height, width), fill_mode=self.fill_mode,
                           cval=self.fill, output_shape=self.output_size(height, width))

  def apply(self, image: jax.Array, params: TorchvisionParams) -> jax.Array:
    """Applies one draw (e.g. fixed parameters) to one image.

    One resample (or, for a padded crop and flip alone, `integer_shift`), then ColorJitter, then
    RandomErasing.
    """
    height, width = image.shape[:2]
    if self.is_integer_shift(height, width):
      image = self.integer_shift(image, params)
    else:
      image = self.resample(image, params)
    return self.erase(self.color_jitter(image, params), params)

  def __call__(self, key: jax.Array, image: jax.Array) -> jax.Array:
    """Augments one (height, width, channels) image (Normalize excluded: see `normalize`)."""
    height, width = image.shape[:2]
    params = self.sample(key, height, width)
    return self.apply(image, params)

  def normalize(self, images: jax.Array) -> jax.Array:
    """Normalize, for training and evaluation batches alike; identity when mean is ()."""
    if not self.normalize_mean:
      return images
    channels = images.shape[-1]
    if len(self.normalize_mean) not in (1, channels):
      raise ConfigError(f'augment.torchvision.normalize_mean={self.normalize_mean!r} has '
                        f'{len(self.normalize_mean)} values for images with {channels} '
                        'channel(s): give one value per channel, or one for all')
    return color.normalize(images, self.normalize_mean, self.normalize_std)
