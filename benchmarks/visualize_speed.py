"""Speed of the visualizations (a benchmark, not a test): filter-pattern grids and Grad-CAM.

Measures, with random weights (speed does not depend on their values):

1. the grid of the first `--filters` filters of a layer by the reference recipe (40 steps of
   gradient ascent) as ONE jitted call vmapped over the filters, against a loop over the filters
   calling a jitted single-filter ascent (compiled once, the filter index traced): the ratio is
   what vmapping buys;
2. Grad-CAM of the last conv layer: milliseconds per image, for a batch and for one image.

Compile times are reported apart; timings are medians of `--repeats` runs after a warm-up.

    python benchmarks/visualize_speed.py                                 # the main job's convnet
    python benchmarks/visualize_speed.py --model vgg16 --size 64 --layer block3_conv1 \
      --cam-size 224 --cam-batch 16                                      # VGG16 (accelerator)
"""

import argparse
import functools
import json
import statistics
import time

import flax
import jax
import jax.numpy as jnp
import optax

from cnnjax.config import base_config
from cnnjax.models import MODELS, create_model
from cnnjax.visualize import cam
from cnnjax.visualize import filter_patterns

from machine import machine_description


def build_model(name: str):
  if name not in MODELS:
    raise SystemExit(f'unknown model {name!r}; choose one of {sorted(MODELS)}')
  config = base_config().model
  config.name = name
  return create_model(config)


def timed(fn, repeats: int) -> tuple[float, float]:
  """(first call incl. compilation, median of the next `repeats`) in seconds."""
  start = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return first, statistics.median(times)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', default='small_convnet')
  parser.add_argument('--channels', type=int, default=0, help='0: 1 (3 for vgg16)')
  parser.add_argument('--size', type=int, default=28, help='filter-pattern image size')
  parser.add_argument('--layer', default='conv2')
  parser.add_argument('--filters', type=int, default=64)
  parser.add_argument('--steps', type=int, default=40)
  parser.add_argument('--cam-size', type=int, default=0, help='Grad-CAM image size; 0: --size')
  parser.add_argument('--cam-batch', type=int, default=64)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()

  channels = args.channels or (3 if args.model == 'vgg16' else 1)
  cam_size = args.cam_size or args.size
  model = build_model(args.model)
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, cam_size, cam_size, channels)))
  device = jax.devices()[0]
  print(json.dumps({
      **machine_description(), 'device': device.device_kind, 'backend': jax.default_backend(),
      'versions': {'jax': jax.__version__, 'flax': flax.__version__, 'optax': optax.__version__},
      'model': args.model, 'layer': args.layer, 'filters': args.filters, 'steps': args.steps,
      'pattern_size': args.size, 'cam_size': cam_size, 'cam_batch': args.cam_batch,
  }))

  key = jax.random.key(0)
  indices = jnp.arange(args.filters)
  kwargs = dict(size=args.size, channels=channels, steps=args.steps, input_scale=1 / 255)
  vmapped = functools.partial(filter_patterns.filter_patterns, model, variables, args.layer,
                              indices, key, **kwargs)
  one_filter = jax.jit(functools.partial(filter_patterns.gradient_ascent, model, variables,
                                         args.layer, **kwargs))
  keys = filter_patterns.filter_keys(key, indices)

  def loop():
    return [one_filter(indices[i], keys[i])[0] for i in range(args.filters)]

  vmap_first, vmap_time = timed(vmapped, args.repeats)
  loop_first, loop_time = timed(loop, args.repeats)
  print(f'filter grid, {args.filters} filters of {args.layer} x {args.steps} steps at '
        f'{args.size}x{args.size}:')
  print(f'  vmapped, one jitted call: {vmap_time:8.3f} s   (first call with compilation '
        f'{vmap_first:.1f} s)')
  print(f'  loop over filters:        {loop_time:8.3f} s   (first call with compilation '
        f'{loop_first:.1f} s)')
  print(f'  loop / vmapped:           {loop_time / vmap_time:8.1f} x')

  images = jax.random.uniform(jax.random.key(1), (args.cam_batch, cam_size, cam_size, channels))
  layer = cam.last_conv_layer(model, variables, images[:1])
  for batch in (args.cam_batch, 1):
    first, seconds = timed(lambda b=batch: cam.class_activation_maps(
        model, variables, images[:b], method='grad_cam', layer=layer).maps, args.repeats)
    print(f'Grad-CAM of {layer}, batch {batch:3d}: {1000 * seconds / batch:8.3f} ms per image   '
          f'(first call with compilation {first:.1f} s)')


if __name__ == '__main__':
  main()
