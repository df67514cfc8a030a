"""The XLA:CPU setting cnnjax chose by measurement: YNNPACK's fusions off.

XLA:CPU hands convolutions and matrix products to YNNPACK by default. On the 2-core AMD EPYC
machine this project measures on, its own (Eigen) kernels were faster for every workload of
`benchmarks/speed_suite.py` (2026-11-24: VGG16 inference 1.9x, the frozen-VGG16 step 1.2x, the
150x150 convnet's step 1.25x with `lax.conv`; README, Speed). That is now a rule, the fallback of
`cnnjax.process_settings`, which measures the setting per workload on the machine at hand. XLA
reads `XLA_FLAGS` once, when its CPU backend starts, so the setting is made before anything
starts JAX, and `cnnjax.models.convolution`'s rules ask `ynn_fusions_on` which convolution
formulation to use on the CPU. `run_as_launched` applies the rules together with
`cnnjax.host_memory`'s huge pages (for benchmark scripts). This module imports no JAX.
"""

import os

from cnnjax import host_memory

FLAG = '--xla_cpu_experimental_ynn_fusion_type'


def ynn_fusions_on(xla_flags: str | None = None) -> bool:
  """Whether `xla_flags` (default: the XLA_FLAGS variable) leaves YNNPACK's fusions on.

  They are on unless the flag is given with an empty value (the last occurrence counts).
  """
  xla_flags = os.environ.get('XLA_FLAGS', '') if xla_flags is None else xla_flags
  values = [f.split('=', 1)[1] for f in xla_flags.split() if f.startswith(FLAG + '=')]
  return not values or bool(values[-1])


def turn_off_ynn_fusions() -> None:
  """Adds `FLAG=` to XLA_FLAGS, unless XLA_FLAGS already sets the flag (the user's choice wins).

  Takes effect only if called before JAX's CPU backend starts (the first computation).
  """
  xla_flags = os.environ.get('XLA_FLAGS', '')
  if FLAG not in xla_flags:
    os.environ['XLA_FLAGS'] = f'{xla_flags} {FLAG}='.strip()


def run_as_launched() -> None:
  """Sets up this process by the rules: glibc malloc with huge pages, then YNNPACK off (what
  `launch.py` runs where measuring is off; `cnnjax.process_settings`).

  For launch.py and the benchmark scripts that should measure as it runs. Call it first thing in
  a script's `__main__`: the huge-page restart (`host_memory.restart_with_huge_pages`) starts the
  command again from the top, and XLA reads its flags when JAX's CPU backend starts. Either
  setting is left alone where the environment already makes it.
  """
  host_memory.restart_with_huge_pages()
  turn_off_ynn_fusions()
