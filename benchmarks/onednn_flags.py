"""Does XLA:CPU in this jaxlib hand JAX's convolutions to oneDNN? (a benchmark, not a test)

    python benchmarks/onednn_flags.py [--shape 64,13,13,32,64]

PyTorch's CPU convolutions are oneDNN's, and this jaxlib links oneDNN too, behind flags
(`--xla_cpu_use_onednn`, `--xla_cpu_experimental_onednn_custom_call`,
`--xla_cpu_experimental_onednn_fusion_type`). For each flag set, in a fresh process (XLA reads
XLA_FLAGS once): a 3x3 VALID convolution of the given shape (batch, height, width, input and
output channels; default the main job's conv2), its forward and its gradients with respect to the
input and the kernel, jitted, best of 5 x 10 calls; and whether the compiled program calls oneDNN.
The flag sets keep YNNPACK's fusions off, as launch.py's rules do, except the first (XLA's
defaults).
"""

import argparse
import json
import os
import subprocess
import sys

FLAG_SETS = (
    '',
    '--xla_cpu_experimental_ynn_fusion_type=',
    '--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_use_onednn=true',
    '--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_experimental_onednn_custom_call=true',
    '--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_use_onednn=true '
    '--xla_cpu_experimental_onednn_custom_call=true',
    '--xla_cpu_experimental_ynn_fusion_type= '
    '--xla_cpu_experimental_onednn_fusion_type=dot,eltwise,reduce',
)


def child(shape: list[int]) -> dict:
  """Times the convolution in this process (XLA_FLAGS already set)."""
  import time  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  n, h, w, cin, cout = shape
  x = jax.random.normal(jax.random.key(0), (n, h, w, cin))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, cin, cout)) * 0.1

  def conv(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'VALID',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  forward = jax.jit(conv)
  gradients = jax.jit(jax.grad(lambda x, k: jnp.sum(conv(x, k) ** 2), argnums=(0, 1)))

  def best_ms(fn):
    jax.block_until_ready(fn(x, kernel))
    best = float('inf')
    for _ in range(5):
      start = time.perf_counter()
      for _ in range(10):
        result = fn(x, kernel)
      jax.block_until_ready(result)
      best = min(best, (time.perf_counter() - start) / 10)
    return round(best * 1e3, 3)

  program = gradients.lower(x, kernel).compile().as_text()
  # oneDNN's custom calls and fusions are named '__onednn$...' and '__onednn_fusion' (the
  # metadata's source file names would match a plain 'onednn': this file's own does).
  return {'forward_ms': best_ms(forward), 'forward_and_gradients_ms': best_ms(gradients),
          'calls_onednn': '__onednn' in program}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--shape', default='64,13,13,32,64')
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  shape = [int(s) for s in args.shape.split(',')]
  if args.child:
    print(json.dumps(child(shape)))
    return
  from machine import machine_description  # pylint: disable=import-outside-toplevel
  print(json.dumps(machine_description()))
  for flags in FLAG_SETS:
    process = subprocess.run([sys.executable, __file__, '--child', '--shape', args.shape],
                             env=dict(os.environ, XLA_FLAGS=flags), capture_output=True,
                             text=True, check=False)
    if process.returncode:
      result = {'error': process.stderr.strip().splitlines()[-1]}
    else:
      result = json.loads(process.stdout.strip().splitlines()[-1])
    print(f'XLA_FLAGS={flags!r}: {json.dumps(result)}', flush=True)


if __name__ == '__main__':
  main()
