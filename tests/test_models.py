"""Tests for inception.models, blocks and layers: counts, shapes, options, numerics.

Counts and shapes go through `jax.eval_shape`, so they compile nothing. The
pinned counts are the released graphs' (TF-slim, Keras, timm) at 299x299 with
1000 classes; see ../shared/reference/architectures.md, section 6.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from inception import blocks
from inception import layers
from inception import models


def _init_shapes(name, size=299, **kwargs):
  model = models.create_model(name, **kwargs)
  return jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _stage_shapes(name, size=299, **kwargs):
  """Output shape of every top-level layer, in order."""
  model = models.create_model(name, **kwargs)
  _, state = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False,
      capture_intermediates=True))
  inter = state['intermediates']
  return {n: inter[n]['__call__'][0].shape[1:] for n, _ in model.layers
          if n in inter}


@pytest.mark.parametrize('name,with_scale,without_scale,stats', [
    ('inception_v3', 23_834_568, 23_817_352, 34_432),
    ('inception_v4', 42_679_816, 42_648_232, 63_168),
    ('inception_resnet_v2', 55_843_464, 55_813_192, 60_544),
    ('inception_resnet_v1', 22_756_328, 22_742_808, 27_040),
])
def test_parameter_counts_match_released_graphs(name, with_scale, without_scale,
                                                stats):
  timm_style = _init_shapes(name, bn_scale=True)
  slim_style = _init_shapes(name, bn_scale=False)
  assert _count(timm_style['params']) == with_scale
  assert _count(slim_style['params']) == without_scale
  assert _count(slim_style['batch_stats']) == stats


@pytest.mark.parametrize('name,expected', [
    ('inception_v3', 27_143_152),
    ('inception_v4', 46_006_800),
    ('inception_resnet_v2', 59_179_952),
])
def test_aux_head_parameter_counts(name, expected):
  assert _count(_init_shapes(name, aux_logits=True)['params']) == expected


def test_slim_checkpoint_sized_heads_with_1001_classes():
  # The released TF-slim checkpoints (aux head, background class).
  shapes = _init_shapes('inception_v4', aux_logits=True, num_classes=1001)
  assert _count(shapes['params']) == 46_009_106
  assert shapes['params']['logits']['kernel'].shape == (1536, 1001)


def test_inception_v4_stage_shapes():
  s = _stage_shapes('inception_v4')
  assert s['conv2d_1a_3x3'] == (149, 149, 32)
  assert s['mixed_3a'] == (73, 73, 160)
  assert s['mixed_4a'] == (71, 71, 192)
  assert s['mixed_5a'] == (35, 35, 384)
  assert s['mixed_5e'] == (35, 35, 384)
  assert s['mixed_6a'] == (17, 17, 1024)
  assert s['mixed_6h'] == (17, 17, 1024)
  assert s['mixed_7a'] == (8, 8, 1536)
  assert s['mixed_7d'] == (8, 8, 1536)
  assert 'mixed_5f' not in s and 'mixed_6i' not in s and 'mixed_7e' not in s


def test_inception_resnet_v1_stage_shapes():
  s = _stage_shapes('inception_resnet_v1')
  assert s['conv2d_4b_3x3'] == (35, 35, 256)
  assert s['block35_5'] == (35, 35, 256)
  assert s['mixed_6a'] == (17, 17, 896)
  assert s['block17_10'] == (17, 17, 896)
  assert s['mixed_7a'] == (8, 8, 1792)
  assert s['block8_5'] == (8, 8, 1792)


def test_inception_resnet_v2_stage_shapes():
  s = _stage_shapes('inception_resnet_v2')
  assert s['conv2d_4a_3x3'] == (71, 71, 192)
  assert s['mixed_5b'] == (35, 35, 320)
  assert s['block35_10'] == (35, 35, 320)
  assert s['mixed_6a'] == (17, 17, 1088)
  assert s['block17_20'] == (17, 17, 1088)
  assert s['mixed_7a'] == (8, 8, 2080)
  assert s['block8_9'] == (8, 8, 2080)
  assert s['block8'] == (8, 8, 2080)
  assert s['conv2d_7b_1x1'] == (8, 8, 1536)


def test_inception_v3_stage_shapes():
  s = _stage_shapes('inception_v3')
  assert s['conv2d_4a_3x3'] == (71, 71, 192)
  assert [s[f'mixed_5{c}'] for c in 'bcd'] == [(35, 35, 256), (35, 35, 288),
                                               (35, 35, 288)]
  assert s['mixed_6a'] == (17, 17, 768)
  assert s['mixed_6e'] == (17, 17, 768)
  assert s['mixed_7a'] == (8, 8, 1280)
  assert s['mixed_7c'] == (8, 8, 2048)


@pytest.mark.parametrize('printed,b_width,c_width', [(False, 1152, 2144),
                                                     (True, 1154, 2048)])
def test_inception_resnet_v2_paper_resolutions(printed, b_width, c_width):
  s = _stage_shapes('inception_resnet_v2_paper', projection_as_printed=printed)
  assert s['mixed_5a'] == (35, 35, 384)
  assert s['block35_5'] == (35, 35, 384)
  assert s['mixed_6a'] == (17, 17, 1152)
  assert s['block17_1'] == (17, 17, b_width)
  assert s['block17_10'] == (17, 17, b_width)
  assert s['mixed_7a'] == (8, 8, 2144 if not printed else 2146)
  assert s['block8_5'] == (8, 8, c_width)
  params = _init_shapes('inception_resnet_v2_paper',
                        projection_as_printed=printed)['params']
  # Only the first block of a stage whose width changes needs a shortcut.
  assert ('shortcut' in params['block17_1']) == printed
  assert 'shortcut' not in params['block17_2']
  assert ('shortcut' in params['block8_1']) == printed


@pytest.mark.parametrize('name', models.MODEL_NAMES)
def test_smallest_input_is_75(name):
  ok = _stage_shapes(name, size=75)
  assert list(ok.values())[-1][:2] == (1, 1)
  with pytest.raises(ValueError, match='at least 75x75'):
    _init_shapes(name, size=74)


def test_unknown_name_lists_known_names():
  with pytest.raises(ValueError) as err:
    models.create_model('inception_v5')
  for name in models.MODEL_NAMES:
    assert name in str(err.value)


@pytest.mark.parametrize('kwargs,message', [
    (dict(name='inception_v4', colour='red'), 'unknown model override'),
    (dict(name='inception_v4', residual_scales=(0.1, 0.1, 0.1)),
     'no residual blocks'),
    (dict(name='inception_resnet_v1', aux_logits=True), 'no auxiliary head'),
    (dict(name='inception_v3', repeats=(1, 1, 1)), 'no repeated blocks'),
    (dict(name='inception_resnet_v2', projection_as_printed=True),
     'inception_resnet_v2_paper only'),
    (dict(name='inception_resnet_v2', repeats=(1, 1)), 'three block counts'),
    (dict(name='inception_resnet_v2', width_multiplier=0.0), 'positive'),
])
def test_bad_options_fail_clearly(kwargs, message):
  with pytest.raises(ValueError, match=message):
    models.create_model(**kwargs)


def test_repeats_and_width_shape_the_network():
  s = _stage_shapes('inception_resnet_v2', size=75, repeats=(2, 3, 1),
                    width_multiplier=0.5)
  names = list(s)
  assert [n for n in names if n.startswith('block35_')] == ['block35_1',
                                                            'block35_2']
  assert [n for n in names if n.startswith('block17_')] == [
      'block17_1', 'block17_2', 'block17_3']
  assert not [n for n in names if n.startswith('block8_')]
  assert s['mixed_5b'][-1] == 160 and s['mixed_6a'][-1] == 544
  assert s['block8'][-1] == 1040 and s['conv2d_7b_1x1'][-1] == 768


def test_aux_head_sits_on_the_last_b_block():
  model = models.create_model('inception_v4', aux_logits=True, repeats=(1, 2, 1))
  assert model.aux_after == 'mixed_6c'
  model = models.create_model('inception_resnet_v2', aux_logits=True)
  assert model.aux_after == 'block17_20'
  assert models.create_model('inception_v3', aux_logits=True).aux_after == 'mixed_6e'


def _tiny(**kwargs):
  return models.create_model('inception_resnet_v2', num_classes=7,
                             repeats=(1, 1, 1), width_multiplier=0.125, **kwargs)


def _init(model, x, seed=0):
  """Random variables of `model`'s shapes, drawn by numpy: compiles nothing."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("['kernel']"):
      fan_in = int(np.prod(leaf.shape[:-1]))
      return rng.normal(0, np.sqrt(2 / fan_in), leaf.shape).astype(np.float32)
    if name.endswith("['var']"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    if name.endswith("['scale']"):
      return rng.uniform(0.8, 1.2, leaf.shape).astype(np.float32)
    return rng.normal(0, 0.1, leaf.shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def _logits(model, variables, x):
  return jax.jit(functools.partial(model.apply, train=False))(variables, x)


def test_training_exposes_aux_logits_and_zero_fraction_eval_plain_logits():
  model = _tiny(aux_logits=True)
  x = jax.random.uniform(jax.random.key(1), (2, 75, 75, 3), minval=-1, maxval=1)
  variables = _init(model, x)
  assert 'aux_head' in variables['params']
  logits, state = jax.jit(functools.partial(
      model.apply, train=True, mutable=['batch_stats', 'intermediates']))(
          variables, x, rngs={'dropout': jax.random.key(2)})
  (aux,) = state['intermediates']['aux_logits']
  (zero_fraction,) = state['intermediates']['zero_fraction']
  assert logits.shape == aux.shape == (2, 7)
  assert 0.0 < float(zero_fraction) < 1.0
  # Training updates the BatchNorm statistics.
  before = variables['batch_stats']['conv2d_1a_3x3']['bn']['mean']
  after = state['batch_stats']['conv2d_1a_3x3']['bn']['mean']
  assert not np.allclose(before, after)
  # Evaluation: no aux head runs, no dropout, deterministic logits.
  eval_logits, eval_state = jax.jit(functools.partial(
      model.apply, train=False, mutable=['intermediates']))(variables, x)
  assert 'aux_logits' not in eval_state['intermediates']
  np.testing.assert_array_equal(eval_logits,
                                _logits(model, variables, x))


def test_zero_fraction_counts_the_last_feature_map():
  model = _tiny()
  x = jax.random.uniform(jax.random.key(1), (2, 75, 75, 3), minval=-1, maxval=1)
  variables = _init(model, x)
  _, state = jax.jit(functools.partial(
      model.apply, train=False, capture_intermediates=True,
      mutable=['intermediates']))(variables, x)
  last = state['intermediates']['conv2d_7b_1x1']['__call__'][0]
  (zero_fraction,) = state['intermediates']['zero_fraction']
  assert float(zero_fraction) == pytest.approx(float(jnp.mean(last == 0)))


def test_bfloat16_compute_keeps_float32_parameters_and_logits():
  model = _tiny(dtype='bfloat16')
  x = jnp.zeros((1, 75, 75, 3))
  variables = _init(model, x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  _, state = jax.jit(functools.partial(
      model.apply, train=False, capture_intermediates=True,
      mutable=['intermediates']))(variables, x)
  assert state['intermediates']['block8']['__call__'][0].dtype == jnp.bfloat16
  assert _logits(model, variables, x).dtype == jnp.float32


def test_batchnorm_settings_are_the_released_ones():
  model = _tiny()
  assert (model.bn_momentum, model.bn_epsilon, model.bn_scale) == (0.9997, 1e-3,
                                                                   False)
  params = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 75, 75, 3)), train=False))['params']
  assert set(params['conv2d_1a_3x3']['bn']) == {'bias'}
  assert set(params['block35_1']['projection']) == {'kernel', 'bias'}
  assert 'sum_bn' not in params['block35_1']
  with_sum_bn = jax.eval_shape(lambda: _tiny(bn_on_sum=True).init(
      jax.random.key(0), jnp.zeros((1, 75, 75, 3)), train=False))
  assert 'sum_bn' in with_sum_bn['params']['block35_1']
  assert 'sum_bn' not in with_sum_bn['params']['mixed_6a']


def _residual_block(scale, activation, projection_filters=None):
  conv_def = functools.partial(nn.Conv, kernel_init=nn.initializers.normal(0.5),
                               bias_init=nn.initializers.normal(0.5))
  norm = functools.partial(nn.BatchNorm, use_running_average=True)
  conv_bn = functools.partial(layers.ConvBN, conv=conv_def, norm=norm)
  table = ((layers.conv(3, 1),),)
  return blocks.InceptionResNetBlock(table, conv_bn, conv_def, norm, scale=scale,
                                     activation=activation,
                                     projection_filters=projection_filters)


@pytest.mark.parametrize('scale,act', [(0.17, 'relu'), (1.0, 'none'),
                                       (0.3, 'relu6')])
def test_residual_block_is_shortcut_plus_scaled_biased_projection(scale, act):
  block = _residual_block(scale, layers.activation(act))
  x = 4 * jax.random.normal(jax.random.key(3), (2, 5, 5, 4))
  variables = block.init(jax.random.key(4), x)
  p = variables['params']
  # By hand: 1x1 conv, BatchNorm with running stats (0, 1), ReLU, projection.
  h = jnp.einsum('nhwc,cd->nhwd', x, p['branch0_conv0']['conv']['kernel'][0, 0])
  h = jax.nn.relu(h / jnp.sqrt(1 + 1e-5) * p['branch0_conv0']['bn']['scale']
                  + p['branch0_conv0']['bn']['bias'])
  up = (jnp.einsum('nhwc,cd->nhwd', h, p['projection']['kernel'][0, 0])
        + p['projection']['bias'])
  expected = x + scale * up
  if act == 'relu':
    expected = jax.nn.relu(expected)
  elif act == 'relu6':
    expected = jax.nn.relu6(expected)
  np.testing.assert_allclose(block.apply(variables, x), expected, rtol=1e-5,
                             atol=1e-5)


def test_average_pool_leaves_padding_out_as_tensorflow_does():
  x = jnp.ones((1, 3, 3, 1))
  # Corner: 4 real cells of 9; counting padding gives 4/9.
  np.testing.assert_allclose(layers.avg_pool(x, count_include_pad=False), 1.0)
  counted = layers.avg_pool(x, count_include_pad=True)
  assert float(counted[0, 0, 0, 0]) == pytest.approx(4 / 9)
  assert float(counted[0, 1, 1, 0]) == pytest.approx(1.0)


def test_pool_padding_option_reaches_the_blocks():
  x = jax.random.uniform(jax.random.key(1), (1, 75, 75, 3), minval=-1, maxval=1)
  exclude = _tiny()
  include = _tiny(pool_count_include_pad=True)
  variables = _init(exclude, x)
  a = _logits(exclude, variables, x)
  b = _logits(include, variables, x)
  assert float(jnp.max(jnp.abs(a - b))) > 1e-6


def test_residual_scale_override_reaches_the_blocks():
  x = jax.random.uniform(jax.random.key(1), (1, 75, 75, 3), minval=-1, maxval=1)
  base = _tiny()
  variables = _init(base, x)
  same = _tiny(residual_scales=(0.17, 0.10, 0.20))
  other = _tiny(residual_scales=(0.5, 0.10, 0.20))
  np.testing.assert_array_equal(_logits(base, variables, x),
                                _logits(same, variables, x))
  assert not np.allclose(_logits(base, variables, x),
                         _logits(other, variables, x))


def test_kernel_orientation_follows_slim():
  # Inception-B branch 1: 1x1, then 1x7 (1 high, 7 wide), then 7x1.
  params = _init_shapes('inception_v4', size=75, repeats=(1, 1, 1),
                        width_multiplier=0.25)['params']
  assert params['mixed_6b']['branch1_conv1']['conv']['kernel'].shape[:2] == (1, 7)
  assert params['mixed_6b']['branch1_conv2']['conv']['kernel'].shape[:2] == (7, 1)
  assert params['mixed_7b']['branch1_conv1a']['conv']['kernel'].shape[:2] == (1, 3)
  assert params['mixed_7b']['branch1_conv1b']['conv']['kernel'].shape[:2] == (3, 1)


def test_config_overrides_reach_the_module():
  config = default.get_config()
  config.model = 'inception_resnet_v2'
  config.dtype = 'bfloat16'
  config.model_overrides.residual_scales = (0.3, 0.2, 0.1)
  config.model_overrides.repeats = (2, 2, 2)
  model = models.create_model_from_config(config, num_classes=10)
  assert model.residual_scales == (0.3, 0.2, 0.1)
  assert model.dtype == jnp.bfloat16 and model.num_classes == 10
  assert model.dropout_rate == 0.2 and model.bn_momentum == 0.9997
  assert [n for n, _ in model.layers if n.startswith('block8')] == ['block8_1',
                                                                   'block8']
