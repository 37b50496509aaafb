"""Tests of inception/datasets.py: dataset selection, missing data, split ranges."""

import os

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from inception import datasets


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
