"""Speed choices measured on the machine at hand, cached per CPU, versions and shapes.

Which convolution formulation is fastest (`cnnjax.models.convolution`: 'lax', 'im2col', 'taps')
depends on the CPU, on XLA's version and flags, and on the layer's shapes: on the 2-core AMD EPYC
of 2026-11-24 'taps' won for one-channel first layers and 'lax' for the rest, on the 2-core Intel
Xeon (Sapphire Rapids) of 2026-11-29 some of those rules no longer won (issue 19; README, Speed).
So a convolution whose implementation is 'auto' asks `convolution_choice`, which times each
eligible formulation on this machine the first time a (shapes, dtype, mode) is traced and keeps
the fastest (`fastest`: unless it beats the rules' choice by less than `MARGIN`):

- what is timed: the formulation alone, jitted, on random inputs of the layer's exact shapes and
  dtype: its forward pass for a layer whose kernel is not differentiated ('predict'), its forward
  pass and kernel gradient for one being trained ('train'; detected from the kernel's tracer).
  The input gradient is left out: every formulation computes it as XLA's transposed convolution
  (the input gradient of 'lax'), so it costs them the same. The best of `REPEATS` calls after a
  warm-up call counts.
- eligible: 'lax' always; 'taps' while the kernel has at most `MAX_TAPS` taps (kh * kw * Cin: the
  program unrolls one product per tap); 'im2col' while its patch matrix takes at most
  `MAX_PATCH_BYTES`.
- when: while the model is traced (jit's first call), in `jax.ensure_compile_time_eval`, so every
  program that convolves (the train and evaluation steps, prediction, the visualize job) gets the
  formulations measured for its own shapes, pmap's per-device shapes included (sharded jit traces
  global shapes, which are measured as such). Each measurement prints one line.
- cached: in `cache_file()`, one JSON file per machine identity (`identity()`: CPU model, usable
  cores, jax and jaxlib versions, XLA_FLAGS and GLIBC_TUNABLES), which records the identity it was
  measured under; a file whose recorded identity differs from this process's is ignored (and
  replaced on the next save), so a cache copied from another machine or left by older versions is
  measured again. Later processes reuse the choices without measuring.

What is not measured: accelerators (XLA's own autotuning picks their convolution algorithms:
'auto' is 'lax' there), runs of several processes (each would measure for itself and might
compile different programs, which their collectives cannot mix: they take the rules), and runs
with measuring turned off (`configure(measure=False)`, config `tuning.measure=False`, or the
environment variable CNNJAX_TUNING=rules). Those take today's rules (`convolution.resolve`).
An explicit implementation ('lax', 'im2col', 'taps': `model.conv_implementation` in a config, or
a layer's `implementation`) is always used as given.

The process settings (glibc's huge pages, XLA:CPU's YNNPACK fusions) are measured the same way,
per workload, by `cnnjax.process_settings`.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from typing import Any, Callable, Mapping, Sequence

ENV_MODE = 'CNNJAX_TUNING'  # 'measure' (the default) or 'rules'.
ENV_CACHE_DIR = 'CNNJAX_CACHE_DIR'
MODES = ('measure', 'rules')
FORMULATIONS = ('lax', 'im2col', 'taps')
MAX_TAPS = 27  # 3x3 on three channels: the largest first layer of the zoo.
MAX_PATCH_BYTES = 1 << 30
REPEATS = 3
# A measured candidate replaces the rules' choice only when it is at least this much faster. A
# few timed calls of one layer (or 30 train steps of a process) scatter by several percent from
# run to run, and the rules were chosen on whole train steps: on the 2-core AMD EPYC (family 26),
# 2026-12-01, the main job's conv2 measured 'im2col' 3.56 against 'lax' 3.63 ms here, and 2.14
# against 1.77 ms (forward and kernel gradient, best of 50) in benchmarks/conv_profile.py minutes
# later (benchmarks/results/conv-profile-small_convnet-conv2-2026-12-01.txt).
MARGIN = 0.05
# 2: choices keep the rules' on near-ties (MARGIN); files of 1 chose the plain fastest.
CACHE_VERSION = 2


@dataclasses.dataclass
class _Settings:
  measure: bool = True
  suspended: bool = False  # `rules_only`.
  cache_dir: str = ''
  log: Callable[[str], None] = dataclasses.field(
      default=lambda line: print(line, flush=True))


_SETTINGS = _Settings()
_CHOICES: dict[str, dict[str, Any]] = {}  # This process's choices, by key (after the cache).
_LOADED: dict[str, dict[str, Any]] = {}  # Cache files read, by path.
MEASUREMENTS: list[str] = []  # The keys this process measured, in order (for the log and tests).


def configure(measure: bool = True, cache_dir: str | None = None,
              log: Callable[[str], None] | None = None) -> None:
  """Sets whether 'auto' convolutions are measured (CNNJAX_TUNING, where set, wins), and where
  the cache lives ('': $CNNJAX_CACHE_DIR or the user's cache directory); forgets the choices held
  in memory, so the next trace asks the cache again."""
  _SETTINGS.measure = measure
  if cache_dir is not None:
    _SETTINGS.cache_dir = cache_dir
  if log is not None:
    _SETTINGS.log = log
  _CHOICES.clear()
  _LOADED.clear()


def configure_from(config) -> None:
  """`configure` from a config's `tuning` section (the defaults where it has none)."""
  section = config.get('tuning') if hasattr(config, 'get') else None
  measure = True if section is None else section.get('measure', True)
  if not isinstance(measure, bool):
    from cnnjax.errors import ConfigError  # pylint: disable=import-outside-toplevel
    raise ConfigError(f'tuning.measure={measure!r} must be True (measure each convolution '
                      'formulation on this machine) or False (the rules)')
  configure(measure=measure,
            cache_dir='' if section is None else str(section.get('cache_dir', '') or ''))


@contextlib.contextmanager
def rules_only():
  """Within it, 'auto' convolutions take the rules: for traces that compute nothing (shape-only
  walks such as the model summary's `jax.eval_shape`)."""
  previous = _SETTINGS.suspended
  _SETTINGS.suspended = True
  try:
    yield
  finally:
    _SETTINGS.suspended = previous


def measuring() -> bool:
  """Whether 'auto' convolutions are measured in this process (see the module docstring).

  The environment variable CNNJAX_TUNING ('measure' or 'rules'), where set, wins over
  `configure`; the test suite sets 'rules' so that only the tests of this module measure.
  """
  if _SETTINGS.suspended:
    return False
  mode = os.environ.get(ENV_MODE, '')
  if mode and mode not in MODES:
    raise ValueError(f'{ENV_MODE}={mode!r} is not one of {MODES}')
  off = mode == 'rules' if mode else not _SETTINGS.measure
  if off:
    return False
  import jax  # pylint: disable=import-outside-toplevel
  return jax.default_backend() == 'cpu' and jax.process_count() == 1


def cache_directory() -> str:
  """Where the cache files live: the configured directory, $CNNJAX_CACHE_DIR, or the user's
  cache directory for cnnjax (platformdirs: ~/.cache/cnnjax on Linux)."""
  if _SETTINGS.cache_dir:
    return _SETTINGS.cache_dir
  if os.environ.get(ENV_CACHE_DIR):
    return os.environ[ENV_CACHE_DIR]
  import platformdirs  # pylint: disable=import-outside-toplevel
  return platformdirs.user_cache_dir('cnnjax', appauthor=False)


def cpu_model(cpuinfo: str = '/proc/cpuinfo') -> str:
  """The CPU's model name as the kernel reports it, with its family, model, stepping and a digest
  of its instruction-set flags (Linux); else what `platform` says.

  The name alone is not enough: virtual machines may report only 'AMD EPYC' (this project's
  machines do) for CPU generations that differ in speed and in the instructions XLA compiles
  for, so a cache measured on one must not serve another.
  """
  fields: dict[str, str] = {}
  try:
    with open(cpuinfo) as f:
      for line in f:
        if not line.strip():
          break  # The first processor's block describes them all.
        key, _, value = line.partition(':')
        fields[key.strip()] = value.strip()
  except OSError:
    pass
  name = fields.get('model name')
  if not name:
    return platform.processor() or platform.machine()
  details = [f'{label} {fields[key]}' for key, label in
             (('cpu family', 'family'), ('model', 'model'), ('stepping', 'stepping'))
             if fields.get(key)]
  if fields.get('flags'):
    flags = ' '.join(sorted(fields['flags'].split()))
    details.append(f'flags {hashlib.sha256(flags.encode()).hexdigest()[:8]}')
  return f'{name} ({", ".join(details)})' if details else name


def usable_cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def identity(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
  """What the measured times depend on besides the shapes: the machine, versions and settings
  (XLA_FLAGS and GLIBC_TUNABLES as `environ`, default this process's environment, has them)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jaxlib  # pylint: disable=import-outside-toplevel
  environ = os.environ if environ is None else environ
  return {'cache_version': CACHE_VERSION, 'cpu': cpu_model(), 'cores': usable_cores(),
          'machine': platform.machine(), 'jax': jax.__version__,
          'jaxlib': getattr(jaxlib, '__version__', jaxlib.version.__version__),
          'xla_flags': ' '.join(environ.get('XLA_FLAGS', '').split()),
          'glibc_tunables': environ.get('GLIBC_TUNABLES', '')}


def cache_file(ident: dict[str, Any] | None = None, kind: str = 'convolutions') -> str:
  """The cache file of `kind` for this machine identity (a hash of `identity()` names it)."""
  ident = identity() if ident is None else ident
  digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
  return os.path.join(cache_directory(), f'{kind}-{digest}.json')


def read_cache(path: str, ident: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
  """The choices stored in cache file `path` if it was written under `ident`; {} otherwise (a
  missing file silently; an unreadable one, or one of another identity, with a line to `log`)."""
  try:
    with open(path) as f:
      stored = json.load(f)
  except FileNotFoundError:
    return {}
  except (OSError, ValueError) as error:
    log(f'ignoring the unreadable cache {path} ({error}); measuring again')
    return {}
  if stored.get('identity') != ident:
    log(f'ignoring {path}: measured under {stored.get("identity")}, this process is {ident}; '
        'measuring again')
    return {}
  return dict(stored.get('choices', {}))


def write_cache(path: str, ident: dict[str, Any], choices: dict[str, Any],
                log: Callable[[str], None]) -> None:
  """Writes cache file `path` whole and atomically (a crash leaves the old file or the new one);
  a directory that cannot be written costs only the reuse (a line to `log`)."""
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.cache-')
    with os.fdopen(fd, 'w') as f:
      json.dump({'identity': ident, 'choices': choices}, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
  except OSError as error:
    log(f'could not write the cache {path} ({error}); the choices hold for this process only')


def _log(line: str) -> None:
  _SETTINGS.log(f'tuning: {line}')


def _load(path: str, ident: dict[str, Any]) -> dict[str, Any]:
  """The convolution choices in `path` (read once per process)."""
  if path not in _LOADED:
    _LOADED[path] = read_cache(path, ident, _log)
  return _LOADED[path]


def _save(path: str, ident: dict[str, Any], choices: dict[str, Any]) -> None:
  write_cache(path, ident, choices, _log)


def convolution_key(x_shape: Sequence[int], kernel_shape: Sequence[int],
                    strides: Sequence[int], padding, dilation: Sequence[int], dtype: str,
                    mode: str) -> str:
  """The cache key of one convolution: shapes, strides, padding, dilation, dtype and mode."""
  pad = padding if isinstance(padding, str) else 'x'.join(f'{a}-{b}' for a, b in padding)
  dims = lambda values: 'x'.join(str(int(v)) for v in values)  # pylint: disable=unnecessary-lambda-assignment
  return (f'{mode} x={dims(x_shape)} kernel={dims(kernel_shape)} strides={dims(strides)} '
          f'padding={pad} dilation={dims(dilation)} {dtype}')


def is_differentiated(value) -> bool:
  """Whether `value` is being differentiated in the trace at hand (a JVP or linearize tracer)."""
  return any(cls.__name__ in ('JVPTracer', 'LinearizeTracer') for cls in type(value).__mro__)


def eligible(x_shape: Sequence[int], kernel_shape: Sequence[int], out_pixels: int,
             itemsize: int) -> tuple[str, ...]:
  """The formulations worth timing for this layer (see the module docstring)."""
  kh, kw, cin, _ = kernel_shape
  names = ['lax']
  if kh * kw * cin <= MAX_TAPS:
    names.append('taps')
  if x_shape[0] * out_pixels * kh * kw * cin * itemsize <= MAX_PATCH_BYTES:
    names.append('im2col')
  return tuple(names)


def time_formulation(formulation: Callable, x_shape, kernel_shape, dtype, mode: str,
                     repeats: int = REPEATS) -> float:
  """Seconds per call of `formulation(x, kernel)` (forward, or forward and kernel gradient for
  'train'), jitted, on seeded random inputs: the best of `repeats` calls after a warm-up."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  with jax.ensure_compile_time_eval():
    x = jax.numpy.asarray(rng.standard_normal(x_shape, np.float32), dtype)
    kernel = jax.numpy.asarray(rng.standard_normal(kernel_shape, np.float32) * 0.1, dtype)
    if mode == 'train':
      def step(x, kernel):
        y, pullback = jax.vjp(lambda k: formulation(x, k), kernel)
        return y, pullback(y)[0]
    else:
      step = formulation
    step = jax.jit(step)
    jax.block_until_ready(step(x, kernel))
    best = float('inf')
    for _ in range(repeats):
      start = time.perf_counter()
      jax.block_until_ready(step(x, kernel))
      best = min(best, time.perf_counter() - start)
  return best


def fastest(times: Mapping[Any, float], default: Any) -> Any:
  """The fastest of `times` (candidate -> time), or `default` (the rules' choice) where that
  candidate saves less than `MARGIN` of the default's time: a near-tie keeps the rules."""
  best = min(times, key=times.get)
  if default in times and times[best] > (1 - MARGIN) * times[default]:
    return default
  return best


def convolution_choice(key: str, candidates: dict[str, Callable], x_shape, kernel_shape,
                       dtype, mode: str, default: str) -> str:
  """The fastest of `candidates` (name -> function of (x, kernel)) for the convolution `key`
  (`fastest`: `default`, the rules' choice, on a near-tie): from this process's choices, else
  the cache file, else measured now and saved."""
  if key in _CHOICES:
    return _CHOICES[key]['choice']
  if len(candidates) == 1:
    return next(iter(candidates))
  ident = identity()
  path = cache_file(ident)
  cached = _load(path, ident)
  entry = cached.get(key)
  if entry is None or entry.get('choice') not in candidates:
    times = {name: time_formulation(fn, x_shape, kernel_shape, dtype, mode)
             for name, fn in candidates.items()}
    choice = fastest(times, default)
    entry = {'choice': choice, 'ms': {name: round(t * 1e3, 4) for name, t in times.items()}}
    MEASUREMENTS.append(key)
    cached[key] = entry
    _save(path, ident, cached)
    _SETTINGS.log(f'tuning: {key}: ' + ', '.join(f'{name} {ms:.3g} ms'
                                                  for name, ms in entry['ms'].items())
                  + f' -> {choice}'
                  + (f' (the rules\' choice: nothing was {MARGIN:.0%} faster)'
                     if choice != min(times, key=times.get) else '')
                  + f' (cached in {path})')
  _CHOICES[key] = entry
  return entry['choice']


def chosen() -> dict[str, dict[str, Any]]:
  """This process's convolution choices so far, by key (each {'choice', 'ms'})."""
  return dict(_CHOICES)


if __name__ == '__main__':  # `python -m cnnjax.tuning`: where the cache is and what it holds.
  print(cache_file())
  print(json.dumps(_load(cache_file(), identity()), indent=1), file=sys.stdout)
