"""Page faults of XLA:CPU's large output buffers, with and without huge pages (a benchmark).

XLA:CPU allocates a jitted function's output anew on every call; glibc serves a request that
large with a fresh `mmap` and unmaps it on `free`, so the next call touches new pages again. This
measures that cost on an output of cats_vs_dogs_150's first activation's size (batch 32 of
148x148x32 float32, 90 MB): a jitted `x + 1` called again and again, once writing into a new
output every call and once into reused memory (the input donated, so that XLA writes the output
over it). Each runs in a fresh process with `GLIBC_TUNABLES=glibc.malloc.hugetlb=0` (glibc's
default) and `=1` (what `launch.py` sets: `cnnjax/host_memory.py`), and reports the minor page
faults (`getrusage`) and the milliseconds per call, best of the rounds.

    python benchmarks/huge_pages.py [--calls 5] [--rounds 20] [--out FILE.json]

XLA_FLAGS is left as the environment has it; an elementwise loop does not depend on YNNPACK.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from machine import machine_description, report

SHAPE = (32, 148, 148, 32)


def measure(calls: int, rounds: int) -> dict:
  """In this process: faults and ms per call into new and into reused output buffers."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  add_one = jax.jit(lambda x: x + 1)
  add_one_in_place = jax.jit(lambda x: x + 1, donate_argnums=0)
  results = {}
  for name, fn, donated in (('new output buffer each call', add_one, False),
                            ('output written over the donated input', add_one_in_place, True)):
    x = jnp.zeros(SHAPE, jnp.float32)

    def call(x, fn=fn, donated=donated):
      y = fn(x).block_until_ready()
      return y if donated else x

    x = call(call(x))  # Compiles, then one warm call.
    best_ms, best_faults = float('inf'), float('inf')
    for _ in range(rounds):
      faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      start = time.perf_counter()
      for _ in range(calls):
        x = call(x)
      best_ms = min(best_ms, (time.perf_counter() - start) / calls * 1e3)
      best_faults = min(best_faults, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                                      - faults) / calls)
    results[name] = {'ms_per_call': round(best_ms, 2), 'minor_faults_per_call': round(best_faults)}
  return results


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--calls', type=int, default=5)
  parser.add_argument('--rounds', type=int, default=20)
  parser.add_argument('--out', default='')
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(measure(args.calls, args.rounds)))
    return
  load_start = os.getloadavg()
  settings = {}
  for value in ('0', '1'):
    environ = {**os.environ, 'GLIBC_TUNABLES': f'glibc.malloc.hugetlb={value}'}
    output = subprocess.run(
        [sys.executable, os.path.abspath(__file__), '--child', '--calls', str(args.calls),
         '--rounds', str(args.rounds)], env=environ, check=True, capture_output=True,
        text=True).stdout
    settings[f'glibc.malloc.hugetlb={value}'] = json.loads(output.strip().splitlines()[-1])
  with open('/sys/kernel/mm/transparent_hugepage/enabled') as f:
    thp = f.read().strip()
  import jax  # pylint: disable=import-outside-toplevel
  result = {
      'command': 'python benchmarks/huge_pages.py ' + ' '.join(sys.argv[1:]),
      'time': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      'machine': machine_description(),
      'load_average_start': [round(v, 2) for v in load_start],
      'load_average_end': [round(v, 2) for v in os.getloadavg()],
      'versions': {'jax': jax.__version__, 'glibc': os.confstr('CS_GNU_LIBC_VERSION')},
      'transparent_hugepage': thp,
      'buffer': f'float32 {SHAPE}, {4 * SHAPE[0] * SHAPE[1] * SHAPE[2] * SHAPE[3] / 1e6:.1f} MB',
      'calls': args.calls, 'rounds': args.rounds,
      'per_setting': settings,
  }
  report(result, args.out)


if __name__ == '__main__':
  main()
