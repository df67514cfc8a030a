"""The README's and docs' references to tests, scripts and outputs point at things that exist, and
the figures that a committed output holds are that output's."""

import glob
import json
import os
import re

import pytest

from conftest import REPO


def read(path):
  with open(os.path.join(REPO, path)) as f:
    return f.read()


def defined_tests():
  """Every `def test_...` of the test files: name -> the files that define it."""
  found = {}
  for path in glob.glob(os.path.join(REPO, 'tests', '*.py')):
    with open(path) as f:
      for name in re.findall(r'^def (test_\w+)\(', f.read(), re.M):
        found.setdefault(name, []).append(os.path.relpath(path, REPO))
  return found


def missing_references(text, functions):
  """What `text` names that does not exist: tests (with or without their file) and files."""
  missing = []
  # `tests/x.py::test_a`, then `test_b` names that follow it in the same cell or sentence.
  for match in re.finditer(r'`(tests/[\w/]+\.py)::(\w+)`((?:,\s*`test_\w+`)*)', text):
    names = [match.group(2)] + re.findall(r'`(test_\w+)`', match.group(3))
    if not os.path.exists(os.path.join(REPO, match.group(1))):
      missing.append(match.group(1))
      continue
    missing += [f'{match.group(1)}::{name}' for name in names
                if match.group(1) not in functions.get(name, ())]
  # A test named alone, without its file: it must exist in some test file.
  missing += [name for name in set(re.findall(r'`(test_\w+)`', text)) if name not in functions]
  for path in set(re.findall(r'`((?:tests|benchmarks|scripts|configs|cnnjax|docs)/[\w/.-]+'
                             r'\.(?:py|sh|json|txt|md|png))`', text)):
    if not os.path.exists(os.path.join(REPO, path)):
      missing.append(path)
  # Result files named without their folder (`cpu-2026-11-24-fashion-mnist.json`).
  for name in set(re.findall(r'`([\w.]+(?:-[\w.]+)*-20\d\d-\d\d-\d\d[\w.-]*\.(?:json|txt))`',
                             text)):
    if not os.path.exists(os.path.join(REPO, 'benchmarks', 'results', name)):
      missing.append(f'benchmarks/results/{name}')
  return missing


def test_every_named_test_and_file_exists():
  functions = defined_tests()
  missing = {path: missing_references(read(path), functions)
             for path in ['README.md', *glob.glob('docs/*.md', root_dir=REPO)]}
  missing = {path: names for path, names in missing.items() if names}
  assert not missing, f'named but not found: {missing}'


def claims_rows():
  readme = read('README.md')
  section = readme.split('### Claims and where they are checked', 1)[1].split('\n## ', 1)[0]
  return [line.split(' | ') for line in section.splitlines()
          if line.startswith('| ') and not line.startswith(('| claim |', '| --- |'))]


def test_every_claim_names_its_check_or_says_it_has_none():
  rows = claims_rows()
  assert len(rows) >= 25
  unchecked = []
  for claim, check in (row if len(row) == 2 else (row[0], ' | '.join(row[1:])) for row in rows):
    names_a_test = re.search(r'`tests/[\w/]+\.py::test_\w+`', check)
    names_a_script_and_output = (re.search(r'`benchmarks/\w+\.py`', check) and
                                 re.search(r'`(?:benchmarks/results|docs)/[\w.-]+`', check))
    says_so = claim.startswith('| Not checked')
    if not (names_a_test or names_a_script_and_output or says_so):
      unchecked.append(claim)
  assert not unchecked, f'claims without a test, or a script and its output: {unchecked}'


def table_lines(text, after=''):
  """The first markdown table (its lines) of `text` after the first occurrence of `after`."""
  lines = text.split(after, 1)[1].splitlines() if after else text.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith('|'))
  end = next((i for i, line in enumerate(lines[start:], start) if not line.startswith('|')),
             len(lines))
  return lines[start:end]


def test_the_resnet_transfer_tables_are_the_commands_output():
  # The two tables docs/transfer_results.md shows as the command's output for resnet_small are
  # what `results_markdown` makes of the run's kept JSON, line for line.
  from cnnjax.transfer.experiment import results_markdown  # pylint: disable=import-outside-toplevel
  results = json.loads(read('docs/transfer_results_resnet_small.json'))
  made = results_markdown(results['pretrain'], results['runs'], 'command', 0.0,
                          base='resnet_small')
  doc = read('docs/transfer_results.md').split('### resnet_small: output of the command', 1)[1]
  made_tables = [line for line in made.splitlines() if line.startswith('|')]
  doc_tables = table_lines(doc) + table_lines(doc, 'Per seed (test accuracy):')
  assert doc_tables == made_tables


def test_the_speed_tables_hold_their_outputs_figures():
  # The first speed table's cnnjax and PyTorch columns, from the JSON it names.
  readme = read('README.md')
  assert '`benchmarks/results/cpu-2026-11-24-taps-hugepages.json`' in readme
  rows = json.loads(read('benchmarks/results/cpu-2026-11-24-taps-hugepages.json'))['workloads']
  readme = readme[readme.index('### Earlier: the 2-core AMD EPYC'):]
  for workload, label in (('small_convnet', '(a) small convnet'),
                          ('cats_vs_dogs_150', '(b) cats vs dogs')):
    best = {row: figures['images_per_second_best']
            for row, figures in rows[workload]['rows'].items()}
    line = next(line for line in readme.splitlines() if line.startswith(f'| {label}'))
    cells = [cell.strip() for cell in line.split('|')[2:-1]]
    decimals = 0 if best['cnnjax'] > 1000 else 1
    assert cells[0] == f'{best["cnnjax"]:,.{decimals}f}', (workload, cells[0])
    assert cells[3] == (f'{best["torch"]:,.{decimals}f} / '
                        f'{best["torch,hugepages=on"]:,.{decimals}f}'), (workload, cells[3])


def test_the_zoo_table_holds_its_outputs_figures():
  # The model zoo table's cnnjax and PyTorch eager cells, best (median), from the JSON it names.
  readme = read('README.md')
  assert '`benchmarks/results/cpu-2026-11-30-zoo-afternoon.json`' in readme
  rows = json.loads(read('benchmarks/results/cpu-2026-11-30-zoo-afternoon.json'))['workloads']
  readme = readme[readme.index('### The model zoo earlier on 2026-11-30'):]

  def cell(figures):
    return (f'{figures["images_per_second_best"]:.1f} '
            f'({figures["images_per_second_median"]:.1f})')

  for workload, label in (('resnet50_predict_224', '(e) ResNet50 v1.5'),
                          ('resnet18_train_224', '(f) ResNet18'),
                          ('inceptionv3_predict_299', '(g) InceptionV3')):
    figures = rows[workload]['rows']
    line = next(line for line in readme.splitlines() if line.startswith(f'| {label}'))
    cells = [c.strip() for c in line.split('|')[2:-1]]
    assert cells[0] == cell(figures['cnnjax']), (workload, cells[0])
    assert cells[2] == f'{cell(figures["torch"])} / {cell(figures["torch,hugepages=on"])}', (
        workload, cells[2])
    assert cells[3] == cell(figures['torch_compile']), (workload, cells[3])


@pytest.mark.parametrize('heading,results', [
    ('### On the 2-core AMD EPYC (family 26), 2026-12-01', 'cpu-2026-12-01-measured.json'),
    ('### On the 2-core Intel Xeon (Sapphire Rapids), 2026-11-30', 'cpu-2026-11-30-measured.json'),
])
def test_the_measured_speed_table_holds_its_outputs_figures(heading, results):
  """Each machine's table: every cnnjax, Keras, PyTorch and torch.compile cell and the ratio
  column, from the JSON it names ("as launched" = the best of cnnjax's four process settings)."""
  readme = read('README.md')
  start = readme.index(heading)
  section = readme[start:readme.index('\n### ', start + len(heading))]
  assert f'--out benchmarks/results/{results}`' in section
  workloads = json.loads(read(f'benchmarks/results/{results}'))['workloads']
  settings = ('cnnjax', 'cnnjax,hugepages=off', 'cnnjax,ynn=on', 'cnnjax,ynn=on,hugepages=off')

  def fmt(rows, name):
    if name not in rows:
      return '-'
    value = rows[name]['images_per_second_best']
    return f'{value:,.0f}' if value >= 1000 else f'{value:.1f}'

  for label, workload in (('(a) small convnet', 'small_convnet'),
                          ('(b) cats vs dogs', 'cats_vs_dogs_150'),
                          ('(c) VGG16 frozen', 'vgg16_frozen_150'),
                          ('(d) VGG16 with top', 'vgg16_predict_224'),
                          ('(e) ResNet50 v1.5', 'resnet50_predict_224'),
                          ('(f) ResNet18', 'resnet18_train_224'),
                          ('(g) InceptionV3', 'inceptionv3_predict_299')):
    rows = workloads[workload]['rows']
    line = next(line for line in section.splitlines() if line.startswith(f'| {label}'))
    cells = [c.strip() for c in line.split('|')[2:-1]]
    fastest = max(settings, key=lambda name: rows[name]['images_per_second_best'])
    assert cells[0].split(' (')[0] == fmt(rows, fastest), (label, cells[0])
    assert cells[1] == fmt(rows, 'cnnjax,rules'), (label, cells[1])
    assert cells[2] == fmt(rows, 'cnnjax,bf16'), (label, cells[2])
    if not label.startswith('(e)'):
      assert cells[3] == f"{fmt(rows, 'keras')} / {fmt(rows, 'keras,ynn=off,hugepages=on')}"
    assert cells[4] == f"{fmt(rows, 'torch')} / {fmt(rows, 'torch,hugepages=on')}", label
    assert cells[5] == fmt(rows, 'torch,bf16') and cells[6] == fmt(rows, 'torch_compile')
    rivals = [rows[name]['images_per_second_best'] for name in rows
              if name.split(',')[0] in ('torch', 'torch_compile') and 'bf16' not in name
              or (name.split(',')[0] == 'keras' and not label.startswith('(e)'))]
    ratio = rows[fastest]['images_per_second_best'] / max(rivals)
    assert cells[7].startswith(f'**{ratio:.2f}x**'), (label, cells[7], ratio)
