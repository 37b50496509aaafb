"""A folder of the user's images, one subfolder per class, as a TFDS dataset.

Two layouts are read:
  root/<class>/<image>          one split, 'train' (hold part of it out with
                                TFDS slicing: 'train[:90%]', 'train[90%:]');
  root/<split>/<class>/<image>  one split per subfolder, e.g. 'train' and
                                'validation'.
Classes are the sorted class-folder names over all splits. Images may be JPEG,
PNG, GIF, BMP or WebP; other files are ignored. Images that are not JPEGs are
stored re-encoded as JPEGs (quality 95), so that training decodes only the
crop window of every image.

On first use the folder is written once as a TFDS dataset under the TFDS data
directory (image_folder/<folder name>_<fingerprint>/), so training reads it
through the same sharded, shuffled and resumable path as ImageNet. Every image
is decoded once while it is written: unreadable or corrupt files are skipped,
each named in a warning and counted per split, and the run goes on. The
fingerprint covers the path, name, size and modification time of every image,
so changing the folder makes a new dataset rather than reusing a stale one.
"""

import hashlib
import os
import re

from absl import logging
import tensorflow as tf
import tensorflow_datasets as tfds

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp', '.webp')


def _subfolders(path: str) -> list[str]:
  return sorted(name for name in tf.io.gfile.listdir(path)
                if not name.startswith('.')
                and tf.io.gfile.isdir(os.path.join(path, name)))


def _images(path: str) -> list[str]:
  return sorted(name for name in tf.io.gfile.listdir(path)
                if not name.startswith('.')
                and name.lower().endswith(IMAGE_EXTENSIONS))


def scan_folder(root: str) -> dict[str, list[tuple[str, str]]]:
  """Lists the images of a folder dataset by split.

  Args:
    root: the folder, in one of the two layouts of the module docstring.

  Returns:
    {split: [(path relative to root, class name), ...]}, sorted.

  Raises:
    FileNotFoundError: if root is not a folder or holds no class folders.
  """
  root = root.rstrip('/')
  if not tf.io.gfile.isdir(root):
    raise FileNotFoundError(f'image folder {root} does not exist')
  top = _subfolders(root)
  # A split folder holds class folders and no images of its own.
  by_split = top and all(
      _subfolders(os.path.join(root, d))
      and not _images(os.path.join(root, d)) for d in top)
  splits = {d: d for d in top} if by_split else {'train': ''}
  files = {}
  for split, prefix in splits.items():
    classes = _subfolders(os.path.join(root, prefix))
    files[split] = [(os.path.join(prefix, c, name), c) for c in classes
                    for name in _images(os.path.join(root, prefix, c))]
  if not any(files.values()):
    raise FileNotFoundError(
        f'image folder {root} has no class folders of images')
  return files


def _fingerprint(root: str, files: dict[str, list[tuple[str, str]]]) -> str:
  """Hash of the folder's path and of every image's name, size and time."""
  digest = hashlib.sha256(os.path.abspath(root).encode())
  for split in sorted(files):
    for path, _ in files[split]:
      stat = tf.io.gfile.stat(os.path.join(root, path))
      digest.update(f'{path}\0{stat.length}\0{stat.mtime_nsec}\n'.encode())
  return digest.hexdigest()[:16]


class ImageFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """TFDS builder of one image folder (module docstring)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Images of a folder, one subfolder per class.'}
  # No download checksums to find beside the code. Locating the code makes
  # TFDS 4.9 import importlib_resources, which it does not install.
  code_path = None

  def __init__(self, *, root: str, data_dir: str | None = None):
    """Scans `root`; the dataset is written by `download_and_prepare`.

    Args:
      root: the image folder.
      data_dir: TFDS data directory; None for TFDS's default.
    """
    self._root = root.rstrip('/')
    self._files = scan_folder(self._root)
    self._class_names = sorted({c for split in self._files.values()
                                for _, c in split})
    base = re.sub(r'[^a-z0-9]+', '_', os.path.basename(self._root).lower())
    config = tfds.core.BuilderConfig(
        name=f'{base}_{_fingerprint(self._root, self._files)}',
        description=f'Images of {self._root}')
    super().__init__(config=config, data_dir=data_dir)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=f'Images of {self._root}, one subfolder per class.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3),
                                         encoding_format='jpeg'),
            'label': tfds.features.ClassLabel(names=self._class_names),
            'file_name': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split) for split in self._files}

  def _generate_examples(self, split: str):
    skipped = converted = 0
    for path, class_name in self._files[split]:
      with tf.io.gfile.GFile(os.path.join(self._root, path), 'rb') as f:
        data = f.read()
      try:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
      except tf.errors.OpError as e:
        skipped += 1
        logging.warning('Skipping unreadable image %s: %s',
                        os.path.join(self._root, path),
                        e.message.strip().splitlines()[-1])
        continue
      if not tf.io.is_jpeg(data):
        converted += 1
        data = tf.io.encode_jpeg(image, quality=95).numpy()
      yield path, {'image': data, 'label': class_name, 'file_name': path}
    logging.info('Image folder %s, split %s: %d images, %d re-encoded as JPEG.',
                 self._root, split, len(self._files[split]) - skipped,
                 converted)
    if skipped:
      logging.warning('Image folder %s, split %s: skipped %d unreadable of %d '
                      'files.', self._root, split, skipped,
                      len(self._files[split]))
