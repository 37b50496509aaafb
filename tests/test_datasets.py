"""Tests of inception/datasets.py: dataset selection, missing data, split ranges.

Preparation by several processes runs as two real processes on loopback
(this file, run as a script, is each of them): process 0 alone prepares, a
failure there fails both, and a data dir they do not share fails both.
"""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from unittest import mock

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from inception import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(dataset, data_dir):
  return ml_collections.ConfigDict({'dataset': dataset, 'data_dir': data_dir})


@pytest.fixture(scope='module')
def folder_builder(tmp_path_factory):
  """A prepared folder dataset: 25 training images of 2 classes, one file each."""
  root = tmp_path_factory.mktemp('folder')
  for i in range(25):
    image = np.full((8, 8, 3), i * 10, np.uint8)
    path = root / ('a' if i % 2 else 'b') / f'{i:02d}.jpg'
    os.makedirs(path.parent, exist_ok=True)
    path.write_bytes(tf.io.encode_jpeg(image, quality=100).numpy())
  config = _config(f'folder:{root}', str(root.parent / 'tfds'))
  return datasets.builder_from_config(config)


@pytest.mark.parametrize('num_examples', [0, 1, 7, 50000])
@pytest.mark.parametrize('count', [1, 3, 8])
def test_process_ranges_cover_the_split(num_examples, count):
  parts = [datasets.process_range(num_examples, i, count, drop_remainder=False)
           for i in range(count)]
  assert parts[0][0] == 0 and parts[-1][1] == num_examples
  assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
  sizes = [stop - start for start, stop in parts]
  assert max(sizes) - min(sizes) <= 1
  equal = [datasets.process_range(num_examples, i, count, drop_remainder=True)
           for i in range(count)]
  assert {stop - start for start, stop in equal} == {num_examples // count}
  assert all(a[1] == b[0] for a, b in zip(equal, equal[1:]))


def test_missing_imagenet_download_fails_in_one_line(tmp_path):
  with pytest.raises(datasets.DatasetError) as error:
    datasets.builder_from_config(_config('imagenet2012', str(tmp_path)))
  message = str(error.value)
  assert '\n' not in message
  assert os.path.join(str(tmp_path), 'downloads', 'manual') in message
  assert 'ILSVRC2012_img_train.tar' in message
  assert 'ILSVRC2012_img_val.tar' in message


def test_unknown_dataset_and_folder(tmp_path):
  with pytest.raises(datasets.DatasetError, match='Unknown dataset'):
    datasets.builder_from_config(_config('no_such_dataset_xyz', str(tmp_path)))
  with pytest.raises(datasets.DatasetError, match='does not exist'):
    datasets.builder_from_config(_config(f'folder:{tmp_path}/x', None))


def test_split_specs_resolve_to_ranges(folder_builder):
  whole = datasets.resolve_split(folder_builder, 'train')
  assert (whole.split, whole.start, whole.num_examples) == ('train', 0, 25)
  assert whole.jpeg and (whole.image_key, whole.label_key) == (
      'image', 'label')
  head = datasets.resolve_split(folder_builder, 'train[:80%]')
  tail = datasets.resolve_split(folder_builder, 'train[80%:]')
  assert (head.start, head.num_examples) == (0, 20)
  assert (tail.start, tail.num_examples) == (20, 5)
  with pytest.raises(datasets.DatasetError, match='not in dataset'):
    datasets.resolve_split(folder_builder, 'validation')
  with pytest.raises(datasets.DatasetError, match='one split'):
    datasets.resolve_split(folder_builder, 'train[:5]+train[10:12]')


def test_reads_do_not_depend_on_where_they_start(folder_builder):
  source = datasets.resolve_split(folder_builder, 'train')
  records = lambda a, b: [image for image, _ in
                          datasets.read(source, a, b).as_numpy_iterator()]
  everything = records(0, 25)
  assert len(everything) == 25 and len(set(everything)) == 25
  assert records(7, 19) == everything[7:19]
  tail = datasets.resolve_split(folder_builder, 'train[80%:]')
  assert [x for x, _ in datasets.read(tail, 1, 5).as_numpy_iterator()] == (
      everything[21:25])
  labels = [label for _, label in datasets.read(source, 0, 25)]
  assert sorted(int(x) for x in labels) == [0] * 12 + [1] * 13


# Split sizes of the built-in dataset in the workers; tiny.py reads
# train[:512] and validation[:40].
_BUILTIN_SIZES = {'train': 600, 'validation': 50}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _two_processes(workdir):
  """Runs _worker as processes 0 and 1; returns their (returncode, stdout, stderr)."""
  address = f'127.0.0.1:{_free_port()}'
  env = {**os.environ, 'JAX_NUM_CPU_DEVICES': '1', 'PYTHONPATH': ROOT}
  # Files, not pipes: a worker blocked on a full pipe would stall the other
  # at their next collective.
  paths = [(workdir / f'out{i}', workdir / f'err{i}') for i in range(2)]
  workers = []
  for i, (out, err) in enumerate(paths):
    with open(out, 'w') as stdout, open(err, 'w') as stderr:
      workers.append(subprocess.Popen(
          [sys.executable, __file__, address, str(i), str(workdir)],
          env=env, cwd=ROOT, stdout=stdout, stderr=stderr))
  try:
    returncodes = [w.wait(timeout=240) for w in workers]
  finally:
    for w in workers:
      w.kill()
  return [(returncode, out.read_text(), err.read_text())
          for returncode, (out, err) in zip(returncodes, paths)]


def test_two_processes_prepare_once_and_fail_together(tmp_path):
  # One pair of processes goes through three cases in turn (each pair costs
  # its start-up): an unprepared dataset, one that cannot be prepared, and
  # data dirs that the processes do not share.
  folder = tmp_path / 'images'
  for i, label in enumerate('ab'):
    os.makedirs(folder / label)
    (folder / label / f'{i}.jpg').write_bytes(tf.io.encode_jpeg(
        np.full((8, 8, 3), 50 * i, np.uint8)).numpy())
  results = _two_processes(tmp_path)
  for returncode, _, err in results:
    assert returncode == 0, err[-3000:]
  reports = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in results]
  assert [r['process'] for r in reports] == [0, 1]

  # 1. Nothing prepared yet: process 0 alone prepares, process 1 then reads.
  prepared = [r['prepared'] for r in reports]
  assert [r['prepare_calls'] for r in prepared] == [1, 0]
  assert 'Process 0 of 2 prepares dataset builtin_shapes in ' in results[0][2]
  assert 'Process 1 of 2 waits for process 0' in results[1][2]
  for r in prepared:
    assert r['info'] == {'num_classes': 10, 'num_train_examples': 512,
                         'num_eval_examples': 40}
    assert r['splits'] == _BUILTIN_SIZES
  assert len(prepared[0]['labels']) == 5
  assert prepared[0]['labels'] == prepared[1]['labels']
  data_dir = tmp_path / 'tfds'
  assert os.listdir(data_dir / 'builtin_shapes') == ['1.0.0']
  files = os.listdir(data_dir / 'builtin_shapes' / '1.0.0')
  assert 'dataset_info.json' in files
  records = sum(1 for f in files if '.tfrecord-' in f
                for _ in tf.data.TFRecordDataset(
                    str(data_dir / 'builtin_shapes' / '1.0.0' / f)))
  assert records == sum(_BUILTIN_SIZES.values())  # One copy of each example.

  # 2. ImageNet cannot be prepared without its manual download: both fail.
  first, second = (r['failed'] for r in reports)
  assert first.startswith('Dataset imagenet2012 is not prepared')
  assert 'downloads/manual' in first and '\n' not in first + second
  assert second.startswith('Process 0 could not prepare dataset imagenet2012,'
                           ' so process 1 cannot read it: ' + first[:100])

  # 3. Separate data dirs stand for hosts without a shared file system.
  for r in reports:
    assert 'is not visible to process(es) [1]' in r['not_shared']
    assert 'data_dir must be shared by all hosts' in r['not_shared']
    assert '\n' not in r['not_shared']


def _worker(address, process_id, workdir):
  """One of the two processes: reads datasets as training does, reports it."""
  # pylint: disable=g-import-not-at-top
  from absl import logging
  import jax
  from configs import tiny
  import input_pipeline
  from inception import builtin_dataset
  from inception import multihost
  logging.set_verbosity(logging.INFO)
  multihost.initialize(address, 2, process_id)
  seconds = []
  original = tfds.core.DatasetBuilder.download_and_prepare

  def counted(self, *args, **kwargs):
    start = time.perf_counter()
    try:
      return original(self, *args, **kwargs)
    finally:
      seconds.append(time.perf_counter() - start)

  def config(dataset, data_dir):
    config = tiny.get_config()
    config.dataset, config.data_dir = dataset, data_dir
    if dataset.startswith('folder:'):
      config.train_split, config.eval_split = 'train[:1]', 'train[1:]'
    return config

  def error(dataset, data_dir):
    try:
      datasets.builder_from_config(config(dataset, data_dir))
    except datasets.DatasetError as e:
      return str(e)
    return None

  # A smaller built-in dataset: generating all 6000 images takes 10 to 20 s
  # on a loaded CPU, and the race does not depend on the size.
  builtin = config('builtin', os.path.join(workdir, 'tfds'))
  with mock.patch.object(tfds.core.DatasetBuilder, 'download_and_prepare',
                         counted), mock.patch.dict(
                             builtin_dataset.NUM_EXAMPLES, _BUILTIN_SIZES):
    info = input_pipeline.get_dataset_info(builtin)
    builder = datasets.builder_from_config(builtin)
  source = datasets.resolve_split(builder, builtin.eval_split)
  labels = [int(label) for _, label in datasets.read(source, 0, 5)]
  print(json.dumps({
      'process': jax.process_index(),
      'prepared': {
          'prepare_calls': len(seconds), 'info': dataclasses.asdict(info),
          'splits': {k: v.num_examples for k, v in builder.info.splits.items()},
          'labels': labels},
      'failed': error('imagenet2012', os.path.join(workdir, 'imagenet')),
      'not_shared': error(f'folder:{os.path.join(workdir, "images")}',
                          os.path.join(workdir, f'host{process_id}'))}))


if __name__ == '__main__':
  _worker(sys.argv[1], int(sys.argv[2]), sys.argv[3])
