"""Recognizing a pretrained-weights file: which of the formats cnnjax reads it is in.

The format is read from the file's first bytes and, for HDF5, its top-level layout, never from its
name: an ImageNet file renamed by hand still loads. cnnjax never downloads weights, so a missing
file is an error that says where the user can get one.
"""

import dataclasses
import os
import tarfile
import zipfile
from typing import Any

import h5py

from cnnjax.errors import DataError
from cnnjax.weights import keras_h5, torch_state_dict

KERAS_LEGACY_H5 = 'keras_legacy_h5'    # Keras 2 / tf.keras HDF5 (also Keras 3's legacy writer).
KERAS_WEIGHTS_H5 = 'keras_weights_h5'  # Keras 3 `model.save_weights('x.weights.h5')`.
TORCH = 'torch'                         # `torch.save(state_dict)`, zip or pre-1.6 legacy format.
FORMATS = (KERAS_LEGACY_H5, KERAS_WEIGHTS_H5, TORCH)

_HDF5_SIGNATURE = b'\x89HDF\r\n\x1a\n'
# torch's legacy (pre-1.6) files start with a pickle (protocol 2) of its magic number.
_PICKLE_PROTOCOL_2 = b'\x80\x02'


def require_file(path: str | os.PathLike, where_to_get: str) -> str:
  """`path` as a string if it is a file; else a DataError naming it and saying where to get it."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataError(f'weights file {path!r} does not exist; cnnjax never downloads weights. '
                    f'{where_to_get}')
  return path


def detect_format(path: str | os.PathLike) -> str:
  """One of FORMATS for the file at `path`; a DataError if it is missing or none of them."""
  path = require_file(path, 'Download the weights file and pass its path.')
  with open(path, 'rb') as f:
    head = f.read(8)
  if head == _HDF5_SIGNATURE:
    with h5py.File(path, 'r') as f:
      if 'layer_names' in f.attrs or 'layer_names0' in f.attrs or 'model_weights' in f:
        return KERAS_LEGACY_H5
      if 'layers' in f:
        return KERAS_WEIGHTS_H5
      raise DataError(f'{path!r} is an HDF5 file but not Keras weights: it has neither a '
                      "'layer_names' attribute (Keras legacy HDF5), a 'model_weights' group "
                      f"(a whole Keras model) nor a 'layers' group (Keras 3 .weights.h5); its "
                      f'top-level entries are {sorted(f)}')
  # A tar archive is torch's format before 0.1.10, which the torch reader explains it refuses.
  if zipfile.is_zipfile(path) or head.startswith(_PICKLE_PROTOCOL_2) or tarfile.is_tarfile(path):
    return TORCH
  raise DataError(f'{path!r} is neither an HDF5 file (Keras weights) nor a PyTorch state dict '
                  '(torch.save); check that the download completed')


@dataclasses.dataclass(frozen=True)
class WeightFile:
  """A weights file as its format's reader returns it, before any model's names are applied.

  Attributes:
    path: where it was read from.
    format: one of FORMATS.
    arrays: for the Keras formats, {layer name: [arrays in the layer's weight order]} in the
      file's order (Keras 3 files whose layers carry no name attribute are keyed by class key and
      creation order instead: 'conv2d', 'conv2d_1', ...); for torch, {state-dict key: array}.
  """

  path: str
  format: str
  arrays: dict[str, Any]

  @property
  def names(self) -> list[str]:
    return list(self.arrays)


def read_weights(path: str | os.PathLike) -> WeightFile:
  """Reads a weights file of any format cnnjax knows (detected from its content)."""
  path = os.fspath(path)
  kind = detect_format(path)
  if kind == TORCH:
    arrays = torch_state_dict.read_state_dict(path)
  elif kind == KERAS_WEIGHTS_H5:
    arrays = keras_h5.read_keras3_weights_h5(path)
  else:
    arrays = keras_h5.read_legacy_h5(path)
  return WeightFile(path, kind, dict(arrays))
