"""Reading a PyTorch state dict (`torch.save(model.state_dict(), path)`) as NumPy, without torch.

A .pth file is pickled Python with the tensors' bytes stored beside the pickle, in one of two
layouts, both read here:

- zip (the default since torch 1.6): `<archive>/data.pkl` pickles the state dict; each tensor in it
  is a call `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` whose storage is
  a persistent id `('storage', torch.FloatStorage, key, location, numel)`; the storage's bytes are
  the member `<archive>/data/<key>`, in the byte order `<archive>/byteorder` names.
- legacy (torch 0.1.10 to 1.5, or `_use_new_zipfile_serialization=False`; torchvision's 2017
  vgg16-397923af.pth): five pickles in a row (magic number, protocol version, system info, the
  state dict, the list of storage keys), then each storage's bytes in that order, each preceded by
  its element count as a little-endian int64. Persistent ids have a sixth entry, an optional view
  (key, offset, size) into the storage; tensors may be rebuilt by `_rebuild_tensor`.

The pickles are read by an Unpickler whose `find_class` admits only what a state dict is made of
(OrderedDict, torch's tensor and parameter rebuild functions, the storage types), each replaced by
a NumPy stand-in; any other global, which could run code, is refused. Tensors are then cut out of
their storages with their sizes and strides. Files from before torch 0.1.10 (tar archives) are
refused with instructions.
"""

import collections
import dataclasses
import io
import os
import pickle
import struct
import tarfile
import zipfile
from typing import Any, Callable

import ml_dtypes
import numpy as np

from cnnjax.errors import DataError

_STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}
_LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL_VERSION = 1001


@dataclasses.dataclass(frozen=True)
class _StorageType:
  dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _StorageRef:
  """A storage named in the pickle; its bytes are read once the pickle is done."""
  key: str
  dtype: np.dtype
  numel: int
  view: tuple[int, int] | None = None  # (offset, size) in elements, for legacy storage views.


@dataclasses.dataclass(frozen=True)
class _TensorRef:
  storage: _StorageRef
  offset: int
  size: tuple[int, ...]
  stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *unused) -> _TensorRef:
  # Stands in for torch._utils._rebuild_tensor and _rebuild_tensor_v2, whose extra arguments
  # (requires_grad, backward hooks, metadata) mean nothing to an array.
  return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *unused):
  return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    **{('torch', name): _StorageType(np.dtype(dtype)) for name, dtype in _STORAGE_DTYPES.items()},
}


class _StateDictUnpickler(pickle.Unpickler):
  """Unpickles state dicts only: tensors become `_TensorRef`s, other globals are refused."""

  def __init__(self, file, path: str):
    super().__init__(file, encoding='utf-8')
    self._path = path

  def find_class(self, module: str, name: str):
    if (module, name) not in _ALLOWED_GLOBALS:
      raise DataError(
          f'{self._path!r} pickles {module}.{name}, which a state dict does not contain; '
          'cnnjax reads only state dicts (torch.save(model.state_dict(), path)), and refuses '
          'other objects because unpickling them could run code')
    return _ALLOWED_GLOBALS[(module, name)]

  def persistent_load(self, pid):
    kind = pid[0] if isinstance(pid, tuple) and pid else pid
    kind = kind.decode('ascii') if isinstance(kind, bytes) else kind
    if kind != 'storage' or len(pid) < 5 or not isinstance(pid[1], _StorageType):
      raise DataError(f'{self._path!r} refers to a persistent object {kind!r}; only tensor '
                      'storages are read')
    storage_type, key, _, numel = pid[1:5]
    view = pid[5] if len(pid) > 5 else None
    return _StorageRef(str(key), storage_type.dtype, int(numel),
                       None if view is None else (int(view[1]), int(view[2])))


def _unpickle(file, path: str):
  try:
    return _StateDictUnpickler(file, path).load()
  except (pickle.UnpicklingError, EOFError, AttributeError, IndexError, KeyError, TypeError,
          ValueError) as e:
    raise DataError(f'{path!r} is not a readable PyTorch file ({e}); check that the download '
                    'completed') from e


def _tensor_array(ref: _TensorRef, storage: np.ndarray, path: str) -> np.ndarray:
  """The tensor's elements, copied out of its storage with its size and strides."""
  if ref.storage.view is not None:
    view_offset, view_size = ref.storage.view
    storage = storage[view_offset:view_offset + view_size]
  if 0 in ref.size:
    return np.zeros(ref.size, storage.dtype)
  last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
  if min(ref.stride, default=0) < 0 or ref.offset < 0 or last >= storage.size:
    raise DataError(f'{path!r} has a tensor of size {ref.size} and stride {ref.stride} that '
                    f'does not fit in its storage of {storage.size} elements')
  view = np.lib.stride_tricks.as_strided(
      storage[ref.offset:], shape=ref.size,
      strides=tuple(s * storage.itemsize for s in ref.stride), writeable=False)
  return np.array(view)


def _resolve(obj, storage: Callable[[_StorageRef], np.ndarray], path: str):
  if isinstance(obj, _TensorRef):
    return _tensor_array(obj, storage(obj.storage), path)
  if isinstance(obj, dict):
    return {key: _resolve(value, storage, path) for key, value in obj.items()}
  if isinstance(obj, (list, tuple)):
    return type(obj)(_resolve(value, storage, path) for value in obj)
  return obj


def _check_state_dict(obj, path: str) -> dict[str, np.ndarray]:
  if not isinstance(obj, dict):
    raise DataError(f'{path!r} holds a {type(obj).__name__}, not a state dict; save '
                    'model.state_dict()')
  not_tensors = [key for key, value in obj.items() if not isinstance(value, np.ndarray)]
  if not_tensors:
    raise DataError(f'{path!r} is not a flat state dict: entries {not_tensors} are not tensors '
                    "(a training checkpoint? save or pass its model's state_dict())")
  return obj


def _read_zip(path: str) -> dict[str, np.ndarray]:
  with zipfile.ZipFile(path) as archive:
    names = set(archive.namelist())
    pickles = [n for n in names if n.endswith('/data.pkl') and n.count('/') == 1]
    if len(pickles) != 1:
      raise DataError(f'{path!r} is a zip file but not a PyTorch one: it has no <name>/data.pkl '
                      '(a TorchScript archive or another zip?)')
    prefix = pickles[0][:-len('data.pkl')]
    byteorder = 'little'
    if prefix + 'byteorder' in names:
      byteorder = archive.read(prefix + 'byteorder').decode('ascii').strip()
    state = _unpickle(io.BytesIO(archive.read(pickles[0])), path)
    cache: dict[str, np.ndarray] = {}

    def storage(ref: _StorageRef) -> np.ndarray:
      if ref.key not in cache:
        member = f'{prefix}data/{ref.key}'
        if member not in names:
          raise DataError(f'{path!r} lacks the storage {member}; the file is incomplete')
        dtype = ref.dtype.newbyteorder('<' if byteorder == 'little' else '>')
        data = np.frombuffer(archive.read(member), dtype)
        cache[ref.key] = data.astype(ref.dtype, copy=False)
      return cache[ref.key]

    return _resolve(state, storage, path)


def _read_legacy(path: str) -> dict[str, np.ndarray]:
  with open(path, 'rb') as f:
    if _unpickle(f, path) != _LEGACY_MAGIC_NUMBER:
      raise DataError(f'{path!r} starts with a pickle but not with PyTorch\'s magic number')
    version = _unpickle(f, path)
    if version != _LEGACY_PROTOCOL_VERSION:
      raise DataError(f'{path!r} has PyTorch protocol version {version}, not '
                      f'{_LEGACY_PROTOCOL_VERSION}')
    _unpickle(f, path)  # System info: endianness and C type sizes of the saving machine.
    state = _unpickle(f, path)
    keys = _unpickle(f, path)
    dtypes = {}

    def collect(obj):
      if isinstance(obj, _TensorRef):
        dtypes[obj.storage.key] = obj.storage.dtype
      elif isinstance(obj, dict):
        for value in obj.values():
          collect(value)

    collect(state)
    storages: dict[str, np.ndarray] = {}
    for key in map(str, keys):
      if key not in dtypes:
        raise DataError(f'{path!r} lists storage {key} that no tensor uses; the file is corrupt')
      dtype = np.dtype(dtypes[key]).newbyteorder('<')
      header = f.read(8)
      if len(header) < 8:
        raise DataError(f'{path!r} ends before the data of storage {key}; the file is truncated')
      (numel,) = struct.unpack('<q', header)
      data = f.read(numel * dtype.itemsize)
      if len(data) < numel * dtype.itemsize:
        raise DataError(f'{path!r} ends inside the data of storage {key}; the file is truncated')
      storages[key] = np.frombuffer(data, dtype).astype(dtype.newbyteorder('='), copy=False)

  def storage(ref: _StorageRef) -> np.ndarray:
    if ref.key not in storages:
      raise DataError(f'{path!r} has no data for storage {ref.key}; the file is corrupt')
    return storages[ref.key]

  return _resolve(state, storage, path)


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The tensors of a PyTorch state dict file, by key, as NumPy arrays; torch is not needed.

  Args:
    path: a file written by `torch.save(model.state_dict(), path)`, in the zip format or the
      legacy (pre-1.6) one.

  Returns:
    {key (e.g. 'features.0.weight'): array with the tensor's shape and dtype}, in file order.
  """
  path = os.fspath(path)
  if zipfile.is_zipfile(path):
    state = _read_zip(path)
  elif tarfile.is_tarfile(path):
    raise DataError(f'{path!r} was saved by PyTorch before 0.1.10 (a tar archive), which cnnjax '
                    'does not read; load it with torch and save its state_dict() again')
  else:
    state = _read_legacy(path)
  return _check_state_dict(state, path)
