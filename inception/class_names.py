"""Human-readable names of a dataset's classes, by label.

ImageNet's 1000 classes ship with the project (imagenet_classes.tsv beside
this file, one `synset<TAB>name` line per class, in label order), so naming
a prediction needs neither TensorFlow Datasets nor a download:
  * the order is that of TFDS's imagenet2012 labels file
    (tensorflow_datasets/datasets/imagenet2012/labels.txt), the standard one:
    label i is the i-th synset of that file;
  * a class's name is the first lemma of its WordNet 3.0 noun synset (synset
    'n01440764' is the noun at offset 01440764 of WordNet 3.0's data.noun),
    underscores written as spaces: 0 'tench', 281 'tabby', 948 'Granny Smith'.
Two names occur twice, each time for two different synsets: 'crane' (134 the
bird, 517 the machine) and 'maillot' (638 and 639); the synset tells them
apart.

Other datasets (`for_dataset`): 'builtin' and 'builtin_hard' have the names
of inception/builtin_dataset.py and inception/builtin_hard_dataset.py,
'folder:<path>' its class folders' names in
label order, and any other dataset is named 'class 0', 'class 1', ...
"""

import functools
import os

from absl import logging

_IMAGENET_FILE = os.path.join(os.path.dirname(__file__), 'imagenet_classes.tsv')
_IMAGENET_CLASSES = 1000
# TFDS datasets whose labels are ImageNet's 1000 classes in the standard order
# (their ClassLabel reads imagenet2012's labels file). imagenet_resized is
# not among them: its labels file orders the synsets differently.
IMAGENET_DATASETS = (
    'imagenet2012', 'imagenet2012_real', 'imagenet2012_multilabel',
    'imagenet2012_subset', 'imagenet2012_corrupted', 'imagenet2012_fewshot',
    'imagenet_v2', 'imagenet_sketch', 'imagenet_a', 'imagenet_r',
    'imagenet_lt', 'imagenet_pi')


@functools.cache
def _imagenet_table() -> tuple[tuple[str, str], ...]:
  """(synset, name) of every ImageNet class, in label order."""
  with open(_IMAGENET_FILE, encoding='utf-8') as f:
    rows = tuple(tuple(line.rstrip('\n').split('\t')) for line in f
                 if line.strip())
  if len(rows) != _IMAGENET_CLASSES or any(len(r) != 2 for r in rows):
    raise RuntimeError(f'{_IMAGENET_FILE} must hold {_IMAGENET_CLASSES} '
                       'synset<TAB>name lines')
  return rows


def imagenet_synsets() -> tuple[str, ...]:
  """WordNet IDs of ImageNet's classes in label order ('n01440764', ...).

  Returns:
    1000 synset IDs.
  """
  return tuple(synset for synset, _ in _imagenet_table())


def imagenet_names() -> tuple[str, ...]:
  """Names of ImageNet's classes in label order ('tench', 'goldfish', ...).

  Returns:
    1000 names, the first WordNet 3.0 lemma of each class's synset.
  """
  return tuple(name for _, name in _imagenet_table())


def numbered(num_classes: int) -> tuple[str, ...]:
  """Placeholder names of classes without names: 'class 0', 'class 1', ...

  Args:
    num_classes: how many.

  Returns:
    num_classes names.
  """
  return tuple(f'class {i}' for i in range(num_classes))


def is_imagenet(dataset: str) -> bool:
  """Whether a TFDS dataset name (with any config or version) labels ImageNet's classes.

  Args:
    dataset: e.g. 'imagenet2012', 'imagenet_v2/matched-frequency',
      'imagenet2012:5.1.0'.

  Returns:
    True for the datasets of IMAGENET_DATASETS.
  """
  return dataset.split('/')[0].split(':')[0] in IMAGENET_DATASETS


def folder_classes(root: str) -> tuple[str, ...]:
  """Class names of an image folder dataset, in label order.

  As inception/image_folder.py assigns labels: the sorted names of the class
  folders that hold at least one image, over all splits.

  Args:
    root: the folder of a 'folder:<path>' dataset.

  Returns:
    The class names; label i is the i-th.

  Raises:
    FileNotFoundError: root is not a folder of class folders of images.
  """
  # Lazily: image_folder imports TensorFlow, which ImageNet's names need not.
  from inception import image_folder  # pylint: disable=g-import-not-at-top
  files = image_folder.scan_folder(root)
  return tuple(sorted({c for split in files.values() for _, c in split}))


def _named(dataset: str) -> tuple[str, ...] | None:
  """The names a dataset's classes have, or None for a dataset without them."""
  if is_imagenet(dataset):
    return imagenet_names()
  if dataset == 'builtin':
    # Lazily: builtin_dataset imports TensorFlow.
    from inception import builtin_dataset  # pylint: disable=g-import-not-at-top
    return tuple(builtin_dataset.CLASS_NAMES)
  if dataset == 'builtin_hard':
    from inception import builtin_hard_dataset  # pylint: disable=g-import-not-at-top
    return tuple(builtin_hard_dataset.CLASS_NAMES)
  if dataset.startswith('folder:'):
    root = dataset[len('folder:'):]
    try:
      return folder_classes(root)
    except FileNotFoundError as e:
      logging.warning('No class names for %s: %s', dataset, e)
      return None
  return None


def for_dataset(dataset: str, num_classes: int) -> tuple[str, ...]:
  """Names of the classes of a run's dataset, by label.

  Args:
    dataset: the run's `config.dataset`: 'builtin', 'builtin_hard',
      'folder:<path>' or a TFDS name.
    num_classes: the network's number of classes.

  Returns:
    num_classes names: the dataset's (module docstring), or 'class 0',
    'class 1', ... for a dataset without names or whose number of names is
    not num_classes (with a warning).
  """
  names = _named(dataset)
  if names is None:
    return numbered(num_classes)
  if len(names) != num_classes:
    logging.warning('Dataset %s has %d class names, the network %d classes; '
                    "naming them 'class 0' to 'class %d'.", dataset,
                    len(names), num_classes, num_classes - 1)
    return numbered(num_classes)
  return names
