"""Launches an experiment: `python launch.py --config configs/NAME.py --workdir DIR`.

Override any config field with `--config.GROUP.FIELD=VALUE` (e.g. `--config.train.epochs=10`); the
config is locked, so a misspelt field is an error that names it. `--mode summary` prints the
model's summary and exits; `--mode predict` prints the top ImageNet classes of photos
(configs/imagenet_predict.py; --workdir optional). A config's `job` field picks the job:
training (the default) or 'visualize' (figures of a trained model). Everything else lives in
the `cnnjax` package.

A training run first checks that its data are where the config says
(`cnnjax.data.check_location`), then, on the CPU, settles its process settings (glibc's huge
pages, XLA:CPU's YNNPACK fusions): fixed by the environment or `tuning.*`, else measured once per
workload on this machine with `--mode time_steps` children and cached (cnnjax/process_settings.py);
its 'auto' convolutions are measured at their first trace (cnnjax/tuning.py).

Exit codes: 0 done; 2 an error the user can fix (printed as one line `error: ...`: bad input, a
workdir another live run holds, a read-only or full disk); 143 / 130 a training run stopped by
SIGTERM / SIGINT at a checkpoint that the same command resumes from
(cnnjax/training/interrupts.py).
"""

import json
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from cnnjax import process_settings  # Imports no JAX.
from cnnjax.errors import CnnjaxError
from cnnjax.training.interrupts import Interrupted  # Imports no JAX.

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Path to a config file (configs/*.py).', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, history and figures.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'summary', 'predict', 'time_steps'],
                          'train: train and test; summary: print the model summary and exit; '
                          'predict: classify predict.images with a pretrained ImageNet model; '
                          'time_steps: time a few train steps of the config on random images '
                          '(how the process settings are measured; cnnjax/process_settings.py).')
flags.mark_flags_as_required(['config'])


def parse_flags(argv: list[str]) -> list[str]:
  """Parses the command line; a bad override is one clear line, not a traceback."""
  for i, arg in enumerate(argv):
    path = arg.split('=', 1)[1] if arg.startswith('--config=') else (
        argv[i + 1] if arg == '--config' and i + 1 < len(argv) else None)
    if path is not None and not os.path.isfile(path.split(':', 1)[0]):
      sys.exit(f'error: no config file {path.split(":", 1)[0]!r}; the configs are in '
               f'{os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")}')
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    reason = ' '.join(re.sub(r"\\n|\\|'", ' ', str(e)).split())
    if isinstance(e, (AttributeError, KeyError)):
      reason = f'no such config field: {reason}'
    overrides = [arg for arg in argv[1:] if arg.startswith('--config.')]
    sys.exit(f'error: bad command line: {reason}\n'
             f'  config overrides given: {" ".join(overrides) or "none"}\n'
             f'  see the fields with: python launch.py --config FILE --mode summary --helpfull')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # JAX's start-up chatter is not for the user.
  config = _CONFIG.value
  try:
    if _MODE.value == 'train' and config.get('job', 'train') == 'train':
      from cnnjax.data import check_location  # pylint: disable=import-outside-toplevel
      check_location(config.data)  # A wrong data.dir is one line now, not after measuring.
    # Before anything starts JAX: glibc's huge pages (a restart in place) and XLA:CPU's YNNPACK
    # fusions, as the environment or the config fixes them, measured for this workload on this
    # machine (once, then cached), or by the rules (cnnjax/process_settings.py).
    settings, source = process_settings.choose(
        config, sys.orig_argv, measure_allowed=_MODE.value == 'train')
    process_settings.apply(settings, source)
  except (CnnjaxError, ValueError, RuntimeError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  from cnnjax import tuning  # pylint: disable=import-outside-toplevel
  tuning.configure_from(config)
  # Imported here so that `--help` and flag errors come back fast, before JAX loads.
  from cnnjax.training.parallel import initialize_distributed  # pylint: disable=import-outside-toplevel
  from cnnjax.summary import config_summary  # pylint: disable=import-outside-toplevel
  if initialize_distributed(dict(os.environ)):
    import jax  # pylint: disable=import-outside-toplevel
    logging.warning('process %d of %d in JAX distributed runtime', jax.process_index(),
                    jax.process_count())
  try:
    if _MODE.value == 'time_steps':
      print(process_settings.MARKER + json.dumps(
          {'step_ms': process_settings.time_train_steps(config)}), flush=True)
      return
    if _MODE.value == 'summary':
      print(config_summary(config))  # Trainable counts follow train.param_groups.
      return
    if _MODE.value == 'predict':
      from cnnjax.predict import run as predict  # pylint: disable=import-outside-toplevel
      predict(config, _WORKDIR.value)  # The workdir is optional: it gets predictions.json.
      return
    job = config.get('job', 'train')
    if not _WORKDIR.value:
      raise app.UsageError(f'--workdir is required for the {job} job: its outputs go there')
    if job == 'visualize':
      from cnnjax.visualize.job import run  # pylint: disable=import-outside-toplevel
      run(config, _WORKDIR.value)
      return
    from cnnjax.training.train import train_and_evaluate  # pylint: disable=import-outside-toplevel
    train_and_evaluate(config, _WORKDIR.value)
  except CnnjaxError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  except Interrupted as e:  # SIGTERM / SIGINT: 143 / 130 (cnnjax/training/interrupts.py).
    print(e, file=sys.stderr, flush=True)
    sys.exit(e.exit_code)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
