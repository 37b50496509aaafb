"""The harder built-in dataset: filled shapes among clutter, as TFDS.

`config.dataset = 'builtin_hard'`. The built-in dataset
(inception/builtin_dataset.py) is learnt in a few epochs: its class fills the
image. Here a class is a pair, a shape and a fill, and only one or two
objects carry it, among clutter and on a textured background, so a
network must find the objects, tell their outline and read the texture
inside them:

- 25 classes: five shapes (disc, square, diamond, upward triangle, plus)
  times five fills (solid, horizontal stripes, vertical stripes,
  checkerboard, outline only), named `<shape>_<fill>`.
- 240 training and 48 validation images a class (6,000 and 1,200), of 100
  to 200 pixels with aspect ratios 0.67 to 1.5, like the built-in dataset.
- Each image: a background of a random colour and brightness ramp with a
  faint grating (random angle and period, in the range of the fills'
  periods); two to four distractors drawn first (thick line segments and
  elongated ellipses, random colours); then one or two objects of the
  class, alike (same shape, fill and colours), each 14 to 22% of the
  shorter side in radius, inside the image and apart. Stripes and checks
  are the object's colour over a second colour midway to the background,
  with a period of 0.45 to 0.6 of the radius; an outline is a border of a
  quarter of the radius. Pixel noise and JPEG quality vary as in the
  built-in dataset.
- Left-right flips keep the class (every shape and fill is symmetric about a
  vertical axis, up to the stripes' phase); the objects cover 3 to 18% of
  the image (5th to 95th percentile of 300 draws; 7.6% in the median), so
  training crops should keep most of it (the configs that use this dataset
  set `crop_area_range` to (0.35, 1)).

The images are generated offline from fixed seeds, the same on every
machine, on first use, and written as JPEG TFRecords under the TFDS data
directory.
"""

import itertools

import numpy as np
import tensorflow_datasets as tfds

from inception import builtin_dataset

SHAPES = ('disc', 'square', 'diamond', 'triangle', 'plus')
FILLS = ('solid', 'horizontal_stripes', 'vertical_stripes', 'checkerboard',
         'outline')
CLASS_NAMES = tuple(f'{shape}_{fill}'
                    for shape, fill in itertools.product(SHAPES, FILLS))
NUM_EXAMPLES = {'train': 6000, 'validation': 1200}
# Root seed of the generator; changing it changes the dataset (bump VERSION).
_SEED = 20170204


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
  """Pixel-centre coordinates [h, 1] and [1, w]."""
  return (np.arange(h, dtype=np.float32)[:, None] + 0.5,
          np.arange(w, dtype=np.float32)[None, :] + 0.5)


def _fill_mask(fill: str, dy: np.ndarray, dx: np.ndarray, period: float,
               phase: np.ndarray) -> np.ndarray:
  """Where an object's own colour goes, inside its shape (True elsewhere)."""
  if fill in ('solid', 'outline'):
    return np.ones(np.broadcast_shapes(dy.shape, dx.shape), bool)
  rows = np.sin(2 * np.pi * dy / period + phase[0]) > 0
  columns = np.sin(2 * np.pi * dx / period + phase[1]) > 0
  if fill == 'horizontal_stripes':
    return np.broadcast_to(rows, np.broadcast_shapes(dy.shape, dx.shape))
  if fill == 'vertical_stripes':
    return np.broadcast_to(columns, np.broadcast_shapes(dy.shape, dx.shape))
  return rows == columns  # checkerboard


def _object_masks(label: int, dy: np.ndarray, dx: np.ndarray, r: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """(inside the object, the object's colour there) at offsets (dy, dx)."""
  shape, fill = CLASS_NAMES[label].split('_', 1)
  label_of_shape = builtin_dataset.CLASS_NAMES.index(shape)
  inside = builtin_dataset.shape_mask(label_of_shape, dy, dx, np.float32(r))
  if fill == 'outline':
    # The shape less the same shape shrunk to 0.72 of its radius (its
    # centre kept): a border about a quarter of the radius wide.
    shrunk = builtin_dataset.shape_mask(label_of_shape, dy, dx,
                                        np.float32(0.72 * r))
    inside &= ~shrunk
  period = r * rng.uniform(0.45, 0.6)
  phase = rng.uniform(0, 2 * np.pi, size=2)
  return inside, _fill_mask(fill, dy, dx, period, phase)


def _place(radii: np.ndarray, h: int, w: int,
           rng: np.random.Generator) -> list[tuple[float, float]]:
  """Centres for objects of these radii, inside the image, apart."""
  centres: list[tuple[float, float]] = []
  for r in radii:
    for _ in range(200):
      y, x = rng.uniform(r + 1, h - r - 1), rng.uniform(r + 1, w - r - 1)
      if all((y - cy)**2 + (x - cx)**2 > (1.15 * (r + cr))**2
             for (cy, cx), cr in zip(centres, radii)):
        break
    centres.append((y, x))
  return centres


def _distractor(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
  """[h, w] mask of a thick line segment or an elongated ellipse."""
  y, x = _grid(h, w)
  short = min(h, w)
  cy, cx = rng.uniform(0, h), rng.uniform(0, w)
  angle = rng.uniform(0, np.pi)
  u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
  v = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
  if rng.random() < 0.5:  # a segment
    half_length = short * rng.uniform(0.1, 0.3)
    return (np.abs(u) <= half_length) & (np.abs(v) <= short * rng.uniform(0.01, 0.03))
  a = short * rng.uniform(0.06, 0.14)
  b = a / rng.uniform(2.0, 3.5)
  return (u / a)**2 + (v / b)**2 <= 1


def draw_example(label: int, rng: np.random.Generator) -> np.ndarray:
  """Draws one uint8 [h, w, 3] image of class `label` (module docstring).

  Args:
    label: class index into CLASS_NAMES.
    rng: the example's random generator.

  Returns:
    The image; its size, colours and layout come from `rng`.
  """
  h, w = builtin_dataset.image_size(rng)
  background = rng.uniform(0, 255, size=3).astype(np.float32)
  image = (background[:, None, None]
           + builtin_dataset.background_ramp(h, w, rng)).astype(np.float32)
  # A faint grating over the background, periods like the fills'.
  y, x = _grid(h, w)
  angle = rng.uniform(0, np.pi)
  period = min(h, w) * rng.uniform(0.04, 0.09)
  grating = np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
  image += grating[None] * rng.uniform(-1, 1, size=3).astype(
      np.float32)[:, None, None] * np.float32(rng.uniform(4, 12))
  for _ in range(int(rng.integers(2, 5))):
    mask = _distractor(h, w, rng)
    colour = rng.uniform(0, 255, size=3).astype(np.float32)[:, None, None]
    image = np.where(mask[None], colour, image)
  # The class's objects: one colour against the background, a second one
  # midway between them for the fills' gaps.
  colour = builtin_dataset.contrasting_colour(background, rng).astype(np.float32)
  gap = 0.45 * colour + 0.55 * background
  count = int(rng.integers(1, 3))
  radii = min(h, w) * rng.uniform(0.14, 0.22, size=count)
  for (cy, cx), r in zip(_place(radii, h, w, rng), radii):
    top, left = int(max(cy - r - 1, 0)), int(max(cx - r - 1, 0))
    bottom, right = int(min(cy + r + 2, h)), int(min(cx + r + 2, w))
    dy, dx = y[top:bottom] - cy, x[:, left:right] - cx
    inside, own = _object_masks(label, dy, dx, r, rng)
    paint = np.where(own[None], colour[:, None, None], gap[:, None, None])
    window = image[:, top:bottom, left:right]
    image[:, top:bottom, left:right] = np.where(inside[None], paint, window)
  return builtin_dataset.add_noise_and_quantise(image, rng)


class BuiltinHardShapes(builtin_dataset.BuiltinShapes, skip_registration=True):
  """TFDS builder of the harder built-in dataset (module docstring)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': '25 shape-and-fill classes among clutter.'}
  class_names = CLASS_NAMES
  num_examples = NUM_EXAMPLES
  seed = _SEED
  draw = staticmethod(draw_example)
