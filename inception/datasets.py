"""Which dataset a config names, prepared on first use, and reading its splits.

`config.dataset` is 'builtin' (inception/builtin_dataset.py), 'builtin_hard'
(inception/builtin_hard_dataset.py), 'folder:<path>'
(inception/image_folder.py) or the name of a TFDS image-classification
dataset such as 'imagenet2012'. All are TFDS datasets under `config.data_dir`
and are read the same way: records of a split range, in their stored order,
images left encoded for inception/preprocessing.py. A dataset that cannot be
prepared raises DatasetError with a one-line message saying what to do.

With several processes, process 0 alone prepares the dataset, while the
others wait for it at a collective (which also tells them whether it
succeeded) and then read what it wrote: `config.data_dir` must be shared by
all hosts, or the dataset prepared on each host beforehand.
"""

import dataclasses
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from inception import builtin_dataset
from inception import builtin_hard_dataset
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


def _first_line(error: BaseException) -> str:
  return (str(error).strip().splitlines() or [''])[0]


def _one_line(error: BaseException) -> str:
  """A DatasetError's message, or any other error's type and first line."""
  if isinstance(error, DatasetError):
    return str(error)
  return f'{type(error).__name__}: {_first_line(error)}'


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
    raise DatasetError(f'Could not prepare dataset {builder.name} in '
                       f'{builder.data_dir_root}: {type(e).__name__}: '
                       f'{_first_line(e)}') from e


def builder_from_config(config: Any) -> Any:
  """The prepared TFDS builder that `config.dataset` names.

  With several processes every process must call it (it is a collective):
  process 0 prepares the dataset, the others wait for it, then read.

  Args:
    config: reads dataset and data_dir.

  Returns:
    The builder, its dataset prepared.

  Raises:
    DatasetError: the dataset or its manual download is missing, on every
      process if process 0 could not prepare it, or the dataset that process
      0 prepared is not visible to every process.
  """
  if jax.process_count() == 1:
    builder = _builder(config)
    prepare(builder)
    return builder
  return _prepare_on_process_0(config)


def _builder(config: Any) -> Any:
  """The TFDS builder that `config.dataset` names, not yet prepared."""
  name = config.dataset
  if name == 'builtin':
    return builtin_dataset.BuiltinShapes(data_dir=config.data_dir)
  if name == 'builtin_hard':
    return builtin_hard_dataset.BuiltinHardShapes(data_dir=config.data_dir)
  if name.startswith('folder:'):
    try:
      return image_folder.ImageFolder(root=name[len('folder:'):],
                                      data_dir=config.data_dir)
    except FileNotFoundError as e:
      raise DatasetError(str(e)) from e
  try:
    return tfds.builder(name, data_dir=config.data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DatasetError(f"Unknown dataset {name!r}: use 'builtin', "
                       "'builtin_hard', 'folder:<path>' or a TFDS dataset "
                       "name.") from e


def _is_prepared(config: Any) -> bool:
  """Whether this process sees the dataset prepared; False when unsure."""
  try:
    return _builder(config).is_prepared()
  except Exception:  # pylint: disable=broad-except
    return False  # Reported after the barrier, with process 0's verdict.


# Bytes of process 0's error message that the other processes receive.
_MESSAGE_BYTES = 1024


def _broadcast_error(message: str) -> str:
  """Process 0's error message ('' for success), received by every process.

  Every process must call it: it is also the barrier at which the others
  wait for process 0.
  """
  buffer = np.zeros(_MESSAGE_BYTES, np.uint8)
  encoded = message.encode()[:_MESSAGE_BYTES]
  buffer[:len(encoded)] = np.frombuffer(encoded, np.uint8)
  received = multihost_utils.broadcast_one_to_all(buffer)
  return bytes(np.asarray(received, np.uint8)).rstrip(b'\0').decode(
      errors='replace')


def _prepare_on_process_0(config: Any) -> Any:
  """builder_from_config with several processes: process 0 prepares."""
  index, count = jax.process_index(), jax.process_count()
  builder, failure = None, None
  if index == 0:
    try:
      builder = _builder(config)
      if not builder.is_prepared():
        logging.info('Process 0 of %d prepares dataset %s in %s; the others '
                     'wait for it.', count, builder.name,
                     builder.data_dir_root)
      prepare(builder)
    except Exception as e:  # pylint: disable=broad-except
      # Told to the others before it is raised, so that none of them hangs.
      failure = e
  elif not _is_prepared(config):
    logging.info('Process %d of %d waits for process 0 to prepare dataset %s.',
                 index, count, config.dataset)
  message = _broadcast_error('' if failure is None else _one_line(failure))
  if failure is not None:
    raise failure
  if message:
    raise DatasetError(f'Process 0 could not prepare dataset {config.dataset}'
                       f', so process {index} cannot read it: {message}')
  visible, error = False, None
  try:
    # After the barrier: a TFDS builder reads the dataset's info when made.
    if builder is None:
      builder = _builder(config)
    visible = builder.is_prepared()
  except DatasetError as e:
    error = e
  seen = multihost_utils.process_allgather(np.array(visible, np.int32))
  if error is not None:
    raise error
  missing = [i for i, flag in enumerate(np.asarray(seen).ravel()) if not flag]
  if missing:
    raise DatasetError(
        f'Dataset {builder.name} that process 0 prepared in '
        f'{builder.data_dir_root} is not visible to process(es) {missing}: '
        'config.data_dir must be shared by all hosts, or the dataset '
        'prepared on each host first.')
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
