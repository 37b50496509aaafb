"""Tests for inception.convert: Keras logits, timm and TF-slim files, errors.

Keras's InceptionV3 and InceptionResNetV2 are run with random weights and
random BatchNorm statistics, converted, and must give the same logits. timm
and TF-slim files are written by the tests (a safetensors file, a checkpoint
saved by `tf.compat.v1.train.Saver`) from random Flax variables; their names,
counts and shapes are checked against facts of
../shared/reference/architectures.md (sections 6 and 11), and converting them
back must give the variables exactly. Inception-v4 and Inception-ResNet-v1,
which Keras lacks, are checked in tests/test_convert_blocks.py.
"""

import functools
import json
import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from inception import convert
from inception import models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERAS_SIZE = 75  # the smallest input Keras and the networks accept
TOLERANCE = 1e-4  # on logits of order 1, float32


@functools.cache
def _random_variables(name, aux_logits, bn_scale, seed=0):
  """Random variables of a network; BatchNorm variances in [0.5, 1.5]."""
  model = models.create_model(name, aux_logits=aux_logits, bn_scale=bn_scale)
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 299, 299, 3)), train=False))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    values = rng.random(leaf.shape, dtype=np.float32)
    return values + 0.5 if path[-1].key == 'var' else 2 * values - 1
  return jax.tree_util.tree_map_with_path(draw, shapes)


def _assert_trees_equal(expected, actual):
  assert jax.tree.structure(expected) == jax.tree.structure(actual)
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(expected)[0],
                          jax.tree.leaves(actual)):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


# ---- Keras: same logits -------------------------------------------------------


@functools.cache
def _keras_model(name):
  """A keras.applications model with random weights and BatchNorm statistics.

  Kernels are He-scaled so activations stay of order 1 through the depth, and
  the classifier is rescaled so the logits have unit spread.
  """
  import keras  # pylint: disable=g-import-not-at-top
  build = {'inception_v3': keras.applications.InceptionV3,
           'inception_resnet_v2': keras.applications.InceptionResNetV2}[name]
  model = build(weights=None, input_shape=(KERAS_SIZE, KERAS_SIZE, 3),
                classifier_activation=None)
  rng = np.random.default_rng(1)
  normal = lambda shape, std: (std * rng.standard_normal(shape)).astype(np.float32)
  for layer in model.layers:
    kind = type(layer).__name__
    if kind == 'Conv2D':
      shape = tuple(layer.kernel.shape)
      weights = [normal(shape, np.sqrt(2.0 / np.prod(shape[:3])))]
      layer.set_weights(weights + [normal(shape[-1:], 0.1)] * layer.use_bias)
    elif kind == 'BatchNormalization':
      n = layer.beta.shape[0]
      layer.set_weights([normal(n, 0.1), normal(n, 0.3),
                         rng.uniform(0.5, 1.5, n).astype(np.float32)])
    elif kind == 'Dense':
      shape = tuple(layer.kernel.shape)
      layer.set_weights([normal(shape, 1 / np.sqrt(shape[0])), normal(shape[1:], 0.1)])
  images = _keras_images()
  spread = float(np.std(model(images, training=False)))
  dense = model.layers[-1]
  dense.set_weights([w / spread for w in dense.get_weights()])
  return model


def _keras_images():
  return np.random.default_rng(2).uniform(
      -1, 1, (2, KERAS_SIZE, KERAS_SIZE, 3)).astype(np.float32)


@pytest.mark.parametrize('name', ['inception_v3', 'inception_resnet_v2'])
def test_keras_logits_match(name):
  keras_model = _keras_model(name)
  images = _keras_images()
  expected = np.asarray(keras_model(images, training=False))
  variables, model_kwargs = convert.from_keras(name, keras_model)
  assert model_kwargs == dict(name=name, num_classes=1000, aux_logits=False,
                              bn_scale=False, pool_count_include_pad=False)
  model = models.create_model(**model_kwargs)
  logits = np.asarray(jax.jit(functools.partial(model.apply, train=False))(
      variables, images))
  assert 0.5 < expected.std() < 2  # order 1, so the tolerance means something
  np.testing.assert_allclose(logits, expected, rtol=0, atol=TOLERANCE)


def test_keras_model_of_another_network_fails():
  with pytest.raises(convert.WeightMismatchError, match='does not fit inception_v3'):
    convert.from_keras('inception_v3', _keras_model('inception_resnet_v2'))


# ---- timm: names, counts, file round trip ------------------------------------

# (network, state_dict keys incl. num_batches_tracked, parameters incl. BN
# gamma (timm's count), spot names with their shapes); reference sections 6, 11.
_TIMM_FACTS = [
    ('inception_v3', 580, 27_161_264, {
        'Conv2d_1a_3x3.conv.weight': (32, 3, 3, 3),
        'Mixed_5c.branch5x5_2.conv.weight': (64, 48, 5, 5),
        'Mixed_7c.branch3x3dbl_3b.conv.weight': (384, 384, 3, 1),
        'AuxLogits.conv1.conv.weight': (768, 128, 5, 5),
        'AuxLogits.fc.weight': (1000, 768),
        'fc.weight': (1000, 2048)}),
    ('inception_v4', 896, 42_679_816, {
        'features.3.conv.conv.weight': (96, 64, 3, 3),
        'features.19.branch2_3b.conv.weight': (256, 512, 3, 1),
        'features.21.branch3.1.bn.running_var': (256,),
        'last_linear.weight': (1000, 1536)}),
    ('inception_resnet_v2', 1306, 55_843_464, {
        'conv2d_1a.conv.weight': (32, 3, 3, 3),
        'repeat_1.19.conv2d.weight': (1088, 384, 1, 1),
        'block8.conv2d.bias': (2080,),
        'conv2d_7b.bn.weight': (1536,),
        'classif.weight': (1000, 1536)}),
]

# timm <-> TF-slim pairs of reference section 11 (conv+BN units, weight tensors),
# including the irregular TF-slim names.
_CORRESPONDENCE = {
    'inception_v3': [
        ('Mixed_5c.branch5x5_1', 'Mixed_5c/Branch_1/Conv2d_0b_1x1'),
        ('Mixed_5c.branch5x5_2', 'Mixed_5c/Branch_1/Conv_1_0c_5x5'),
        ('Mixed_5d.branch5x5_2', 'Mixed_5d/Branch_1/Conv2d_0b_5x5'),
        ('Mixed_6a.branch3x3', 'Mixed_6a/Branch_0/Conv2d_1a_1x1'),
        ('Mixed_6a.branch3x3dbl_3', 'Mixed_6a/Branch_1/Conv2d_1a_1x1'),
        ('Mixed_6e.branch7x7dbl_2', 'Mixed_6e/Branch_2/Conv2d_0b_7x1'),
        ('Mixed_7a.branch7x7x3_4', 'Mixed_7a/Branch_1/Conv2d_1a_3x3'),
        ('Mixed_7b.branch3x3_2b', 'Mixed_7b/Branch_1/Conv2d_0b_3x1'),
        ('Mixed_7c.branch3x3_2b', 'Mixed_7c/Branch_1/Conv2d_0c_3x1'),
        ('Mixed_7c.branch3x3dbl_3a', 'Mixed_7c/Branch_2/Conv2d_0c_1x3'),
        ('AuxLogits.conv1', 'AuxLogits/Conv2d_2a_5x5')],
    'inception_v4': [
        ('features.3.conv', 'Mixed_3a/Branch_1/Conv2d_0a_3x3'),
        ('features.4.branch1.3', 'Mixed_4a/Branch_1/Conv2d_1a_3x3'),
        ('features.5.conv', 'Mixed_5a/Branch_0/Conv2d_1a_3x3'),
        ('features.9.branch3.1', 'Mixed_5e/Branch_3/Conv2d_0b_1x1'),
        ('features.10.branch1.2', 'Mixed_6a/Branch_1/Conv2d_1a_3x3'),
        ('features.17.branch2.1', 'Mixed_6h/Branch_2/Conv2d_0b_7x1'),
        ('features.18.branch1.3', 'Mixed_7a/Branch_1/Conv2d_1a_3x3'),
        ('features.19.branch1_1b', 'Mixed_7b/Branch_1/Conv2d_0c_3x1'),
        ('features.21.branch2_1', 'Mixed_7d/Branch_2/Conv2d_0b_3x1'),
        ('features.21.branch2_3a', 'Mixed_7d/Branch_2/Conv2d_0d_1x3')],
    'inception_resnet_v2': [
        ('mixed_5b.branch0', 'Mixed_5b/Branch_0/Conv2d_1x1'),
        ('repeat.0.branch2.2', 'Repeat/block35_1/Branch_2/Conv2d_0c_3x3'),
        ('mixed_6a.branch1.2', 'Mixed_6a/Branch_1/Conv2d_1a_3x3'),
        ('repeat_1.19.branch1.1', 'Repeat_1/block17_20/Branch_1/Conv2d_0b_1x7'),
        ('mixed_7a.branch1.1', 'Mixed_7a/Branch_1/Conv2d_1a_3x3'),
        ('repeat_2.8.branch1.2', 'Repeat_2/block8_9/Branch_1/Conv2d_0c_3x1'),
        ('block8.branch0', 'Block8/Branch_0/Conv2d_1x1'),
        ('conv2d_7b', 'Conv2d_7b_1x1')],
}
_CLASSIFIERS = {'inception_v3': ('fc', 'Logits/Conv2d_1c_1x1'),
                'inception_v4': ('last_linear', 'Logits/Logits'),
                'inception_resnet_v2': ('classif', 'Logits/Logits')}
_ROOTS = {'inception_v3': 'InceptionV3', 'inception_v4': 'InceptionV4',
          'inception_resnet_v1': 'InceptionResnetV1',
          'inception_resnet_v2': 'InceptionResnetV2'}


@pytest.mark.parametrize('name,keys,params,spots', _TIMM_FACTS)
def test_timm_file_has_timm_names_and_converts_back(tmp_path, name, keys, params,
                                                   spots):
  variables = _random_variables(name, name == 'inception_v3', True)
  tensors = convert.to_timm(name, variables)
  assert len(tensors) == keys
  assert sum(v.size for k, v in tensors.items()
             if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked'))
             ) == params
  assert {k: tensors[k].shape for k in spots} == spots

  path = str(tmp_path / 'model.safetensors')
  safetensors.numpy.save_file(tensors, path)
  converted, model_kwargs = convert.from_timm(name, safetensors.numpy.load_file(path))
  _assert_trees_equal(variables, converted)
  assert model_kwargs == dict(
      name=name, num_classes=1000, aux_logits=name == 'inception_v3', bn_scale=True,
      pool_count_include_pad=name == 'inception_v3')

  # The same variables under TF-slim names: the reference's pairs must agree.
  slim = convert.to_slim(name, variables, background_class=False)
  root = _ROOTS[name]
  for timm_name, slim_name in _CORRESPONDENCE[name]:
    np.testing.assert_array_equal(
        tensors[f'{timm_name}.conv.weight'].transpose(2, 3, 1, 0),
        slim[f'{root}/{slim_name}/weights'], err_msg=timm_name)
    np.testing.assert_array_equal(tensors[f'{timm_name}.bn.running_var'],
                                  slim[f'{root}/{slim_name}/BatchNorm/moving_variance'])
  timm_fc, slim_fc = _CLASSIFIERS[name]
  np.testing.assert_array_equal(tensors[f'{timm_fc}.weight'].T,
                                slim[f'{root}/{slim_fc}/weights'].reshape(-1, 1000))


def test_timm_v3_averages_like_timm_and_command_line_round_trip(tmp_path):
  variables = _random_variables('inception_v3', True, True)
  path = str(tmp_path / 'model.safetensors')
  safetensors.numpy.save_file(convert.to_timm('inception_v3', variables), path)
  out = tmp_path / 'converted'
  subprocess.run([sys.executable, '-m', 'inception.convert', '--model=inception_v3',
                  '--source=timm', f'--input={path}', f'--output={out}'],
                 cwd=REPO, check=True, capture_output=True)
  model_kwargs, loaded = convert.load_converted(str(out))
  # timm's Inception-v3 pools count padded cells; the settings must say so.
  assert model_kwargs['pool_count_include_pad'] is True
  assert json.loads((out / 'model.json').read_text())['source']['format'] == 'timm'
  _assert_trees_equal(variables, loaded)


# ---- TF-slim: names, counts, checkpoint round trip ---------------------------


def _write_slim_checkpoint(prefix, tensors):
  """Saves `tensors` under these names with TF1's Saver, as TF-slim did."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  saver = tf.compat.v1.train.Saver(
      var_list={name: tf.Variable(value) for name, value in tensors.items()})
  return saver.save(None, prefix, write_meta_graph=False)


# (network, variables with the aux head where there is one, values with 1001
# classes (the Keras-style totals of section 6), spot names with their shapes).
# Inception-ResNet-v1 has no released checkpoint: 470 variables is section 6's
# rule (4 per conv+BN, 2 per biased conv or classifier) for its 107 conv+BN
# units, 20 projections and classifier, and its total is the paper network's
# 22,769,848 plus the background class (1792 weights and a bias).
_SLIM_FACTS = [
    ('inception_v3', 388, 27_182_194, {
        'InceptionV3/Mixed_5c/Branch_1/Conv_1_0c_5x5/weights': (5, 5, 48, 64),
        'InceptionV3/Mixed_7b/Branch_1/Conv2d_0b_3x1/BatchNorm/beta': (384,),
        'InceptionV3/AuxLogits/Conv2d_2b_1x1/weights': (1, 1, 768, 1001),
        'InceptionV3/Logits/Conv2d_1c_1x1/weights': (1, 1, 2048, 1001)}),
    ('inception_v4', 608, 46_074_066, {
        'InceptionV4/Mixed_6h/Branch_2/Conv2d_0e_1x7/weights': (1, 7, 224, 256),
        'InceptionV4/AuxLogits/Conv2d_1b_1x1/weights': (1, 1, 1024, 128),
        'InceptionV4/AuxLogits/Conv2d_2a/weights': (5, 5, 128, 768),
        'InceptionV4/AuxLogits/Aux_logits/weights': (768, 1001),
        'InceptionV4/Logits/Logits/weights': (1536, 1001)}),
    ('inception_resnet_v2', 908, 59_244_594, {
        'InceptionResnetV2/Repeat/block35_10/Conv2d_1x1/weights': (1, 1, 128, 320),
        'InceptionResnetV2/Repeat_2/block8_9/Conv2d_1x1/biases': (2080,),
        'InceptionResnetV2/Block8/Conv2d_1x1/weights': (1, 1, 448, 2080),
        'InceptionResnetV2/AuxLogits/Conv2d_2a_5x5/weights': (5, 5, 128, 768),
        'InceptionResnetV2/Logits/Logits/biases': (1001,)}),
    ('inception_resnet_v1', 470, 22_771_641, {
        'InceptionResnetV1/Conv2d_4b_3x3/weights': (3, 3, 192, 256),
        'InceptionResnetV1/Repeat_1/block17_10/Conv2d_1x1/weights': (1, 1, 256, 896),
        'InceptionResnetV1/Repeat_2/block8_5/Branch_1/Conv2d_0c_3x1/weights':
            (3, 1, 192, 192),
        'InceptionResnetV1/Logits/Logits/weights': (1792, 1001)}),
]


@pytest.mark.parametrize('name,count,values,spots', _SLIM_FACTS)
def test_slim_checkpoint_has_slim_names_and_converts_back(tmp_path, name, count,
                                                          values, spots):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  aux = name != 'inception_resnet_v1'
  variables = _random_variables(name, aux, False)
  tensors = convert.to_slim(name, variables)
  assert len(tensors) == count
  assert sum(v.size for v in tensors.values()) == values
  assert {k: tensors[k].shape for k in spots} == spots
  # Give the background class values of its own: dropping any other class
  # would then break the round trip.
  rng = np.random.default_rng(3)
  for key, value in tensors.items():
    if value.shape[-1] == 1001:
      value[..., 0] = rng.standard_normal(value.shape[:-1])

  prefix = _write_slim_checkpoint(str(tmp_path / 'model.ckpt'), tensors)
  reader = tf.train.load_checkpoint(prefix)
  assert set(reader.get_variable_to_shape_map()) == set(tensors)
  converted, model_kwargs = convert.from_slim(name, prefix)
  _assert_trees_equal(variables, converted)
  assert model_kwargs == dict(name=name, num_classes=1000, aux_logits=aux,
                              bn_scale=False, pool_count_include_pad=False)


# ---- Files that do not fit ------------------------------------------------


def test_file_of_another_network_fails_with_one_error_naming_it():
  tensors = convert.to_timm('inception_v4',
                            _random_variables('inception_v4', False, True))
  with pytest.raises(convert.WeightMismatchError) as error:
    convert.from_timm('inception_resnet_v2', tensors)
  message = str(error.value)
  assert '1102 missing, 896 unexpected' in message
  assert 'conv2d_1a.conv.weight' in message and 'features.0.conv.weight' in message
  assert 'fit inception_v4 best' in message


def test_missing_extra_and_misshapen_tensors_are_all_named_before_compiling():
  tensors = dict(convert.to_timm(
      'inception_v4', _random_variables('inception_v4', False, True)))
  del tensors['features.11.branch2.3.bn.running_mean']
  tensors['features.11.branch2.3.extra.weight'] = np.zeros(3, np.float32)
  tensors['features.22.bn.num_batches_tracked'] = np.zeros((), np.int64)
  tensors['features.4.branch1.1.conv.weight'] = np.zeros((64, 64, 7, 1), np.float32)
  compiles = []
  handler = logging.Handler()
  handler.emit = lambda record: compiles.append(record.getMessage())
  logging.getLogger('jax').addHandler(handler)
  try:
    with jax.log_compiles(), pytest.raises(convert.WeightMismatchError) as error:
      convert.from_timm('inception_v4', tensors)
  finally:
    logging.getLogger('jax').removeHandler(handler)
  message = str(error.value)
  assert '1 missing, 2 unexpected, 1 misshapen' in message
  for name in ('features.11.branch2.3.bn.running_mean',
              'features.11.branch2.3.extra.weight',
              'features.22.bn.num_batches_tracked',
              'features.4.branch1.1.conv.weight (64, 64, 7, 1) != expected '
              '(64, 64, 1, 7)'):
    assert name in message
  assert not [c for c in compiles if c.startswith('Compiling')]


def test_slim_names_without_background_class_or_timm_network_fail_clearly():
  tensors = convert.to_slim('inception_v3',
                            _random_variables('inception_v3', True, False),
                            background_class=False)
  # 1000 outputs: no background class assumed, nothing dropped.
  variables, model_kwargs = convert._from_slim_reader(  # pylint: disable=protected-access
      'inception_v3', {k: v.shape for k, v in tensors.items()}, tensors.__getitem__,
      None, 'in-memory checkpoint')
  assert model_kwargs['num_classes'] == 1000
  np.testing.assert_array_equal(
      variables['params']['logits']['kernel'],
      tensors['InceptionV3/Logits/Conv2d_1c_1x1/weights'][0, 0])
  with pytest.raises(ValueError, match='timm has no inception_resnet_v1'):
    convert.from_timm('inception_resnet_v1', {})
