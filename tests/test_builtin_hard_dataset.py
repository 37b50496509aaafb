"""Tests of inception/builtin_hard_dataset.py: drawing, classes, building as TFDS."""

from unittest import mock

import numpy as np
import tensorflow as tf

from inception import builtin_hard_dataset as hard
from inception import class_names
from inception import datasets


def _rng(index):
  return np.random.default_rng([3, index])


def test_classes_are_shape_fill_pairs():
  assert len(hard.CLASS_NAMES) == 25 == len(set(hard.CLASS_NAMES))
  assert hard.CLASS_NAMES[0] == 'disc_solid'
  assert hard.CLASS_NAMES[7] == 'square_vertical_stripes'
  assert hard.CLASS_NAMES[-1] == 'plus_outline'
  assert class_names.for_dataset('builtin_hard', 25) == hard.CLASS_NAMES


def test_draw_is_deterministic_and_sized_like_the_builtin_dataset():
  a = hard.draw_example(3, _rng(7))
  np.testing.assert_array_equal(a, hard.draw_example(3, _rng(7)))
  assert not np.array_equal(a, hard.draw_example(3, _rng(8)))
  shapes = [hard.draw_example(i % 25, _rng(i)).shape for i in range(30)]
  assert all(100 <= h <= 200 and 100 <= w <= 300 and c == 3
             for h, w, c in shapes)
  # Same random numbers, another class: other pixels.
  images = [hard.draw_example(k, _rng(5)).tobytes() for k in range(25)]
  assert len(set(images)) == 25


def _object(name, r=20.0):
  offsets = np.arange(-24, 25, dtype=np.float32) + 0.5
  dy, dx = offsets[:, None], offsets[None, :]
  return hard._object_masks(hard.CLASS_NAMES.index(name), dy, dx, r,
                            np.random.default_rng(0))


def test_fills():
  inside, own = _object('square_solid')
  assert own.all() and 0.3 < inside.mean() < 0.7
  inside, own = _object('square_horizontal_stripes')
  # Constant along each row, alternating down the rows.
  assert (own == own[:, :1]).all() and 0.3 < own[inside].mean() < 0.7
  inside, own = _object('square_vertical_stripes')
  assert (own == own[:1, :]).all() and 0.3 < own[inside].mean() < 0.7
  inside, own = _object('square_checkerboard')
  assert not (own == own[:, :1]).all() and not (own == own[:1, :]).all()
  assert 0.3 < own[inside].mean() < 0.7
  # An outline: the border of the solid shape, hollow in the middle.
  outline, _ = _object('square_outline')
  solid, _ = _object('square_solid')
  assert not outline[24, 24] and outline[24, 24 - 15] and solid[24, 24]
  assert (outline <= solid).all() and 0.2 < outline.sum() / solid.sum() < 0.6


def test_objects_lie_inside_the_image_apart():
  for seed in range(20):
    rng = np.random.default_rng(seed)
    radii = 150 * rng.uniform(0.09, 0.15, size=3)
    centres = hard._place(radii, 150, 200, rng)
    for (y, x), r in zip(centres, radii):
      assert r < y < 150 - r and r < x < 200 - r
    for i in range(3):
      for j in range(i):
        distance = np.hypot(centres[i][0] - centres[j][0],
                            centres[i][1] - centres[j][1])
        assert distance > radii[i] + radii[j]


def test_builds_offline_balanced(tmp_path):
  config = mock.Mock(dataset='builtin_hard', data_dir=str(tmp_path))
  builder = datasets._builder(config)
  with mock.patch('socket.socket.connect', side_effect=OSError('offline')):
    builder.download_and_prepare()
  assert builder.info.splits['train'].num_examples == 6000
  assert builder.info.features['label'].names == list(hard.CLASS_NAMES)
  labels = []
  for example in builder.as_dataset(split='validation').as_numpy_iterator():
    labels.append(example['label'])
  assert np.bincount(labels).tolist() == [48] * 25
  # Examples are drawn from their index's seed, labels in turn.
  key, example = next(builder._generate_examples('validation'))
  image = tf.io.decode_jpeg(example['image']).numpy()
  drawn = hard.draw_example(0, np.random.default_rng([hard._SEED, 2, 0]))
  assert key == 0 and example['label'] == 0 and image.shape == drawn.shape
  assert np.abs(image.astype(int) - drawn).mean() < 8  # JPEG's loss only
