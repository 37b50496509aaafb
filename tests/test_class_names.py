"""Tests of inception/class_names.py: ImageNet's shipped names, other datasets."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from inception import builtin_dataset
from inception import class_names


def _tfds_imagenet_synsets() -> list[str]:
  path = os.path.join(os.path.dirname(tfds.__file__), 'datasets',
                      'imagenet2012', 'labels.txt')
  with open(path) as f:
    return [line.strip() for line in f if line.strip()]


def test_imagenet_synsets_are_tfds_labels_in_order():
  synsets = class_names.imagenet_synsets()
  assert len(synsets) == 1000
  assert list(synsets) == _tfds_imagenet_synsets()
  assert len(set(synsets)) == 1000
  assert all(len(s) == 9 and s[0] == 'n' and s[1:].isdigit() for s in synsets)


def test_imagenet_names_are_first_wordnet_lemmas():
  names = class_names.imagenet_names()
  assert len(names) == 1000
  expected = {0: 'tench', 1: 'goldfish', 2: 'great white shark',
              207: 'golden retriever', 281: 'tabby', 409: 'analog clock',
              751: 'racer', 948: 'Granny Smith', 999: 'toilet tissue'}
  assert {i: names[i] for i in expected} == expected
  assert class_names.imagenet_synsets()[751] == 'n04037443'
  assert all(name and name == name.strip() and '_' not in name and
             '\t' not in name for name in names)
  # The only repeated first lemmas, each for two different synsets.
  repeated = sorted({n for n in names if names.count(n) > 1})
  assert repeated == ['crane', 'maillot']
  assert [i for i, n in enumerate(names) if n == 'crane'] == [134, 517]


def test_imagenet_datasets_get_imagenet_names():
  names = class_names.imagenet_names()
  for dataset in ('imagenet2012', 'imagenet_v2/matched-frequency',
                  'imagenet2012_subset/10pct', 'imagenet2012:5.1.0'):
    assert class_names.for_dataset(dataset, 1000) == names
  assert not class_names.is_imagenet('imagenet_resized/32x32')


def test_builtin_names():
  assert class_names.for_dataset('builtin', 10) == builtin_dataset.CLASS_NAMES
  assert class_names.for_dataset('builtin', 10)[3] == 'diamond'


def test_unnamed_datasets_are_numbered():
  assert class_names.for_dataset('cifar10', 3) == ('class 0', 'class 1',
                                                   'class 2')
  assert class_names.for_dataset('cifar10', 0) == ()


def test_wrong_number_of_classes_falls_back_with_a_warning(caplog):
  with caplog.at_level(logging.WARNING):
    assert class_names.for_dataset('imagenet2012', 4) == class_names.numbered(4)
    assert class_names.for_dataset('builtin', 1001)[1000] == 'class 1000'
  warnings = [r.getMessage() for r in caplog.records
              if r.levelno == logging.WARNING]
  assert len(warnings) == 2
  assert 'imagenet2012 has 1000 class names, the network 4' in warnings[0]


def _write_png(path, seed: int) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), np.uint8)
  with open(path, 'wb') as f:
    f.write(tf.io.encode_png(image).numpy())


def test_folder_names_are_sorted_class_folders(tmp_path):
  for name in ('zebra', 'Ant', 'cat'):
    _write_png(str(tmp_path / name / 'a.png'), 0)
  (tmp_path / 'empty').mkdir()  # no images: not a class
  (tmp_path / '.hidden').mkdir()
  _write_png(str(tmp_path / '.hidden' / 'a.png'), 1)
  assert class_names.for_dataset(f'folder:{tmp_path}', 3) == ('Ant', 'cat',
                                                              'zebra')


def test_folder_names_of_split_layout_are_the_union(tmp_path):
  _write_png(str(tmp_path / 'train' / 'b' / '0.png'), 0)
  _write_png(str(tmp_path / 'train' / 'a' / '0.png'), 1)
  _write_png(str(tmp_path / 'validation' / 'c' / '0.png'), 2)
  assert class_names.for_dataset(f'folder:{tmp_path}/', 3) == ('a', 'b', 'c')


def test_missing_folder_is_numbered(tmp_path):
  assert class_names.for_dataset(f'folder:{tmp_path}/gone', 2) == ('class 0',
                                                                   'class 1')


@pytest.mark.parametrize('dataset', ['imagenet2012', 'builtin'])
def test_names_are_tuples_of_str(dataset):
  names = class_names.for_dataset(dataset, 1000 if dataset != 'builtin' else 10)
  assert isinstance(names, tuple) and all(isinstance(n, str) for n in names)
