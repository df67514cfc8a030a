"""The streaming input pipeline (cnnjax/data/streaming.py) against the in-memory one.

Tiny image folders written with Pillow: the streamed batches equal the in-memory batches bit for
bit, whatever the number of grain workers; each host reads its rows; a resumed epoch continues
with the same batches; bad files are listed and skipped as the in-memory loader does; a training
run on a streamed folder matches the in-memory run.
"""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from cnnjax import data as data_lib
from cnnjax.config import base_config
from cnnjax.data import image_folder, pipeline, streaming
from cnnjax.errors import ConfigError, DataError
from conftest import REPO

CLASSES = ('ants', 'bees', 'wasps')


def write_folder(root, counts=(7, 5, 6), split='train', seed=0):
  """JPEGs and PNGs of assorted sizes and modes, `counts` per class."""
  rng = np.random.default_rng(seed)
  for name, count in zip(CLASSES, counts):
    os.makedirs(root / split / name, exist_ok=True)
    for i in range(count):
      height, width = 18 + i % 5, 22 + i % 3
      pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
      image = Image.fromarray(pixels)
      if i % 3 == 1:
        image.convert('L').save(root / split / name / f'{i}.png')
      else:
        image.save(root / split / name / f'{i}.jpg', quality=90)
  return root


def in_memory(split_dir, size=(16, 16), **options):
  loaded = image_folder.load_split(str(split_dir), image_size=size, **options)
  return pipeline.ArrayDataset.from_uint8(loaded.images, loaded.labels), loaded


def streamed(root, size=(16, 16), workers=0, strict=False):
  listed, _ = streaming.list_folder_splits(str(root), {'train': 'train'}, image_size=size,
                                           color_mode='rgb', strict=strict)
  source, skipped = listed['train']
  return streaming.StreamingDataset(source, pixel_scale=255.0, workers=workers,
                                    strict=strict), skipped


def assert_same_batches(expected, actual):
  expected, actual = list(expected), list(actual)
  assert len(expected) == len(actual)
  for want, got in zip(expected, actual):
    assert sorted(want) == sorted(got)
    for key in want:
      assert want[key].dtype == got[key].dtype, key
      np.testing.assert_array_equal(want[key], got[key], err_msg=key)


@pytest.mark.parametrize('drop_remainder', [True, False])
def test_streamed_batches_equal_the_in_memory_ones(tmp_path, drop_remainder):
  root = write_folder(tmp_path)
  memory, _ = in_memory(root / 'train')
  stream, _ = streamed(root)
  assert len(stream) == len(memory) == 18
  assert stream.image_shape == memory.image_shape == (16, 16, 3)
  np.testing.assert_array_equal(stream.labels, memory.labels)
  for epoch in (1, 2):
    assert_same_batches(
        pipeline.batches(memory, 4, shuffle=True, seed=7, epoch=epoch,
                         drop_remainder=drop_remainder),
        stream.batches(4, shuffle=True, seed=7, epoch=epoch, drop_remainder=drop_remainder))
  # Evaluation order, with the padded last batch.
  assert_same_batches(pipeline.batches(memory, 5), stream.batches(5))
  np.testing.assert_array_equal(stream.take(slice(2, 4)), memory.take(slice(2, 4)))


def test_the_batches_do_not_depend_on_the_number_of_workers(tmp_path):
  root = write_folder(tmp_path, counts=(9, 8, 7))
  in_process, _ = streamed(root, workers=0)
  two_workers, _ = streamed(root, workers=2)
  options = dict(shuffle=True, seed=3, epoch=4, drop_remainder=True)
  assert_same_batches(in_process.batches(4, **options), two_workers.batches(4, **options))


# Run in a process of its own: after a killed worker, grain's later workers in the same process
# (the TFDS streaming tests' workers, seen) can hang, which a training run never meets (the
# error ends it) but a test process would.
KILL_A_WORKER = """
import os, signal, subprocess, sys
from cnnjax.data import streaming
from cnnjax.errors import DataError

def spawned_children():
  # This process's children started by multiprocessing's spawn: grain's workers.
  pids = subprocess.run(['pgrep', '-P', str(os.getpid())], capture_output=True,
                        text=True).stdout.split()
  children = set()
  for pid in pids:
    try:
      with open(f'/proc/{pid}/cmdline') as f:
        if 'spawn_main' in f.read():
          children.add(int(pid))
    except OSError:
      pass  # Gone already.
  return children

if __name__ == '__main__':
  listed, _ = streaming.list_folder_splits(sys.argv[1], {'train': 'train'}, image_size=(16, 16),
                                           color_mode='rgb', strict=False)
  dataset = streaming.StreamingDataset(listed['train'][0], pixel_scale=255.0, workers=2)
  batches = dataset.batches(4, shuffle=True, seed=0, epoch=0, drop_remainder=True)
  next(batches)
  workers = spawned_children()
  assert len(workers) == 2, workers
  os.kill(min(workers), signal.SIGKILL)  # As the out-of-memory killer would.
  try:
    for _ in batches:
      pass
  except DataError as error:
    print('DataError:', error)
"""


def test_a_killed_worker_is_a_clear_error_naming_the_data_and_the_signal(tmp_path):
  root = write_folder(tmp_path / 'photos', counts=(40, 40, 40))
  script = tmp_path / 'kill_a_worker.py'
  script.write_text(KILL_A_WORKER)
  run = subprocess.run([sys.executable, str(script), str(root)], capture_output=True, text=True,
                       timeout=300, cwd=REPO)
  assert run.returncode == 0, run.stderr[-3000:]
  message = run.stdout
  assert message.startswith('DataError: '), (message, run.stderr[-3000:])
  assert f'A grain worker process reading {root / "train"}' in message
  assert 'killed by signal 9 (SIGKILL' in message
  assert 'the same command resumes' in message and 'data.streaming_workers (now 2)' in message


def test_each_host_reads_its_rows_of_every_global_batch(tmp_path):
  root = write_folder(tmp_path)
  memory, _ = in_memory(root / 'train')
  stream, _ = streamed(root)
  options = dict(shuffle=True, seed=1, epoch=2, drop_remainder=False)
  whole = list(pipeline.batches(memory, 6, **options))
  for count in (2, 3):
    rows = 6 // count
    for index in range(count):
      mine = list(stream.batches(6, host=(index, count), **options))
      assert len(mine) == len(whole)
      for global_batch, local in zip(whole, mine):
        for key in global_batch:
          np.testing.assert_array_equal(
              local[key], global_batch[key][index * rows:(index + 1) * rows], err_msg=key)
  with pytest.raises(ConfigError, match='does not split evenly across 4 processes'):
    stream.batches(6, host=(0, 4))


def test_a_resumed_epoch_continues_with_the_uninterrupted_batches(tmp_path):
  root = write_folder(tmp_path)
  stream, _ = streamed(root)
  options = dict(shuffle=True, seed=5, epoch=3, drop_remainder=True)
  whole = list(stream.batches(3, **options))
  assert len(whole) == 6
  for k in (0, 2, 5, 6):
    assert_same_batches(whole[k:], stream.batches(3, first_batch=k, **options))
  with pytest.raises(ConfigError, match='first_batch=7 is outside'):
    stream.batches(3, first_batch=7, **options)


def test_bad_files_are_listed_and_skipped_as_the_in_memory_loader_does(tmp_path):
  root = write_folder(tmp_path)
  (root / 'train' / 'bees' / 'empty.jpg').write_bytes(b'')
  (root / 'train' / 'ants' / 'notes.png').write_bytes(b'these are notes, not pixels')
  (root / 'train' / 'wasps' / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not a jpeg')
  with pytest.warns(image_folder.ImageFolderWarning) as memory_warnings:
    memory, loaded = in_memory(root / 'train')
  with pytest.warns(image_folder.ImageFolderWarning) as stream_warnings:
    stream, skipped = streamed(root)
  assert skipped == loaded.skipped
  assert [p for p, _ in skipped] == ['ants/notes.png', 'bees/empty.jpg', 'wasps/broken.jpg']
  assert str(stream_warnings[0].message) == str(memory_warnings[0].message)
  assert stream.source.files == loaded.files
  assert_same_batches(pipeline.batches(memory, 4, shuffle=True, seed=2, epoch=1),
                      stream.batches(4, shuffle=True, seed=2, epoch=1))
  with pytest.raises(DataError, match='notes.png'):
    streamed(root, strict=True)


def truncate(path):
  """Cuts a JPEG a few bytes into its scan: the header (up to the SOS marker) stays whole."""
  data = path.read_bytes()
  path.write_bytes(data[:data.index(b'\xff\xda') + 20])


def test_a_file_truncated_after_its_header_becomes_a_masked_row_named_in_a_warning(tmp_path):
  root = write_folder(tmp_path)
  truncate(root / 'train' / 'bees' / '0.jpg')
  stream, skipped = streamed(root)  # The header reads: listed as good.
  assert skipped == () and 'bees/0.jpg' in stream.source.files
  bad = stream.source.files.index('bees/0.jpg')
  with pytest.warns(image_folder.ImageFolderWarning, match='bees/0.jpg'):
    batches = list(stream.batches(len(stream)))
  masked = batches[0]['mask'] == 0
  assert masked.sum() == 1 and masked[bad]
  assert batches[0]['label'][bad] == 0 and not batches[0]['image'][bad].any()
  strict, _ = streamed(root, strict=True)
  with pytest.raises(DataError, match='bees/0.jpg'):
    list(strict.batches(4))


def test_the_random_resized_crop_follows_torchvision_and_not_the_workers(tmp_path):
  rng = np.random.default_rng(0)
  boxes = [streaming.random_resized_crop(rng, 300, 400, (0.08, 1.0), (3 / 4, 4 / 3))
           for _ in range(500)]
  for top, left, height, width in boxes:
    assert 0 <= top and top + height <= 300 and 0 <= left and left + width <= 400
    assert 0.08 * 0.95 <= height * width / (300 * 400) <= 1.0
    assert 3 / 4 * 0.95 <= width / height <= 4 / 3 * 1.05
  # A ratio no box can have falls back to torchvision's central crop, ratio clamped.
  assert streaming.random_resized_crop(rng, 100, 400, (0.9, 1.0), (1.0, 1.0)) == (0, 150, 100, 100)

  root = write_folder(tmp_path)
  stream, _ = streamed(root)
  crop = streaming.check_crop((0.2, 0.6, 0.75, 1.333))
  cropped = stream.subset(np.arange(len(stream)), crop)
  options = dict(shuffle=True, seed=4, epoch=2, drop_remainder=True)
  batches = list(cropped.batches(6, **options))
  assert_same_batches(batches, with_workers(cropped, 2).batches(6, **options))
  # Each row is its file cropped as drawn from (seed, epoch, example), then resized.
  order = np.random.default_rng([4, 2]).permutation(len(stream))
  for row, index in enumerate(order[:6]):
    with Image.open(root / 'train' / stream.source.files[index]) as image:
      top, left, height, width = streaming.random_resized_crop(
          np.random.default_rng([4, 2, index]), image.height, image.width, *crop)
      expected = np.asarray(image.convert('RGB').resize(
          (16, 16), Image.Resampling.BILINEAR, box=(left, top, left + width, top + height)))
    np.testing.assert_array_equal(batches[0]['image'][row], expected / np.float32(255))
  # Evaluation batches (not shuffled) and other epochs are not the uncropped ones / the same.
  assert_same_batches(stream.batches(6), cropped.batches(6))
  assert not np.array_equal(batches[0]['image'],
                            next(iter(cropped.batches(6, **{**options, 'epoch': 3})))['image'])
  with pytest.raises(ConfigError, match='data.random_resized_crop'):
    streaming.check_crop((0.5, 0.2, 1, 1))


def with_workers(dataset, workers):
  return streaming.StreamingDataset(dataset.source, pixel_scale=dataset.pixel_scale,
                                    workers=workers, crop=dataset.crop)


def folder_config(root, streaming_option):
  config = base_config()
  config.data.source = 'image_folder'
  config.data.name = 'insects'
  config.data.dir = str(root)
  config.data.num_classes = 3
  config.data.image_size = (28, 28)
  config.data.color_mode = 'grayscale'
  config.data.val_fraction = 0.25
  config.data.streaming = streaming_option
  config.data.streaming_workers = 0
  config.model.num_outputs = 3
  config.train.epochs = 2
  config.train.batch_size = 4
  config.train.eval_batch_size = 8
  config.train.checkpoint_every_minutes = 0.0
  config.augment.kind = 'none'
  return config


def test_load_datasets_streams_as_data_streaming_asks(tmp_path):
  root = write_folder(tmp_path)
  write_folder(root, counts=(3, 3, 3), split='test', seed=1)
  config = folder_config(root, 'true')
  streamed_sets = data_lib.load_datasets(config.data)
  config.data.streaming = 'false'
  memory_sets = data_lib.load_datasets(config.data)
  assert isinstance(streamed_sets.train, data_lib.StreamingDataset)
  assert isinstance(memory_sets.train, data_lib.ArrayDataset)
  for role in ('train', 'validation', 'test'):
    want, got = getattr(memory_sets, role), getattr(streamed_sets, role)
    np.testing.assert_array_equal(got.labels, want.labels)
    assert_same_batches(data_lib.batches(want, 4, shuffle=True, seed=1, epoch=1),
                        data_lib.batches(got, 4, shuffle=True, seed=1, epoch=1))
  # 'auto': 24 images of 28x28x1 are 18,816 bytes, over a budget of 0.01 MB.
  config.data.streaming = 'auto'
  assert isinstance(data_lib.load_datasets(config.data).train, data_lib.ArrayDataset)
  config.data.memory_budget_mb = 0.01
  assert isinstance(data_lib.load_datasets(config.data).train, data_lib.StreamingDataset)
  config.data.streaming = 'yes'
  with pytest.raises(ConfigError, match='data.streaming'):
    data_lib.load_datasets(config.data)
  config.data.streaming = 'false'
  config.data.random_resized_crop = (0.08, 1.0, 0.75, 1.333)
  with pytest.raises(ConfigError, match='only streamed data'):
    data_lib.load_datasets(config.data)
  config.data.streaming = 'True'  # As --config.data.streaming=True gives it.
  config.data.image_size = (0, 0)
  with pytest.raises(ConfigError, match='data.image_size'):
    data_lib.load_datasets(config.data)


class Crash(Exception):
  """Stands for a killed run."""


def test_training_on_a_streamed_folder_matches_the_in_memory_run_and_resumes_mid_epoch(
    tmp_path, monkeypatch):
  """In-memory, streamed, and streamed but crashed at batch 2 of epoch 2 then run again (it
  resumes from the checkpoint of step 2 of that epoch): the same history and test metrics."""
  from cnnjax.training.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
  root = write_folder(tmp_path / 'photos', counts=(8, 8, 8))
  write_folder(root, counts=(3, 3, 3), split='test', seed=1)

  def history(workdir):
    with open(workdir / 'history.json') as f:
      return [{k: v for k, v in record.items() if k not in ('epoch_seconds', 'images_per_second')}
              for record in json.load(f)]

  results = {}
  for option in ('false', 'true'):
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      results[option] = train_and_evaluate(folder_config(root, option), str(tmp_path / option))
  assert history(tmp_path / 'false') == history(tmp_path / 'true')
  assert results['false'] == results['true']

  real_batches = data_lib.StreamingDataset.batches
  read = []

  def recording(self, batch_size, **options):
    if options.get('epoch') == 2 and options.get('shuffle'):
      read.append(options.get('first_batch', 0))
    return real_batches(self, batch_size, **options)

  def crashing(self, batch_size, **options):
    iterator = recording(self, batch_size, **options)
    if options.get('epoch') != 2 or not options.get('shuffle'):
      return iterator

    def until_batch_2():
      for index, batch in enumerate(iterator):
        if index == 2:
          raise Crash()
        yield batch
    return until_batch_2()

  config = folder_config(root, 'true')
  config.train.checkpoint_every_steps = 1
  workdir = tmp_path / 'crashed'
  with monkeypatch.context() as patched, warnings.catch_warnings():
    warnings.simplefilter('ignore')
    patched.setattr(data_lib.StreamingDataset, 'batches', crashing)
    with pytest.raises(Crash):
      train_and_evaluate(config, str(workdir))
    patched.setattr(data_lib.StreamingDataset, 'batches', recording)
    resumed = train_and_evaluate(config, str(workdir))
  assert read == [0, 2]  # The crashed run read epoch 2 from its start ...
  assert resumed == results['true']  # ... the rerun from batch 2, ending where the others end.
  assert history(workdir) == history(tmp_path / 'true')


@pytest.mark.slow
def test_two_processes_streaming_their_rows_match_one_process_in_memory(tmp_path):
  """JAX's distributed runtime on localhost: 2 processes x 1 CPU device, each streaming only its
  rows of every batch, against 1 process x 2 devices decoding the folder into memory."""
  from test_parallel import LAUNCH, assert_runs_agree, device_flag, free_port  # pylint: disable=g-import-not-at-top
  root = tmp_path / 'photos'
  for split, counts in (('train', (12, 12)), ('validation', (4, 4)), ('test', (4, 4))):
    write_folder(root, counts=counts, split=split, seed=len(split))  # ants and bees only.

  def flags(workdir, streaming_option):
    return ['--config', 'configs/cats_vs_dogs_scratch.py', f'--config.data.dir={root}',
            '--config.data.image_size=(48, 48)', '--config.train.epochs=2',
            '--config.train.batch_size=8', '--config.train.eval_batch_size=8',
            '--config.train.parallel=sharded', f'--config.data.streaming={streaming_option}',
            '--config.data.streaming_workers=0', '--workdir', str(workdir)]

  one = subprocess.run([*LAUNCH, *flags(tmp_path / 'one', 'false')], cwd=REPO,
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, **device_flag(2)})
  assert one.returncode == 0, one.stderr[-3000:]
  port = free_port()
  processes = [subprocess.Popen(
      [*LAUNCH, *flags(tmp_path / 'two', 'true')], cwd=REPO, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True,
      env={**os.environ, **device_flag(1), 'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}',
           'JAX_NUM_PROCESSES': '2', 'JAX_PROCESS_ID': str(i)}) for i in range(2)]
  outputs = [p.communicate(timeout=600) for p in processes]
  for p, (_, err) in zip(processes, outputs):
    assert p.returncode == 0, err[-3000:]
  assert 'sharded step on 2 device(s), 2 process(es)' in outputs[0][0]
  assert_runs_agree(tmp_path / 'one', tmp_path / 'two')


@pytest.mark.slow
def test_the_imagenet_config_trains_on_a_small_folder_of_the_imagenet_layout(tmp_path):
  """configs/imagenet_resnet50.py end to end, streamed, on 3 synset folders of 64x64 photos."""
  from cnnjax.training.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
  from test_summary import load_config  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for split, count in (('train', 4), ('val', 2)):
    for synset in ('n01440764', 'n01443537', 'n01484850'):
      os.makedirs(tmp_path / split / synset)
      for i in range(count):
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(
            tmp_path / split / synset / f'{synset}_{i}.JPEG')
  config = load_config('imagenet_resnet50')
  config.data.dir = str(tmp_path)
  config.data.num_classes = 3
  config.data.image_size = (64, 64)
  config.data.streaming_workers = 0
  config.model.num_outputs = 3
  config.model.input_shape = (64, 64, 3)
  config.train.batch_size = 4
  config.train.eval_batch_size = 6
  config.train.epochs = 1
  config.train.warmup_epochs = 0.5
  config.lock()
  result = train_and_evaluate(config, str(tmp_path / 'run'))
  with open(tmp_path / 'run' / 'history.json') as f:
    history = json.load(f)
  assert len(history) == 1 and np.isfinite(history[0]['loss'])
  assert 0.0 <= result['test_accuracy'] <= 1.0
