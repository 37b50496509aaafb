r"""Classifies image files with a run's weights or converted weights.

  python -m inception.predict --checkpoint=DIR IMAGE... [--views=single|12|144]
      [--json] [--top=5] [--weights=ema|raw] [--step=N] [--batch_size=64]

DIR is a run's workdir (its newest checkpoint, the moving average unless
--weights=raw) or a directory of converted weights (python -m
inception.convert); see inception/weights.py.

Each image is preprocessed as the evaluation preprocesses it
(inception/preprocessing.py): one centred view with the run's image size and
eval crop, or the paper's 12 or 144 views, whose softmaxes are averaged. For
converted weights, which carry no config, that is a 299 input and TF-slim's
central crop of 0.875. Classes are named as the run's dataset names them
(inception/class_names.py); converted weights of 1000 classes get ImageNet's
names, and their synsets are shown too.

Output per image, in the order given: its path, then the top classes, one a
line (probability, class, name). With --json, one JSON object a line instead:
{"image": path, "top": [{"class": i, "name": ..., "probability": p}, ...]},
with "synset" beside "name" for ImageNet's classes.

A file that is missing or is not a decodable image gets one line on stderr
and the others are still classified; the exit code is then 1. A DIR that holds
no weights fails in one line before anything is compiled.

All images go through one jitted function, in batches of a fixed number of
images (about --batch_size network inputs, at least one image per device, the
last batch padded), so it compiles once.
"""

import dataclasses
import json
import os
import re
import sys
from typing import Any, Callable, Iterator, Optional, Sequence

# TensorFlow's C++ warnings (a failed decode logs one that repeats the error
# this tool names in its own line) stay hidden unless asked for, and so does
# the line announcing its oneDNN kernels (which no op here uses).
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np
import tensorflow as tf

import input_pipeline
from inception import class_names
from inception import console
from inception import multihost
from inception import preprocessing
from inception import weights as weights_lib
import train

USAGE = ('usage: python -m inception.predict --checkpoint=DIR IMAGE... '
         '[--views=single|12|144] [--json] [--top=5]')
# What the released converted networks were evaluated with; they store no
# config of their own.
CONVERTED_IMAGE_SIZE = 299
CONVERTED_EVAL_CROP = 'central'
CONVERTED_EVAL_CROP_FRACTION = 0.875


@dataclasses.dataclass(frozen=True)
class Settings:
  """How a network's images are prepared and its classes named.

  Attributes:
    image_size: side of the square network input.
    eval_crop: the single view's crop, 'central' or 'resize_shorter'.
    eval_crop_fraction: the kept fraction of the image.
    names: one name per class.
    synsets: ImageNet's WordNet IDs per class, or None for other classes.
  """
  image_size: int
  eval_crop: str
  eval_crop_fraction: float
  names: tuple[str, ...]
  synsets: Optional[tuple[str, ...]]


@dataclasses.dataclass(frozen=True)
class Prediction:
  """The top classes of one image.

  Attributes:
    image: the path given.
    classes: int class indices, most probable first.
    probabilities: their probabilities (view-averaged softmax).
  """
  image: str
  classes: tuple[int, ...]
  probabilities: tuple[float, ...]


def settings_of(loaded: weights_lib.Loaded) -> Settings:
  """The preprocessing and class names of loaded weights (module docstring).

  Args:
    loaded: from `weights.load`.

  Returns:
    The run's evaluation settings and dataset's names, or those of converted
    weights.
  """
  n = loaded.num_classes
  config = loaded.config
  if config is None:
    size, crop, fraction = (CONVERTED_IMAGE_SIZE, CONVERTED_EVAL_CROP,
                            CONVERTED_EVAL_CROP_FRACTION)
    imagenet = n == len(class_names.imagenet_names())
    names = (class_names.imagenet_names() if imagenet
             else class_names.numbered(n))
  else:
    size, crop, fraction = (config.image_size, config.eval_crop,
                            config.eval_crop_fraction)
    names = class_names.for_dataset(config.dataset, n)
    imagenet = names == class_names.imagenet_names()
  return Settings(size, crop, fraction, names,
                  class_names.imagenet_synsets() if imagenet else None)


def read_views(path: str, settings: Settings, views: str) -> np.ndarray:
  """Reads an image file and makes its evaluation views.

  Args:
    path: the image file (JPEG, PNG, GIF, BMP or WebP).
    settings: the image size and single-view crop.
    views: 'single', '12' or '144'.

  Returns:
    uint8 [V, S, S, 3], V = preprocessing.num_views(views).

  Raises:
    OSError: the file cannot be read.
    tf.errors.OpError: it is not a decodable image.
  """
  with open(path, 'rb') as f:
    data = tf.constant(f.read())
  if views == 'single':
    # A JPEG's window is decoded as evaluation decodes a dataset of JPEGs;
    # other formats are decoded whole, as for a dataset of mixed formats.
    image = preprocessing.preprocess_for_eval(
        data, image_size=settings.image_size, mode=settings.eval_crop,
        fraction=settings.eval_crop_fraction,
        jpeg=bool(tf.io.is_jpeg(data)))
    return image.numpy()[np.newaxis]
  return preprocessing.multi_crop(data, image_size=settings.image_size,
                                  views=views).numpy()


def make_predict_fn(model: Any):
  """The jitted network: views of a batch of images to class probabilities.

  Args:
    model: the Linen network.

  Returns:
    `predict(variables, images) -> probabilities`: images uint8 [B, V, S, S,
    3], scaled to [-1, 1] as the input pipeline does; probabilities float32
    [B, classes], the softmax averaged over the V views.
  """
  @jax.jit
  def predict(variables, images):
    x = input_pipeline.to_network_input({'image': images})['image']
    return train.eval_probabilities(model, variables, x)

  return predict


def _batch_images(num_images: int, batch_size: int, views: str,
                  devices: int) -> int:
  """Images per batch: about batch_size views, a multiple of the devices."""
  per_batch = input_pipeline.eval_batch_size(batch_size, views, devices)
  # A few images need no more than a batch of their own.
  return min(per_batch, -(-num_images // devices) * devices)


def _reason(error: tf.errors.OpError) -> str:
  """The first line of a TensorFlow error, without the op's name around it."""
  line = (error.message.strip().splitlines() or [''])[0]
  line = re.sub(r'^\{\{function_node [^}]*\}\}\s*', '', line)
  return re.sub(r'\s*\[Op:\w+\].*$', '', line)


def _readable(paths: Sequence[str], settings: Settings, views: str,
              on_error: Callable[[str, str], None]
              ) -> Iterator[tuple[str, np.ndarray]]:
  """(path, views) of each image that can be read and decoded, in order."""
  for path in paths:
    try:
      yield path, read_views(path, settings, views)
    except OSError as e:
      on_error(path, f'cannot read it ({e.strerror or e})')
    except tf.errors.OpError as e:
      on_error(path, f'not a decodable image ({_reason(e)})')


def _log_error(path: str, message: str) -> None:
  logging.warning('%s: %s', path, message)


def classify(loaded: weights_lib.Loaded, settings: Settings,
             paths: Sequence[str], *, views: str = 'single', top: int = 5,
             batch_size: int = 64, mesh: Optional[jax.sharding.Mesh] = None,
             on_error: Callable[[str, str], None] = _log_error
             ) -> Iterator[Prediction]:
  """Top classes of each readable image, in the order of `paths`.

  Args:
    loaded: the weights, from `weights.load` (with the same mesh).
    settings: their preprocessing and class names (`settings_of`).
    paths: image files.
    views: 'single', '12' or '144'.
    top: classes per image (at most the network's classes).
    batch_size: network inputs per step, about (images x views); at least one
      image per device.
    mesh: a mesh with a 'data' axis to shard the images over; None: all
      devices.
    on_error: called as on_error(path, message) for a file that cannot be
      read or decoded, which is then skipped; the default logs a warning.

  Yields:
    A Prediction per readable image.
  """
  if views not in preprocessing.VIEWS:
    raise ValueError(f'views must be one of {preprocessing.VIEWS}, '
                     f'got {views!r}')
  mesh = mesh or multihost.make_mesh()
  top = min(top, loaded.num_classes)
  per_batch = _batch_images(len(paths), batch_size, views, mesh.shape['data'])
  predict = make_predict_fn(loaded.model)
  sharding = jax.sharding.NamedSharding(mesh,
                                        jax.sharding.PartitionSpec('data'))
  images = np.zeros((per_batch, preprocessing.num_views(views),
                     settings.image_size, settings.image_size, 3), np.uint8)

  def run(batch: list[str]) -> Iterator[Prediction]:
    # Padding rows keep what they held; their results are dropped.
    probabilities = jax.device_get(
        predict(loaded.variables, jax.device_put(images, sharding)))
    for path, p in zip(batch, probabilities):
      best = np.argsort(-p, kind='stable')[:top]
      yield Prediction(path, tuple(int(i) for i in best),
                       tuple(float(p[i]) for i in best))

  batch = []
  for path, image_views in _readable(paths, settings, views, on_error):
    images[len(batch)] = image_views
    batch.append(path)
    if len(batch) == per_batch:
      yield from run(batch)
      batch = []
  if batch:
    yield from run(batch)


def format_text(prediction: Prediction, settings: Settings) -> str:
  """The path, then one line per class: probability, class, name (synset).

  Args:
    prediction: one image's top classes.
    settings: the class names and synsets.

  Returns:
    Lines, without a final newline.
  """
  lines = [prediction.image]
  for i, p in zip(prediction.classes, prediction.probabilities):
    synset = f' ({settings.synsets[i]})' if settings.synsets else ''
    lines.append(f'  {100 * p:6.2f}%  {i:>4}  {settings.names[i]}{synset}')
  return '\n'.join(lines)


def format_json(prediction: Prediction, settings: Settings) -> str:
  """One image's top classes as one line of JSON (module docstring).

  Args:
    prediction: one image's top classes.
    settings: the class names and synsets.

  Returns:
    The JSON object, on one line.
  """
  top = []
  for i, p in zip(prediction.classes, prediction.probabilities):
    entry = {'class': i, 'name': settings.names[i]}
    if settings.synsets:
      entry['synset'] = settings.synsets[i]
    entry['probability'] = p
    top.append(entry)
  return json.dumps({'image': prediction.image, 'top': top})


def main(argv: list[str]) -> None:
  paths = argv[1:]
  args = flags.FLAGS
  if not paths or not args.checkpoint:
    sys.exit(USAGE)
  console.setup()
  if not args['verbosity'].present:
    # Only warnings and errors, so that the lines naming unreadable images
    # stand out; --verbosity=0 shows the loading steps too.
    logging.set_verbosity(logging.WARNING)
  mesh = multihost.make_mesh()
  try:
    loaded = weights_lib.load(args.checkpoint, weights=args.weights,
                              step=args.step, mesh=mesh)
  except weights_lib.WeightsError as e:
    sys.exit(str(e))
  except (OSError, ValueError) as e:
    first_line = (str(e).strip().splitlines() or [''])[0]
    sys.exit(f'{args.checkpoint}: cannot read the weights: '
             f'{type(e).__name__}: {first_line}')
  logging.info('%s weights of %s%s, %s view(s).', loaded.kind, loaded.path,
               '' if loaded.step is None else f' (step {loaded.step})',
               args.views)
  settings = settings_of(loaded)
  failed = []

  def on_error(path, message):
    failed.append(path)
    print(f'{path}: {message}', file=sys.stderr, flush=True)

  write = format_json if args.json else format_text
  for prediction in classify(loaded, settings, paths, views=args.views,
                             top=args.top, batch_size=args.batch_size,
                             mesh=mesh, on_error=on_error):
    print(write(prediction, settings), flush=True)
  if failed:
    sys.exit(1)


def _define_flags() -> None:
  """Command-line flags, defined only when run as a program, not on import."""
  flags.DEFINE_string('checkpoint', None, "A run's workdir or a directory of "
                      'converted weights.')
  flags.DEFINE_enum('views', 'single', list(preprocessing.VIEWS),
                    'One centred view, or the paper\'s 12 or 144 views.')
  flags.DEFINE_bool('json', False, 'One JSON object per image per line.')
  flags.DEFINE_integer('top', 5, 'Classes shown per image.', lower_bound=1)
  flags.DEFINE_enum('weights', 'ema', list(weights_lib.WEIGHTS),
                    "For a run: its moving average ('ema') or raw weights.")
  flags.DEFINE_integer('step', None, 'For a run: the checkpoint; unset for '
                       'the newest.')
  flags.DEFINE_integer('batch_size', 64, 'Network inputs per step, about '
                       '(images x views); at least one image per device.',
                       lower_bound=1)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
