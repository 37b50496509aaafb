"""Which dataset a config names, prepared on first use, and reading its splits.

`config.dataset` is 'builtin' (inception/builtin_dataset.py), 'folder:<path>'
(inception/image_folder.py) or the name of a TFDS image-classification
dataset such as 'imagenet2012'. All are TFDS datasets under `config.data_dir`
and are read the same way: records of a split range, in their stored order,
images left encoded for inception/preprocessing.py. A dataset that cannot be
prepared raises DatasetError with a one-line message saying what to do.
"""

import dataclasses
from typing import Any

from absl import logging
import tensorflow as tf
import tensorflow_datasets as tfds

from inception import builtin_dataset
from inception import image_folder


class DatasetError(ValueError):
  """A dataset that cannot be read as configured; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Source:
  """A prepared dataset and one contiguous range of one of its splits."""
  builder: Any
  split: str
  start: int
  num_examples: int
  image_key: str
  label_key: str
  jpeg: bool  # TFDS records that every image is a JPEG.


def prepare(builder: Any) -> None:
  """Prepares a dataset on first use; a missing manual download fails clearly.

  Args:
    builder: a TFDS builder.

  Raises:
    DatasetError: in one line, what is missing and where it goes.
  """
  if builder.is_prepared():
    return
  manual_dir = builder.data_dir_root / 'downloads' / 'manual'
  if builder.MANUAL_DOWNLOAD_INSTRUCTIONS and not (
      manual_dir.exists() and any(manual_dir.iterdir())):
    instructions = ' '.join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split())
    raise DatasetError(
        f'Dataset {builder.name} is not prepared in {builder.data_dir_root} '
        f'and needs a manual download in {manual_dir}: {instructions}')
  logging.info('Preparing dataset %s in %s (first use).', builder.name,
               builder.data_dir_root)
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(manual_dir)))
  except (OSError, ImportError, AssertionError, tf.errors.OpError) as e:
    first_line = (str(e).strip().splitlines() or [''])[0]
    raise DatasetError(f'Could not prepare dataset {builder.name} in '
                       f'{builder.data_dir_root}: {type(e).__name__}: '
                       f'{first_line}') from e


def builder_from_config(config: Any) -> Any:
  """The prepared TFDS builder that `config.dataset` names.

  Args:
    config: reads dataset and data_dir.

  Returns:
    The builder, its dataset prepared.

  Raises:
    DatasetError: the dataset or its manual download is missing.
  """
  name = config.dataset
  if name == 'builtin':
    builder = builtin_dataset.BuiltinShapes(data_dir=config.data_dir)
  elif name.startswith('folder:'):
    try:
      builder = image_folder.ImageFolder(root=name[len('folder:'):],
                                         data_dir=config.data_dir)
    except FileNotFoundError as e:
      raise DatasetError(str(e)) from e
  else:
    try:
      builder = tfds.builder(name, data_dir=config.data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
      raise DatasetError(f"Unknown dataset {name!r}: use 'builtin', "
                         "'folder:<path>' or a TFDS dataset name.") from e
  prepare(builder)
  return builder


def resolve_split(builder: Any, split: str) -> Source:
  """Resolves a split spec ('train', 'train[:90%]') to one range of a split.

  Args:
    builder: a prepared builder.
    split: TFDS split syntax naming one split or one slice of it.

  Returns:
    The range and how to read its examples.

  Raises:
    DatasetError: the split is not in the dataset.
  """
  try:
    ranges = tfds.core.ReadInstruction.from_spec(split).to_absolute(
        builder.info.splits)
  except (KeyError, ValueError, AssertionError) as e:
    raise DatasetError(f'Split {split!r} is not in dataset {builder.name}, '
                       f'which has {sorted(builder.info.splits)}.') from e
  if len(ranges) != 1:
    raise DatasetError(f'Split {split!r} must be one split or one slice of it.')
  keys = builder.info.supervised_keys
  if not (isinstance(keys, tuple) and len(keys) == 2
          and all(isinstance(k, str) for k in keys)):
    raise DatasetError(f'Dataset {builder.name} has no (image, label) keys.')
  (r,) = ranges
  # TFDS marks the ends of a split as None.
  start = r.from_ or 0
  stop = builder.info.splits[r.splitname].num_examples if r.to is None else r.to
  jpeg = getattr(builder.info.features[keys[0]], 'encoding_format', None)
  return Source(builder, r.splitname, start, stop - start, *keys,
                 jpeg=jpeg == 'jpeg')


def process_range(num_examples: int, process_index: int, process_count: int,
                  *, drop_remainder: bool) -> tuple[int, int]:
  """The [start, stop) of a split that one process reads.

  Args:
    num_examples: size of the split.
    process_index: this process.
    process_count: number of processes.
    drop_remainder: equal parts of num_examples // process_count (training);
      otherwise parts differ by at most one and cover the split (evaluation).

  Returns:
    (start, stop), consecutive over processes.
  """
  if drop_remainder:
    size = num_examples // process_count
    return process_index * size, (process_index + 1) * size
  size, extra = divmod(num_examples, process_count)
  start = process_index * size + min(process_index, extra)
  return start, start + size + (process_index < extra)


def read(source: Source, start: int, stop: int) -> tf.data.Dataset:
  """Records [start, stop) of the source, in their stored order.

  Args:
    source: a split range.
    start: first record, counted from the start of the range.
    stop: end of the records read.

  Returns:
    (encoded image bytes, int32 label) pairs.
  """
  ds = source.builder.as_dataset(
      split=f'{source.split}[{source.start + start}:{source.start + stop}]',
      shuffle_files=False,
      decoders={source.image_key: tfds.decode.SkipDecoding()},
      # One file at a time: the order of records must not depend on where a
      # read starts, or a resumed stream would differ.
      read_config=tfds.ReadConfig(interleave_cycle_length=1,
                                  try_autocache=False, skip_prefetch=True))
  return ds.map(lambda ex: (ex[source.image_key],
                            tf.cast(ex[source.label_key], tf.int32)))
