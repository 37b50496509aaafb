"""Tests of input_pipeline.py: global batches, determinism, resume, exact evaluation.

Most tests read a small image folder the tests make (30 training and 13
evaluation images of 3 classes); one reads the built-in dataset through the
default config, one ImageNet through `tfds.testing.mock_data`, and one runs
two real JAX processes on loopback.
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading

import jax
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from configs import default
import input_pipeline
from inception import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_CLASS_SIZES = (5, 4, 4)


def _config(data_dir, dataset, **overrides):
  config = default.get_config()
  # Images of 36 to 69 pixels: crops larger than the canvas of 48 are
  # resized on the host, the others on the device.
  fields = dict(dataset=dataset, data_dir=data_dir, image_size=32,
                train_canvas_size=48, batch_size=8, seed=0, shuffle_window=7,
                prefetch_batches=1)
  for key, value in {**fields, **overrides}.items():
    setattr(config, key, value)  # Adds batch_size and seed if missing.
  return config


def _mesh():
  return jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))


def _make_folder(root):
  """Class folders of distinct random images of varied sizes, some PNG."""
  rng = np.random.default_rng(0)
  sizes = {'train': (10, 10, 10), 'validation': EVAL_CLASS_SIZES}
  for split, counts in sizes.items():
    for c, count in enumerate(counts):
      os.makedirs(os.path.join(root, split, f'class{c}'))
      for i in range(count):
        shape = (int(rng.integers(36, 70)), int(rng.integers(36, 70)), 3)
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        data = (tf.io.encode_png if i == 0 else tf.io.encode_jpeg)(image)
        with open(os.path.join(root, split, f'class{c}', f'{i}.img'), 'wb') as f:
          f.write(data.numpy())
      os.rename(os.path.join(root, split, f'class{c}', '0.img'),
                os.path.join(root, split, f'class{c}', '0.png'))
      for i in range(1, count):
        os.rename(os.path.join(root, split, f'class{c}', f'{i}.img'),
                  os.path.join(root, split, f'class{c}', f'{i}.jpg'))


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  """(data_dir, 'folder:...') of a prepared image-folder dataset."""
  base = tmp_path_factory.mktemp('pipeline')
  _make_folder(str(base / 'images'))
  config = _config(str(base / 'tfds'), f'folder:{base / "images"}')
  input_pipeline.get_dataset_info(config)  # Prepares it.
  return config.data_dir, config.dataset


def _source(config, split):
  return datasets.resolve_split(datasets.builder_from_config(config), split)


def _take(iterator, count):
  return [jax.device_get(next(iterator)) for _ in range(count)]


def _row_hash(row) -> str:
  return hashlib.sha1(np.ascontiguousarray(row).tobytes()).hexdigest()


def test_builtin_dataset_is_the_default(tmp_path_factory):
  config = default.get_config()
  assert config.dataset == 'builtin'
  config.data_dir = str(tmp_path_factory.getbasetemp() / 'tfds')
  info = input_pipeline.get_dataset_info(config)
  assert info == input_pipeline.DatasetInfo(
      num_classes=10, num_train_examples=5000, num_eval_examples=1000)


def test_train_batches_are_global_and_in_range(folder):
  config = _config(*folder)
  batch = next(input_pipeline.create_train_iterator(config, _mesh()))
  image, label = batch['image'], batch['label']
  assert sorted(batch) == ['image', 'label']
  assert image.shape == (8, 32, 32, 3) and image.dtype == np.float32
  assert label.shape == (8,) and label.dtype == np.int32
  assert image.sharding.spec[0] == 'data'
  assert len({s.device for s in image.addressable_shards}) == 8
  assert all(s.data.shape == (1, 32, 32, 3) for s in image.addressable_shards)
  values = np.asarray(image)
  assert values.min() >= -1.0 and values.max() <= 1.0
  assert values.min() < -0.9 and values.max() > 0.9  # Uses the whole range.
  assert set(np.asarray(label)) <= {0, 1, 2}


def test_train_stream_is_deterministic_and_seeded(folder):
  mesh = _mesh()
  first = _take(input_pipeline.create_train_iterator(_config(*folder), mesh), 3)
  again = _take(input_pipeline.create_train_iterator(_config(*folder), mesh), 3)
  other = _take(input_pipeline.create_train_iterator(
      _config(*folder, seed=1), mesh), 3)
  for a, b, c in zip(first, again, other):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
    assert not np.array_equal(a['image'], c['image'])


def test_resume_equals_uninterrupted(folder):
  # 30 examples, batch 8: 3 steps per epoch, so steps 4 to 9 span three
  # epochs; windows of 7 examples make step 4 start inside a window.
  config, mesh = _config(*folder), _mesh()
  whole = _take(input_pipeline.create_train_iterator(config, mesh), 10)
  resumed = _take(input_pipeline.create_train_iterator(
      config, mesh, start_step=4), 6)
  for a, b in zip(whole[4:], resumed):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  # Epochs do not repeat one order.
  labels = [tuple(b['label']) for b in whole]
  assert labels[0:3] != labels[3:6]


def test_epochs_visit_each_process_part_once(folder):
  config = _config(*folder, shuffle_window=4)
  source = _source(config, 'train')
  everything = {x for x, _ in datasets.read(source, 0, 30).as_numpy_iterator()}
  records = lambda p, epoch, position=0: [
      x for x, _ in input_pipeline.epoch_records(
          source, config, p, 2, epoch, position).as_numpy_iterator()]
  parts = [records(p, 0) for p in range(2)]
  assert [len(part) for part in parts] == [15, 15]
  assert set(parts[0]) | set(parts[1]) == everything
  assert not set(parts[0]) & set(parts[1])
  next_epoch = records(0, 1)
  assert sorted(next_epoch) == sorted(parts[0]) and next_epoch != parts[0]
  assert records(0, 0, position=9) == parts[0][9:]
  # Emulated processes resume too: process 1's batches from step 2 on.
  batches = lambda step: input_pipeline.local_train_batches(
      source, config, 1, 2, 4, step)
  whole, resumed = batches(0), batches(2)
  for _ in range(2):
    next(whole)
  for _ in range(4):
    a, b = next(whole), next(resumed)
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['augment'], b['augment'])


def _local_batches(source, config, start_step, count):
  """Process 1 of 2's batches of 4 (3 an epoch) from start_step on."""
  stream = input_pipeline.local_train_batches(source, config, 1, 2, 4,
                                              start_step)
  batches = [next(stream) for _ in range(count)]
  stream.close()  # Ends the epoch it was starting ahead.
  return batches


def test_stream_across_epochs_equals_streams_started_in_each(folder):
  config = _config(*folder)
  source = _source(config, 'train')
  whole = _local_batches(source, config, 2, 10)  # Steps 2 to 11: 4 epochs.
  started = [_local_batches(source, config, 2, 1)] + [
      _local_batches(source, config, 3 * epoch, 3) for epoch in (1, 2, 3)]
  each = [batch for epoch in started for batch in epoch]
  for a, b in zip(whole, each, strict=True):
    assert sorted(a) == sorted(b)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_next_epoch_is_started_before_it_is_needed(folder, monkeypatch):
  # 3 batches an epoch; a window of 7 examples is 1 batch of 8, so the next
  # epoch starts when the last batch of the current one is given.
  config = _config(*folder)
  source = _source(config, 'train')
  calls, built = [], {epoch: threading.Event() for epoch in range(3)}
  train_epoch = input_pipeline._train_epoch

  def recording(*args):
    epoch, first_batch = args[5:]
    calls.append((epoch, first_batch, threading.current_thread()))
    dataset = train_epoch(*args)
    built[epoch].set()
    return dataset

  monkeypatch.setattr(input_pipeline, '_train_epoch', recording)
  stream = input_pipeline.local_train_batches(source, config, 0, 1, 8, 0)
  batches = [next(stream) for _ in range(2)]
  assert [call[:2] for call in calls] == [(0, 0)]  # Not more than needed.
  batches.append(next(stream))
  # Built while the consumer holds the last batch of epoch 0 (the old
  # stream built an epoch when its first batch was asked for), and not on
  # the consumer's thread.
  assert built[1].wait(timeout=60)
  assert [call[:2] for call in calls] == [(0, 0), (1, 0)]
  assert calls[1][2] is not threading.current_thread()
  batches += [next(stream) for _ in range(3)]
  assert built[2].wait(timeout=60)
  assert [call[0] for call in calls] == [0, 1, 2]  # One pipeline an epoch.
  stream.close()
  labels = [tuple(b['label']) for b in batches]
  assert labels[:3] != labels[3:]


@pytest.mark.parametrize('process_count', [1, 2, 3])
def test_eval_counts_every_example_once(folder, process_count):
  config = _config(*folder)
  source = _source(config, 'validation')
  seen, num_batches = [], set()
  for p in range(process_count):
    batches = list(input_pipeline.local_eval_dataset(
        source, config, 'single', p, process_count, 2).as_numpy_iterator())
    num_batches.add(len(batches))
    for b in batches:
      assert b['image'].dtype == np.uint8 and b['image'].shape[1:] == (32, 32, 3)
      seen += [(_row_hash(x), int(y)) for x, y, m in
               zip(b['image'], b['label'], b['mask']) if m]
      assert not b['image'][~b['mask']].any()  # Padding is blank.
  assert num_batches == {-(-(-(-13 // process_count)) // 2)}
  assert len(seen) == 13 and len(set(seen)) == 13
  assert np.bincount([y for _, y in seen]).tolist() == list(EVAL_CLASS_SIZES)


def test_eval_iterator_pads_to_global_batches(folder):
  batches = list(input_pipeline.create_eval_iterator(_config(*folder), _mesh()))
  assert len(batches) == 2  # 13 examples in global batches of 8.
  masks = np.concatenate([np.asarray(b['mask']) for b in batches])
  assert masks.tolist() == [True] * 13 + [False] * 3
  assert batches[0]['image'].shape == (8, 32, 32, 3)
  assert batches[0]['mask'].sharding.spec[0] == 'data'


@pytest.mark.parametrize('views,num_views', [('12', 12), ('144', 144)])
def test_multi_crop_eval_keeps_views_together(folder, views, num_views):
  config = _config(*folder, batch_size=8 * 12)
  batches = list(input_pipeline.create_eval_iterator(config, _mesh(),
                                                     views=views))
  # batch_size // views images per batch, at least one per data shard.
  assert batches[0]['image'].shape == (8, num_views, 32, 32, 3)
  assert sum(int(np.asarray(b['mask']).sum()) for b in batches) == 13
  image = np.asarray(batches[0]['image'])
  np.testing.assert_array_equal(image[:, 1], image[:, 0, :, ::-1])
  assert image.min() >= -1.0 and image.max() <= 1.0


@pytest.mark.parametrize('size', [(7, 9), (32, 32), (40, 23), (48, 48)])
def test_device_resize_is_tf1_bilinear(size):
  rng = np.random.default_rng(size[0])
  images = [rng.integers(0, 256, (*size, 3), dtype=np.uint8),
            rng.integers(0, 256, (48, 5, 3), dtype=np.uint8)]
  pixels = np.zeros((2, 48 * 48 * 3), np.uint8)
  for i, image in enumerate(images):
    pixels[i, :image.size] = image.ravel()
  sizes = np.array([size, (48, 5)], np.int32)
  out = np.asarray(input_pipeline.resize_bilinear(pixels, sizes, 32))
  assert out.shape == (2, 32, 32, 3) and out.dtype == np.float32
  for i, image in enumerate(images):
    expected = tf.compat.v1.image.resize_bilinear(image[np.newaxis], [32, 32])
    np.testing.assert_allclose(out[i], expected[0], atol=1e-3)
  if size == (32, 32):  # The host's resized crops pass unchanged.
    np.testing.assert_array_equal(out[0], images[0])


def test_train_crops_travel_packed_and_are_resized_on_the_device(folder):
  config = _config(*folder)
  source = _source(config, 'train')
  batch = next(input_pipeline.local_train_batches(source, config, 0, 1, 8, 0))
  pixels, size = batch['image'], batch['size']
  assert pixels.shape == (8, 48 * 48 * 3) and pixels.dtype == np.uint8
  assert size.shape == (8, 2) and size.dtype == np.int32
  assert size.min() >= 1 and size.prod(axis=1).max() <= 48 * 48
  # Crops of both kinds: resized on the device (a side other than 32), and
  # too large for the canvas, so resized on the host to 32 x 32.
  assert (size != 32).any(axis=1).any() and (size == 32).all(axis=1).any()
  out = input_pipeline.to_network_input(batch, image_size=32)
  assert sorted(out) == ['image', 'label']
  for i, (h, w) in enumerate(size):
    assert not pixels[i, h * w * 3:].any()
    crop = pixels[i, :h * w * 3].reshape(1, h, w, 3)
    x = tf.compat.v1.image.resize_bilinear(crop, [32, 32])[0]
    if batch['augment'][i, 0] < 0.5:
      x = x[:, ::-1]
    np.testing.assert_allclose(out['image'][i], x / 127.5 - 1, atol=1e-5)


def test_to_network_input_flips_and_distorts_colour_as_tf():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
  augment = np.array([[0.2, 0.9, 0.1], [0.7, 0.1, 0.95], [0.4, 0.5, 0.5],
                      [0.99, 0.0, 0.0]], np.float32)
  out = input_pipeline.to_network_input(
      {'image': images, 'augment': augment, 'label': np.arange(4)},
      color_distortion=True)
  assert sorted(out) == ['image', 'label']
  for i in range(4):
    x = tf.image.convert_image_dtype(images[i], tf.float32)
    if augment[i, 0] < 0.5:
      x = x[:, ::-1]
    x = tf.image.adjust_brightness(x, (2 * augment[i, 1] - 1) * 32 / 255)
    x = tf.image.adjust_saturation(x, 0.5 + augment[i, 2])
    expected = tf.clip_by_value(x, 0.0, 1.0) * 2 - 1
    np.testing.assert_allclose(out['image'][i], expected, atol=2e-5)
  plain = input_pipeline.to_network_input({'image': images})
  np.testing.assert_allclose(plain['image'], images / 127.5 - 1, atol=1e-6)


def test_imagenet_through_mock_data(tmp_path):
  builder = tfds.builder('imagenet2012', data_dir=str(tmp_path))
  template = lambda split: tfds.core.ShardedFileTemplate(
      data_dir=builder.data_dir, template='{DATASET}-{SPLIT}.{FILEFORMAT}-'
      '{SHARD_X_OF_Y}', dataset_name='imagenet2012', split=split,
      filetype_suffix='tfrecord')
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=split, shard_lengths=[n], num_bytes=0,
                          filename_template=template(split))
      for split, n in (('train', 40), ('validation', 12))]))
  os.makedirs(builder.data_dir)
  builder.info.write_to_directory(builder.data_dir)
  config = _config(str(tmp_path), 'imagenet2012')
  with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path),
                              policy=tfds.testing.MockPolicy.USE_FILES):
    info = input_pipeline.get_dataset_info(config)
    batch = next(input_pipeline.create_train_iterator(config, _mesh()))
    masks = [np.asarray(b['mask'])
             for b in input_pipeline.create_eval_iterator(config, _mesh())]
  assert info == input_pipeline.DatasetInfo(1000, 40, 12)
  assert batch['image'].shape == (8, 32, 32, 3)
  assert np.asarray(batch['label']).max() < 1000
  assert sum(m.sum() for m in masks) == 12 and len(masks) == 2


def _worker(process_id: int, port: int, data_dir: str, dataset: str,
            out: str) -> None:
  """One of two real processes: global train and eval batches, local rows."""
  jax.distributed.initialize(f'localhost:{port}', 2, process_id)
  mesh, config = _mesh(), _config(data_dir, dataset)
  rows = lambda array: np.concatenate(
      [s.data for s in sorted(array.addressable_shards,
                              key=lambda s: s.index[0].start)])
  train = next(input_pipeline.create_train_iterator(config, mesh))
  assert train['image'].shape == (8, 32, 32, 3)
  seen = []
  for batch in input_pipeline.create_eval_iterator(config, mesh):
    image, label, mask = (rows(batch[k]) for k in ('image', 'label', 'mask'))
    seen += [[_row_hash(np.round((x + 1) * 127.5).astype(np.uint8)), int(y)]
             for x, y, m in zip(image, label, mask) if m]
  with open(out, 'w') as f:
    json.dump({'train_labels': rows(train['label']).tolist(), 'eval': seen}, f)


def test_two_real_processes_share_batches_and_evaluation(folder, tmp_path):
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  env = dict(os.environ, JAX_NUM_CPU_DEVICES='2', PYTHONPATH=ROOT)
  outs = [str(tmp_path / f'{i}.json') for i in range(2)]
  procs = [subprocess.Popen(
      [sys.executable, __file__, str(i), str(port), *folder, outs[i]], env=env,
      cwd=ROOT, stderr=subprocess.PIPE, text=True) for i in range(2)]
  errors = [p.communicate(timeout=240)[1] for p in procs]
  for p, error in zip(procs, errors):
    assert p.returncode == 0, error[-3000:]
  results = [json.load(open(out)) for out in outs]
  # Each process's rows of the first training batch are its own local batch.
  config = _config(*folder)
  source = _source(config, 'train')
  for p, result in enumerate(results):
    local = next(input_pipeline.local_train_batches(source, config, p, 2, 4, 0))
    assert result['train_labels'] == local['label'].tolist()
  # Evaluation: every example once over both processes.
  seen = [tuple(x) for r in results for x in r['eval']]
  eval_source = _source(config, 'validation')
  expected = [(_row_hash(x), int(y)) for b in input_pipeline.local_eval_dataset(
      eval_source, config, 'single', 0, 1, 13).as_numpy_iterator()
              for x, y in zip(b['image'], b['label'])]
  assert sorted(seen) == sorted(expected)


if __name__ == '__main__':
  _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4],
          sys.argv[5])
