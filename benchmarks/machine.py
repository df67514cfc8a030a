"""What the benchmarks record about the machine they ran on."""

import datetime
import os
import platform


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine_description() -> dict[str, str]:
  """Date, CPU and core count, and OS: the header of every benchmark's output."""
  return {'date': datetime.date.today().isoformat(),
          'machine': f'{cpu_model()}, {os.cpu_count()} cores', 'platform': platform.platform()}
