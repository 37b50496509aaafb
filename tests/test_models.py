"""Tests for inception.models, blocks and layers: counts, shapes, options, numerics.

Counts and shapes go through `jax.eval_shape`, so they compile nothing. The
pinned counts are the released graphs' (TF-slim, Keras, timm) at 299x299 with
1000 classes; see ../shared/reference/architectures.md, section 6. Dropout and
BatchNorm are checked by what they do to a tiny network's activations in
training and in evaluation, one compiled pass of each.
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


# README.md's table gives the same counts, without / with the BatchNorm scale.
@pytest.mark.parametrize('name,with_scale,without_scale,stats', [
    ('inception_v3', 23_834_568, 23_817_352, 34_432),
    ('inception_v4', 42_679_816, 42_648_232, 63_168),
    ('inception_resnet_v2', 55_843_464, 55_813_192, 60_544),
    ('inception_resnet_v1', 22_756_328, 22_742_808, 27_040),
    # No released graph: the paper's drawing, as README.md counts it.
    ('inception_resnet_v2_paper', 32_433_928, 32_417_496, 32_864),
])
def test_parameter_counts_match_released_graphs(name, with_scale, without_scale,
                                                stats):
  # One trace per network: the TF-slim count is the timm count less the
  # scales (test_batchnorm_has_no_scale_by_default pins that bn_scale=False
  # drops exactly those).
  timm_style = _init_shapes(name, bn_scale=True)
  scales = [x for path, x in jax.tree_util.tree_flatten_with_path(
      timm_style['params'])[0] if path[-1].key == 'scale']
  assert _count(timm_style['params']) == with_scale
  assert _count(timm_style['params']) - _count(scales) == without_scale
  assert _count(timm_style['batch_stats']) == stats
  # One scale per BatchNorm channel, beside its moving mean and variance.
  assert 2 * _count(scales) == stats


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
  # README.md: the printed variant has 37,701,902 parameters.
  assert _count(params) == (37_701_902 if printed else 32_417_496)
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


def _images(seed=1):
  return jax.random.uniform(jax.random.key(seed), (2, 75, 75, 3), minval=-1,
                            maxval=1)


@functools.cache
def _train_pass():
  """The tiny network with its aux head, its variables, and a jitted training pass.

  The pass returns the logits and the new `batch_stats` and `intermediates`
  (every submodule's output captured). One compilation serves every test.
  """
  model = _tiny(aux_logits=True)
  variables = _init(model, _images())
  apply = jax.jit(lambda v, x, key: model.apply(
      v, x, train=True, rngs={'dropout': key}, capture_intermediates=True,
      mutable=['batch_stats', 'intermediates']))
  return model, variables, apply


@functools.cache
def _eval_pass():
  """The tiny network, its variables, and a jitted evaluation pass (no rng)."""
  model = _tiny()
  variables = _init(model, _images())
  apply = jax.jit(functools.partial(
      model.apply, train=False, capture_intermediates=True,
      mutable=['intermediates']))
  return model, variables, apply


def _output(inter, *path):
  for key in path:
    inter = inter[key]
  return np.asarray(inter['__call__'][0], np.float64)


def _classifier(variables, features):
  p = variables['params']['logits']
  return features @ np.asarray(p['kernel'], np.float64) + np.asarray(p['bias'])


def test_training_sows_aux_logits_and_zero_fraction():
  model, variables, apply = _train_pass()
  assert 'aux_head' in variables['params']
  logits, state = apply(variables, _images(), jax.random.key(2))
  inter = state['intermediates']
  (aux,) = inter['aux_logits']
  (zero_fraction,) = inter['zero_fraction']
  assert logits.shape == aux.shape == (2, 7)
  # The aux head's own classifier, not a copy of the main logits.
  np.testing.assert_array_equal(aux, _output(inter, 'aux_head', 'logits'))
  assert float(np.max(np.abs(aux - logits))) > 0.1
  last = _output(inter, 'conv2d_7b_1x1')
  assert 0.05 < float(zero_fraction) < 0.95
  assert float(zero_fraction) == pytest.approx(float(np.mean(last == 0)))
  # Evaluation runs no aux head: it needs none of the head's variables and
  # sows no aux logits (traced only, nothing compiled).
  without_head = {collection: {k: v for k, v in tree.items() if k != 'aux_head'}
                  for collection, tree in variables.items()}
  _, eval_state = jax.eval_shape(functools.partial(
      model.apply, train=False, mutable=['intermediates']), without_head,
      _images())
  assert set(eval_state['intermediates']) == {'zero_fraction'}


def test_dropout_drops_a_fifth_of_the_pooled_features_in_training():
  _, variables, apply = _train_pass()
  x = _images()
  logits, state = apply(variables, x, jax.random.key(2))
  again, _ = apply(variables, x, jax.random.key(2))
  other, other_state = apply(variables, x, jax.random.key(3))
  np.testing.assert_array_equal(logits, again)  # same rng, same logits
  assert float(np.max(np.abs(logits - other))) > 0.05 * float(np.std(logits))
  inter = state['intermediates']
  pooled = _output(inter, 'conv2d_7b_1x1').mean(axis=(1, 2))
  dropped = _output(inter, 'Dropout_0')
  live = pooled != 0
  kept = dropped != 0
  assert not np.any(kept & ~live)
  # Kept features are scaled by 1 / keep = 1 / 0.8; about 20% are zeroed.
  np.testing.assert_allclose(dropped[kept], pooled[kept] / 0.8, rtol=1e-5)
  fraction = 1 - kept[live].mean()
  assert 0.12 < fraction < 0.28, fraction  # 384 draws: 0.2 +- 0.02
  other_kept = _output(other_state['intermediates'], 'Dropout_0') != 0
  assert np.any(kept != other_kept)
  # The classifier reads the dropped features.
  np.testing.assert_allclose(logits, _classifier(variables, dropped), rtol=1e-4,
                             atol=1e-5)


def test_evaluation_needs_no_rng_and_drops_nothing():
  _, variables, apply = _eval_pass()
  logits, state = apply(variables, _images())  # no dropout rng given
  inter = state['intermediates']
  pooled = _output(inter, 'conv2d_7b_1x1').mean(axis=(1, 2))
  # Unchanged, not scaled: what a network with dropout_rate=0 computes.
  np.testing.assert_allclose(_output(inter, 'Dropout_0'), pooled, rtol=1e-6,
                             atol=1e-7)
  np.testing.assert_allclose(logits, _classifier(variables, pooled), rtol=1e-4,
                             atol=1e-5)


def test_batchnorm_normalises_with_the_batch_in_training():
  _, variables, apply = _train_pass()
  x = _images()
  logits, state = apply(variables, x, jax.random.key(2))
  inter = state['intermediates']
  conv = _output(inter, 'conv2d_1a_3x3', 'conv')
  mean, var = conv.mean(axis=(0, 1, 2)), conv.var(axis=(0, 1, 2))
  bias = np.asarray(variables['params']['conv2d_1a_3x3']['bn']['bias'])
  np.testing.assert_allclose(_output(inter, 'conv2d_1a_3x3', 'bn'),
                             (conv - mean) / np.sqrt(var + 1e-3) + bias,
                             rtol=1e-5, atol=1e-5)
  # The moving averages move by 1 - momentum = 0.0003 toward the batch's.
  old = variables['batch_stats']['conv2d_1a_3x3']['bn']
  new = state['batch_stats']['conv2d_1a_3x3']['bn']
  for key, batch in (('mean', mean), ('var', var)):
    before = np.asarray(old[key], np.float64)
    np.testing.assert_allclose(np.asarray(new[key]) - before,
                               0.0003 * (batch - before), rtol=1e-3, atol=3e-8)
  # Every other example changes an example's logits (same dropout mask).
  changed = x.at[1].set(_images(seed=5)[1])
  changed_logits, _ = apply(variables, changed, jax.random.key(2))
  assert float(np.max(np.abs(changed_logits[0] - logits[0]))) > 0.01


def test_batchnorm_uses_the_moving_averages_in_evaluation():
  _, variables, apply = _eval_pass()
  x = _images()
  logits, state = apply(variables, x)
  inter = state['intermediates']
  conv = _output(inter, 'conv2d_1a_3x3', 'conv')
  stats = variables['batch_stats']['conv2d_1a_3x3']['bn']
  bias = np.asarray(variables['params']['conv2d_1a_3x3']['bn']['bias'])
  expected = ((conv - np.asarray(stats['mean'], np.float64))
              / np.sqrt(np.asarray(stats['var'], np.float64) + 1e-3) + bias)
  np.testing.assert_allclose(_output(inter, 'conv2d_1a_3x3', 'bn'), expected,
                             rtol=1e-5, atol=1e-5)
  # An example's logits do not depend on the rest of the batch.
  changed_logits, _ = apply(variables, x.at[1].set(_images(seed=5)[1]))
  np.testing.assert_allclose(changed_logits[0], logits[0], rtol=1e-5, atol=1e-6)
  assert float(np.max(np.abs(changed_logits[1] - logits[1]))) > 0.01


def test_zero_fraction_counts_the_last_feature_map():
  _, variables, apply = _eval_pass()
  _, state = apply(variables, _images())
  last = state['intermediates']['conv2d_7b_1x1']['__call__'][0]
  (zero_fraction,) = state['intermediates']['zero_fraction']
  assert 0.05 < float(zero_fraction) < 0.95
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


def test_batchnorm_has_no_scale_by_default():
  # The released settings; the tests above check their effect.
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
