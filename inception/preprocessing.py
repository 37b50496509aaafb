"""Image preprocessing of the paper's networks: the host's share, in TensorFlow.

Every function takes the encoded image bytes and returns uint8 pixels. The
input pipeline finishes them on the accelerator (input_pipeline.py), where
that work is free: the training resize, the flip, the colour distortion and
the scale to the networks' [-1, 1].

Training (the released TF-slim recipe): an Inception crop drawn with
`sample_distorted_bounding_box` (at least 10% of the image covered, aspect
0.75 to 1.33, 5% to 100% of the area, 100 attempts), resized to the square
input without keeping the aspect, and a random left-right flip. Only the crop
window of a JPEG is decoded (`decode_and_crop_jpeg`); other formats are
decoded whole and sliced. The host sends the crop itself, packed in a buffer
of canvas_size**2 pixels, and the device resizes it (bilinear, TF1's
sampling): the resize would cost the host about a fifth of the decoding.
A crop of more pixels is resized on the host instead, to uint8, and the
device's resize of an image_size square is then the identity. The random
left-right flip and TF-slim's fast-mode colour distortion (brightness delta
up to 32/255, then saturation x0.5 to x1.5) are drawn here per example and
applied on the device. All randomness is stateless, drawn from per-example
seeds, so a stream is reproducible from its position alone.

Evaluation:
  * 'central': TF-slim's `central_crop(fraction)` of each side of the original
    image (the aspect is not kept), then a bilinear resize to the input size.
  * 'resize_shorter': the shorter side resized to image_size / fraction
    (bicubic, antialiased), then the centre image_size square.
  * Multi-crop views (GoogLeNet's protocol, which the paper cites):
      144 = 4 scales x 3 squares x 6 crops x 2 mirrors. The shorter side is
        resized to 256, 288, 320 and 352 pixels for a 224 input, scaled by
        image_size / 224 for other inputs (342, 384, 427, 470 at 299). The
        left, centre and right squares of that side (top, centre, bottom for a
        portrait image) each give their 4 corner and centre image_size crops
        and the whole square resized to image_size, each also mirrored.
      12 = the first scale's centre square: its 5 crops and the whole square,
        each also mirrored. The paper does not define its 12 crops; this is
        our reading, the subset of the 144 views at one scale and square. At
        299 that scale is 342, about 299 / 0.875, so its centre crop is close
        to the 'resize_shorter' view.
    Views are ordered (scale, square, crop, mirror), the crop order being
    top-left, top-right, bottom-left, bottom-right, centre, whole square, and
    mirror 0 the unflipped view.

Bilinear resizes use TensorFlow 1's sampling (no half-pixel centres, no
antialiasing), the one the released networks were trained and evaluated with.
"""

import dataclasses

import tensorflow as tf

# Shorter sides of GoogLeNet's four multi-crop scales, for a 224 input.
_GOOGLENET_SCALES = (256, 288, 320, 352)
_GOOGLENET_INPUT = 224
# Square offsets along the longer side, and crop offsets inside a square, as
# fractions of the free space: (left or top, centre, right or bottom).
_SQUARES = {'144': (0.0, 0.5, 1.0), '12': (0.5,)}
_CROPS = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.5, 0.5), None)
VIEWS = ('single', '12', '144')


@dataclasses.dataclass(frozen=True)
class InceptionCrop:
  """Parameters of `sample_distorted_bounding_box` for the training crop.

  The released values are 0.1, (0.75, 1.33), (0.05, 1.0) and 100
  (configs/default.py).
  """
  min_object_covered: float
  aspect_ratio_range: tuple[float, float]
  area_range: tuple[float, float]
  max_attempts: int


def num_views(views: str) -> int:
  """Number of images one example becomes under `views` ('single', '12', '144')."""
  if views == 'single':
    return 1
  return len(multi_crop_scales(_GOOGLENET_INPUT, views)) * len(
      _SQUARES[views]) * len(_CROPS) * 2


def multi_crop_scales(image_size: int, views: str) -> tuple[int, ...]:
  """Shorter-side lengths of the multi-crop scales for an image_size input.

  Args:
    image_size: side of the square network input.
    views: '12' or '144'.

  Returns:
    The resized shorter sides, GoogLeNet's scaled by image_size / 224.
  """
  if views not in _SQUARES:
    raise ValueError(f'views must be one of {VIEWS}, got {views!r}')
  scales = _GOOGLENET_SCALES if views == '144' else _GOOGLENET_SCALES[:1]
  return tuple(round(s * image_size / _GOOGLENET_INPUT) for s in scales)


def _to_uint8(image: tf.Tensor) -> tf.Tensor:
  """Rounds a bilinear resize's float pixels (within [0, 255]) to uint8."""
  return tf.cast(image + 0.5, tf.uint8)


def _resize_bilinear(image: tf.Tensor, size) -> tf.Tensor:
  """TensorFlow 1's bilinear resize of an [h, w, c] image to float32."""
  # The kernel is slower on uint8 input than a cast and a float resize
  # together.
  return tf.raw_ops.ResizeBilinear(
      images=tf.cast(image, tf.float32)[tf.newaxis], size=size,
      align_corners=False, half_pixel_centers=False)[0]


def decode_window(image_bytes: tf.Tensor, window_fn, *,
                  jpeg: bool) -> tf.Tensor:
  """Decodes the window of an image that `window_fn` picks from its shape.

  Args:
    image_bytes: scalar string, the encoded image.
    window_fn: maps the int32 shape [h, w, c] to (offset_y, offset_x, height,
      width) int32 scalars.
    jpeg: the dataset's images are all JPEGs (TFDS records the format), so
      only the window is decoded. Otherwise any of JPEG, PNG, GIF, BMP and
      WebP is decoded whole, then sliced. A static choice: choosing per image
      in the graph costs about a tenth of the decoding.

  Returns:
    uint8 [height, width, 3].
  """
  if jpeg:
    window = tf.stack(window_fn(tf.io.extract_jpeg_shape(image_bytes)))
    return tf.io.decode_and_crop_jpeg(image_bytes, window, channels=3)
  image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
  y, x, h, w = window_fn(tf.shape(image))
  return image[y:y + h, x:x + w]


def inception_crop_window(shape: tf.Tensor, seed: tf.Tensor,
                          crop: InceptionCrop):
  """Draws the training crop window of an image of the given shape.

  Args:
    shape: int32 [h, w, c] of the whole image.
    seed: int64 [2], the stateless seed of this draw.
    crop: the distortion parameters.

  Returns:
    (offset_y, offset_x, height, width), int32 scalars.
  """
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
      min_object_covered=crop.min_object_covered,
      aspect_ratio_range=crop.aspect_ratio_range, area_range=crop.area_range,
      max_attempts=crop.max_attempts, use_image_if_no_bounding_boxes=True)
  return begin[0], begin[1], size[0], size[1]


def preprocess_for_train(image_bytes: tf.Tensor, seed: tf.Tensor, *,
                         image_size: int, crop: InceptionCrop, jpeg: bool,
                         canvas_size: int) -> tuple[tf.Tensor, tf.Tensor]:
  """The host's share of the training image: the Inception crop, packed.

  The device resizes it to the square input (input_pipeline.py), then flips.

  Args:
    image_bytes: scalar string, the encoded image.
    seed: int64 [2], this example's stateless seed for the crop.
    image_size: side of the square network input.
    crop: parameters of the Inception crop.
    jpeg: all images of the dataset are JPEGs (see decode_window).
    canvas_size: the packed crop holds canvas_size**2 pixels, at least
      image_size**2.

  Returns:
    (pixels, size): uint8 [canvas_size**2 * 3], the crop's pixels in row-major
    order then zeros, and int32 [2], its height and width. The crop is the
    window itself if it has at most canvas_size**2 pixels, otherwise the
    window resized here to image_size x image_size.
  """
  if canvas_size < image_size:
    raise ValueError(f'canvas_size {canvas_size} is below image_size '
                     f'{image_size}; use at least {image_size}')
  image = decode_window(
      image_bytes, lambda shape: inception_crop_window(shape, seed, crop),
      jpeg=jpeg)
  hw = tf.shape(image)[:2]
  image = tf.cond(
      hw[0] * hw[1] <= canvas_size**2, lambda: image,
      lambda: _to_uint8(_resize_bilinear(image, [image_size, image_size])))
  pixels = tf.reshape(image, [-1])
  # A one-dimensional pad is a copy and a fill; padding the image in two
  # dimensions costs about twenty times more.
  pixels = tf.pad(pixels, [[0, canvas_size**2 * 3 - tf.size(pixels)]])
  return tf.ensure_shape(pixels, [canvas_size**2 * 3]), tf.shape(image)[:2]


def augment_draws(seed: tf.Tensor) -> tf.Tensor:
  """One example's flip and colour distortion, applied later on the device.

  Args:
    seed: int64 [2], this example's stateless seed (not the crop's).

  Returns:
    float32 [3] uniforms in [0, 1): the image is mirrored if the first is
    below 0.5; the second and third give the brightness delta and saturation
    factor of TF-slim's fast-mode colour distortion (input_pipeline.py).
  """
  return tf.random.stateless_uniform([3], seed)


def central_crop_window(shape: tf.Tensor, fraction: float):
  """TF-slim's central crop: `fraction` of each side, centred.

  Args:
    shape: int32 [h, w, c] of the whole image.
    fraction: kept fraction of the height and of the width.

  Returns:
    (offset_y, offset_x, height, width), int32 scalars.
  """
  sides = tf.cast(shape[:2], tf.float64)
  start = tf.cast((sides - sides * fraction) / 2, tf.int32)
  size = shape[:2] - 2 * start
  return start[0], start[1], size[0], size[1]


def preprocess_for_eval(image_bytes: tf.Tensor, *, image_size: int,
                        mode: str, fraction: float, jpeg: bool) -> tf.Tensor:
  """One centred evaluation view.

  Args:
    image_bytes: scalar string, the encoded image.
    image_size: side of the square output.
    mode: 'central' (TF-slim) or 'resize_shorter' (shorter side to
      image_size / fraction, then the centre square).
    fraction: the kept fraction of the image (0.875 for both conventions).
    jpeg: all images of the dataset are JPEGs (see decode_window).

  Returns:
    uint8 [image_size, image_size, 3].
  """
  if mode == 'central':
    image = decode_window(image_bytes,
                          lambda shape: central_crop_window(shape, fraction),
                          jpeg=jpeg)
    return _to_uint8(_resize_bilinear(image, [image_size, image_size]))
  if mode != 'resize_shorter':
    raise ValueError(f"eval crop must be 'central' or 'resize_shorter', "
                     f'got {mode!r}')
  image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
  image = _resize_shorter(image, int(image_size / fraction), method='bicubic')
  # Bicubic overshoots; clip before rounding.
  image = tf.clip_by_value(_centre_square(image, image_size), 0.0, 255.0)
  return _to_uint8(image)


def _resize_shorter(image: tf.Tensor, side: int, method: str) -> tf.Tensor:
  """Resizes so the shorter side is `side`, keeping the aspect (float32)."""
  hw = tf.cast(tf.shape(image)[:2], tf.float64)
  new_hw = tf.cast(tf.round(hw * side / tf.reduce_min(hw)), tf.int32)
  new_hw = tf.maximum(new_hw, side)
  if method == 'bilinear':
    return _resize_bilinear(image, new_hw)
  return tf.image.resize(image, new_hw, method=method, antialias=True)


def _centre_square(image: tf.Tensor, side: int) -> tf.Tensor:
  """The centre side x side crop of an image at least that large."""
  hw = tf.shape(image)[:2]
  y, x = (hw[0] - side) // 2, (hw[1] - side) // 2
  return image[y:y + side, x:x + side]


def multi_crop(image_bytes: tf.Tensor, *, image_size: int,
               views: str) -> tf.Tensor:
  """The paper's 12 or 144 evaluation views of one image (module docstring).

  Args:
    image_bytes: scalar string, the encoded image.
    image_size: side of each square view.
    views: '12' or '144'.

  Returns:
    uint8 [num_views(views), image_size, image_size, 3], ordered (scale,
    square, crop, mirror).
  """
  image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
  out = []
  for side in multi_crop_scales(image_size, views):
    resized = _to_uint8(_resize_shorter(image, side, method='bilinear'))
    hw = tf.shape(resized)[:2]
    for position in _SQUARES[views]:
      # Only the longer axis has room; the other offset is 0.
      y = tf.cast(tf.cast(hw[0] - side, tf.float32) * position, tf.int32)
      x = tf.cast(tf.cast(hw[1] - side, tf.float32) * position, tf.int32)
      square = resized[y:y + side, x:x + side]
      free = side - image_size
      for offsets in _CROPS:
        if offsets is None:
          view = _to_uint8(_resize_bilinear(square, [image_size, image_size]))
        else:
          cy, cx = int(free * offsets[0]), int(free * offsets[1])
          view = square[cy:cy + image_size, cx:cx + image_size]
        out += [view, tf.reverse(view, axis=[1])]
  return tf.stack(out)
