"""Fast feature extraction: run the frozen conv base once, cache its outputs, train the head.

The reference's first way of using a pretrained network: every image goes through the
convolutional base once (batched, jitted), the feature maps (4x4x512 for VGG16 at 150x150) are
stored, and the new dense head trains on them, hundreds of times faster than running the base
every epoch, but without data augmentation (an image is seen through the base only once).

`train.cache_features = True` makes `cnnjax.training.train.train_and_evaluate` do this with the ordinary
training loop: `feature_datasets` replaces the image data sets by feature data sets
(`ArrayDataset`s of float32 feature maps), and the steps call the model with
`from_features=True` (the head alone). The parameters stay those of the whole model, so the
checkpoints hold the whole model (base and trained head) and can initialize a fine-tuning run.

A model takes part when its `__call__` has `features_only` and `from_features` keywords
(`VGGClassifier`, the ResNets). The base runs in inference mode: its BatchNorm layers normalize
with their moving statistics, as a frozen base does in end-to-end training.

The features are cached in `<workdir>/features.npz` under a key: a SHA-256 of the base's
variables (parameters and BatchNorm statistics), the model's fields and every split's stored
images and labels. A changed base
(other weights, another init_from) or changed data (other classes, counts or seed) changes the
key, and the features are computed again.
"""

import dataclasses
import hashlib
import inspect
import os
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from cnnjax.data.pipeline import ArrayDataset, batches
from cnnjax.errors import ConfigError
from cnnjax.progress import Progress

CACHE_FILE = 'features.npz'
SPLITS = ('train', 'validation', 'test')


def head_param_paths(model: nn.Module, feature_shape) -> list[str]:
  """The '/'-joined paths of the parameters the head alone uses."""
  features = jax.ShapeDtypeStruct((1, *feature_shape), jnp.float32)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, from_features=True),
                          features)['params']
  return _flat_paths(shapes)


def _flat_paths(tree: Mapping[str, Any]) -> list[str]:
  return list(traverse_util.flatten_dict(dict(tree), sep='/'))


def supports_features(model: nn.Module) -> bool:
  """Whether the model splits into a base and a head (`features_only` / `from_features`)."""
  parameters = inspect.signature(type(model).__call__).parameters
  return 'features_only' in parameters and 'from_features' in parameters


def feature_shape(model: nn.Module, image_shape) -> tuple[int, ...]:
  """The shape of one image's features (the base's output)."""
  images = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), images)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, features_only=True), variables, images)
  return tuple(out.shape[1:])


def check_feature_model(model: nn.Module, image_shape, frozen) -> list[str]:
  """Checks that the model splits into base and head and that the whole base is frozen.

  Returns:
    The base's parameter paths.

  Raises:
    ConfigError: otherwise, naming the base parameters that would train.
  """
  if not supports_features(model):
    raise ConfigError('train.cache_features=True needs a model split into a conv base and a head '
                      '(a __call__ with features_only and from_features keywords: VGGClassifier, '
                      f'ResNet), not {type(model).__name__}')
  images = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  every = _flat_paths(jax.eval_shape(model.init, jax.random.key(0), images)['params'])
  head = set(head_param_paths(model, feature_shape(model, image_shape)))
  base = [p for p in every if p not in head]
  trainable = [p for p in base if p not in set(frozen)]
  if trainable:
    raise ConfigError(
        'train.cache_features=True runs the conv base once, so the whole base must be frozen, '
        f'but train.param_groups leaves {len(trainable)} base parameter(s) trainable: '
        f'{", ".join(trainable[:8])}{" ..." if len(trainable) > 8 else ""}. Freeze it, e.g. '
        "train.param_groups=('block.*=frozen', '.*=1')")
  return base


def extract_features(model: nn.Module, variables: Mapping[str, Any], dataset: ArrayDataset,
                     batch_size: int) -> np.ndarray:
  """The base's outputs (inference mode) for every image of `dataset`, in order, as float32."""
  run = jax.jit(lambda v, x: model.apply(v, x, features_only=True))
  out = []
  with Progress('extracting features', len(dataset), 'image') as progress:
    for batch in batches(dataset, batch_size):
      count = int(batch['mask'].sum())
      out.append(np.asarray(run(variables, batch['image']))[:count])
      progress.update(count)
  return np.concatenate(out)


def _model_fields(model: nn.Module) -> str:
  """The model's class and field values (what its base computes besides the weights)."""
  fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)
            if f.name not in ('parent', 'name')}
  return repr((type(model).__name__, sorted((k, repr(v)) for k, v in fields.items())))


def cache_key(model: nn.Module, base_variables: Mapping[str, Any], datasets) -> str:
  """A SHA-256 of everything the features depend on: base variables, model fields and the data."""
  digest = hashlib.sha256()
  digest.update(_model_fields(model).encode())
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(base_variables)[0],
                           key=lambda item: jax.tree_util.keystr(item[0])):
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  for split in SPLITS:
    dataset = getattr(datasets, split)
    digest.update(f'{split}:{dataset.stored_images.shape}:{dataset.pixel_scale}'.encode())
    digest.update(np.ascontiguousarray(dataset.stored_images).tobytes())
    digest.update(np.ascontiguousarray(dataset.labels).tobytes())
  return digest.hexdigest()


def feature_datasets(model: nn.Module, variables: Mapping[str, Any], base_paths, datasets,
                     workdir: str, batch_size: int, log: Callable[[str], None] = print):
  """`datasets` with every split's images replaced by the base's features, cached in `workdir`.

  Args:
    model: a model with `features_only` / `from_features` (VGGClassifier, ResNet).
    variables: the whole model's variables (the base's parameters and every BatchNorm
      statistic are used).
    base_paths: the base's parameter paths (`check_feature_model`).
    datasets: the image data sets (`cnnjax.data.Datasets`).
    workdir: where `features.npz` is cached.
    batch_size: images per jitted batch of the base.
    log: progress messages.

  Returns:
    Datasets of float32 features with the same labels, `image_shape` the features' shape.
  """
  flat_params = traverse_util.flatten_dict(dict(variables['params']), sep='/')
  base = {**variables,
          'params': traverse_util.unflatten_dict({p: flat_params[p] for p in base_paths}, sep='/')}
  key = cache_key(model, base, datasets)
  path = os.path.join(workdir, CACHE_FILE)
  features = None
  if os.path.exists(path):
    with np.load(path) as cached:
      if str(cached['key']) == key:
        features = {split: cached[split] for split in SPLITS}
        log(f'features: reusing {path}')
      else:
        log(f'features: {path} was computed for another base or other data; computing again')
  if features is None:
    features = {}
    for split in SPLITS:
      features[split] = extract_features(model, variables, getattr(datasets, split), batch_size)
    if jax.process_index() == 0:
      tmp = path + '.tmp.npz'
      np.savez(tmp, key=np.asarray(key), **features)
      os.replace(tmp, path)
    log(f'features: ran the conv base over {sum(len(f) for f in features.values()):,} images '
        f'-> {features["train"].shape[1:]} each, cached in {path}')
  new = {split: ArrayDataset(features[split], getattr(datasets, split).labels)
         for split in SPLITS}
  return dataclasses.replace(datasets, image_shape=tuple(features['train'].shape[1:]), **new)
