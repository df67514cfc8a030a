"""Augmentation throughput in images per second (a benchmark, not a test).

Times, in one run and on the same random batch (default 32 images of 150x150x3, the book's cats vs
dogs shape): cnnjax's augmenters jitted on the JAX device (ImageDataGenerator vocabulary with the
book's arguments, then the Keras-layers and torchvision vocabularies), and side by side Keras'
own: the legacy `ImageDataGenerator(...).flow` (NumPy + scipy, one image at a time, which the
1st edition uses) and Keras 3's RandomFlip + RandomRotation + RandomZoom layers (JAX backend; the
2nd edition's stack) called on the batch eagerly, and compiled as `fit` runs them inside its
train step (one jitted `stateless_call`). Prints one line per measurement and a header with
the date, machine, versions and load average (again at the end: other jobs slow XLA's threads
more than SciPy's single one). The process runs as Python starts it (XLA's default YNNPACK
fusions, glibc's default malloc), not as launch.py runs.

    python benchmarks/augmentation_throughput.py [--batch 32] [--size 150] [--steps 20]
"""

import argparse
import datetime
import os
import platform
import time
import warnings

os.environ.setdefault('KERAS_BACKEND', 'jax')

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from cnnjax import augment  # pylint: disable=wrong-import-position
from machine import cpu_model  # pylint: disable=wrong-import-position

# The book's ImageDataGenerator arguments (Listing 5.11), shared by both implementations.
BOOK_ARGUMENTS = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
                      shear_range=0.2, zoom_range=0.2, horizontal_flip=True, fill_mode='nearest')


def best_rate(run_batch, batch: int, steps: int, repeats: int) -> float:
  """Images per second of the fastest of `repeats` runs of `steps` batches, after a warm-up."""
  run_batch(0)
  best = 0.0
  for repeat in range(repeats):
    start = time.perf_counter()
    for step in range(steps):
      run_batch(1 + repeat * steps + step)
    best = max(best, batch * steps / (time.perf_counter() - start))
  return best


def train_step_rates(images: np.ndarray, kinds: tuple, steps: int, repeats: int) -> dict:
  """Images/s of the cats-vs-dogs train step per augmentation kind, best of interleaved rounds."""
  from cnnjax.config import base_config  # pylint: disable=import-outside-toplevel
  from cnnjax.training.losses import get_objective  # pylint: disable=import-outside-toplevel
  from cnnjax.models import create_model  # pylint: disable=import-outside-toplevel
  from cnnjax.training.optimizers import create_optimizer  # pylint: disable=import-outside-toplevel
  from cnnjax.training.parallel import create_parallel  # pylint: disable=import-outside-toplevel
  from cnnjax.training.train_state import create_train_state  # pylint: disable=import-outside-toplevel

  config = base_config()
  config.model.name = 'cats_vs_dogs_150'
  config.model.dropout_rate = 0.5
  config.train.loss = 'binary_crossentropy'
  config.train.learning_rate = 1e-4
  batch = {'image': jax.device_put(images),
           'label': jax.device_put(np.arange(len(images), dtype=np.int32) % 2),
           'mask': jax.device_put(np.ones(len(images), np.float32))}
  runners = {}
  for kind in kinds:
    augment_config = augment.default_config()
    augment_config.kind = kind
    augmenter = augment.make_augmenter(augment_config)
    parallel = create_parallel('single', get_objective(config.train.loss),
                               None if augmenter.is_identity else augmenter)
    state = create_train_state(create_model(config.model), create_optimizer(config.train, 100),
                               images.shape[1:], seed=0)
    step = parallel.train_step
    state, sums = step(state, batch)  # Compiles.
    jax.block_until_ready(sums)
    runners[kind] = [step, state]
  best = dict.fromkeys(kinds, 0.0)
  for _ in range(repeats):
    for kind in kinds:
      step, state = runners[kind]
      start = time.perf_counter()
      for _ in range(steps):
        state, sums = step(state, batch)
      jax.block_until_ready(sums)
      best[kind] = max(best[kind], len(images) * steps / (time.perf_counter() - start))
      runners[kind][1] = state
  return best


def report(name: str, rate: float, suffix: str = '') -> None:
  print(f'{name:<58s} {rate:>10,.0f} images/s{suffix}', flush=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--size', type=int, default=150)
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--train-steps', type=int, default=5,
                      help='train steps per timed round (0 skips the train-step measurement)')
  args = parser.parse_args()
  shape = (args.batch, args.size, args.size, 3)
  images = np.random.default_rng(0).random(shape, dtype=np.float32)

  import keras  # pylint: disable=import-outside-toplevel
  import scipy  # pylint: disable=import-outside-toplevel
  print(f'# {datetime.datetime.now().isoformat(timespec="seconds")}  {platform.node()}  '
        f'{cpu_model()}  {os.cpu_count()} CPUs  JAX device: {jax.devices()[0].device_kind}')
  print(f'# jax {jax.__version__}  keras {keras.__version__} ({keras.backend.backend()} backend)  '
        f'scipy {scipy.__version__}  numpy {np.__version__}  python {platform.python_version()}')
  print(f'# batch {args.batch} of {args.size}x{args.size}x3 float32; best of {args.repeats} x '
        f'{args.steps} batches; load average {os.getloadavg()}')

  device_images = jax.device_put(images)
  base_key = jax.random.key(0)
  for kind in ('image_data_generator', 'keras_layers', 'torchvision'):
    config = augment.default_config()
    config.kind = kind
    if kind == 'image_data_generator':
      config.image_data_generator.update(BOOK_ARGUMENTS)
    augmenter = jax.jit(augment.make_augmenter(config))

    def run_batch(step, augmenter=augmenter):
      augmenter(jax.random.fold_in(base_key, step), device_images).block_until_ready()

    report(f'cnnjax {kind} (jit, {jax.devices()[0].platform})',
           best_rate(run_batch, args.batch, args.steps, args.repeats))

  try:
    from keras.src.legacy.preprocessing.image import \
        ImageDataGenerator  # pylint: disable=import-outside-toplevel
  except ImportError:
    ImageDataGenerator = None
  if ImageDataGenerator is not None:
    # Keras' legacy module calls scipy.ndimage through a deprecated name on every image.
    warnings.filterwarnings('ignore', message='Please import `affine_transform`')
    flow = ImageDataGenerator(**BOOK_ARGUMENTS).flow(images, batch_size=args.batch, seed=0)
    report('keras ImageDataGenerator.flow (legacy, NumPy/scipy)',
           best_rate(lambda step: next(flow), args.batch, args.steps, args.repeats))
  else:
    print('# keras.src.legacy.preprocessing.image.ImageDataGenerator is gone from this Keras')

  layers = keras.Sequential([keras.layers.RandomFlip('horizontal', seed=0),
                             keras.layers.RandomRotation(0.1, seed=0),
                             keras.layers.RandomZoom(0.2, seed=0)])
  report(f'keras 3 layers Flip+Rotation+Zoom ({keras.backend.backend()}, eager)',
         best_rate(lambda step: np.asarray(layers(images, training=True)), args.batch,
                   args.steps, args.repeats))
  # In `fit` the layers run inside Keras' compiled train step: the same layers as one jitted
  # `stateless_call`, their seed generators' state passed in and out as `fit` passes it.
  trainable = [v.value for v in layers.trainable_variables]
  compiled = jax.jit(lambda state, x: layers.stateless_call(trainable, state, x, training=True))
  seeds = {'state': [v.value for v in layers.non_trainable_variables]}

  def run_compiled(step):
    del step  # The seed generators' state advances on every call.
    out, seeds['state'] = compiled(seeds['state'], device_images)
    out.block_until_ready()

  report(f'keras 3 layers Flip+Rotation+Zoom ({keras.backend.backend()}, jit stateless_call)',
         best_rate(run_compiled, args.batch, args.steps, args.repeats))

  if args.train_steps:
    kinds = ('none', 'image_data_generator', 'keras_layers', 'torchvision')
    rates = train_step_rates(images, kinds, args.train_steps, args.repeats)
    for kind in kinds:
      cost = '' if kind == 'none' else f'   cost {1 - rates[kind] / rates["none"]:.1%}'
      report(f'train step cats_vs_dogs_150, augment {kind}', rates[kind], cost)
  print(f'# {datetime.datetime.now().isoformat(timespec="seconds")}  load average '
        f'{os.getloadavg()}')


if __name__ == '__main__':
  main()
