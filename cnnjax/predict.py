"""The predict job: the top ImageNet classes of photos, by any pretrained ImageNet model.

    python launch.py --config configs/imagenet_predict.py --mode predict \
      --config.model.name=resnet50 --config.model.init_from=resnet50-0676ba61.pth \
      --config.predict.images=elephant.jpg,cat.png [--workdir DIR]

`predict(config, workdir)` builds `config.model`, loads the weight file `model.init_from` through
the weights registry (`cnnjax.weights.load_weights`: any format, any registered model; a file of
another architecture is an error naming the one it looks like), prepares each photo the way the
weights' source prepared ImageNet's validation images, runs the model in inference mode and
prints, for each photo, its `predict.top` most likely classes:

    elephant.jpg
      1. n02504458 African_elephant  0.9250
      2. n01871265 tusker  0.0700

With a workdir it also writes them to DIR/predictions.json: a list of
{"image": path, "top": [{"wnid", "name", "probability"}, ...]}.

How a photo becomes the network's input depends on where the weights come from, not on the
architecture (PHOTO_RECIPES, keyed by the source and, where a model differs, its name):

- Keras (.h5 / .weights.h5): the whole photo resized to the input size with Pillow's nearest
  neighbour filter, as `keras.utils.load_img(path, target_size=...)` does by default (the aspect
  ratio is not kept);
- torchvision (.pth): the short side resized to 256 with Pillow's bilinear filter (torchvision's
  `Resize(256)` on a PIL image; the long side is int(256 * long / short)), then the central 224x224
  (`CenterCrop(224)`), as torchvision's ImageNet weights' transforms do.

Either way the photo is decoded first with Pillow and converted to RGB (its first frame; no EXIF
rotation, an alpha channel dropped), as both libraries do, and the pixels (0..255) then go
through `cnnjax.imagenet.preprocess_input` with the mode the weights expect
(`cnnjax.weights.registry.preprocess_mode`: 'caffe' for Keras' files, 'torch' for torchvision's).
"""

import dataclasses
import io
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import PIL
from PIL import Image

from cnnjax import imagenet
from cnnjax.errors import ConfigError, DataError
from cnnjax.models import create_model
from cnnjax.training import history
from cnnjax.weights import files

# Photos per forward pass.
BATCH_SIZE = 16
RESULTS_FILE = 'predictions.json'


@dataclasses.dataclass(frozen=True)
class PhotoRecipe:
  """How a weights source turned a decoded RGB photo into a network input of 0..255 pixels.

  Attributes:
    description: for the printed header.
    size: the network's input height and width.
    resize_short: None: resize the whole photo to size x size (Keras' `load_img`); else resize
      the short side to this (keeping the aspect ratio), then crop the central size x size
      (torchvision's `Resize(resize_short)` + `CenterCrop(size)`).
    resample: Pillow's filter for the resize.
  """

  description: str
  size: int
  resize_short: int | None
  resample: Image.Resampling

  def prepare(self, image: Image.Image) -> np.ndarray:
    """An RGB Pillow image -> float32 (size, size, 3) pixels in 0..255."""
    if self.resize_short is None:
      image = resize_whole(image, (self.size, self.size), self.resample)
    else:
      image = center_crop(resize_short_side(image, self.resize_short, self.resample), self.size)
    return np.asarray(image, np.float32)


KERAS, TORCHVISION = 'keras', 'torchvision'
# The source of each weights file format (`cnnjax.weights.files.FORMATS`).
SOURCE_OF_FORMAT = {files.KERAS_LEGACY_H5: KERAS, files.KERAS_WEIGHTS_H5: KERAS,
                    files.TORCH: TORCHVISION}
# (source, model name) -> recipe; (source, '*') serves every model without an entry of its own.
# A model trained at another size is one entry, as Keras' InceptionV3 (299x299).
PHOTO_RECIPES: dict[tuple[str, str], PhotoRecipe] = {
    (KERAS, '*'): PhotoRecipe('Keras load_img: resize to 224x224 (nearest)', 224, None,
                              Image.Resampling.NEAREST),
    (KERAS, 'inception_v3'): PhotoRecipe('Keras load_img: resize to 299x299 (nearest)', 299,
                                         None, Image.Resampling.NEAREST),
    (TORCHVISION, '*'): PhotoRecipe(
        'torchvision: resize the short side to 256 (bilinear), center crop 224x224', 224, 256,
        Image.Resampling.BILINEAR),
}


def photo_recipe(weights_format: str, model_name: str) -> PhotoRecipe:
  """The recipe for photos fed to `model_name` with weights in `weights_format`."""
  source = SOURCE_OF_FORMAT[weights_format]
  return PHOTO_RECIPES.get((source, model_name)) or PHOTO_RECIPES[(source, '*')]


def resize_whole(image: Image.Image, size: tuple[int, int],
                 resample: Image.Resampling = Image.Resampling.NEAREST) -> Image.Image:
  """`image` resized to (height, width) = `size`, as `keras.utils.load_img(target_size=size)`."""
  height, width = size
  if image.size == (width, height):
    return image
  return image.resize((width, height), resample)


def resize_short_side(image: Image.Image, short: int,
                      resample: Image.Resampling = Image.Resampling.BILINEAR) -> Image.Image:
  """torchvision's `Resize(short)` on a PIL image: short side -> `short`, long side truncated."""
  width, height = image.size
  if width <= height:
    new_width, new_height = short, int(short * height / width)
  else:
    new_width, new_height = int(short * width / height), short
  if (new_width, new_height) == (width, height):
    return image
  return image.resize((new_width, new_height), resample)


def center_crop(image: Image.Image, size: int) -> Image.Image:
  """torchvision's `CenterCrop(size)` of an image at least size x size (offsets rounded)."""
  width, height = image.size
  if width < size or height < size:
    raise ValueError(f'center_crop needs an image of at least {size}x{size}, got {width}x{height}')
  top = int(round((height - size) / 2.0))
  left = int(round((width - size) / 2.0))
  return image.crop((left, top, left + size, top + size))


def read_photo(path: str) -> Image.Image:
  """The photo at `path` decoded and converted to RGB, as Keras' and torchvision's loaders do.

  Raises:
    DataError: the file is missing, unreadable or not an image Pillow can decode (the message
      names it).
  """
  if not os.path.isfile(path):
    raise DataError(f'{path!r}: no such file')
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise DataError(f'{path!r}: cannot be read ({e.strerror or e})') from e
  if not data:
    raise DataError(f'{path!r}: the file is empty (0 bytes)')
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()  # Decodes now, so that a truncated file fails here.
      return image.convert('RGB')
  except PIL.UnidentifiedImageError as e:
    raise DataError(f'{path!r}: not an image file Pillow can identify') from e
  except (OSError, ValueError, SyntaxError) as e:
    raise DataError(f'{path!r}: cannot be decoded ({type(e).__name__}: {e}); a truncated or '
                    'damaged file?') from e


def read_photos(paths: Sequence[str]) -> list[Image.Image]:
  """Every photo decoded; a DataError listing every one that is missing or undecodable."""
  photos, problems = [], []
  for path in paths:
    try:
      photos.append(read_photo(path))
    except DataError as e:
      problems.append(str(e))
  if problems:
    raise DataError(f'{len(problems)} of the {len(paths)} photos in predict.images cannot be '
                    'used:\n' + '\n'.join(f'  {p}' for p in problems) +
                    '\nGive paths of JPEG, PNG, BMP or GIF files.')
  return photos


def image_paths(images: Any) -> list[str]:
  """predict.images as a list of paths: a comma-separated string (or a sequence of paths)."""
  if isinstance(images, str):
    paths = [p.strip() for p in images.split(',')]
  else:
    paths = [str(p).strip() for p in (images or ())]
  paths = [p for p in paths if p]
  if not paths:
    raise ConfigError('predict.images is empty: give the photos to classify, comma-separated, '
                      'e.g. --config.predict.images=elephant.jpg,cat.png')
  return paths


def _check_config(config: ml_collections.ConfigDict) -> tuple[list[str], int]:
  if 'predict' not in config:
    raise ConfigError('the config has no predict group (predict.images, predict.top); use '
                      'configs/imagenet_predict.py')
  if not config.model.get('init_from'):
    raise ConfigError('model.init_from is empty: --mode predict needs the pretrained weights; '
                      'pass a weights file with --config.model.init_from=FILE (see '
                      'configs/imagenet_predict.py for where to get each model\'s file)')
  if os.path.isdir(config.model.init_from):
    raise ConfigError(f'model.init_from={config.model.init_from!r} is a directory: --mode predict '
                      'takes a pretrained weights file (.h5, .weights.h5 or .pth)')
  top = config.predict.get('top', 5)
  if not isinstance(top, int) or not 1 <= top <= imagenet.NUM_CLASSES:
    raise ConfigError(f'predict.top={top!r} must be an integer from 1 to {imagenet.NUM_CLASSES}')
  return image_paths(config.predict.images), top


def _model_and_shapes(config: ml_collections.ConfigDict, size: int):
  """The model and its variables' shapes; a ConfigError unless it outputs 1000 class scores."""
  model = create_model(config.model)
  images = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), images)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), shapes, images)
  if tuple(out.shape) != (1, imagenet.NUM_CLASSES):
    raise ConfigError(
        f'model.name={config.model.name!r} (model.num_outputs={config.model.get("num_outputs")}) '
        f'outputs shape {tuple(out.shape)} per batch of one photo, not '
        f'{imagenet.NUM_CLASSES} ImageNet class scores: --mode predict needs a model with its '
        'ImageNet top (include_top, 1000 outputs), e.g. vgg16 or resnet50, and num_outputs unset')
  return model, shapes


def _preprocessing(model, weights_mode: str) -> str | None:
  """The preprocess_input mode to apply before the model, None if the model applies it itself."""
  built_in = getattr(model, 'preprocess', None)
  if built_in in (None, 'none'):
    return weights_mode
  if built_in != weights_mode:
    raise ConfigError(f"model.preprocess={built_in!r}, but the weights file expects "
                      f"{weights_mode!r} preprocessing; leave model.preprocess unset")
  return None


def write_results(results: list[dict], workdir: str) -> str:
  """Writes `results` to workdir/predictions.json atomically; returns the path."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, RESULTS_FILE)
  history.write_json(path, results)
  return path


def format_result(result: dict) -> str:
  lines = [result['image']]
  lines += [f'  {rank}. {c["wnid"]} {c["name"]}  {c["probability"]:.4f}'
            for rank, c in enumerate(result['top'], 1)]
  return '\n'.join(lines)


def predict(config: ml_collections.ConfigDict, workdir: str | None = None) -> list[dict]:
  """Classifies the photos of `predict.images` with `model.name` and the weights `model.init_from`.

  Everything that can be wrong is checked before the model runs, in this order: the config
  (weights file given, photos given, predict.top), the weights file's presence and format, the
  model (1000 outputs), every photo (all the bad ones listed in one error), the weights'
  architecture and their fit to every variable of the model.

  Returns:
    One dict per photo, in order: {'image': path, 'top': [{'wnid', 'name', 'probability'}]},
    most likely class first; also printed, and written to workdir/predictions.json if given.

  Raises:
    ConfigError: no weights file or photos, a bad predict.top, a model without the 1000-class
      ImageNet top.
    DataError: a photo missing or undecodable, the weights file missing, unreadable, of another
      architecture or not fitting the model.
  """
  from cnnjax.weights import merge_variables, registry  # pylint: disable=import-outside-toplevel
  paths, top = _check_config(config)
  name, weights = config.model.name, config.model.init_from
  recipe = photo_recipe(files.detect_format(files.require_file(
      weights, registry.weight_table(name).where_to_get)), name)
  model, shapes = _model_and_shapes(config, recipe.size)
  photos = read_photos(paths)
  variables = merge_variables(shapes, registry.load_weights(weights, name), source=weights)
  weights_mode = registry.preprocess_mode(weights, name)
  mode = _preprocessing(model, weights_mode)

  @jax.jit
  def logits(variables, pixels):
    x = pixels if mode is None else imagenet.preprocess_input(pixels, mode)
    return model.apply(variables, x, train=False).astype(jnp.float32)

  print(f'{name} with the weights of {weights}: {recipe.description}; '
        f"'{weights_mode}' preprocessing")
  results = []
  for start in range(0, len(photos), BATCH_SIZE):
    pixels = np.stack([recipe.prepare(p) for p in photos[start:start + BATCH_SIZE]])
    scores = logits(variables, jnp.asarray(pixels))
    for path, best in zip(paths[start:start + BATCH_SIZE],
                          imagenet.decode_predictions(scores, top=top, from_logits=True)):
      result = {'image': path, 'top': [{'wnid': wnid, 'name': class_name, 'probability': p}
                                       for wnid, class_name, p in best]}
      print(format_result(result), flush=True)
      results.append(result)
  if workdir:
    print(f'wrote {write_results(results, workdir)}')
  return results


def run(config: ml_collections.ConfigDict, workdir: str | None = None) -> list[dict]:
  """launch.py's entry point for --mode predict."""
  return predict(config, workdir)
