"""Tests of inception/builtin_dataset.py: drawing, and building it offline as TFDS."""

import time
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from inception import builtin_dataset


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory):
  """One TFDS data dir for the session, so the dataset is built once."""
  return str(tmp_path_factory.getbasetemp() / 'tfds')


@pytest.fixture(scope='session')
def built(tfds_dir):
  """The built-in dataset, prepared with every network connection refused."""
  builder = builtin_dataset.BuiltinShapes(data_dir=tfds_dir)
  start = time.perf_counter()
  with mock.patch('socket.socket.connect', side_effect=OSError('offline')):
    builder.download_and_prepare()
  return builder, time.perf_counter() - start


def _rng(index):
  return np.random.default_rng([1, index])


def test_draw_is_deterministic():
  a = builtin_dataset.draw_example(3, _rng(7))
  b = builtin_dataset.draw_example(3, _rng(7))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, builtin_dataset.draw_example(3, _rng(8)))


def test_images_vary_in_size_and_aspect():
  shapes = [builtin_dataset.draw_example(i % 10, _rng(i)).shape
            for i in range(40)]
  heights = [h for h, _, _ in shapes]
  aspects = [w / h for h, w, _ in shapes]
  assert all(c == 3 for _, _, c in shapes)
  assert min(heights) >= 100 and max(heights) <= 200
  assert max(heights) - min(heights) > 50
  assert min(aspects) < 0.85 and max(aspects) > 1.15


def test_patterns_have_their_class_structure():
  name = {n: i for i, n in enumerate(builtin_dataset.CLASS_NAMES)}
  rng = _rng(0)
  stripes = builtin_dataset._pattern_mask(name['horizontal_stripes'], 90, 120,
                                          rng)
  assert np.all(stripes == stripes[:, :1]) and 0.3 < stripes.mean() < 0.7
  bars = builtin_dataset._pattern_mask(name['vertical_stripes'], 90, 120, rng)
  assert np.all(bars == bars[:1, :])
  for label in range(7):  # The shapes: scattered, neither empty nor filled.
    mask = builtin_dataset._pattern_mask(label, 150, 150, _rng(label))
    assert mask.shape == (150, 150) and 0.03 < mask.mean() < 0.6
    # Left-right flips keep the class: each shape is symmetric about its
    # vertical axis, so a flipped image is another image of the class.
    dy = np.arange(-20, 21, dtype=np.float32)[:, None]
    shape = builtin_dataset.shape_mask(label, dy, dy.T, np.float32(15))
    np.testing.assert_array_equal(shape, shape[:, ::-1])
  # Distinct classes draw distinct masks from the same random numbers.
  masks = [builtin_dataset._pattern_mask(k, 100, 100, _rng(5)) for k in range(10)]
  assert len({m.tobytes() for m in masks}) == 10


def test_builds_offline_fast_with_balanced_jpegs(built):
  builder, seconds = built
  assert seconds < 60
  assert builder.info.splits['train'].num_examples == 5000
  assert builder.info.splits['validation'].num_examples == 1000
  assert builder.info.features['label'].names == list(
      builtin_dataset.CLASS_NAMES)
  ds = builder.as_dataset(split='validation',
                          decoders={'image': tfds.decode.SkipDecoding()})
  labels, sizes = [], []
  for example in ds.take(1000).as_numpy_iterator():
    assert tf.io.is_jpeg(example['image'])
    labels.append(example['label'])
    sizes.append(tuple(tf.io.extract_jpeg_shape(example['image']).numpy()))
  assert np.bincount(labels).tolist() == [100] * 10
  assert len(set(sizes)) > 100
  # TFDS shuffled the records when writing them: labels are not in order.
  assert labels[:10] != list(range(10))


def test_generation_is_reproducible():
  builder = builtin_dataset.BuiltinShapes(data_dir='/nonexistent')
  first = list(zip(range(3), builder._generate_examples('validation')))
  again = list(zip(range(3), builder._generate_examples('validation')))
  for (_, (key_a, a)), (_, (key_b, b)) in zip(first, again):
    assert key_a == key_b and a['image'] == b['image'] and a['label'] == b['label']
