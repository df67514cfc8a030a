"""The process settings of a training run, measured on the machine at hand: huge pages, YNNPACK.

Two settings must be made before a process computes anything: glibc's malloc with transparent
huge pages (`cnnjax.host_memory`: read once at start-up, so the process restarts itself) and
XLA:CPU's YNNPACK fusions (`cnnjax.xla_cpu`: read when JAX's CPU backend starts). The rules
measured on the 2-core AMD EPYC (2026-11-24) were huge pages on and the fusions off; on the
2-core Intel Xeon of 2026-11-29 huge pages cost the small convnet 11% (issue 19). So `launch.py`
asks `choose` for the run's settings:

- fixed first: a setting the environment already makes (GLIBC_TUNABLES naming the huge-page
  tunable, XLA_FLAGS naming the fusion flag) is the user's and is kept; so is a config's
  `tuning.huge_pages` / `tuning.ynn_fusions` of 'on' or 'off'.
- measured where 'auto' (the default) leaves them open, for a training job on the CPU with
  `tuning.measure` on: the same command runs once per candidate in a child process with
  `--mode time_steps` (`time_train_steps`: the config's model, optimizer and augmentation, one
  device, random images of `model.input_shape`, `STEPS` timed train steps after compilation), and
  the fastest setting is kept, unless it beats the rules' settings by less than `tuning.MARGIN`
  (a near-tie keeps the rules: `tuning.fastest`). The choice is cached per machine identity
  (`tuning.identity`) and workload (`workload_key`: the model group, batch, augmentation,
  optimizer) in the cache directory of `cnnjax.tuning`, so it is measured once; every run prints
  the settings and where they came from.
- otherwise the rules (`rules`).

The decided settings travel in the environment variable CNNJAX_PROCESS_SETTINGS
('huge_pages=1,ynn_fusions=0'), which the restarted process and the measuring children read
instead of deciding again; a user may set it too. This module imports no JAX.
"""

import dataclasses
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import time
from typing import Callable, Mapping

from cnnjax import host_memory
from cnnjax import xla_cpu

ENV = 'CNNJAX_PROCESS_SETTINGS'
RESTARTED_ENV = 'CNNJAX_PROCESS_SETTINGS_RESTARTED'  # Set across apply's restart only.
FIELDS = ('huge_pages', 'ynn_fusions')
CHOICES = ('auto', 'on', 'off')
STEPS = 30  # Timed train steps per candidate (the best counts), after two untimed ones.
MARKER = 'time_steps: '
ACCELERATOR_PLUGINS = ('jax_cuda12_plugin', 'jax_cuda13_plugin', 'jax_rocm7_plugin', 'libtpu')


@dataclasses.dataclass(frozen=True)
class Settings:
  huge_pages: bool
  ynn_fusions: bool

  def encode(self) -> str:
    return ','.join(f'{name}={int(getattr(self, name))}' for name in FIELDS)

  def describe(self) -> str:
    return (f'huge pages {"on" if self.huge_pages else "off"}, XLA:CPU YNNPACK fusions '
            f'{"on" if self.ynn_fusions else "off"}')


def rules() -> Settings:
  """The settings measured fastest on the 2-core AMD EPYC: huge pages where glibc and the kernel
  give them, YNNPACK's fusions off."""
  return Settings(huge_pages=host_memory.huge_pages_available(), ynn_fusions=False)


def decode(value: str) -> Settings:
  """`Settings` from CNNJAX_PROCESS_SETTINGS's 'huge_pages=1,ynn_fusions=0'; a ValueError naming
  the variable otherwise."""
  items = dict(item.split('=', 1) for item in value.split(',') if '=' in item)
  if set(items) != set(FIELDS) or not set(items.values()) <= {'0', '1'}:
    raise ValueError(f'{ENV}={value!r}: expected huge_pages=0|1,ynn_fusions=0|1')
  return Settings(**{name: items[name] == '1' for name in FIELDS})


def fixed(environ: Mapping[str, str], config) -> dict[str, bool]:
  """The settings the environment or the config fixes (see the module docstring)."""
  made: dict[str, bool] = {}
  section = config.get('tuning') if config is not None else None
  for name in FIELDS:
    value = 'auto' if section is None else section.get(name, 'auto')
    if value not in CHOICES:
      from cnnjax.errors import ConfigError  # pylint: disable=import-outside-toplevel
      raise ConfigError(f'tuning.{name}={value!r} is not one of {CHOICES}')
    if value != 'auto':
      made[name] = value == 'on'
  if host_memory.names_huge_pages(environ):
    tunables = dict(item.split('=', 1) for item in environ[host_memory.ENV].split(':')
                    if '=' in item)
    made['huge_pages'] = tunables.get(host_memory.TUNABLE) not in ('0', '')
  if xla_cpu.FLAG in environ.get('XLA_FLAGS', ''):
    made['ynn_fusions'] = xla_cpu.ynn_fusions_on(environ['XLA_FLAGS'])
  if not host_memory.huge_pages_available():
    made['huge_pages'] = False
  return made


def workload_key(config) -> str:
  """What the settings are measured for: the whole model group (name, input shape, dtype,
  convolutions and any field that shapes the network), the batch, augmentation, optimizer and
  frozen parameter groups."""
  model = json.dumps(config.model.to_dict(), sort_keys=True, default=str)
  return (f'model={model} batch={config.train.batch_size} augment={config.augment.kind} '
          f'optimizer={config.train.optimizer} '
          f'param_groups={list(config.train.get("param_groups", ()))}')


def environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
  """`environ` with `settings` made: the decided-settings variable, the huge-page tunable and
  the fusion flag (off: the empty flag; on: no flag, XLA's default)."""
  env = dict(environ)
  env[ENV] = settings.encode()
  if settings.huge_pages:
    env = host_memory.with_huge_pages(env)
  flags = ' '.join(f for f in env.get('XLA_FLAGS', '').split()
                   if not f.startswith(xla_cpu.FLAG + '='))
  if not settings.ynn_fusions:
    flags = f'{flags} {xla_cpu.FLAG}='.strip()
  env['XLA_FLAGS'] = flags
  return env


def _accelerator_possible(environ: Mapping[str, str]) -> bool:
  """Whether JAX may run on an accelerator here (asked without starting JAX, which would read
  XLA_FLAGS too early): JAX_PLATFORMS names one, or it is unset and a GPU/TPU plugin is
  installed. The settings measured here are the CPU's."""
  platforms = environ.get('JAX_PLATFORMS', '')
  if platforms:
    return platforms.split(',')[0] != 'cpu'
  return any(importlib.util.find_spec(name) is not None for name in ACCELERATOR_PLUGINS)


def _several_processes(environ: Mapping[str, str]) -> bool:
  """Whether this process is one of several (`parallel.initialize_distributed`'s variables):
  each would measure for itself and might settle differently."""
  return bool(environ.get('JAX_COORDINATOR_ADDRESS')) or any(
      int(environ.get(name, '1') or 1) > 1 for name in ('SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE'))


def measure_candidate(argv: list[str], env: dict[str, str], timeout: float = 600.0) -> float:
  """Milliseconds per train step of `argv` run with `--mode=time_steps` in `env`."""
  result = subprocess.run([*argv, '--mode=time_steps'], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
  lines = [line for line in result.stdout.splitlines() if line.startswith(MARKER)]
  if result.returncode or not lines:
    tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
    raise RuntimeError(f'timing {env.get(ENV)} failed (exit {result.returncode}): '
                       + ' | '.join(tail))
  return float(json.loads(lines[-1][len(MARKER):])['step_ms'])


def choose(config, argv: list[str], environ: Mapping[str, str] | None = None, *,
           measure_allowed: bool = True,
           measure: Callable[[list[str], dict[str, str]], float] = measure_candidate,
           log: Callable[[str], None] = print) -> tuple[Settings, str]:
  """The settings for this run of `argv` (the command as started) and where they come from.

  `measure_allowed`: False takes the rules for what is left open (launch.py's summary and
  predict modes). `measure` times one candidate (tests pass their own).
  """
  environ = dict(os.environ if environ is None else environ)
  if environ.get(ENV):
    return decode(environ[ENV]), f'{ENV}'
  made = fixed(environ, config)
  ruled = Settings(**{**dataclasses.asdict(rules()), **made})  # The rules where not fixed.
  open_fields = [name for name in FIELDS if name not in made]
  section = config.get('tuning')
  measuring = (section is None or section.get('measure', True)) and environ.get(
      'CNNJAX_TUNING', 'measure') != 'rules'
  if not open_fields:
    return Settings(**made), 'fixed by the environment or the config'
  if (not measuring or not measure_allowed or config.get('job', 'train') != 'train'
      or _accelerator_possible(environ) or _several_processes(environ)):
    return ruled, 'rules (not measured)'
  from cnnjax import tuning  # pylint: disable=import-outside-toplevel
  ident = tuning.identity(environ)  # As this command was started, before its own settings.
  path = tuning.cache_file(ident, kind='process-settings')
  key = json.dumps({'workload': workload_key(config), 'fixed': made}, sort_keys=True)
  prefixed = lambda line: log(f'process settings: {line}')
  choices = tuning.read_cache(path, ident, prefixed)
  entry = choices.get(key)
  if entry is not None:
    return Settings(**entry['settings']), f'measured earlier ({path})'
  times = {}
  for values in itertools.product((True, False), repeat=len(open_fields)):
    candidate = Settings(**{**made, **dict(zip(open_fields, values))})
    start = time.perf_counter()
    try:
      times[candidate] = measure(argv, environment(candidate, environ))
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as error:
      # The run itself will say what is wrong if it is the config; a failed measurement only
      # costs the choice, which is not cached.
      log(f'process settings: could not time {candidate.describe()} ({error}); the rules')
      return ruled, 'rules (measuring failed)'
    log(f'process settings: {candidate.describe()}: {times[candidate]:.1f} ms per train step '
        f'(measured in {time.perf_counter() - start:.0f} s)')
  # The rules' settings stay unless a candidate is at least tuning.MARGIN faster.
  best = tuning.fastest(times, ruled)
  choices[key] = {
      'settings': dataclasses.asdict(best),
      'ms_per_step': {candidate.encode(): round(ms, 3) for candidate, ms in times.items()}}
  tuning.write_cache(path, ident, choices, prefixed)
  return best, f'measured now ({path})'


def apply(settings: Settings, source: str, log: Callable[[str], None] = print) -> None:
  """Makes `settings` in this process: XLA_FLAGS now, huge pages by restarting the command in
  place (`os.execve`) when glibc was not started with them. Call before JAX computes anything.
  Logs the settings once (before a restart, not after it)."""
  restarted = os.environ.pop(RESTARTED_ENV, None) is not None
  if not restarted:
    log(f'process settings: {settings.describe()} ({source})')
  env = environment(settings, os.environ)
  restart = settings.huge_pages and not host_memory.names_huge_pages()
  os.environ.update(env)
  if restart:
    os.environ[RESTARTED_ENV] = '1'
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], dict(os.environ))


def time_train_steps(config, steps: int = STEPS) -> float:
  """Milliseconds per train step of `config`'s model, optimizer, frozen parameters and
  augmentation on one device, on random images of `model.input_shape` and random initial
  parameters (the best of `steps` after two untimed steps)."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from cnnjax import augment as augment_lib  # pylint: disable=import-outside-toplevel
  from cnnjax.models import create_model  # pylint: disable=import-outside-toplevel
  from cnnjax.training.losses import get_objective  # pylint: disable=import-outside-toplevel
  from cnnjax.training.optimizers import create_optimizer  # pylint: disable=import-outside-toplevel
  from cnnjax.summary import abstract_variables  # pylint: disable=import-outside-toplevel
  from cnnjax.training.param_groups import frozen_paths  # pylint: disable=import-outside-toplevel
  from cnnjax.training.param_groups import param_groups  # pylint: disable=import-outside-toplevel
  from cnnjax.training.parallel import create_parallel  # pylint: disable=import-outside-toplevel
  from cnnjax.training.train_state import create_train_state  # pylint: disable=import-outside-toplevel
  train = config.train
  augmenter = augment_lib.make_augmenter(config.augment)
  augmenter = None if augmenter.is_identity else augmenter
  parallel = create_parallel('single', get_objective(train.loss, float(train.label_smoothing)),
                             augmenter, None)
  model = parallel.adapt_model(create_model(config.model))
  shape = tuple(config.model.input_shape)
  frozen = frozen_paths(abstract_variables(model, shape)['params'], param_groups(train))
  state = parallel.place_state(create_train_state(
      model, create_optimizer(train, 100), shape, config.seed, frozen=frozen,
      ema_decay=float(train.get('ema_decay', 0.0))))
  rng = np.random.default_rng(0)
  classes = max(2, int(config.model.num_outputs or config.data.num_classes))
  batch = parallel.place_batch({
      'image': rng.uniform(0, 1, (train.batch_size, *shape)).astype(np.float32),
      'label': rng.integers(0, classes if train.loss != 'binary_crossentropy' else 2,
                            train.batch_size).astype(np.int32),
      'mask': np.ones(train.batch_size, np.float32)})
  best = float('inf')
  for i in range(steps + 2):
    start = time.perf_counter()
    state, metrics = parallel.train_step(state, batch)
    jax.block_until_ready(metrics)
    if i >= 2:
      best = min(best, time.perf_counter() - start)
  return best * 1e3
