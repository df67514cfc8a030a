"""What the benchmarks record about the machine they ran on."""

import datetime
import json
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


def report(result: dict, out: str | None) -> None:
  """Prints a benchmark's result as JSON and writes it to `out` when given."""
  text = json.dumps(result, indent=2)
  print(text)
  if out:
    with open(out, 'w') as f:
      f.write(text + '\n')
