"""Speed benchmarks. Prints one JSON object.

  python -m inception.benchmark --mode=train|infer --model=inception_v4 \
      --batch_size=64 --image_size=299 --dtype=bfloat16 \
      [--steps=20] [--warmup=3] [--reference=timm]
  python -m inception.benchmark --mode=pipeline

Train mode (inception/benchmark_steps.py) times the training step a run
uses: the network, optimizer, learning-rate schedule and recipe of the
network's config (configs/<model>.py over configs/imagenet.py over
configs/default.py, or the file --config names; --batch_size, --image_size,
--dtype and --aux_logits override it), `train.create_train_state` and
`train.make_train_step`, jitted with the state donated and the shardings
train.py gives them, over all devices with the batch on P('data'). Infer
mode times train.py's evaluation step (the forward pass with train=False,
the softmax and the top-k counts). The batch is synthetic, made once on the
devices and fed to every step, so neither mode measures the input pipeline.
Each step is timed to its completion (block_until_ready) after --warmup
untimed steps. The figures:

- images_per_sec: the batch over the median step time
  (step_seconds_median);
- init_seconds: building the train state (infer: the variables) as a run
  does, its compilation included; compile_seconds: lowering and compiling
  the step. A persistent compilation cache (compilation_cache_dir) shortens
  both;
- peak_memory_bytes: the largest peak_bytes_in_use of the devices where the
  backend keeps memory statistics (GPUs, TPUs; the whole process so far),
  else what XLA's memory analysis of the compiled step says one device
  holds (arguments, outputs and temporaries less the donated buffers the
  outputs reuse; CPUs); peak_memory_source says which;
- flops_per_image: XLA's cost analysis of the compiled step (the program
  each device runs, times the devices) over the batch, optimizer and moving
  average included; achieved_flops_per_sec = flops_per_image *
  images_per_sec; peak_flops_per_sec: the median rate of a square matmul
  (--matmul_size) in the same dtype on every device at once, in the same
  run (float32 as JAX computes it by default: TF32 on recent GPUs, as the
  network's convolutions); peak_fraction = achieved / peak;
- context: model, config file, batch_size, image_size, dtype, aux_logits,
  num_classes, backend, device_kind, num_devices, params, the JAX and jaxlib
  versions.

--profile adds 'profile': where two traced steps' time went, by direction,
XLA kind, stage and layer (inception/step_profile.py).

--reference=timm (PyTorch and timm installed; inception/benchmark_reference.py)
also builds timm's implementation of the same network (inception_v3,
inception_v4, inception_resnet_v2) and a comparable step, on the same batch
and dtype, and times the two in the same process in alternating rounds of
--steps_per_round steps each; it adds reference_images_per_sec, ratio (this
project's images per second over timm's), reference_params beside
released_graph_params (this project's network with timm's learned
BatchNorm scale: reference_params_match says whether they agree) and the
PyTorch and timm versions. JAX is then left 45% of a GPU's memory
(XLA_PYTHON_CLIENT_MEM_FRACTION, reported as jax_memory_fraction) so that
PyTorch has room.

Train and infer modes import neither TensorFlow, ml_collections nor CLU: the
config files are read by inception/config_files.py.

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
from typing import Any

from absl import app
from absl import flags

from inception import models

_MODE = flags.DEFINE_enum(
    'mode', 'pipeline', ['pipeline', 'train', 'infer'],
    'What to measure: the input pipeline, the train step or the eval step.')
_MODEL = flags.DEFINE_enum(
    'model', None, models.MODEL_NAMES,
    'Network; its recipe comes from configs/<model>.py (configs/imagenet.py '
    'where it has none). Default: --config\'s network, else inception_v4.')
_CONFIG = flags.DEFINE_string(
    'config', None, 'Config file to take the network and recipe from instead '
    '(e.g. configs/tiny.py).')
_BATCH_SIZE = flags.DEFINE_integer(
    'batch_size', None, 'Global batch; default: the config\'s (pipeline: 64).')
_IMAGE_SIZE = flags.DEFINE_integer(
    'image_size', None, 'Image side; default: the config\'s (pipeline: 299).')
_DTYPE = flags.DEFINE_enum('dtype', None, ['float32', 'bfloat16'],
                           'Compute dtype; default: the config\'s.')
_AUX_LOGITS = flags.DEFINE_bool(
    'aux_logits', None, 'Auxiliary head on or off; default: the config\'s '
    '(timm\'s v4 and IRv2 have none).')
_STEPS = flags.DEFINE_integer(
    'steps', 20, 'Timed steps (of each side with --reference); the median '
    'counts.')
_WARMUP = flags.DEFINE_integer('warmup', 3, 'Untimed steps before the timed.')
_STEPS_PER_ROUND = flags.DEFINE_integer(
    'steps_per_round', 5, 'With --reference: steps one side runs before the '
    'other takes its turn.')
_MATMUL_SIZE = flags.DEFINE_integer(
    'matmul_size', None, 'Side of the square matmul that measures the peak '
    'rate; default: 8192 on accelerators, 2048 on CPUs.')
_NUM_CLASSES = flags.DEFINE_integer('num_classes', 1000, 'Classifier width.')
_REFERENCE = flags.DEFINE_enum(
    'reference', None, ['timm'], 'Also time this implementation of the same '
    'network, interleaved, in the same process.')
_PROFILE = flags.DEFINE_bool(
    'profile', False, 'Train and infer modes: also trace two steps and add '
    'where their time goes, by operation, direction and layer, under '
    '"profile" (inception/step_profile.py).')
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


def _step_mode() -> dict[str, Any]:
  """Train or infer mode from the flags."""
  from inception import benchmark_steps  # pylint: disable=g-import-not-at-top
  from inception import plan as plan_lib  # pylint: disable=g-import-not-at-top
  config, path = benchmark_steps.benchmark_config(
      _MODEL.value, _CONFIG.value, batch_size=_BATCH_SIZE.value,
      image_size=_IMAGE_SIZE.value, dtype=_DTYPE.value,
      aux_logits=_AUX_LOGITS.value)
  if _REFERENCE.value:
    from inception import benchmark_reference  # pylint: disable=g-import-not-at-top
    try:
      benchmark_reference.check(config)
    except benchmark_reference.Unavailable as e:
      raise SystemExit(f'benchmark: {e}') from None
    # JAX takes 75% of a GPU's memory at start; leave PyTorch its share.
    os.environ.setdefault('XLA_PYTHON_CLIENT_MEM_FRACTION', '0.45')
  try:
    result = benchmark_steps.step_benchmark(
        config, _MODE.value, steps=_STEPS.value, warmup=_WARMUP.value,
        steps_per_round=_STEPS_PER_ROUND.value, matmul_size=_MATMUL_SIZE.value,
        num_classes=_NUM_CLASSES.value, reference=_REFERENCE.value,
        profile=_PROFILE.value)
  except plan_lib.ConfigError as e:
    raise SystemExit(f'benchmark: {e}') from None
  result['config'] = os.path.relpath(path)
  result['jax_memory_fraction'] = os.environ.get('XLA_PYTHON_CLIENT_MEM_FRACTION')
  return result


def main(argv):
  del argv
  if _MODE.value == 'pipeline':
    sizes = {name: flag.value for name, flag in (('image_size', _IMAGE_SIZE),
                                                 ('batch_size', _BATCH_SIZE))
             if flag.value is not None}
    result = pipeline_benchmark(
        _NUM_IMAGES.value, _ROUNDS.value, num_jpegs=_NUM_JPEGS.value,
        canvas_size=_CANVAS_SIZE.value, **sizes)
  else:
    result = _step_mode()
  print(json.dumps(result, sort_keys=True))


if __name__ == '__main__':
  app.run(main)
