"""What the benchmarks record about the machine they ran on."""

import datetime
import json
import os
import platform

from cnnjax.tuning import cpu_model  # The CPU model the measured choices are cached under.


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
