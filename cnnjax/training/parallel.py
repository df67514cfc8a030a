"""How a training step runs on the devices: one device, a sharded jit, or pmap.

`train.parallel` picks the wrapper around the one pure step body of `cnnjax.training.steps`:

- 'single': `jax.jit` on one device.
- 'sharded': `jax.jit` over a `Mesh` of every device with `NamedSharding`s: the state replicated,
  the batch split along the mesh's 'batch' axis. XLA partitions the step and inserts the gradient
  all-reduce itself. This is the default when there is more than one device, and the way to scale
  to many hosts.
- 'pmap': `jax.pmap` over the local devices with an explicit `lax.psum` of gradients and metric
  sums over the 'batch' axis. pmap is in maintenance mode in current JAX: it is kept working and
  tested, but nothing new builds on it.
- 'auto': 'sharded' when there is more than one device, else 'single'.

The global batch (`train.batch_size`) is split across all devices of all processes; each process
feeds only its own rows (`cnnjax.data.batches(..., host=parallel.host())`). Whatever the wrapper,
metric sums come back as replicated scalars that stay on the device until the epoch ends, and the
state is checkpointed in one form (`to_checkpoint`): a checkpoint written with 8 devices restores
with 1 and the reverse.
"""

import collections
import dataclasses
import functools
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cnnjax.training import steps
from cnnjax.augment import Augmenter
from cnnjax.training.test_time import TestTimeAugmentation
from cnnjax.errors import ConfigError
from cnnjax.training.losses import Objective
from cnnjax.rng import BATCH_AXIS

MODES = ('auto', 'single', 'sharded', 'pmap')
Batch = dict[str, Any]

# How far the host may run ahead of the devices, in dispatched steps. Enough to keep a GPU fed,
# and below XLA:CPU's limit: its client admits 32 computations in flight per device
# (`max_inflight_computations_per_device`), and a sharded train step dispatched while 33 are
# queued deadlocks in the in-process all-reduce ("Expected 8 threads to join the rendezvous, but
# only k of them arrived", then an abort after 40 s). Measured on 8 fake CPU devices (jax 0.10.2,
# 2026-11-30): with 32 steps allowed in flight every run finished, with 33 or 40 every run
# aborted; pmap steps finished with 1,000 in flight. Tested by `test_parallel.py::
# test_hundreds_of_queued_steps_finish_in_every_mode` (it fails with a bound of 33).
MAX_STEPS_IN_FLIGHT = 8


def _paced(step: Callable, max_in_flight: int) -> Callable:
  """`step`, waiting for the step `max_in_flight` calls back before dispatching a new one.

  Waiting on an old step's metrics never waits on the newest one, so the devices stay busy and
  metrics still reach the host only when asked for.
  """
  in_flight = collections.deque()

  def paced_step(state, batch):
    if len(in_flight) >= max_in_flight:
      jax.block_until_ready(in_flight.popleft())
    state, sums = step(state, batch)
    in_flight.append(sums)
    return state, sums
  return paced_step


def _local_value(x: Any) -> np.ndarray:
  """A replicated array's value as NumPy, read from this process's first copy."""
  if isinstance(x, jax.Array):
    return np.asarray(x.addressable_data(0))
  return np.asarray(x)


@dataclasses.dataclass(frozen=True)
class Parallel:
  """The chosen wrapper: places states and batches and runs the jitted steps."""

  mode: str
  objective: Objective
  augment: Augmenter | None = None
  tta: TestTimeAugmentation | None = None
  devices: tuple = dataclasses.field(default_factory=lambda: tuple(jax.devices()))

  # -- layout -------------------------------------------------------------------------------------

  @property
  def num_devices(self) -> int:
    """The devices one global batch is split across."""
    return 1 if self.mode == 'single' else len(self.devices)

  @functools.cached_property
  def mesh(self) -> Mesh:
    return Mesh(np.asarray(self.devices), (BATCH_AXIS,))

  @functools.cached_property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, PartitionSpec())

  @functools.cached_property
  def batch_sharding(self) -> NamedSharding:
    return NamedSharding(self.mesh, PartitionSpec(BATCH_AXIS))

  def check_batch_size(self, batch_size: int, field: str) -> None:
    """A batch that does not split evenly is an error now, not a shape error inside XLA."""
    if batch_size % self.num_devices:
      raise ConfigError(
          f'{field}={batch_size} does not split evenly across {self.num_devices} devices '
          f"(train.parallel='{self.mode}'); use a multiple of {self.num_devices}")

  def host(self) -> tuple[int, int]:
    """(index, count) of this process among those sharing each global batch ((0, 1): alone)."""
    if jax.process_count() == 1 or self.mode == 'single':
      return 0, 1
    return jax.process_index(), jax.process_count()

  def adapt_model(self, model: Any) -> Any:
    """The model as this wrapper runs it.

    Under pmap each device sees only its part of the batch, so a model with BatchNorm (one with
    an `axis_name` field, as cnnjax's are) is cloned with `axis_name` set to the device axis:
    its training batch statistics are then averaged over the devices, as one device computes
    them on the whole batch. The sharded jit needs nothing: XLA computes the statistics of the
    global batch across the mesh. Parameters and statistics are the same either way.
    """
    fields = {f.name for f in dataclasses.fields(model)} if dataclasses.is_dataclass(model) else ()
    if self.mode != 'pmap' or 'axis_name' not in fields:
      return model
    return model.clone(axis_name=BATCH_AXIS)

  # -- states -------------------------------------------------------------------------------------

  def _global_replicated(self, tree: Any) -> Any:
    def put(x):
      value = _local_value(x)
      return jax.make_array_from_callback(value.shape, self.replicated, lambda idx: value[idx])
    return jax.tree.map(put, tree)

  def to_checkpoint(self, state: Any) -> Any:
    """The state in the form checkpoints hold: replicated global arrays (plain on one device)."""
    if self.mode == 'pmap':
      # Every device holds the same copy: take this process's first one as it is. Indexing the
      # global array instead (x[0]) is a computation over the devices of every process, and one
      # such eager op per leaf was seen to deadlock two processes on XLA:CPU.
      return self._global_replicated(jax.tree.map(lambda x: _local_value(x)[0], state))
    return state  # Already one array per leaf (replicated over the mesh when sharded).

  def place_state(self, state: Any) -> Any:
    """A fresh or restored state, laid out for the step."""
    if self.mode == 'single':
      return jax.device_put(state, self.devices[0])
    if self.mode == 'sharded':
      return self._global_replicated(state)
    # pmap maps over every device of every process; each process passes its local devices' part.
    n = jax.local_device_count()
    stacked = jax.tree.map(lambda x: np.broadcast_to(_local_value(x), (n, *np.shape(x))), state)
    return jax.pmap(lambda x: x, axis_name=BATCH_AXIS)(stacked)

  def place_batch(self, batch: Batch) -> Batch:
    """This process's rows of a batch, on its devices."""
    if self.mode == 'single':
      return jax.device_put(batch, self.devices[0])
    if self.mode == 'sharded':
      return jax.make_array_from_process_local_data(self.batch_sharding, batch)
    n = jax.local_device_count()
    return jax.tree.map(lambda x: x.reshape(n, x.shape[0] // n, *x.shape[1:]), batch)

  # -- steps --------------------------------------------------------------------------------------

  @functools.cached_property
  def train_step(self) -> Callable[[Any, Batch], tuple[Any, steps.Metrics]]:
    body = functools.partial(steps.train_step, objective=self.objective, augment=self.augment)
    if self.mode == 'single':
      step = jax.jit(body, donate_argnums=0)
    elif self.mode == 'sharded':
      step = jax.jit(body, in_shardings=(self.replicated, self.batch_sharding),
                     out_shardings=(self.replicated, self.replicated), donate_argnums=0)
    else:
      mapped = jax.pmap(functools.partial(body, axis_name=BATCH_AXIS), axis_name=BATCH_AXIS,
                        donate_argnums=0)

      def step(state, batch):
        state, sums = mapped(state, batch)
        return state, jax.tree.map(lambda x: x[0], sums)  # Replicated: any copy will do.
    return _paced(step, MAX_STEPS_IN_FLIGHT)

  @functools.cached_property
  def eval_step(self) -> Callable[[Any, Batch], steps.Metrics]:
    body = functools.partial(steps.eval_step, objective=self.objective, augment=self.augment,
                             tta=self.tta)
    if self.mode == 'single':
      return jax.jit(body)
    if self.mode == 'sharded':
      return jax.jit(body, in_shardings=(self.replicated, self.batch_sharding),
                     out_shardings=self.replicated)
    mapped = jax.pmap(functools.partial(body, axis_name=BATCH_AXIS), axis_name=BATCH_AXIS)
    return lambda state, batch: jax.tree.map(lambda x: x[0], mapped(state, batch))


def create_parallel(mode: str, objective: Objective, augment: Augmenter | None = None,
                    tta: TestTimeAugmentation | None = None) -> Parallel:
  """The wrapper `train.parallel` names ('auto' resolves by the device count).

  `augment`, if given, runs inside the steps: per example on training batches, its fixed
  preprocessing on evaluation batches; `tta`, if given, averages evaluation over its views.
  """
  if mode not in MODES:
    raise ConfigError(f'train.parallel={mode!r} is not a known mode; choose one of {MODES}')
  if mode == 'auto':
    mode = 'sharded' if jax.device_count() > 1 else 'single'
  return Parallel(mode, objective, augment, tta)


MULTI_PROCESS_ENV = ('JAX_COORDINATOR_ADDRESS', 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE')


def initialize_distributed(environ: dict[str, str]) -> bool:
  """Joins JAX's distributed runtime when this process is one of several; True if it did.

  On SLURM and Open MPI clusters `jax.distributed.initialize()` finds the coordinator, process
  count and process id itself; anywhere else set JAX_COORDINATOR_ADDRESS (host:port of process
  0), JAX_NUM_PROCESSES and JAX_PROCESS_ID in each process's environment. It must run before
  anything else touches the devices.
  """
  if environ.get('JAX_COORDINATOR_ADDRESS'):
    try:
      num_processes, process_id = (int(environ[name]) for name in ('JAX_NUM_PROCESSES',
                                                                   'JAX_PROCESS_ID'))
    except (KeyError, ValueError) as e:
      raise ConfigError('JAX_COORDINATOR_ADDRESS is set, so JAX_NUM_PROCESSES and JAX_PROCESS_ID '
                        f'must be set to integers too ({e})') from e
    jax.distributed.initialize(environ['JAX_COORDINATOR_ADDRESS'], num_processes, process_id)
    return True
  if any(int(environ.get(name, '1') or 1) > 1 for name in MULTI_PROCESS_ENV[1:]):
    jax.distributed.initialize()
    return True
  return False
