"""Putting loaded weights into a model's parameters, failing loudly on anything that does not fit.

`merge_params` follows big_vision's merge_params: every parameter of the model must come from the
loaded weights unless the caller says it may be missing (a new head trained from scratch), every
loaded weight must have a place in the model, and shapes must agree. All the problems are
gathered into one error, so a port is fixed in one go rather than one layer at a time.
"""

import re
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from cnnjax.errors import DataError

Params = Mapping[str, Any]


def _flatten(tree: Params) -> dict[str, Any]:
  return traverse_util.flatten_dict(dict(tree), sep='/')


def _allowed(path: str, patterns: Sequence[re.Pattern]) -> bool:
  """Whether a pattern matches the whole path or one of its leading parts ('fc1' -> 'fc1/bias')."""
  parts = path.split('/')
  prefixes = ['/'.join(parts[:i]) for i in range(1, len(parts) + 1)]
  return any(p.fullmatch(prefix) for p in patterns for prefix in prefixes)


def merge_params(target: Params, loaded: Params, *, allow_missing: Sequence[str] = (),
                 source: str | None = None) -> dict[str, Any]:
  """`target` with each of its parameters replaced by the loaded one of the same path.

  Args:
    target: the model's parameters (the 'params' collection of `model.init`), nested dicts of
      arrays. Shapes (`jax.eval_shape(model.init, ...)`) do when `loaded` provides every
      parameter; parameters that stay (see `allow_missing`) keep the target's values, so those
      must be arrays.
    loaded: nested dicts of arrays with the same paths, e.g. from
      `cnnjax.weights.load_vgg16_weights`. For a model that holds the pretrained network as a
      submodule, nest them under its name: `{'conv_base': loaded}`. To re-learn a layer the file
      has (e.g. 'predictions' for 2 classes), delete it from `loaded` and allow it to be missing.
    allow_missing: regular expressions for parameters the model has and `loaded` may lack; each
      must match a whole path ('head/kernel') or its leading part ('head', 'fc1', 'fc.*').
    source: what `loaded` came from (a file path), for the error message.

  Returns:
    New nested dicts: loaded values as `jnp` arrays in the target's dtypes, and the allowed
    missing ones as they were in `target`.

  Raises:
    DataError: listing every parameter missing from `loaded` (and not allowed to be), every
      loaded parameter the model does not have, and every shape that differs.
  """
  return merge_variables({'params': target}, {'params': loaded}, allow_missing=allow_missing,
                         source=source)['params']


def merge_variables(target: Mapping[str, Params], loaded: Mapping[str, Params], *,
                    allow_missing: Sequence[str] = (),
                    source: str | None = None) -> dict[str, dict[str, Any]]:
  """`merge_params` for whole variable collections: {'params': ..., 'batch_stats': ...}.

  Every collection of the target is merged with the loaded one of the same name (a BatchNorm's
  moving statistics must come from the file as its scale and offset do); `allow_missing`
  patterns apply to the paths within each collection ('fc' allows 'params/fc/kernel'). All the
  problems of every collection are listed in one DataError, each path prefixed by its
  collection when there are several.
  """
  patterns = [re.compile(p) for p in allow_missing]
  prefix = len(set(target) | set(loaded)) > 1
  missing, extra, wrong_shapes = [], [], []
  for collection in list(target) + [c for c in loaded if c not in target]:
    flat_target = _flatten(target.get(collection, {}))
    flat_loaded = _flatten(loaded.get(collection, {}))
    name = (lambda p, c=collection: f'{c}/{p}') if prefix else (lambda p: p)
    missing += [name(p) for p in flat_target
                if p not in flat_loaded and not _allowed(p, patterns)]
    extra += [name(p) for p in flat_loaded if p not in flat_target]
    wrong_shapes += [
        f'{name(p)}: {tuple(np.shape(flat_loaded[p]))} loaded, '
        f'{tuple(np.shape(flat_target[p]))} in the model' for p in flat_target
        if p in flat_loaded and np.shape(flat_loaded[p]) != np.shape(flat_target[p])]
  if missing or extra or wrong_shapes:
    weights = f'the weights from {source}' if source else 'the loaded weights'
    lines = [f'{weights} do not fit the model:']
    if missing:
      lines.append(f'  missing from the weights ({len(missing)}): {", ".join(missing)}')
    if extra:
      lines.append(f'  not in the model ({len(extra)}): {", ".join(extra)}')
    if wrong_shapes:
      lines.append(f'  wrong shapes ({len(wrong_shapes)}): {"; ".join(wrong_shapes)}')
    lines.append('Check the model variant (include_top, input size, num_outputs) against the '
                 'file; a layer trained from scratch goes in allow_missing.')
    raise DataError('\n'.join(lines))
  merged = {}
  for collection, tree in target.items():
    flat_target, flat_loaded = _flatten(tree), _flatten(loaded.get(collection, {}))
    unset = [p for p, value in flat_target.items()
             if p not in flat_loaded and isinstance(value, jax.ShapeDtypeStruct)]
    if unset:
      raise ValueError(f'{", ".join(unset)} are allowed to be missing but the target holds only '
                       'their shapes; pass initialized parameters (model.init) as the target')
    merged[collection] = traverse_util.unflatten_dict({
        p: jnp.asarray(flat_loaded[p], dtype=value.dtype) if p in flat_loaded else value
        for p, value in flat_target.items()}, sep='/')
  return merged
