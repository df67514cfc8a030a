"""The huge-page request launch.py makes of glibc's malloc for XLA:CPU's buffers."""

import os
import subprocess
import sys

import pytest

from cnnjax import host_memory


def test_tunable_added_unless_named():
  assert not host_memory.names_huge_pages({})
  env = host_memory.with_huge_pages({'PATH': '/bin'})
  assert env == {'PATH': '/bin', 'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'}
  # Other tunables are kept; a setting of the user's own, even 0, is left as it is.
  env = host_memory.with_huge_pages({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'})
  assert env['GLIBC_TUNABLES'] == 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'
  env = {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}
  assert host_memory.names_huge_pages(env)
  assert host_memory.with_huge_pages(env) == env
  # A tunable that merely starts with the same name is another one.
  assert not host_memory.names_huge_pages({'GLIBC_TUNABLES': 'glibc.malloc.hugetlbx=1'})


def test_availability_reads_the_selected_mode(tmp_path):
  mode = tmp_path / 'enabled'
  mode.write_text('always madvise [never]\n')
  assert not host_memory.huge_pages_available(str(mode))
  mode.write_text('always [madvise] never\n')
  assert host_memory.huge_pages_available(str(mode)) == (
      host_memory.platform.libc_ver()[0] == 'glibc')
  assert not host_memory.huge_pages_available(str(tmp_path / 'missing'))


@pytest.mark.skipif(not host_memory.huge_pages_available(),
                    reason='no glibc or no transparent huge pages on this machine')
def test_launch_restarts_with_huge_pages_once(launch_environment):
  """launch.py's process runs with the tunable (after one restart: the script's output shows
  once), with its XLA flag too; a user's own setting is kept."""
  out = launch_environment({})
  assert out.count('TUNABLES=') == 1
  assert 'TUNABLES=glibc.malloc.hugetlb=1\n' in out
  assert 'FLAGS=--xla_cpu_experimental_ynn_fusion_type=\n' in out
  out = launch_environment({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'})
  assert 'TUNABLES=glibc.malloc.hugetlb=0\n' in out


@pytest.mark.skipif(not host_memory.huge_pages_available(),
                    reason='no glibc or no transparent huge pages on this machine')
def test_glibc_gives_huge_pages_with_the_tunable():
  """The tunable takes effect: a large block from glibc's malloc, written in a process started
  with it, lies in transparent huge pages (AnonHugePages of /proc/self/smaps_rollup), and not
  without it. (malloc itself, through ctypes: numpy asks for huge pages on its own.)"""
  script = ('import ctypes\n'
            'libc = ctypes.CDLL("libc.so.6")\n'
            'libc.malloc.restype = ctypes.c_void_p\n'
            'block = libc.malloc(64 << 20)\n'
            'ctypes.memset(block, 1, 64 << 20)\n'
            'rollup = open("/proc/self/smaps_rollup").read().splitlines()\n'
            'print([int(l.split()[1]) for l in rollup if l.startswith("AnonHugePages:")][0])\n')

  def huge_kib(env):
    run = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                         env=env, check=True)
    return int(run.stdout.strip())

  base = {k: v for k, v in os.environ.items() if k != 'GLIBC_TUNABLES'}
  assert huge_kib(host_memory.with_huge_pages(base)) >= 32 << 10
  assert huge_kib(base) < 32 << 10
