"""The visualize job: every figure of "seeing inside the convnet" for a trained or pretrained model.

`run(config, workdir)` writes, under `workdir`:

- convolution/: hand-made kernels on an image, the lecture's Gabor kernels, a Gabor response
  magnitude, a Gabor filter bank over three images, and the 6x6 pooling example (data sets of
  small grayscale images only: `visualize.convolution_demos`);
- activations/: the input image and the channel grid of every conv and pool layer (16 per row);
- filter_patterns/: the 8x8 grid of the first 64 filters of each layer of `visualize.filter_layers`
  by the reference recipe, and by the Lucid-style mode when `visualize.lucid` is set;
- class_activation_maps/: every method of `visualize.cam_methods` on a few images (CAM only where
  the model ends in global average pooling), the reference's heatmap-and-overlay pair, one
  image's maps for many classes at once and, with `visualize.top_channels` set and a model ending
  in global average pooling and a dense layer, the activation maps of the channels with the
  highest weight for the predicted class (the PyTorch lecture's figure);
- figures.json: the list of files written, by section;
- predictions.json (ImageNet models): the photo's top-5 classes: index, name, probability, logit.

The model comes from one of two places:

- a trained run (`visualize.checkpoint_dir`, e.g. the main job's workdir): its best checkpoint by
  val_loss is restored, with the model and optimizer described by the run's own config.json, and
  the images come from `config.data` (`visualize.split`);
- a pretrained weight file (`visualize.weights`, e.g. Keras' VGG16 ImageNet weights): the model is
  `config.model`, the weights go through `cnnjax.weights`, the image is `visualize.image` (a photo)
  prepared with `cnnjax.imagenet.preprocess_input` (`visualize.preprocess`; by default the mode
  the file's source expects). With `visualize.model_from_weights` the file's own architecture
  (`cnnjax.weights.identify_architecture`) is the model, so one config takes Keras' and
  torchvision's ResNet50 files alike; `visualize.per_model` then gives each architecture its layer
  names ({model name: {visualize field: value}}), used for the fields the config leaves empty.

Every layer a field names is checked against the model before anything is drawn: a misspelt name
is an error naming the field and listing the model's layers, not a failure minutes in.
"""

import dataclasses
import json
import os
import time
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnnjax import data as data_lib
from cnnjax.training.checkpointing import Checkpoints
from cnnjax.errors import ConfigError, DataError
from cnnjax.models import create_model
from cnnjax.models.layer_outputs import layer_types
from cnnjax.training.optimizers import create_optimizer
from cnnjax.training.train_state import create_train_state
from cnnjax.visualize import activations
from cnnjax.visualize import cam
from cnnjax.visualize import convolution
from cnnjax.visualize import figures
from cnnjax.visualize import filter_patterns
from cnnjax.visualize import kernels
from cnnjax.visualize import overlay
from cnnjax.visualize.layer_probe import apply_until
from cnnjax.training.event_log import EventLog
from cnnjax.progress import Progress

# The 6x6 example of SPEC.md section 1 (3x3 windows, stride 3).
POOLING_EXAMPLE = ((2, 1, 7, 1, 2, 5), (5, 0, 3, 4, 1, 2), (1, 7, 8, 3, 3, 0),
                   (0, 3, 2, 0, 1, 1), (6, 2, 5, 3, 0, 3), (3, 6, 0, 2, 1, 0))
# The lecture's grayscale conversion of colour images.
GRAY_WEIGHTS = (0.2990, 0.5870, 0.1140)
# ImageNet models show the top classes, not all 1,000, in the many-classes figure.
_MAX_CLASSES_SHOWN = 10
# Fields of the visualize group that configs/visualize_fashion_mnist.py's group predates, and the
# value a config without them gets.
OPTIONAL_FIELDS = {'model_from_weights': False, 'per_model': None, 'top_channels': 0,
                   'activation_channels': 0}
PREDICTIONS_FILE = 'predictions.json'

# Filter patterns computed per jitted call (`filter_pattern_figures`): one step of its progress.
FILTERS_PER_CALL = 8
# At most this many Adam steps of the Lucid mode per jitted call: one step of its progress.
LUCID_STEPS_PER_CALL = 32
# Channels whose masked images one jitted Score-CAM call runs: one step of its progress.
SCORE_CAM_CHANNELS_PER_CALL = 32


@dataclasses.dataclass
class Subject:
  """The model being looked at, its variables and the images shown to it.

  Attributes:
    model: the Flax model.
    variables: its variables.
    name: a name for figure titles.
    images: (N, H, W, C) images in the model's input units.
    display: the same images as floats in [0, 1] for drawing.
    labels: (N,) true classes, -1 where unknown.
    class_names: a name per class (may be empty).
    unit_preprocess: maps [0, 1] images to the model's input units (for the Lucid mode).
    top_classes: ImageNet models: the first image's top-5 (class, name, probability, logit).
  """

  model: nn.Module
  variables: dict
  name: str
  images: jax.Array
  display: jax.Array
  labels: np.ndarray
  class_names: Sequence[str]
  unit_preprocess: Callable[[jax.Array], jax.Array]
  top_classes: Sequence[tuple[int, str, float, float]] = ()

  def class_name(self, index: int) -> str:
    if 0 <= index < len(self.class_names):
      return self.class_names[index]
    return f'class {index}'


def _identity(images: jax.Array) -> jax.Array:
  return images


def _caffe_from_unit(images: jax.Array) -> jax.Array:
  from cnnjax import imagenet  # pylint: disable=import-outside-toplevel
  return imagenet.preprocess_input(images * 255.0, 'caffe')


def _torch_from_unit(images: jax.Array) -> jax.Array:
  from cnnjax import imagenet  # pylint: disable=import-outside-toplevel
  return imagenet.preprocess_input(images * 255.0, 'torch')


def _tf_from_unit(images: jax.Array) -> jax.Array:
  from cnnjax import imagenet  # pylint: disable=import-outside-toplevel
  return imagenet.preprocess_input(images * 255.0, 'tf')


# Named functions, not lambdas: they are static arguments of a jitted function.
UNIT_PREPROCESS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'none': _identity, 'caffe': _caffe_from_unit, 'torch': _torch_from_unit, 'tf': _tf_from_unit,
}


def distinct_class_examples(labels: np.ndarray, count: int,
                            classes: Sequence[int] | None = None) -> list[int]:
  """Indices of the first example of each class: of `classes` in that order, else in order seen."""
  labels = np.asarray(labels)
  if classes is None:
    _, first = np.unique(labels, return_index=True)
    return sorted(first.tolist())[:count]
  indices = []
  for c in classes:
    found = np.flatnonzero(labels == c)
    if not len(found):
      raise DataError(f'no example of class {c} in the {len(labels)} images to draw from; choose '
                      'other visualize.filter_bank_classes or use more data')
    indices.append(int(found[0]))
  return indices


def _run_config(checkpoint_dir: str,
                config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config the checkpoint was trained with (its config.json), else `config` itself."""
  path = os.path.join(checkpoint_dir, 'config.json')
  if not os.path.isfile(path):
    print(f'note: {path} is missing; building the model from this config\'s model group')
    return config
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def restore_trained(config: ml_collections.ConfigDict, image_shape: Sequence[int]):
  """The model and parameters of the best checkpoint of the run in `visualize.checkpoint_dir`.

  Returns:
    (model, variables, the run's config, the best epoch).

  Raises:
    ConfigError: when the directory holds no checkpoint; the message says to run the main job.
  """
  run_dir = config.visualize.checkpoint_dir
  if not run_dir:
    raise ConfigError('visualize.checkpoint_dir is empty: set it to the workdir of a training run '
                      '(e.g. runs/fashion_mnist), or set visualize.weights to a pretrained file')
  directory = os.path.join(run_dir, 'checkpoints')
  train_command = ('python launch.py --config configs/fashion_mnist.py --workdir '
                   f'{run_dir}')
  if not os.path.isdir(directory):
    raise ConfigError(f'no checkpoints in {directory} (visualize.checkpoint_dir={run_dir!r}): run '
                      f'the main job first, e.g. `{train_command}`, or point '
                      'visualize.checkpoint_dir at the workdir of a finished run')
  run_config = _run_config(run_dir, config)
  model = create_model(run_config.model)
  # Only the state's structure matters for restoring: the schedule's length is irrelevant.
  like = create_train_state(model, create_optimizer(run_config.train, 1), tuple(image_shape),
                            int(run_config.get('seed', 0)),
                            ema_decay=float(run_config.train.get('ema_decay', 0.0)))
  checkpoints = Checkpoints(directory)
  try:
    best_step = checkpoints.best_step()
    if best_step is None:
      raise ConfigError(f'{directory} holds no finished checkpoint: run the main job to the end '
                        f'first, e.g. `{train_command}`')
    state, history = checkpoints.restore(best_step, jax.device_get(like))
  finally:
    checkpoints.close()
  # The variables the run evaluated (its moving average, if it kept one).
  return model, state.eval_variables(), run_config, history[-1]['epoch']


def _trained_subject(
    config: ml_collections.ConfigDict) -> tuple[Subject, data_lib.ArrayDataset]:
  v = config.visualize
  datasets = data_lib.load_datasets(config.data)
  if v.split not in ('train', 'validation', 'test'):
    raise ConfigError(f"visualize.split must be 'train', 'validation' or 'test', not {v.split!r}")
  split = getattr(datasets, v.split)
  model, variables, run_config, best_epoch = restore_trained(config, datasets.image_shape)
  print(f'visualizing {run_config.model.name} from the checkpoint of epoch {best_epoch} in '
        f'{v.checkpoint_dir}')
  indices = distinct_class_examples(split.labels, v.num_examples)
  images = jnp.asarray(split.images[indices])
  return Subject(model, variables, run_config.model.name, images, images,
                 np.asarray(split.labels[indices]), v.class_names, _identity), split


def load_photo(path: str, size: int) -> np.ndarray:
  """An RGB photo resized to size x size (nearest neighbour, as Keras' load_img), 0..255 float32."""
  from cnnjax import predict  # pylint: disable=import-outside-toplevel
  if not os.path.isfile(path):
    raise DataError(f'visualize.image={path!r} is not a file; give the path of a photo (JPEG or '
                    'PNG), e.g. the reference\'s African elephant picture')
  return np.asarray(predict.resize_whole(predict.read_photo(path), (size, size)), np.float32)


def pretrained_variables(model, model_name: str, path: str, input_shape: Sequence[int]):
  """The model's variables from a pretrained weight file (the table registered for the model)."""
  # Imported here: only this path needs the weight readers (h5py and friends).
  from cnnjax.weights import load_weights, merge_variables  # pylint: disable=import-outside-toplevel
  variables = jax.eval_shape(model.init, jax.random.key(0),
                             jnp.zeros((1, *input_shape), jnp.float32))
  return merge_variables(variables, load_weights(path, model_name), source=path)


def _option(v: ml_collections.ConfigDict, field: str):
  return v.get(field, OPTIONAL_FIELDS[field])


def _per_model(v: ml_collections.ConfigDict) -> dict[str, Any]:
  """`visualize.per_model` as {model name: {field: value}}, every field checked."""
  per_model = _option(v, 'per_model')
  if not per_model:
    return {}
  entries = {}
  for name, entry in per_model.items():
    entry = dict(entry)
    # Only names and lists of names: an empty one ('' or ()) in the config is what it fills.
    unknown = [f for f in entry if f not in v or not isinstance(v[f], (str, tuple))]
    if unknown:
      raise ConfigError(f'visualize.per_model.{name} sets {unknown}, which are not fields it can '
                        f'set; it sets the visualize fields of layer names (activation_layers, '
                        'filter_layers, cam_layer) and other names')
    entries[name] = entry
  return entries


def pretrained_model_name(config: ml_collections.ConfigDict) -> str:
  """The model a pretrained weight file goes into: `model.name`, or the file's architecture.

  With `visualize.model_from_weights` the file decides (`cnnjax.weights.identify_architecture`),
  and with `visualize.per_model` set it must be one of the architectures listed there.

  Raises:
    DataError: the file is missing or looks like no architecture cnnjax knows.
    ConfigError: it holds an architecture this config has no layers for.
  """
  v = config.visualize
  if not _option(v, 'model_from_weights'):
    return config.model.name
  # Imported here: only this path needs the weight readers (h5py and friends).
  from cnnjax.weights import identify_architecture, read_weights  # pylint: disable=import-outside-toplevel
  per_model = _per_model(v)
  wanted = ' or '.join(sorted(per_model)) or 'a model cnnjax has'
  if not os.path.isfile(v.weights):
    raise DataError(f'visualize.weights={v.weights!r} is not a file; give the path of a '
                    f'{wanted} weight file (cnnjax never downloads weights)')
  found = identify_architecture(read_weights(v.weights))
  if found is None:
    raise DataError(f'visualize.weights={v.weights!r} does not look like the weights of any '
                    f'architecture cnnjax knows; this config draws {wanted}: give such a file')
  if per_model and found not in per_model:
    raise ConfigError(f'visualize.weights={v.weights!r} holds {found} weights, but this config '
                      f'draws {wanted} (the models of visualize.per_model); use the '
                      f'configs/visualize_*.py for {found}, or add visualize.per_model.{found} '
                      'with its layer names')
  if found != config.model.name:
    print(f'{v.weights} holds {found} weights: visualizing model.name={found!r}')
  return found


def _is_empty(value: Any) -> bool:
  return isinstance(value, (str, tuple, list)) and not value


def resolve_pretrained_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` with the model the weight file goes into and that model's layer names.

  `model.name` becomes `pretrained_model_name(config)`, and each visualize field left empty ('' or
  ()) takes its value from `visualize.per_model[model.name]`, if that sets it; fields given a value
  (in the config or on the command line) keep it.
  """
  name = pretrained_model_name(config)
  per_model = _per_model(config.visualize)
  config = config.copy_and_resolve_references()
  config.model.name = name
  v = config.visualize
  for field, value in per_model.get(name, {}).items():
    if _is_empty(v[field]):
      v[field] = value
  return config


def _pretrained_subject(config: ml_collections.ConfigDict) -> Subject:
  from cnnjax import imagenet  # pylint: disable=import-outside-toplevel
  from cnnjax.weights.registry import preprocess_mode  # pylint: disable=import-outside-toplevel
  v = config.visualize
  if not v.image:
    raise ConfigError('visualize.image is empty: with pretrained weights the job needs a photo to '
                      'look at; set visualize.image to a JPEG or PNG file')
  mode = v.preprocess or preprocess_mode(v.weights, config.model.name)
  if mode not in UNIT_PREPROCESS:
    raise ConfigError(f'visualize.preprocess={mode!r} is unknown; choose one of '
                      f'{sorted(UNIT_PREPROCESS)}')
  size = v.image_size
  model = create_model(config.model)
  variables = pretrained_variables(model, config.model.name, v.weights, (size, size, 3))
  photo = load_photo(v.image, size)[None]
  display = jnp.asarray(photo / 255.0)
  images = UNIT_PREPROCESS[mode](display)
  num_outputs = jax.eval_shape(lambda x: model.apply(variables, x), images).shape[-1]
  class_names = list(v.class_names)
  top_classes = []
  if num_outputs == imagenet.NUM_CLASSES:
    class_names = class_names or [name for _, name, _ in imagenet.imagenet_classes()]
    logits = np.asarray(model.apply(variables, images)[0], np.float32)
    probabilities = np.asarray(jax.nn.softmax(logits))
    # Ranked by the logits: far apart, the probabilities of all but the first round to 0.
    best = np.argsort(-logits, kind='stable')[:5]
    top_classes = [(int(i), class_names[i], float(probabilities[i]), float(logits[i]))
                   for i in best]
    print('predicted: ' + ', '.join(f'{name} {p:.3f}' for _, name, p, _ in top_classes[:3]))
  print(f'visualizing {config.model.name} with the weights of {v.weights} on {v.image} '
        f"('{mode}' preprocessing)")
  return Subject(model, variables, config.model.name, images, display, np.full(1, -1),
                 class_names, UNIT_PREPROCESS[mode], top_classes)


def _module_exists(variables: dict, path: str) -> bool:
  """Whether a '/'-joined module path holds variables (a layer inside a block: 'layer4/2/conv3')."""
  for tree in variables.values():
    node = tree
    for part in path.split('/'):
      if not hasattr(node, 'get') or part not in node:
        break
      node = node[part]
    else:
      return True
  return False


def check_layer_names(subject: Subject, config: ml_collections.ConfigDict) -> None:
  """Every layer the config names for a section it draws is a layer of the model.

  Activations may name layers inside blocks by path ('layer4/2/conv3'); filter patterns and class
  activation maps reach the model's direct layers (`layer_probe`).

  Raises:
    ConfigError: naming each field and layer that does not fit, and listing the model's layers.
  """
  v = config.visualize
  wanted = []
  if 'activations' in v.sections:
    wanted += [('activation_layers', name, True) for name in v.activation_layers]
  if 'filter_patterns' in v.sections:
    wanted += [('filter_layers', name, False) for name in v.filter_layers]
  if 'class_activation_maps' in v.sections and v.cam_layer:
    wanted.append(('cam_layer', v.cam_layer, False))
  if not wanted:
    return
  layers = list(layer_types(subject.model, subject.variables, subject.images[:1]))
  bad = [f'visualize.{field} has {name!r}' for field, name, nested in wanted
         if name not in layers and not (nested and '/' in name and
                                        _module_exists(subject.variables, name))]
  if bad:
    raise ConfigError(f'{"; ".join(bad)}: no such layer in {subject.name}, whose layers are '
                      f'{layers} (activation_layers may also name layers inside them by path, as '
                      "their variables are named: 'layer4/2/conv3'); set those fields to some of "
                      'them')


def _gray(images: jax.Array) -> jax.Array:
  """(N, H, W, C) -> (N, H, W): the channel itself, or the lecture's luminance of RGB."""
  if images.shape[-1] == 1:
    return images[..., 0]
  return jnp.tensordot(images, jnp.asarray(GRAY_WEIGHTS), axes=1)


def convolution_figures(subject: Subject, split, config, out_dir: str) -> list[str]:
  """Hand-made kernels, Gabor kernels and responses, a filter bank, the pooling example."""
  v = config.visualize
  written = []
  image = _gray(subject.display[:1])[0]
  stack = np.stack(list(kernels.HAND_MADE_KERNELS.values()))
  filtered = convolution.correlate(image, stack, padding='same')
  written.append(figures.plot_kernel_demo(
      image, kernels.HAND_MADE_KERNELS, dict(zip(kernels.HAND_MADE_KERNELS, filtered)),
      os.path.join(out_dir, 'hand_made_kernels.png')))

  lecture = list(kernels.LECTURE_GABORS)
  written.append(figures.plot_gabor_kernels([g.kernel() for g in lecture],
                                            [g.label() for g in lecture],
                                            os.path.join(out_dir, 'gabor_kernels.png')))
  demo = kernels.GaborParams(*v.gabor_demo)
  written.append(figures.plot_gabor_response(
      image, demo.kernel(), convolution.response_magnitude(image, demo.kernel()), demo.label(),
      os.path.join(out_dir, 'gabor_response.png')))

  bank = kernels.gabor_bank()
  bank_kernels = [g.kernel() for g in bank]
  indices = distinct_class_examples(split.labels, 3, v.filter_bank_classes)
  bank_images = _gray(jnp.asarray(split.images[indices]))
  magnitudes = convolution.response_magnitude(bank_images, kernels.stack_kernels(bank_kernels))
  names = [subject.class_name(int(split.labels[i])) for i in indices]
  written.append(figures.plot_filter_bank(bank_images, names, bank_kernels,
                                          [g.label() for g in bank], magnitudes,
                                          os.path.join(out_dir, 'gabor_filter_bank.png')))

  matrix = np.asarray(POOLING_EXAMPLE, np.float32)
  pooled = {'max-pooling\n3x3, stride 3': convolution.pool(matrix, 3, kind='max'),
            'mean-pooling\n3x3, stride 3': convolution.pool(matrix, 3, kind='mean'),
            'overlapping max-pooling\n3x3, stride 1': convolution.pool(matrix, 3, 1, kind='max')}
  written.append(figures.plot_pooling_example(matrix, 3, pooled,
                                              os.path.join(out_dir, 'pooling.png')))
  return written


def activation_figures(subject: Subject, config, out_dir: str) -> list[str]:
  """The input image and the channel grid of each conv and pool layer, for one image."""
  v = config.visualize
  index = v.activation_example
  if not 0 <= index < subject.images.shape[0]:
    raise ConfigError(f'visualize.activation_example={index} is not one of the '
                      f'{subject.images.shape[0]} example images')
  names = list(v.activation_layers) or None
  maps = activations.feature_maps(subject.model, subject.variables, subject.images[index],
                                  names=names)
  label = int(subject.labels[index])
  title = subject.class_name(label) if label >= 0 else 'input'
  written = [figures.plot_image(subject.display[index], title,
                                os.path.join(out_dir, '00_input.png'))]
  limit = int(_option(v, 'activation_channels'))
  for i, (layer, feature_map) in enumerate(maps.items(), start=1):
    title = f'{layer} {tuple(feature_map.shape)}'
    if 0 < limit < feature_map.shape[-1]:
      # ResNet50's last stage has 2,048 channels: 128 rows of 16 would be a poster, not a figure.
      title += f': channels 0-{limit - 1} of {feature_map.shape[-1]}'
      feature_map = feature_map[..., :limit]
    grid = activations.activation_grid(feature_map, v.images_per_row)
    written.append(figures.plot_activation_grid(
        grid, title, os.path.join(out_dir, f'{i:02d}_{layer.replace("/", "_")}.png'),
        tile=tuple(feature_map.shape[:2])))
  first = next(iter(maps))
  channel = min(v.activation_channel, maps[first].shape[-1] - 1)
  written.append(figures.plot_channel(
      maps[first], channel, first,
      os.path.join(out_dir, f'{first.replace("/", "_")}_channel_{channel}.png')))
  return written


def _pattern_size(subject: Subject, size: int) -> int:
  return size or int(subject.images.shape[1])


def patterns_with_progress(subject: Subject, layer: str, count: int, key: jax.Array,
                           **recipe) -> tuple[jax.Array, jax.Array]:
  """`filter_patterns.filter_patterns` of filters 0..count-1, FILTERS_PER_CALL per jitted call
  (the last padded with repeats of the last filter: one compilation) under a progress bar. A
  filter's pattern does not depend on the filters computed with it, so the result is one call's.
  """
  parts = []
  with Progress(f'filter patterns of {layer}', count, 'filter') as progress:
    for first in range(0, count, FILTERS_PER_CALL):
      indices = np.minimum(np.arange(first, first + FILTERS_PER_CALL), count - 1)
      done = min(FILTERS_PER_CALL, count - first)
      part = filter_patterns.filter_patterns(subject.model, subject.variables, layer,
                                             jnp.asarray(indices), key, **recipe)
      # Waited for: JAX returns before the work is done, and the bar would run ahead of it.
      parts.append(jax.block_until_ready(jax.tree.map(lambda x, done=done: x[:done], part)))
      progress.update(done)
  images, losses = (jnp.concatenate(arrays) for arrays in zip(*parts))
  return images, losses


def steps_per_call(steps: int, most: int) -> int:
  """The largest divisor of `steps` not above `most`: equal calls, so one compilation."""
  return max(d for d in range(1, min(steps, most) + 1) if steps % d == 0)


def lucid_with_progress(subject: Subject, layer: str, count: int, key: jax.Array, *, size: int,
                        channels: int, steps: int, learning_rate: float,
                        preprocess: Callable[[jax.Array], jax.Array]
                        ) -> tuple[jax.Array, jax.Array]:
  """`filter_patterns.lucid_filter_patterns` of filters 0..count-1, its Adam steps a few per
  jitted call (`steps_per_call` of LUCID_STEPS_PER_CALL) under a progress bar. The spectra and
  Adam's state go from one call to the next, and all the filters start together as in one call,
  so the result is one call's.
  """
  if steps < 1:
    raise ConfigError(f'visualize.lucid_steps={steps} must be 1 or more (Adam steps of the Lucid '
                      'mode); set visualize.lucid=False to skip that mode')
  indices = jnp.arange(count)
  carry, step_keys = filter_patterns.lucid_start(key, count, size=size, channels=channels,
                                                 steps=steps, learning_rate=learning_rate)
  per_call = steps_per_call(steps, LUCID_STEPS_PER_CALL)
  parts = []
  with Progress(f'lucid patterns of {layer}', steps, 'step') as progress:
    for first in range(0, steps, per_call):
      carry, objective = filter_patterns.lucid_steps(
          subject.model, subject.variables, layer, indices, carry,
          step_keys[first:first + per_call], size=size, learning_rate=learning_rate,
          preprocess=preprocess)
      parts.append(jax.block_until_ready(objective))  # Counted once done, not once dispatched.
      progress.update(per_call)
  return filter_patterns.lucid_images(carry[0], size=size), jnp.concatenate(parts, axis=1)


def filter_pattern_figures(subject: Subject, config, out_dir: str) -> list[str]:
  """The grid of the first filters of each layer: the reference recipe, then the Lucid mode."""
  v = config.visualize
  key = jax.random.key(config.get('seed', 0))
  channels = int(subject.images.shape[-1])
  size = _pattern_size(subject, v.filter_size)
  written = []
  for layer in v.filter_layers:
    start = time.perf_counter()
    shape = jax.eval_shape(
        lambda x, layer=layer: apply_until(subject.model, subject.variables, x, layer),
        jnp.zeros((1, size, size, channels)))
    count = min(v.filter_count, shape.shape[-1])
    images, losses = patterns_with_progress(
        subject, layer, count, jax.random.fold_in(key, 0), size=size, channels=channels,
        steps=v.filter_steps, step_size=v.filter_step_size, input_scale=v.filter_input_scale)
    patterns = jax.vmap(filter_patterns.deprocess_image)(images)
    grid = filter_patterns.pattern_grid(patterns, v.filter_columns, v.filter_margin)
    # A filter that never fires on the noise start has a zero gradient (ReLU) all the way: the
    # recipe leaves its tile as the starting noise. Say so rather than let it pass as a pattern.
    # Its mean activation stays at 0 or below and never moves; a layer without a ReLU (Keras'
    # ResNet50 convolutions) can have a negative one that climbs, and is not silent.
    losses_seen = np.asarray(losses)
    silent = int(np.sum((np.max(losses_seen, axis=1) <= 0) & (np.ptp(losses_seen, axis=1) == 0)))
    note = f'\n{silent} of {count} silent on the noise start (left as noise)' if silent else ''
    written.append(figures.plot_filter_patterns(
        grid, f'{subject.name} {layer}: filters 0-{count - 1}, gradient ascent{note}',
        os.path.join(out_dir, f'{layer}.png')))
    print(f'filter patterns of {layer}: {count} filters, mean activation '
          f'{float(losses[:, 0].mean()):.3g} -> {float(losses[:, -1].mean()):.3g}, '
          f'{silent} silent ({time.perf_counter() - start:.1f}s)')
    if v.lucid:
      start = time.perf_counter()
      lucid_size = v.lucid_size or size
      images, activations_seen = lucid_with_progress(
          subject, layer, count, jax.random.fold_in(key, 1), size=lucid_size, channels=channels,
          steps=v.lucid_steps, learning_rate=v.lucid_learning_rate,
          preprocess=subject.unit_preprocess)
      grid = filter_patterns.pattern_grid(filter_patterns.to_uint8(images), v.filter_columns,
                                          v.filter_margin)
      written.append(figures.plot_filter_patterns(
          grid, f'{subject.name} {layer}: filters 0-{count - 1}, Fourier + decorrelated + '
          'robust + Adam', os.path.join(out_dir, f'{layer}_lucid.png')))
      print(f'lucid patterns of {layer}: mean activation '
            f'{float(activations_seen[:, 0].mean()):.3g} -> '
            f'{float(activations_seen[:, -1].mean()):.3g} ({time.perf_counter() - start:.1f}s)')
  return written


def _image_title(subject: Subject, n: int, result: cam.ClassActivationMaps) -> str:
  predicted = int(result.targets[n])
  probability = float(result.probabilities[n, predicted])
  label = int(subject.labels[n])
  truth = f'{subject.class_name(label)}\n' if label >= 0 else ''
  return f'{truth}pred: {subject.class_name(predicted)} ({probability:.2f})'


def top_channel_figures(subject: Subject, config, out_dir: str) -> list[str]:
  """The first image's `visualize.top_channels` channels with the highest weight for its class.

  Only for a model ending in global average pooling and a dense layer (else it says so and draws
  nothing): the channels of the layer before the pooling, ranked by their weight in the dense
  layer's kernel for the predicted class.
  """
  count = int(_option(config.visualize, 'top_channels'))
  if count <= 0:
    return []
  start = time.perf_counter()
  images = subject.images[:1]
  try:
    layer, dense_layer = cam.cam_layers(subject.model, subject.variables, images)
  except ConfigError as e:
    print(f'skipping the top channels: {e}')
    return []
  channels = int(subject.variables['params'][dense_layer]['kernel'].shape[0])
  result = cam.top_channels(subject.model, subject.variables, images, count=min(count, channels),
                            layer=layer, dense_layer=dense_layer)
  target = int(result.targets[0])
  shown = result.channels.shape[1]
  shape = 'x'.join(str(d) for d in result.maps.shape[2:])
  probability = figures.probability_text(result.probabilities[0, target])
  title = (f'{subject.name}: the {shown} channels of {layer} ({shape}, {channels} channels) with '
           f'the highest weight\nin {dense_layer} for {subject.class_name(target)} '
           f'(p={probability})')
  path = figures.plot_top_channels(subject.display[0], result.maps[0], result.channels[0],
                                   result.weights[0], title,
                                   os.path.join(out_dir, f'top_{shown}_channels.png'))
  print(f'top channels of {layer} for {subject.class_name(target)}: '
        f'{np.asarray(result.channels[0]).tolist()} ({time.perf_counter() - start:.1f}s)')
  return [path]


def cam_figures(subject: Subject, config, out_dir: str) -> list[str]:
  """Each method on the example images, the reference's Grad-CAM pair, and many classes at once."""
  v = config.visualize
  layer = v.cam_layer or None
  size = tuple(subject.images.shape[1:3])
  overlays = {}
  reference = None
  for method in v.cam_methods:
    start = time.perf_counter()
    try:
      result = cam.class_activation_maps(subject.model, subject.variables, subject.images,
                                         method=method, layer=layer,
                                         batch_size=v.score_cam_batch_size,
                                         channels_per_call=SCORE_CAM_CHANNELS_PER_CALL)
    except ConfigError as e:
      if method != 'cam':
        raise
      print(f'skipping CAM: {e}')
      continue
    # Computed before the time is read: JAX returns before its work is done.
    jax.block_until_ready(result.maps)
    maps = cam.heatmaps(result, size)
    overlays[cam.METHOD_NAMES[method]] = overlay.superimpose(subject.display, maps,
                                                             v.cam_intensity, v.cam_overlay)
    if method == 'grad_cam':
      reference = result
    print(f'{method}: maps of {result.layer} {tuple(result.maps.shape[1:])} for '
          f'{result.maps.shape[0]} images ({time.perf_counter() - start:.1f}s)')
  if not overlays:
    return []
  if reference is None:
    reference = result
  titles = [_image_title(subject, n, reference) for n in range(subject.images.shape[0])]
  written = [figures.plot_cam_methods(subject.display, overlays, titles,
                                      os.path.join(out_dir, 'methods.png'))]

  method = reference.method
  name = cam.METHOD_NAMES[method]
  heatmap = cam.normalize_maps(reference.maps[0])
  written.append(figures.plot_heatmap_and_overlay(
      heatmap, overlays[name][0], f'{name} of {reference.layer}: {titles[0].splitlines()[-1]}',
      os.path.join(out_dir, f'{method}_reference.png'),
      overlay_title=f'superimposed ({v.cam_overlay}, intensity {v.cam_intensity:g})'))

  probabilities = np.asarray(reference.probabilities[0])
  num_classes = probabilities.shape[0]
  if num_classes <= _MAX_CLASSES_SHOWN:
    classes = np.arange(num_classes)
  else:
    # Ranked by the scores: far below the top class the probabilities all round to 0.
    scores = cam.class_scores(subject.model.apply(subject.variables, subject.images[:1]))[0]
    classes = np.argsort(-np.asarray(scores), kind='stable')[:min(v.cam_top_classes, num_classes)]
  per_class = cam.class_activation_maps(subject.model, subject.variables, subject.images[:1],
                                        classes[None], method=method, layer=reference.layer,
                                        batch_size=v.score_cam_batch_size,
                                        channels_per_call=SCORE_CAM_CHANNELS_PER_CALL)
  class_overlays = overlay.superimpose(subject.display[:1, None], cam.heatmaps(per_class, size),
                                       v.cam_intensity, v.cam_overlay)[0]
  written.append(figures.plot_class_maps(
      subject.display[0], class_overlays, [subject.class_name(int(c)) for c in classes],
      probabilities[classes], f'{name} of {reference.layer}, one map per class',
      os.path.join(out_dir, f'{method}_per_class.png')))
  written += top_channel_figures(subject, config, out_dir)
  return written


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, list[str]]:
  """Writes every figure the config asks for under `workdir`; returns the files by section.

  Args:
    config: a visualize config (see configs/visualize_fashion_mnist.py): `config.visualize` says
      where the model comes from and what to draw; `config.data` gives the images of a trained
      run.
    workdir: where the figures go.

  Returns:
    {section: [paths]} for the sections convolution, activations, filter_patterns and
    class_activation_maps (a section not drawn is absent).
  """
  if 'visualize' not in config:
    raise ConfigError('the config has no visualize group; start from '
                      'configs/visualize_fashion_mnist.py')
  v = config.visualize
  os.makedirs(workdir, exist_ok=True)
  split = None
  if v.weights:
    config = resolve_pretrained_config(config)
    v = config.visualize
    subject = _pretrained_subject(config)
  else:
    subject, split = _trained_subject(config)
  check_layer_names(subject, config)
  written: dict[str, list[str]] = {}
  sections: list[tuple[str, Callable[[str], list[str]]]] = []
  if v.convolution_demos:
    if split is None:
      print('skipping the convolution demos: they draw from a data set, not a photo')
    else:
      sections.append(('convolution',
                       lambda d: convolution_figures(subject, split, config, d)))
  sections += [
      ('activations', lambda d: activation_figures(subject, config, d)),
      ('filter_patterns', lambda d: filter_pattern_figures(subject, config, d)),
      ('class_activation_maps', lambda d: cam_figures(subject, config, d)),
  ]
  for section, draw in sections:
    if section not in v.sections:
      continue
    start = time.perf_counter()
    written[section] = draw(os.path.join(workdir, section))
    print(f'{section}: {len(written[section])} figures in {os.path.join(workdir, section)} '
          f'({time.perf_counter() - start:.1f}s)', flush=True)
  relative = {section: [os.path.relpath(p, workdir) for p in paths]
              for section, paths in written.items()}
  with open(os.path.join(workdir, 'figures.json'), 'w') as f:
    json.dump(relative, f, indent=2)
  # The same figures in TensorBoard (`tensorboard --logdir` on the workdir's parent: Images tab),
  # each under its path without the extension, e.g. 'class_activation_maps/methods'.
  events = EventLog(workdir, enabled=jax.process_index() == 0)
  try:
    for path in (p for paths in relative.values() for p in paths if p.endswith('.png')):
      events.image(0, os.path.splitext(path)[0], os.path.join(workdir, path))
  finally:
    events.close()
  if subject.top_classes:
    with open(os.path.join(workdir, PREDICTIONS_FILE), 'w') as f:
      json.dump([{'class': c, 'name': name, 'probability': p, 'logit': logit}
                 for c, name, p, logit in subject.top_classes], f, indent=2)
  return written
