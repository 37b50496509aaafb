"""Input pipeline: TFDS datasets to global, sharded batches, via tf.data.

Datasets (`config.dataset`):
  'builtin'        generated shapes and textures (inception/builtin_dataset.py),
                   prepared under the TFDS data dir on first use;
  'builtin_hard'   small filled shapes among clutter, 25 classes
                   (inception/builtin_hard_dataset.py), prepared the same way;
  'folder:<path>'  a folder of the user's images, one subfolder per class
                   (inception/image_folder.py), written as a TFDS dataset once;
  any other name   a TFDS image-classification dataset, e.g. 'imagenet2012'
                   (prepared on first use; ImageNet needs its manual download).
All are read the same way (inception/datasets.py): TFDS records, images left
encoded until the preprocessing of inception/preprocessing.py.

Host and device: tf.data decodes and crops to uint8 images and draws each
example's flip and colour distortion; `to_network_input` finishes them on the
accelerator, where that work is free: it resizes the training crops, applies
the flip and colours and scales to [-1, 1]. Training crops travel unresized,
as uint8 packed in buffers of `train_canvas_size`**2 pixels with their sizes
beside them (0.44 MB an image at 384, 1.65 times the bytes of a resized 299
image, and no float32); a crop of more pixels is resized on the host.
Evaluation images are resized on the host.

Multi-host: each process reads only its contiguous part of a split; its local
batch becomes its part of one global jax.Array sharded over the mesh's 'data'
axis (`jax.make_array_from_process_local_data`).

The training stream is a pure function of (config.seed, process, step), so a
checkpoint only stores the step:
  * Each process owns n = N // process_count examples of the split. Epoch e
    visits them once, starting at a rotation drawn from (seed, process, e),
    cut into consecutive windows of `config.shuffle_window` examples; each
    window is permuted with a seed from (seed, process, e, window). TFDS
    shuffles examples when it writes a dataset, so windows of consecutive
    records are random subsets, and the rotation regroups them every epoch.
  * Random crops, flips and colours are stateless, seeded from (seed, process,
    e, position in the epoch), so they do not depend on what was read before.
  * Each epoch gives n // local_batch batches; the few examples left over
    differ from epoch to epoch. Global step s is batch s % steps_per_epoch of
    epoch s // steps_per_epoch, which is also floor(N / batch_size) steps.
  * Resuming at step s reads epoch e from the start of the window holding
    that batch: TFDS split slicing skips the records before it without
    reading them, so a resume reads at most one window of encoded images, and
    decodes nothing it then throws away.
  * Epochs are chained in Python: each is its own tf.data pipeline, a pure
    function of (seed, process, epoch, first batch), and the next one is
    built on a background thread, and its first batch read, when the current
    one has one window or half an epoch left (the lesser), so its reading,
    shuffling and preprocessing overlap the current one and an epoch begins
    without a stall. Building a pipeline early changes none of its batches.
A resumed run therefore sees exactly the batches of an uninterrupted one,
given the same config and process count. Host memory holds two to three
windows of encoded images (about 1.1 GB per 10,000 ImageNet images), and up
to two more at the end of an epoch, while the next one starts.

Evaluation visits each example of the split exactly once over all processes:
process parts differ by at most one example, every process runs the same
number of batches, and the padding that fills the last ones has mask False.
"""

import collections
import concurrent.futures
import dataclasses
import functools
import itertools
import math
from typing import Any, Iterator

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from inception import datasets
from inception import preprocessing

# Raised, in one line, for a dataset that is missing or cannot be prepared.
DatasetError = datasets.DatasetError

# Global batches put on the devices ahead of the one training uses, so the
# host-to-device copy overlaps the step.
_DEVICE_PREFETCH = 2


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Sizes the training plan needs, from the dataset's metadata."""
  num_classes: int
  num_train_examples: int
  num_eval_examples: int


def get_dataset_info(config: Any) -> DatasetInfo:
  """Prepares the configured dataset if needed and returns its sizes.

  Call it before anything compiles: a dataset that is missing (e.g.
  imagenet2012 without its manual download) fails here, in one line.

  Args:
    config: reads dataset, data_dir, train_split and eval_split.

  Returns:
    The number of classes and of training and evaluation examples (all
    processes together).

  Raises:
    DatasetError: the dataset, a split, or its download is missing.
  """
  builder = datasets.builder_from_config(config)
  train = datasets.resolve_split(builder, config.train_split)
  evaluation = datasets.resolve_split(builder, config.eval_split)
  return DatasetInfo(
      num_classes=builder.info.features[train.label_key].num_classes,
      num_train_examples=train.num_examples,
      num_eval_examples=evaluation.num_examples)


def _key(*data: int) -> int:
  """A 63-bit key from integers (seed, process, epoch, purpose).

  A stateless TF seed is then [key, index]: one stream per window or example.
  """
  return int(np.random.SeedSequence(data).generate_state(1, np.uint64)[0] >> 1)


def _seed(key: int, index: tf.Tensor) -> tf.Tensor:
  return tf.stack([tf.constant(key, tf.int64), tf.cast(index, tf.int64)])


def inception_crop(config: Any) -> preprocessing.InceptionCrop:
  """The training crop's parameters, from config.crop_*."""
  return preprocessing.InceptionCrop(
      min_object_covered=config.crop_min_object_covered,
      aspect_ratio_range=tuple(config.crop_aspect_ratio_range),
      area_range=tuple(config.crop_area_range),
      max_attempts=config.crop_max_attempts)


def epoch_records(source: datasets.Source, config: Any, process_index: int,
                  process_count: int, epoch: int,
                  position: int) -> tf.data.Dataset:
  """One process's (encoded image, label) of one epoch, in training order.

  Args:
    source: the training split.
    config: reads seed and shuffle_window.
    process_index: the process whose part is read.
    process_count: number of processes.
    epoch: the epoch.
    position: the first position in the epoch to give.

  Returns:
    The records at positions position, position + 1, ... of the epoch; each
    of the process's examples once over positions 0 to n - 1.
  """
  lo, hi = datasets.process_range(source.num_examples, process_index,
                                  process_count, drop_remainder=True)
  n, window = hi - lo, config.shuffle_window
  seeds = [config.seed, process_index, epoch]
  rotation = int(np.random.default_rng(_key(*seeds, 0)).integers(n))
  first_window = position // window
  # Position j of the epoch holds record (rotation + j) % n. Read from the
  # start of the window holding `position`.
  begin = (rotation + first_window * window) % n
  if begin >= rotation:
    parts = [(begin, n), (0, rotation)]
  else:
    parts = [(begin, rotation)]
  records = None
  for start, stop in parts:
    if stop > start:
      ds = datasets.read(source, lo + start, lo + stop)
      records = ds if records is None else records.concatenate(ds)
  window_key = _key(*seeds, 1)

  def permute(index, window_records):
    images, labels = window_records
    order = tf.random.experimental.stateless_shuffle(
        tf.range(tf.shape(labels)[0]), _seed(window_key, index))
    return tf.gather(images, order), tf.gather(labels, order)

  windows = tf.data.Dataset.zip(tf.data.Dataset.counter(first_window),
                                records.batch(window))
  # Read the next window while this one is consumed.
  records = windows.map(permute).prefetch(1).unbatch()
  return records.skip(position - first_window * window)


def _train_epoch(source: datasets.Source, config: Any, process_index: int,
                 process_count: int, local_batch: int, epoch: int,
                 first_batch: int) -> tf.data.Dataset:
  """Local batches first_batch, first_batch + 1, ... of one training epoch."""
  position = first_batch * local_batch
  records = epoch_records(source, config, process_index, process_count, epoch,
                          position)
  crop = inception_crop(config)
  seeds = [config.seed, process_index, epoch]
  crop_key, augment_key = _key(*seeds, 2), _key(*seeds, 3)

  def preprocess(index, record):
    image, label = record
    pixels, size = preprocessing.preprocess_for_train(
        image, _seed(crop_key, index), image_size=config.image_size,
        crop=crop, jpeg=source.jpeg, canvas_size=config.train_canvas_size)
    return {'image': pixels, 'size': size, 'label': label,
            'augment': preprocessing.augment_draws(_seed(augment_key, index))}

  ds = tf.data.Dataset.zip(tf.data.Dataset.counter(position), records)
  # Each image is packed in the map, so batching is a copy that tf.data does
  # in the map's threads: nothing runs on one thread per batch.
  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  return ds.batch(local_batch, drop_remainder=True).prefetch(
      config.prefetch_batches)


def _started(dataset: tf.data.Dataset) -> Iterator[dict[str, np.ndarray]]:
  """Iterates a dataset whose first element is read before it returns.

  Reading it starts the dataset's reads, map and prefetch, so the batches
  after it are prepared too, while the caller does something else.
  """
  iterator = dataset.as_numpy_iterator()
  return itertools.chain([next(iterator)], iterator)


def local_train_batches(source: datasets.Source, config: Any,
                        process_index: int, process_count: int, local_batch: int,
                        start_step: int) -> Iterator[dict[str, np.ndarray]]:
  """One process's training batches from start_step on, forever (numpy).

  Each epoch is its own tf.data pipeline. The next one is built and started
  on a background thread before the current one ends (module docstring), so
  its first window is read and its first batches made before they are
  needed, and no epoch begins with a stall.

  Args:
    source: the training split.
    config: reads seed, shuffle_window, image_size, crop_*,
      train_canvas_size and prefetch_batches.
    process_index: the process whose part is read.
    process_count: number of processes.
    local_batch: this process's share of the global batch.
    start_step: the first step to give.

  Yields:
    {'image': uint8 [local_batch, C**2 * 3], each crop's pixels in row-major
    order then zeros (C = train_canvas_size), 'size': int32 [local_batch, 2],
    the crops' heights and widths, 'label': int32 [local_batch], 'augment':
    float32 [local_batch, 3]}; to_network_input finishes them.
  """
  n = source.num_examples // process_count
  steps_per_epoch = n // local_batch
  if not steps_per_epoch:
    raise DatasetError(f'Each process has {n} training examples, fewer than '
                       f'its batch of {local_batch}.')
  start = lambda epoch, batch: _started(_train_epoch(
      source, config, process_index, process_count, local_batch, epoch, batch))
  # Started one window ahead, as windows are read within an epoch, so that
  # few windows are held; but no earlier than half an epoch ahead, away
  # from the epoch's start, where evaluations and checkpoints run.
  lead = min(-(-config.shuffle_window // local_batch),
             max(1, steps_per_epoch // 2))
  epoch, batch = divmod(start_step, steps_per_epoch)
  # Two threads: one starts the next epoch while the other ends the last.
  with concurrent.futures.ThreadPoolExecutor(
      2, thread_name_prefix='train_epochs') as pool:
    upcoming = pool.submit(start, epoch, batch)
    while True:
      current, upcoming = upcoming.result(), None
      for batch in range(batch, steps_per_epoch):
        if upcoming is None and steps_per_epoch - batch <= lead:
          upcoming = pool.submit(start, epoch + 1, 0)
        yield next(current)
      # The pipeline's end of input and teardown, off the consumer's path.
      pool.submit(collections.deque, current, 0)
      del current
      epoch, batch = epoch + 1, 0


def _local_batch_size(global_batch: int, mesh: jax.sharding.Mesh) -> int:
  """This process's share of a global batch, checked against the mesh."""
  multiple = math.lcm(mesh.shape['data'], jax.process_count())
  if global_batch % multiple:
    raise ValueError(f'Batch of {global_batch} does not split over '
                     f'{mesh.shape["data"]} data shards and '
                     f'{jax.process_count()} processes.')
  return global_batch // jax.process_count()


def resize_bilinear(pixels: jax.Array, sizes: jax.Array,
                    image_size: int) -> jax.Array:
  """Resizes packed RGB images to squares, as TF1's bilinear resize.

  The sampling of `tf.compat.v1.image.resize_bilinear` (no half-pixel
  centres, no antialiasing), with which the released networks were trained:
  output row i reads input row i * h / image_size, interpolating between its
  floor and the next row (the last row repeats); columns likewise.

  Args:
    pixels: [B, N], each row an h x w x 3 image in row-major order, then
      anything (preprocessing.preprocess_for_train packs them so).
    sizes: int32 [B, 2], each image's h and w, with h * w * 3 <= N.
    image_size: side of the square outputs.

  Returns:
    float32 [B, image_size, image_size, 3], in the input's units.
  """

  def weights(length):
    # As TF1: float32 scale and positions; the upper index is the ceiling.
    position = jnp.arange(image_size, dtype=jnp.float32) * (
        length.astype(jnp.float32) / image_size)
    lower = jnp.floor(position)
    upper = jnp.minimum(jnp.ceil(position).astype(jnp.int32), length - 1)
    return lower.astype(jnp.int32), upper, position - lower

  def one(flat, size):
    y0, y1, dy = weights(size[0])
    x0, x1, dx = weights(size[1])

    def read(y, x):  # [image_size, image_size, 3] pixels at rows y, columns x.
      index = (y[:, None, None] * size[1] + x[None, :, None]) * 3
      return flat[index + jnp.arange(3)].astype(jnp.float32)

    top_left, top_right = read(y0, x0), read(y0, x1)
    bottom_left, bottom_right = read(y1, x0), read(y1, x1)
    dx = dx[:, None]
    top = top_left + (top_right - top_left) * dx
    bottom = bottom_left + (bottom_right - bottom_left) * dx
    return top + (bottom - top) * dy[:, None, None]

  return jax.vmap(one)(pixels, sizes)


@functools.partial(jax.jit, static_argnames=('image_size', 'color_distortion'))
def to_network_input(batch: dict[str, jax.Array], *,
                     image_size: int | None = None,
                     color_distortion: bool = False) -> dict[str, jax.Array]:
  """Finishes a batch on the device: resize, flip, colours, scale to [-1, 1].

  Args:
    batch: 'image' uint8 [B, ..., 3], or with 'size' int32 [B, 2] packed
      images [B, N] to resize to image_size (resize_bilinear); optionally
      'augment' float32 [B, 3], the draws of preprocessing.augment_draws;
      other keys pass through.
    image_size: side of the resized images, needed with 'size'.
    color_distortion: apply TF-slim's fast-mode colour distortion (needs
      'augment'): add a brightness delta in [-32/255, 32/255), then scale the
      HSV saturation by [0.5, 1.5) as tf.image.adjust_saturation does, then
      clip to [0, 1].

  Returns:
    The batch with 'image' float32 in [-1, 1] and no 'size' or 'augment'.
  """
  batch = dict(batch)
  x = batch.pop('image')
  if 'size' in batch:
    if image_size is None:
      raise ValueError("A batch with 'size' needs image_size.")
    x = resize_bilinear(x, batch.pop('size'), image_size)
  x = x.astype(jnp.float32) / 255.0
  if 'augment' in batch:
    u = batch.pop('augment')
    per_image = lambda a: a.reshape((-1,) + (1,) * (x.ndim - 1))
    x = jnp.where(per_image(u[:, 0] < 0.5), x[:, :, ::-1], x)
    if color_distortion:
      x = x + per_image((2.0 * u[:, 1] - 1.0) * (32.0 / 255.0))
      # In HSV each channel is v - (v - c), v - c proportional to the
      # saturation; scaling the saturation (to at most 1) scales v - c.
      v = x.max(axis=-1, keepdims=True)
      spread = v - x.min(axis=-1, keepdims=True)
      factor = jnp.minimum(per_image(0.5 + u[:, 2]),
                           v / jnp.maximum(spread, 1e-12))
      x = jnp.clip(v - (v - x) * jnp.where(v > 0, factor, 0.0), 0.0, 1.0)
  # XLA turns the division by 255 into a product, which can overshoot 1.
  batch['image'] = jnp.clip(x * 2.0 - 1.0, -1.0, 1.0)
  return batch


def _global_batches(local_batches: Iterator[dict[str, np.ndarray]],
                    mesh: jax.sharding.Mesh, **finish: Any
                    ) -> Iterator[dict[str, jax.Array]]:
  """Global arrays on the mesh from each process's local batches.

  Args:
    local_batches: this process's batches.
    mesh: a mesh with a 'data' axis.
    **finish: to_network_input's options.

  Yields:
    The batches to_network_input finishes, a few ahead of the consumer.
  """
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  queue = collections.deque()
  for batch in local_batches:
    queue.append(to_network_input(
        {k: jax.make_array_from_process_local_data(sharding, v)
         for k, v in batch.items()}, **finish))
    if len(queue) > _DEVICE_PREFETCH:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def create_train_iterator(config: Any, mesh: jax.sharding.Mesh, *,
                          start_step: int = 0) -> Iterator[dict[str, jax.Array]]:
  """The endless, deterministic training stream from `start_step` on.

  The batches from start_step on equal those an iterator started at 0 gives
  from its start_step-th batch on (module docstring), so a checkpoint needs
  only the step.

  Args:
    config: reads dataset, data_dir, train_split, batch_size (global), seed,
      image_size, the crop_* fields, train_canvas_size, color_distortion,
      shuffle_window and prefetch_batches.
    mesh: a mesh with a 'data' axis; batches are sharded over it.
    start_step: number of batches already trained on.

  Returns:
    An iterator of {'image': float32 [batch_size, S, S, 3] in [-1, 1],
    'label': int32 [batch_size]}, global arrays sharded with P('data').
  """
  builder = datasets.builder_from_config(config)
  source = datasets.resolve_split(builder, config.train_split)
  local_batch = _local_batch_size(config.batch_size, mesh)
  logging.info('Training on %s %s: %d examples, %d per process, step %d on.',
               source.builder.name, config.train_split, source.num_examples,
               source.num_examples // jax.process_count(), start_step)
  return _global_batches(
      local_train_batches(source, config, jax.process_index(),
                          jax.process_count(), local_batch, start_step), mesh,
      image_size=config.image_size, color_distortion=config.color_distortion)


def eval_batch_size(batch_size: int, views: str, multiple: int) -> int:
  """Images per global evaluation batch: about batch_size views per batch.

  Args:
    batch_size: the training global batch.
    views: 'single', '12' or '144'.
    multiple: the batch must be a multiple of this (data shards, processes).

  Returns:
    batch_size // num_views, rounded down to a multiple, at least `multiple`.
  """
  images = batch_size // preprocessing.num_views(views)
  return max(multiple, images // multiple * multiple)


def local_eval_dataset(source: datasets.Source, config: Any, views: str,
                       process_index: int, process_count: int,
                       local_batch: int) -> tf.data.Dataset:
  """One process's padded evaluation batches (see create_eval_iterator).

  Args:
    source: the evaluation split.
    config: reads image_size, eval_crop, eval_crop_fraction, prefetch_batches.
    views: 'single', '12' or '144'.
    process_index: the process whose part is read.
    process_count: number of processes.
    local_batch: images per local batch.

  Returns:
    A finite dataset of {'image', 'label', 'key', 'mask'} batches; every
    process gets ceil(ceil(N / process_count) / local_batch) of them. 'key'
    is the example's record index in the split the source slices (-1 for
    padding), a stable name for it that stored predictions use.
  """
  if views == 'single':
    preprocess = lambda image: preprocessing.preprocess_for_eval(
        image, image_size=config.image_size, mode=config.eval_crop,
        fraction=config.eval_crop_fraction, jpeg=source.jpeg)
  else:
    preprocess = lambda image: preprocessing.multi_crop(
        image, image_size=config.image_size, views=views)
  # Every process runs as many batches as the largest part needs.
  largest_part = -(-source.num_examples // process_count)
  num_batches = -(-largest_part // local_batch)
  lo, hi = datasets.process_range(source.num_examples, process_index,
                                  process_count, drop_remainder=False)
  shape = [config.image_size, config.image_size, 3]
  if views != 'single':
    shape = [preprocessing.num_views(views)] + shape
  padding = tf.data.Dataset.from_tensors(
      {'image': tf.zeros(shape, tf.uint8), 'label': tf.constant(0, tf.int32),
       'key': tf.constant(-1, tf.int32), 'mask': tf.constant(False)}).repeat()
  ds = padding.take(0)
  if hi > lo:
    first_key = source.start + lo
    ds = datasets.read(source, lo, hi).enumerate().map(
        lambda index, example: {
            'image': preprocess(example[0]), 'label': example[1],
            'key': tf.cast(first_key + index, tf.int32),
            'mask': tf.constant(True)},
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.concatenate(padding).take(num_batches * local_batch)
  return ds.batch(local_batch).prefetch(config.prefetch_batches)


def create_eval_iterator(config: Any, mesh: jax.sharding.Mesh, *,
                         views: str | None = None
                         ) -> Iterator[dict[str, jax.Array]]:
  """One pass over the evaluation split, padded to whole global batches.

  Each batch holds eval_batch_size(config.batch_size, views, ...) images: the
  training batch for single views; with 12 or 144 views, batch_size // views
  images (at least one per data shard), so about batch_size crops go through
  the network per step. At 299 pixels a 144-view image is 154 MB of float32,
  so keep batch_size modest for 144-crop evaluation.

  Args:
    config: reads dataset, data_dir, eval_split, batch_size, image_size,
      eval_crop, eval_crop_fraction, eval_views and prefetch_batches.
    mesh: a mesh with a 'data' axis; batches are sharded over it.
    views: 'single', '12' or '144'; None uses config.eval_views.

  Returns:
    A finite iterator of global arrays sharded with P('data'):
    'image': float32 [B, S, S, 3] for single views, [B, V, S, S, 3] for V
    views of each image (ordered as in inception/preprocessing.py; average
    the softmax over axis 1); 'label': int32 [B]; 'key': int32 [B], the
    record index in the split (-1 for padding); 'mask': bool [B], False
    for the padding. Every example of the split is in exactly one batch of
    one process with mask True.
  """
  views = views or config.eval_views
  if views not in preprocessing.VIEWS:
    raise ValueError(f'eval views must be one of {preprocessing.VIEWS}, '
                     f'got {views!r}')
  builder = datasets.builder_from_config(config)
  source = datasets.resolve_split(builder, config.eval_split)
  multiple = math.lcm(mesh.shape['data'], jax.process_count())
  global_batch = eval_batch_size(config.batch_size, views, multiple)
  local_batch = _local_batch_size(global_batch, mesh)
  ds = local_eval_dataset(source, config, views, jax.process_index(),
                          jax.process_count(), local_batch)
  return _global_batches(ds.as_numpy_iterator(), mesh)
