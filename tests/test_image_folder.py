"""Tests of inception/image_folder.py: layouts, corrupt files, re-encoding."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from inception import image_folder


def _write_image(path: str, seed: int, fmt: str = 'jpeg') -> None:
  image = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), np.uint8)
  encode = tf.io.encode_png if fmt == 'png' else tf.io.encode_jpeg
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(encode(image).numpy())


def _read_all(builder, split):
  ds = builder.as_dataset(split=split,
                          decoders={'image': tfds.decode.SkipDecoding()})
  return list(ds.as_numpy_iterator())


def test_class_layout_is_one_train_split(tmp_path):
  for c in ('dog', 'cat'):
    for i in range(2):
      _write_image(str(tmp_path / c / f'{i}.jpg'), i)
  (tmp_path / 'cat' / 'notes.txt').write_text('not an image')
  files = image_folder.scan_folder(str(tmp_path))
  assert list(files) == ['train']
  assert files['train'] == [('cat/0.jpg', 'cat'), ('cat/1.jpg', 'cat'),
                            ('dog/0.jpg', 'dog'), ('dog/1.jpg', 'dog')]


def test_split_layout_and_union_of_classes(tmp_path):
  _write_image(str(tmp_path / 'train' / 'a' / '0.jpg'), 0)
  _write_image(str(tmp_path / 'train' / 'b' / '0.jpg'), 1)
  _write_image(str(tmp_path / 'validation' / 'c' / '0.jpg'), 2)
  builder = image_folder.ImageFolder(root=str(tmp_path),
                                     data_dir=str(tmp_path / 'tfds'))
  assert sorted(image_folder.scan_folder(str(tmp_path))) == [
      'train', 'validation']
  assert builder.info.features['label'].names == ['a', 'b', 'c']
  builder.download_and_prepare()
  (example,) = _read_all(builder, 'validation')
  assert example['label'] == 2


def test_corrupt_files_are_skipped_and_counted(tmp_path, caplog):
  root = tmp_path / 'images'
  for i in range(3):
    _write_image(str(root / 'a' / f'{i}.jpg'), i)
  _write_image(str(root / 'b' / 'good.png'), 5, fmt='png')
  (root / 'b' / 'empty.jpg').write_bytes(b'')
  (root / 'b' / 'garbage.jpg').write_bytes(b'\x00' * 300)
  good = (root / 'a' / '0.jpg').read_bytes()
  (root / 'a' / 'truncated.jpg').write_bytes(good[:len(good) // 2])
  builder = image_folder.ImageFolder(root=str(root),
                                     data_dir=str(tmp_path / 'tfds'))
  with caplog.at_level(logging.WARNING):
    builder.download_and_prepare()
  skipped = [r.getMessage() for r in caplog.records
             if 'Skipping unreadable image' in r.getMessage()]
  assert sorted(os.path.basename(m.split(':')[0].split()[-1])
                for m in skipped) == ['empty.jpg', 'garbage.jpg',
                                      'truncated.jpg']
  assert any('skipped 3 unreadable of 7 files' in r.getMessage()
             for r in caplog.records)
  examples = _read_all(builder, 'train')
  assert builder.info.splits['train'].num_examples == 4
  assert sorted(e['file_name'].decode() for e in examples) == [
      'a/0.jpg', 'a/1.jpg', 'a/2.jpg', 'b/good.png']
  # The PNG is stored as a JPEG of the same pixels (up to JPEG loss).
  png = next(e for e in examples if e['file_name'] == b'b/good.png')
  assert tf.io.is_jpeg(png['image'])
  original = tf.io.decode_png((root / 'b' / 'good.png').read_bytes())
  stored = tf.io.decode_jpeg(png['image'])
  assert stored.shape == original.shape


def test_changed_folder_is_a_new_dataset(tmp_path):
  root = tmp_path / 'images'
  _write_image(str(root / 'a' / '0.jpg'), 0)
  first = image_folder.ImageFolder(root=str(root), data_dir=str(tmp_path))
  again = image_folder.ImageFolder(root=str(root), data_dir=str(tmp_path))
  assert first.data_dir == again.data_dir
  _write_image(str(root / 'a' / '1.jpg'), 1)
  changed = image_folder.ImageFolder(root=str(root), data_dir=str(tmp_path))
  assert changed.data_dir != first.data_dir
  assert os.path.basename(os.path.dirname(changed.data_dir)).startswith(
      'images_')


def test_missing_or_empty_folder(tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist'):
    image_folder.scan_folder(str(tmp_path / 'nope'))
  (tmp_path / 'empty_class').mkdir()
  with pytest.raises(FileNotFoundError, match='no class folders'):
    image_folder.scan_folder(str(tmp_path))
