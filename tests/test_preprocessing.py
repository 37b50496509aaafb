"""Tests of inception/preprocessing.py: crop windows, eval crops and multi-crop geometry."""

import numpy as np
import pytest
import tensorflow as tf

from inception import preprocessing

# The released crop (configs/default.py).
CROP = preprocessing.InceptionCrop(
    min_object_covered=0.1, aspect_ratio_range=(0.75, 1.33),
    area_range=(0.05, 1.0), max_attempts=100)


def _coordinate_png(height: int, width: int) -> bytes:
  """A lossless image whose red channel is 2x and green channel 2y (mod 256)."""
  y, x = np.mgrid[0:height, 0:width]
  image = np.stack([(2 * x) % 256, (2 * y) % 256, np.full_like(x, 7)], -1)
  return tf.io.encode_png(image.astype(np.uint8)).numpy()


def _smooth_image(height: int, width: int) -> np.ndarray:
  y, x = np.mgrid[0:height, 0:width]
  return np.stack([x * 255 // width, y * 255 // height,
                   np.full_like(x, 128)], -1).astype(np.uint8)


def test_inception_crop_window_obeys_its_ranges():
  shape = tf.constant([375, 500, 3])
  areas = []
  for i in range(200):
    y, x, h, w = (int(v) for v in preprocessing.inception_crop_window(
        shape, tf.constant([3, i], tf.int64), CROP))
    assert 0 <= y and y + h <= 375 and 0 <= x and x + w <= 500
    areas.append(h * w / (375 * 500))
    if h * w < 375 * 500:  # Not the whole-image fallback.
      assert 0.75 - 0.02 <= w / h <= 1.33 + 0.02
  assert min(areas) >= 0.05 - 1e-3 and max(areas) <= 1.0
  # The draw covers the range, rather than always cropping the same way.
  assert min(areas) < 0.2 and max(areas) > 0.8


def test_inception_crop_window_is_a_function_of_the_seed():
  shape = tf.constant([300, 400, 3])
  draw = lambda s: [int(v) for v in preprocessing.inception_crop_window(
      shape, tf.constant(s, tf.int64), CROP)]
  assert draw([1, 2]) == draw([1, 2])
  assert len({tuple(draw([1, i])) for i in range(10)}) > 5


def _unpack(pixels, size):
  h, w = (int(v) for v in size)
  return pixels.numpy()[:h * w * 3].reshape(h, w, 3), pixels.numpy()[h * w * 3:]


def test_train_preprocessing_decodes_the_same_window_from_jpeg_and_png():
  image = _smooth_image(120, 160)
  jpeg = tf.io.encode_jpeg(image, quality=98).numpy()
  png = tf.io.encode_png(image).numpy()
  seed = tf.constant([5, 6], tf.int64)
  train = lambda data, jpeg: preprocessing.preprocess_for_train(
      data, seed, image_size=48, crop=CROP, jpeg=jpeg, canvas_size=140)
  (pixels_jpeg, size_jpeg), (pixels_png, size_png) = (train(jpeg, True),
                                                      train(png, False))
  # The canvas holds any crop: the window itself, unresized, then zeros.
  y, x, h, w = (int(v) for v in preprocessing.inception_crop_window(
      tf.constant([120, 160, 3]), seed, CROP))
  assert (h, w) != (48, 48)
  assert pixels_jpeg.dtype == tf.uint8 and pixels_jpeg.shape == (140**2 * 3,)
  assert size_jpeg.dtype == tf.int32
  assert size_jpeg.numpy().tolist() == size_png.numpy().tolist() == [h, w]
  crop_png, rest = _unpack(pixels_png, size_png)
  np.testing.assert_array_equal(crop_png, image[y:y + h, x:x + w])
  assert rest.size and not rest.any()
  crop_jpeg, _ = _unpack(pixels_jpeg, size_jpeg)
  np.testing.assert_allclose(crop_jpeg.astype(float), crop_png.astype(float),
                             atol=6)


def test_train_crops_larger_than_the_canvas_are_resized_on_the_host():
  image = _smooth_image(120, 160)
  png = tf.io.encode_png(image).numpy()
  seed = tf.constant([5, 6], tf.int64)
  y, x, h, w = (int(v) for v in preprocessing.inception_crop_window(
      tf.constant([120, 160, 3]), seed, CROP))
  canvas = int(np.sqrt(h * w - 1))  # One pixel too small.
  assert canvas >= 48
  pixels, size = preprocessing.preprocess_for_train(
      png, seed, image_size=48, crop=CROP, jpeg=False, canvas_size=canvas)
  assert size.numpy().tolist() == [48, 48]
  expected = tf.compat.v1.image.resize_bilinear(
      image[np.newaxis, y:y + h, x:x + w], [48, 48])[0]
  out, _ = _unpack(pixels, size)
  np.testing.assert_array_equal(out, np.floor(expected.numpy() + 0.5))
  with pytest.raises(ValueError, match='canvas_size 40 is below image_size'):
    preprocessing.preprocess_for_train(png, seed, image_size=48, crop=CROP,
                                       jpeg=False, canvas_size=40)


def test_augment_draws_are_uniforms_of_the_seed():
  a = preprocessing.augment_draws(tf.constant([1, 2], tf.int64)).numpy()
  b = preprocessing.augment_draws(tf.constant([1, 3], tf.int64)).numpy()
  assert a.shape == (3,) and np.all((a >= 0) & (a < 1))
  assert not np.array_equal(a, b)


def test_central_crop_is_tf_slim_per_axis_crop():
  image = _coordinate_png(100, 80)
  # fraction 0.875: start = int((100 - 87.5) / 2) = 6, size 88; x: 5 and 70.
  assert [int(v) for v in preprocessing.central_crop_window(
      tf.constant([100, 80, 3]), 0.875)] == [6, 5, 88, 70]
  # Output size = crop size makes the resize the identity.
  out = preprocessing.preprocess_for_eval(
      image, image_size=88, mode='central', fraction=0.875, jpeg=False)
  assert out.shape == (88, 88, 3)
  # Width 70 stretched to 88 keeps the first column; height is unscaled.
  assert out[0, 0, 0] == 2 * 5 and out[0, 0, 1] == 2 * 6
  assert out[87, 0, 1] == 2 * (6 + 87)


def test_resize_shorter_then_centre_crop():
  # Shorter side 64 -> int(56 / 0.875) = 64: no resize, centre 56 crop of a
  # 64 x 96 image starts at (4, 20).
  image = _coordinate_png(64, 96)
  out = preprocessing.preprocess_for_eval(
      image, image_size=56, mode='resize_shorter', fraction=0.875, jpeg=False)
  assert out.shape == (56, 56, 3)
  assert out[0, 0, 0] == 2 * 20 and out[0, 0, 1] == 2 * 4
  assert out[55, 55, 0] == 2 * 75 and out[55, 55, 1] == 2 * 59


def test_view_counts_and_scales():
  assert preprocessing.num_views('single') == 1
  assert preprocessing.num_views('12') == 12
  assert preprocessing.num_views('144') == 144
  assert preprocessing.multi_crop_scales(224, '144') == (256, 288, 320, 352)
  assert preprocessing.multi_crop_scales(299, '144') == (342, 384, 427, 470)
  assert preprocessing.multi_crop_scales(299, '12') == (342,)
  with pytest.raises(ValueError):
    preprocessing.multi_crop_scales(299, '10')


def test_twelve_views_geometry():
  # image_size 35: scale 40; a 40 x 60 image needs no resize at that scale.
  views = preprocessing.multi_crop(_coordinate_png(40, 60), image_size=35,
                                   views='12').numpy()
  assert views.shape == (12, 35, 35, 3) and views.dtype == np.uint8
  # Centre square starts at x = 10; crops at (0,0), (0,5), (5,0), (5,5), (2,2).
  corners = [(0, 0), (0, 5), (5, 0), (5, 5), (2, 2)]
  for k, (cy, cx) in enumerate(corners):
    view, mirror = views[2 * k], views[2 * k + 1]
    assert view[0, 0, 0] == 2 * (10 + cx) and view[0, 0, 1] == 2 * cy
    np.testing.assert_array_equal(mirror, view[:, ::-1])
  # The whole 40 x 40 square, resized to 35, spans the square.
  whole = views[10].astype(int)
  assert whole[0, 0, 0] == 2 * 10 and whole[0, 0, 1] == 0
  assert abs(whole[34, 34, 0] - 2 * 49) <= 4 and abs(whole[34, 34, 1] - 78) <= 4
  np.testing.assert_array_equal(views[11], views[10][:, ::-1])


def test_144_views_geometry():
  views = preprocessing.multi_crop(_coordinate_png(40, 60), image_size=35,
                                   views='144').numpy()
  assert views.shape == (144, 35, 35, 3)
  # Scale 0 (no resize): left, centre and right squares start at x = 0, 10, 20.
  for square, x0 in enumerate((0, 10, 20)):
    top_left = views[square * 12]
    assert top_left[0, 0, 0] == 2 * x0 and top_left[0, 0, 1] == 0
  # The 12 views are the centre square of the first scale.
  np.testing.assert_array_equal(
      views[12:24], preprocessing.multi_crop(
          _coordinate_png(40, 60), image_size=35, views='12').numpy())
  # A portrait image takes its squares from top to bottom.
  portrait = preprocessing.multi_crop(_coordinate_png(60, 40), image_size=35,
                                      views='144').numpy()
  for square, y0 in enumerate((0, 10, 20)):
    assert portrait[square * 12][0, 0, 1] == 2 * y0
    assert portrait[square * 12][0, 0, 0] == 0
