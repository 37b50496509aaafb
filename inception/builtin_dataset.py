"""The built-in dataset: procedurally drawn shapes and textures, as a TFDS dataset.

It lets anyone run training and evaluation at once, with no download: the
images are generated offline from fixed seeds, so every machine builds the
same dataset, and it is written as a real TFDS dataset (JPEG images, TFRecord
shards) under the TFDS data directory, so it goes through the same reading
and preprocessing code as ImageNet. Preparing it takes seconds.

Ten classes, 500 training and 100 validation images each, of 100 to 200
pixels with aspect ratios 0.67 to 1.5. The class is the kind of pattern that
fills the image: seven shapes (disc, ring, square, diamond, upward triangle,
plus and diagonal cross) scattered over a jittered grid, and three textures
(horizontal stripes, vertical stripes, checkerboard). Colours, sizes,
positions, background gradient, pixel noise and JPEG quality are random and
carry no class information, so a network must learn spatial structure. Every
class is unchanged by a left-right flip, and a pattern fills the image, so
the training crops (a tenth of the image or more) still show it.
"""

import functools
import sys

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

CLASS_NAMES = ('disc', 'ring', 'square', 'diamond', 'triangle', 'plus',
               'cross', 'horizontal_stripes', 'vertical_stripes',
               'checkerboard')
NUM_EXAMPLES = {'train': 5000, 'validation': 1000}
_SPLIT_SEEDS = {'train': 1, 'validation': 2}
# Root seed of the generator; changing it changes the dataset (bump VERSION).
_SEED = 20160823
_NOISE_SIDE = 640


@functools.cache
def _noise_field() -> np.ndarray:
  """Standard normal noise [3, side, side] that images take windows of."""
  rng = np.random.default_rng([_SEED, 0])
  return rng.standard_normal((3, _NOISE_SIDE, _NOISE_SIDE), dtype=np.float32)


def shape_mask(label: int, dy: np.ndarray, dx: np.ndarray,
                r: np.ndarray) -> np.ndarray:
  """Pixels inside the shape of class `label`, at offsets (dy, dx) from its centre."""
  ay, ax = np.abs(dy), np.abs(dx)
  name = CLASS_NAMES[label]
  if name == 'disc':
    return dy**2 + dx**2 <= r**2
  if name == 'ring':
    d2 = dy**2 + dx**2
    return (d2 <= r**2) & (d2 >= (0.55 * r)**2)
  if name == 'square':
    return (ay <= 0.8 * r) & (ax <= 0.8 * r)
  if name == 'diamond':
    return ay + ax <= 1.05 * r
  if name == 'triangle':  # apex up, base down
    return (dy <= 0.7 * r) & (ax <= 0.62 * (dy + r))
  if name == 'plus':
    return ((ax <= 0.25 * r) & (ay <= r)) | ((ay <= 0.25 * r) & (ax <= r))
  # cross: a plus turned by 45 degrees.
  u, v = np.abs(dx + dy) / np.sqrt(2), np.abs(dx - dy) / np.sqrt(2)
  return ((u <= 0.25 * r) & (v <= r)) | ((v <= 0.25 * r) & (u <= r))


def _pattern_mask(label: int, h: int, w: int,
                  rng: np.random.Generator) -> np.ndarray:
  """Foreground mask [h, w] of one image of class `label`."""
  r = min(h, w) * rng.uniform(0.08, 0.13)
  name = CLASS_NAMES[label]
  if name.endswith('stripes') or name == 'checkerboard':
    period = 2.2 * r
    phase_y, phase_x = rng.uniform(0, 2 * np.pi, size=2)
    sy = np.sin(2 * np.pi * (np.arange(h)[:, None] + 0.5) / period + phase_y) > 0
    sx = np.sin(2 * np.pi * (np.arange(w)[None, :] + 0.5) / period + phase_x) > 0
    mask = {'horizontal_stripes': sy, 'vertical_stripes': sx,
            'checkerboard': sy == sx}[name]
    return np.broadcast_to(mask, (h, w))
  # One shape per square cell of a grid, jittered inside its cell so none
  # overlap. Coordinates are [cell row, y in cell, cell column, x in cell], so
  # per-cell values broadcast over pixels without gathers.
  cell = int(round(2.6 * r))
  ny, nx = -(-h // cell), -(-w // cell)
  radius = r * rng.uniform(0.75, 1.0, size=(ny, 1, nx, 1)).astype(np.float32)
  slack = cell / 2 - radius
  centre_y = cell / 2 + rng.uniform(-1, 1, radius.shape) * slack
  centre_x = cell / 2 + rng.uniform(-1, 1, radius.shape) * slack
  local = np.arange(cell, dtype=np.float32) + 0.5
  dy = local[None, :, None, None] - centre_y.astype(np.float32)
  dx = local[None, None, None, :] - centre_x.astype(np.float32)
  mask = shape_mask(label, dy, dx, radius)
  mask &= rng.random((ny, 1, nx, 1)) < 0.75
  return mask.reshape(ny * cell, nx * cell)[:h, :w]


def image_size(rng: np.random.Generator) -> tuple[int, int]:
  """(height, width) of an image: 100 to 200 rows, aspect 0.67 to 1.5."""
  h = int(rng.integers(100, 201))
  w = int(np.clip(round(h * np.exp(rng.uniform(-0.4, 0.4))), 100, 300))
  return h, w


def contrasting_colour(colour: np.ndarray,
                       rng: np.random.Generator) -> np.ndarray:
  """A random RGB colour at least 180 levels (summed) away from `colour`."""
  other = rng.uniform(0, 255, size=3)
  while np.abs(other - colour).sum() < 180:
    other = rng.uniform(0, 255, size=3)
  return other


def background_ramp(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
  """[h, w] linear brightness gradient of up to 30 levels each way."""
  return (np.linspace(-1, 1, w, dtype=np.float32)[None, :] * rng.uniform(-30, 30)
          + np.linspace(-1, 1, h, dtype=np.float32)[:, None] * rng.uniform(-30, 30))


def add_noise_and_quantise(image: np.ndarray,
                           rng: np.random.Generator) -> np.ndarray:
  """uint8 [h, w, 3] of a float [3, h, w] image plus random pixel noise."""
  _, h, w = image.shape
  # A window of a fixed noise field, far cheaper than drawing the noise.
  y, x = rng.integers(0, _NOISE_SIDE - 300, size=2)
  image = image + _noise_field()[:, y:y + h, x:x + w] * np.float32(
      rng.uniform(3, 15))
  return np.clip(image, 0, 255).astype(np.uint8).transpose(1, 2, 0)


def draw_example(label: int, rng: np.random.Generator) -> np.ndarray:
  """Draws one uint8 [h, w, 3] image of class `label`.

  Args:
    label: class index into CLASS_NAMES.
    rng: the example's random generator.

  Returns:
    The image; its size, colours and layout come from `rng`.
  """
  h, w = image_size(rng)
  background = rng.uniform(0, 255, size=3)
  foreground = contrasting_colour(background, rng)
  mask = _pattern_mask(label, h, w, rng)
  ramp = background_ramp(h, w, rng)
  # Channels first: numpy broadcasts a [h, w] mask over them quickly.
  background = background[:, None, None].astype(np.float32) + ramp
  foreground = foreground[:, None, None].astype(np.float32)
  image = background + mask * (foreground - background)
  return add_noise_and_quantise(image, rng)


class BuiltinShapes(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """TFDS builder of the built-in dataset (module docstring).

  A builder of another generated dataset subclasses it and sets the four
  attributes below (inception/builtin_hard_dataset.py).
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Ten shape and texture classes.'}
  # No download checksums to find beside the code. Locating the code makes
  # TFDS 4.9 import importlib_resources, which it does not install.
  code_path = None
  # The classes, examples per split, root seed and drawing function
  # (label, rng) -> uint8 image.
  class_names = CLASS_NAMES
  num_examples = NUM_EXAMPLES
  seed = _SEED
  draw = staticmethod(draw_example)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=sys.modules[type(self).__module__].__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3),
                                         encoding_format='jpeg'),
            'label': tfds.features.ClassLabel(names=self.class_names),
        }),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split)
            for split in self.num_examples}

  def _generate_examples(self, split: str):
    for index in range(self.num_examples[split]):
      rng = np.random.default_rng([self.seed, _SPLIT_SEEDS[split], index])
      label = index % len(self.class_names)
      image = self.draw(label, rng)
      quality = int(rng.integers(75, 96))
      jpeg = tf.io.encode_jpeg(image, quality=quality).numpy()
      yield index, {'image': jpeg, 'label': label}
