"""Speed benchmarks. Prints one JSON object.

  python -m inception.benchmark --mode=pipeline

Pipeline mode: images per second of the host's share of the training
preprocessing at 299x299 (inception/preprocessing.py with the crop and the
canvas of configs/default.py: Inception crop decoding only the crop window,
packing the crop, the draws of the flip and colour distortion, batching; the
resize, the flip, the colour distortion and the scale to [-1, 1] run on the
accelerator, see input_pipeline.py) from ImageNet-sized JPEGs (500x375,
about 100 kB, generated here), on one core and on all cores, beside bare
`tf.io.decode_jpeg` of the same images on one core in the same run. Images
come from memory, so the figures measure the CPU work, not the disk. Per
core is images per CPU second of this process, which load from other
processes changes little; all cores is images per wall-clock second.

This module imports TensorFlow only inside the pipeline mode, so it can be
imported where only JAX is installed.
"""

import json
import os
import time

from absl import app
from absl import flags

_MODE = flags.DEFINE_enum('mode', 'pipeline', ['pipeline'],
                          'What to measure.')
_NUM_IMAGES = flags.DEFINE_integer(
    'num_images', 256, 'Images preprocessed per measurement.')
_ROUNDS = flags.DEFINE_integer(
    'rounds', 15, 'Measurements of each figure, interleaved; the median counts.')
_NUM_JPEGS = flags.DEFINE_integer(
    'num_jpegs', 128, 'Distinct images generated, then cycled through.')
_CANVAS_SIZE = flags.DEFINE_integer(
    'canvas_size', None, 'Crops of up to canvas_size**2 pixels go to the '
    'device unresized (config.train_canvas_size); None: configs/default.py\'s.')


def _make_jpegs(count: int, seed: int = 0) -> list[bytes]:
  """ImageNet-like JPEGs: 500x375, smooth structure plus fine texture."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  images = []
  for _ in range(count):
    coarse = rng.uniform(0, 255, size=(1, 12, 16, 3)).astype(np.float32)
    smooth = tf.image.resize(coarse, [375, 500], method='bicubic')[0]
    texture = rng.normal(0, 18, size=(375, 500, 3))
    image = np.clip(smooth.numpy() + texture, 0, 255).astype(np.uint8)
    images.append(tf.io.encode_jpeg(image, quality=90).numpy())
  return images


def _images_per_sec(dataset, batched: bool) -> tuple[float, float]:
  """Images per wall-clock second and per CPU second of this process."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if batched:
    count = lambda total, batch: total + tf.shape(tf.nest.flatten(batch)[0])[0]
  else:
    count = lambda total, image: total + 1
  dataset.take(2).reduce(0, count)  # Warm-up: builds and runs the functions.
  wall, cpu = time.perf_counter(), time.process_time()
  done = int(dataset.reduce(0, count))
  return (done / (time.perf_counter() - wall),
          done / (time.process_time() - cpu))


def pipeline_benchmark(num_images: int, rounds: int, image_size: int = 299,
                       batch_size: int = 64, num_jpegs: int = 128,
                       canvas_size: int | None = None) -> dict[str, float]:
  """Measures training preprocessing and bare JPEG decoding throughput.

  The three figures are measured in turn, `rounds` times, and the median of
  each is kept, so that other load on the machine disturbs them less.

  Args:
    num_images: images per measurement.
    rounds: measurements of each figure.
    image_size: side of the preprocessed images.
    batch_size: images per batch, as training batches them.
    num_jpegs: distinct images generated, then cycled through.
    canvas_size: crops of up to canvas_size**2 pixels are sent unresized;
      None takes configs/default.py's train_canvas_size, raised to image_size
      if below it.

  Returns:
    pipeline_images_per_sec_per_core, pipeline_images_per_sec (all cores),
    decode_images_per_sec_per_core, the median over rounds of the per-core
    pipeline-to-decode ratio, and the context of the figures.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from inception import preprocessing  # pylint: disable=g-import-not-at-top
  import input_pipeline  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  crop = input_pipeline.inception_crop(config)
  canvas = canvas_size or max(config.train_canvas_size, image_size)
  jpegs = _make_jpegs(num_jpegs)

  def train(index, image_bytes):
    pixels, size = preprocessing.preprocess_for_train(
        image_bytes, tf.stack([tf.constant(0, tf.int64), index]),
        image_size=image_size, crop=crop, jpeg=True, canvas_size=canvas)
    return pixels, size, preprocessing.augment_draws(
        tf.stack([tf.constant(1, tf.int64), index]))

  def decode(index, image_bytes):
    del index
    return tf.io.decode_jpeg(image_bytes, channels=3)

  def dataset(fn, cores):
    ds = tf.data.Dataset.from_tensor_slices(jpegs).repeat().take(num_images)
    # On one core the map runs in the consuming thread, so no work overlaps.
    ds = ds.enumerate().map(fn, num_parallel_calls=None if cores == 1 else cores)
    if fn is train:
      ds = ds.batch(batch_size)
    options = tf.data.Options()
    options.threading.private_threadpool_size = cores
    options.threading.max_intra_op_parallelism = 1
    options.autotune.enabled = False
    return ds.with_options(options)

  cores = os.cpu_count()
  # Per core: images per CPU second of this process (all its threads), which
  # other load on the machine barely changes. All cores: per wall second.
  measures = {
      'pipeline_images_per_sec_per_core': lambda: _images_per_sec(
          dataset(train, 1), batched=True)[1],
      'pipeline_images_per_sec': lambda: _images_per_sec(
          dataset(train, cores), batched=True)[0],
      'decode_images_per_sec_per_core': lambda: _images_per_sec(
          dataset(decode, 1), batched=False)[1],
  }
  figures = {name: [] for name in measures}
  for _ in range(rounds):
    for name, measure in measures.items():
      figures[name].append(measure())
  ratios = np.array(figures['pipeline_images_per_sec_per_core']) / np.array(
      figures['decode_images_per_sec_per_core'])
  return {
      **{name: float(np.median(values)) for name, values in figures.items()},
      # Measured side by side in each round, so less disturbed by other load.
      'pipeline_to_decode_per_core': float(np.median(ratios)),
      'num_cores': cores,
      'image_size': image_size,
      'canvas_size': canvas,
      'mean_jpeg_bytes': sum(map(len, jpegs)) / len(jpegs),
  }


def main(argv):
  del argv
  modes = {'pipeline': lambda: pipeline_benchmark(
      _NUM_IMAGES.value, _ROUNDS.value, num_jpegs=_NUM_JPEGS.value,
      canvas_size=_CANVAS_SIZE.value)}
  print(json.dumps(modes[_MODE.value](), sort_keys=True))


if __name__ == '__main__':
  app.run(main)
