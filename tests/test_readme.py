"""The README's references to tests and scripts point at things that exist."""

import os
import re

from conftest import REPO


def test_every_named_test_and_file_exists():
  with open(os.path.join(REPO, 'README.md')) as f:
    readme = f.read()
  missing = []
  # `tests/x.py::test_a`, then `test_b` names that follow it in the same cell or sentence.
  for match in re.finditer(r'`(tests/[\w/]+\.py)::(\w+)`((?:,\s*`test_\w+`)*)', readme):
    path = os.path.join(REPO, match.group(1))
    names = [match.group(2)] + re.findall(r'`(test_\w+)`', match.group(3))
    if not os.path.exists(path):
      missing.append(match.group(1))
      continue
    with open(path) as f:
      source = f.read()
    missing += [f'{match.group(1)}::{name}' for name in names
                if not re.search(rf'^def {name}\(', source, re.M)]
  for path in set(re.findall(r'`((?:tests|benchmarks|scripts|configs|cnnjax)/[\w/.-]+\.(?:py|sh|json))`',
                             readme)):
    if not os.path.exists(os.path.join(REPO, path)):
      missing.append(path)
  assert not missing, f'README.md names what does not exist: {missing}'
