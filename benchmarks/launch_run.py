"""One `python launch.py` run as a user launches it, timed: the Fashion-MNIST benchmarks' runner."""

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class Run:
  command: list[str]
  seconds: float  # From the launch to the process's exit.
  seconds_to_test: float | None  # From the launch to its `test_accuracy:` line; None: no test.
  test_accuracy: float | None
  history: list[dict]  # The run's history.json: one record per epoch.


def launch_run(config: str, scratch: str, *overrides: str) -> Run:
  """Runs `python launch.py --config CONFIG --workdir FRESH_DIR --config.OVERRIDE ...` (a fresh
  workdir under `scratch`); a RuntimeError with the output's tail if it fails."""
  workdir = tempfile.mkdtemp(prefix='run-', dir=scratch)
  command = [sys.executable, os.path.join(REPO, 'launch.py'), '--config', config, '--workdir',
             workdir, *(f'--config.{override}' for override in overrides)]
  start = time.perf_counter()
  process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
  to_test, accuracy, lines = None, None, []
  for line in process.stdout:
    lines.append(line)
    if line.startswith('test_accuracy:'):
      to_test = time.perf_counter() - start
      accuracy = float(line.split(':', 1)[1])
  code = process.wait()
  seconds = time.perf_counter() - start
  if code != 0:
    raise RuntimeError(f'{shlex.join(command)} failed (exit {code}):\n{"".join(lines[-30:])}')
  with open(os.path.join(workdir, 'history.json')) as f:
    history = json.load(f)
  return Run(command, seconds, to_test, accuracy, history)
