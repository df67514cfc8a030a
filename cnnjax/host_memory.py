"""Host memory for XLA:CPU's buffers: glibc's malloc with transparent huge pages.

XLA:CPU allocates every output buffer of a computation with `posix_memalign`, from its worker
threads. glibc serves a large request there by a fresh `mmap` and returns it to the system on
`free`, so every step of a jitted function writes its large outputs into new pages, each one a
page fault: a 90 MB activation (cats_vs_dogs_150's first convolution, batch 32) took 21,905
faults and 40 ms to write where the same loop over the donated input took 9 ms. With glibc's
`glibc.malloc.hugetlb=1` tunable, malloc asks the kernel for transparent huge pages (`madvise`),
2 MiB at a time: 443 faults and 16 ms for the same buffer (`python benchmarks/huge_pages.py`,
its output benchmarks/results/huge-pages-2026-11-30.json: 2-core Intel Xeon, glibc 2.36, other
jobs running). What that gives the train steps: README, Speed.

glibc reads its tunables from the GLIBC_TUNABLES variable once, when the process starts, so
a process that wants huge pages starts the same command again in place (`os.execve`) with the
tunable added: `launch.py` when its settings ask for them (`cnnjax.process_settings`: measured per
workload, or the rule: on), benchmark scripts through `restart_with_huge_pages`
(`xla_cpu.run_as_launched`), unless GLIBC_TUNABLES already names it (the user's choice wins;
`glibc.malloc.hugetlb=0` turns it off) or the machine has no transparent huge pages to give. This
module imports no JAX.
"""

import os
import platform
import sys
from typing import Mapping

ENV = 'GLIBC_TUNABLES'
TUNABLE = 'glibc.malloc.hugetlb'
THP_MODE_FILE = '/sys/kernel/mm/transparent_hugepage/enabled'


def names_huge_pages(environ: Mapping[str, str] | None = None) -> bool:
  """Whether GLIBC_TUNABLES in `environ` (default: this process's) sets the huge-page tunable."""
  environ = os.environ if environ is None else environ
  return any(item.split('=', 1)[0] == TUNABLE for item in environ.get(ENV, '').split(':'))


def with_huge_pages(environ: Mapping[str, str]) -> dict[str, str]:
  """A copy of `environ` whose GLIBC_TUNABLES asks for huge pages, unless it names the tunable."""
  environ = dict(environ)
  if not names_huge_pages(environ):
    environ[ENV] = ':'.join(t for t in (environ.get(ENV, ''), f'{TUNABLE}=1') if t)
  return environ


def huge_pages_available(thp_mode_file: str = THP_MODE_FILE) -> bool:
  """Whether this is glibc on a kernel that hands out transparent huge pages on request."""
  if platform.libc_ver()[0] != 'glibc':
    return False
  try:
    with open(thp_mode_file) as f:
      mode = f.read()
  except OSError:
    return False
  # The selected mode is bracketed: 'always [madvise] never'.
  return '[never]' not in mode


def restart_with_huge_pages() -> None:
  """Starts this command again in place with huge pages asked of glibc, where that applies.

  Returns without doing anything when GLIBC_TUNABLES already names the tunable (so the restarted
  process goes on) or huge pages are not available; otherwise does not return. Call it before
  anything else has run: the new process starts from the top with the same arguments.
  """
  if names_huge_pages() or not huge_pages_available():
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], with_huge_pages(os.environ))
