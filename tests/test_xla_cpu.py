"""The XLA:CPU setting launch.py applies, and the convolution formulation that follows from it."""

import os

import jax

from cnnjax import xla_cpu
from cnnjax.models import convolution


def test_ynn_fusions_flag_parsing():
  assert xla_cpu.ynn_fusions_on('')
  assert xla_cpu.ynn_fusions_on('--xla_force_host_platform_device_count=8')
  assert not xla_cpu.ynn_fusions_on('--xla_cpu_experimental_ynn_fusion_type=')
  assert xla_cpu.ynn_fusions_on('--xla_cpu_experimental_ynn_fusion_type=dot')
  # The last occurrence counts, as in XLA's own parsing.
  assert not xla_cpu.ynn_fusions_on('--xla_cpu_experimental_ynn_fusion_type=dot '
                                    '--xla_cpu_experimental_ynn_fusion_type=')


def test_turn_off_keeps_the_users_flags(monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
  xla_cpu.turn_off_ynn_fusions()
  assert not xla_cpu.ynn_fusions_on()
  assert '--xla_force_host_platform_device_count=2' in os.environ['XLA_FLAGS']
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_experimental_ynn_fusion_type=dot')
  xla_cpu.turn_off_ynn_fusions()  # The user chose: left alone.
  assert xla_cpu.ynn_fusions_on()
  monkeypatch.delenv('XLA_FLAGS')
  xla_cpu.turn_off_ynn_fusions()
  assert os.environ['XLA_FLAGS'] == '--xla_cpu_experimental_ynn_fusion_type='


def test_auto_convolution_follows_the_flag_and_the_channels(monkeypatch):
  assert jax.default_backend() == 'cpu'
  monkeypatch.setenv('XLA_FLAGS', '')
  assert convolution.resolve('auto', 1) == 'im2col'
  assert convolution.resolve('auto', 32) == 'im2col'
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_experimental_ynn_fusion_type=')
  assert convolution.resolve('auto', 1) == 'taps'
  assert convolution.resolve('auto', 3) == 'lax'
  assert convolution.resolve('im2col', 3) == 'im2col'
  monkeypatch.setattr(jax, 'process_count', lambda: 2)  # JAX's distributed runtime: the same.
  assert convolution.resolve('auto', 1) == 'taps'
  monkeypatch.setattr(jax, 'process_count', lambda: 1)
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert convolution.resolve('auto', 1) == 'lax'


def test_launch_sets_the_flag_before_jax_starts(launch_environment):
  """launch.py's process runs with the flag (and a convnet there resolves to lax)."""
  assert 'FLAGS=--xla_cpu_experimental_ynn_fusion_type=\n' in launch_environment({})
