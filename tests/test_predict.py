"""Tests of inception/predict.py: the command line on converted weights, views.

The tiny network's classifier is set from the pooled features of two test
images, so the bright image's class is 'tabby' (281) and the dark one's
'Granny Smith' (948): a prediction that does not come from its own image's
pixels, preprocessed and scaled as evaluation does, gets the class or the
probability wrong.
"""

import functools
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from inception import builtin_dataset
from inception import convert
from inception import models
from inception import predict
from inception import preprocessing
from inception import weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(name='inception_resnet_v1', repeats=(1, 1, 1),
            width_multiplier=0.25)
BRIGHT, DARK = 281, 948  # 'tabby', 'Granny Smith'
# Classes of fixed logits, behind the image's class: the rest of the top 5.
RUNNERS_UP = {1: 3.0, 2: 2.5, 207: 2.0, 409: 1.5}
MARGIN = 12.0  # logit of the image's class; the other image's gets -MARGIN
TOLERANCE = 1e-4  # on probabilities, float32 network


def _random_variables(model, image_size: int, seed: int = 0) -> dict:
  """He-scaled kernels and BatchNorm at its initial statistics, as numpy."""
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, image_size, image_size, 3)),
      train=False))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      std = np.sqrt(2.0 / np.prod(leaf.shape[:-1]))
      return (std * rng.standard_normal(leaf.shape)).astype(np.float32)
    return np.full(leaf.shape, 1.0 if name in ('var', 'scale') else 0.0,
                   np.float32)
  return jax.tree_util.tree_map_with_path(draw, shapes)


def _pooled_features(model, variables, images: np.ndarray) -> np.ndarray:
  """The classifier's input for float images in [-1, 1]."""
  captured = []

  def interceptor(next_fun, args, kwargs, context):
    if context.module.name == 'logits' and context.method_name == '__call__':
      captured.append(args[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    model.apply(variables, jnp.asarray(images), train=False)
  return np.asarray(captured[0], np.float64)


def _scaled(pixels: tf.Tensor) -> np.ndarray:
  """uint8 pixels to the networks' [-1, 1], written out independently."""
  return pixels.numpy().astype(np.float32) / 127.5 - 1.0


def _eval_view(path: str, image_size: int) -> np.ndarray:
  """The converted weights' single view: TF-slim's central crop of 0.875."""
  data = tf.constant(open(path, 'rb').read())
  return _scaled(preprocessing.preprocess_for_eval(
      data, image_size=image_size, mode='central', fraction=0.875,
      jpeg=bool(tf.io.is_jpeg(data))))


def _write_image(path: str, level: int, seed: int, shape=(75, 75)) -> str:
  rng = np.random.default_rng(seed)
  pixels = np.clip(level + rng.normal(0, 20, shape + (3,)), 0, 255)
  pixels = tf.constant(pixels.astype(np.uint8))
  data = (tf.io.encode_png(pixels) if path.endswith('.png')
          else tf.io.encode_jpeg(pixels, quality=95))
  with open(path, 'wb') as f:
    f.write(data.numpy())
  return path


def _softmax(logits: np.ndarray) -> np.ndarray:
  e = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  """Converted 1000-class weights, the test images and their probabilities."""
  root = tmp_path_factory.mktemp('predict')
  images = {'bright': _write_image(str(root / 'bright.png'), 200, 0),
            'dark': _write_image(str(root / 'dark.jpg'), 50, 1, (75, 90))}
  kwargs = dict(TINY, num_classes=1000)
  model = models.create_model(**kwargs)
  size = predict.CONVERTED_IMAGE_SIZE
  variables = _random_variables(model, size)
  features = _pooled_features(
      model, variables, np.stack([_eval_view(p, size) for p in images.values()]))
  bright, dark = features
  # A linear score, +MARGIN at the bright image's features and -MARGIN at
  # the dark one's, decides between the two classes.
  direction = (bright - dark) * 2 * MARGIN / np.sum((bright - dark)**2)
  offset = -direction @ (bright + dark) / 2
  kernel = np.zeros(variables['params']['logits']['kernel'].shape, np.float64)
  bias = np.zeros(kernel.shape[-1], np.float64)
  kernel[:, BRIGHT], bias[BRIGHT] = direction, offset
  kernel[:, DARK], bias[DARK] = -direction, -offset
  for i, logit in RUNNERS_UP.items():
    bias[i] = logit
  variables['params']['logits'] = {'kernel': kernel.astype(np.float32),
                                   'bias': bias.astype(np.float32)}
  directory = str(root / 'weights')
  convert.save_converted(directory, variables, kwargs, {'format': 'test'})
  probabilities = _softmax(features @ kernel + bias)
  return {'dir': directory, 'images': images, 'root': root,
          'probabilities': dict(zip(images, probabilities))}


def _run(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'inception.predict', *args],
                        cwd=REPO, capture_output=True, text=True, timeout=600)


def _stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
  return [line for line in result.stderr.splitlines() if line.strip()]


def test_classifier_separates_the_images(converted):
  p = converted['probabilities']
  assert p['bright'].argmax() == BRIGHT and p['bright'][BRIGHT] > 0.9
  assert p['dark'].argmax() == DARK and p['dark'][DARK] > 0.9


def test_command_line_names_classes_and_reports_bad_files(converted):
  images = converted['images']
  corrupt = converted['root'] / 'corrupt.jpg'
  corrupt.write_bytes(b'\xff\xd8 this is not a JPEG')
  missing = str(converted['root'] / 'missing.png')
  result = _run(f'--checkpoint={converted["dir"]}', images['bright'],
                str(corrupt), missing, images['dark'])
  assert result.returncode == 1, result.stderr
  errors = _stderr_lines(result)
  assert len(errors) == 2, result.stderr
  assert errors[0].startswith(f'{corrupt}: not a decodable image')
  assert errors[1] == f'{missing}: cannot read it (No such file or directory)'
  lines = result.stdout.splitlines()
  assert len(lines) == 12  # two images, each its path and 5 classes
  assert lines[0] == images['bright'] and lines[6] == images['dark']
  assert lines[1].split()[1:] == ['281', 'tabby', '(n02123045)']
  assert lines[7].split()[1:] == ['948', 'Granny', 'Smith', '(n07742313)']
  expected_rest = [['1', 'goldfish', '(n01443537)'],
                   ['2', 'great', 'white', 'shark', '(n01484850)'],
                   ['207', 'golden', 'retriever', '(n02099601)'],
                   ['409', 'analog', 'clock', '(n02708093)']]
  assert [line.split()[1:] for line in lines[2:6]] == expected_rest
  assert [line.split()[1:] for line in lines[8:12]] == expected_rest
  shown = float(lines[1].split()[0].rstrip('%')) / 100
  assert shown == pytest.approx(converted['probabilities']['bright'][BRIGHT],
                                abs=1e-4)


def test_json_output_and_exit_code_zero(converted):
  images = converted['images']
  result = _run(f'--checkpoint={converted["dir"]}', '--json', '--top=3',
                images['dark'], images['bright'])
  assert result.returncode == 0, result.stderr
  assert _stderr_lines(result) == []
  records = [json.loads(line) for line in result.stdout.splitlines()]
  assert [r['image'] for r in records] == [images['dark'], images['bright']]
  for record, key in zip(records, ('dark', 'bright')):
    expected = converted['probabilities'][key]
    top = record['top']
    assert [t['class'] for t in top] == [BRIGHT if key == 'bright' else DARK,
                                         1, 2]
    assert set(top[0]) == {'class', 'name', 'synset', 'probability'}
    np.testing.assert_allclose([t['probability'] for t in top],
                               expected[[t['class'] for t in top]],
                               atol=TOLERANCE)
  assert records[0]['top'][0]['name'] == 'Granny Smith'
  assert records[0]['top'][0]['synset'] == 'n07742313'
  assert records[1]['top'][0]['name'] == 'tabby'
  assert records[1]['top'][1]['name'] == 'goldfish'


def test_directory_without_weights_fails_in_one_line(tmp_path, converted):
  result = _run(f'--checkpoint={tmp_path}', converted['images']['bright'])
  assert result.returncode == 1
  assert 'Traceback' not in result.stderr
  assert _stderr_lines(result) == [
      f"{tmp_path} is neither a run's workdir (with checkpoints/) nor "
      'converted weights (with model.json); pass a --workdir of main.py or '
      'an --output of python -m inception.convert']
  assert result.stdout == ''


# ---- A run's settings and multi-crop views, in process ------------------------


@functools.cache
def _run_weights() -> weights.Loaded:
  """10-class weights as a tiny run on the built-in dataset would load them."""
  model = models.create_model(**TINY, num_classes=10)
  variables = _random_variables(model, 75, seed=2)
  rng = np.random.default_rng(3)
  variables['params']['logits'] = {
      'kernel': rng.standard_normal(
          variables['params']['logits']['kernel'].shape).astype(np.float32),
      'bias': np.zeros(10, np.float32)}
  config = ml_collections.ConfigDict({
      'dataset': 'builtin', 'data_dir': None, 'image_size': 75,
      'eval_crop': 'resize_shorter', 'eval_crop_fraction': 0.875})
  return weights.Loaded(model, variables, config, 'ema', 8, 10, 'run')


def _one_device_mesh() -> jax.sharding.Mesh:
  return jax.make_mesh((1,), ('data',), devices=jax.devices()[:1],
                       axis_types=(jax.sharding.AxisType.Auto,))


def test_run_settings_come_from_its_config():
  settings = predict.settings_of(_run_weights())
  assert (settings.image_size, settings.eval_crop,
          settings.eval_crop_fraction) == (75, 'resize_shorter', 0.875)
  assert settings.names == builtin_dataset.CLASS_NAMES
  assert settings.synsets is None


@pytest.mark.parametrize('views', ['single', '12'])
def test_views_average_the_softmax(tmp_path, views):
  loaded = _run_weights()
  settings = predict.settings_of(loaded)
  paths = [_write_image(str(tmp_path / 'a.png'), 120, 4, (80, 100)),
           _write_image(str(tmp_path / 'b.jpg'), 90, 5, (100, 80))]
  errors = []
  got = list(predict.classify(
      loaded, settings, paths + [str(tmp_path / 'gone.png')], views=views,
      top=10, mesh=_one_device_mesh(),
      on_error=lambda path, message: errors.append(path)))
  assert errors == [str(tmp_path / 'gone.png')]
  assert [g.image for g in got] == paths
  for path, prediction in zip(paths, got):
    data = tf.constant(open(path, 'rb').read())
    if views == 'single':
      crops = preprocessing.preprocess_for_eval(
          data, image_size=75, mode='resize_shorter', fraction=0.875,
          jpeg=path.endswith('.jpg'))[tf.newaxis]
    else:
      crops = preprocessing.multi_crop(data, image_size=75, views=views)
    logits = loaded.model.apply(loaded.variables, _scaled(crops), train=False)
    expected = _softmax(np.asarray(logits, np.float64)).mean(axis=0)
    assert len(prediction.classes) == 10
    np.testing.assert_allclose(prediction.probabilities,
                               expected[list(prediction.classes)],
                               atol=TOLERANCE)
    assert prediction.classes[0] == expected.argmax()
    text = predict.format_text(prediction, settings).splitlines()
    assert text[1].split()[2] == builtin_dataset.CLASS_NAMES[expected.argmax()]
