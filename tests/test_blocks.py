"""Tests of inception/blocks.py: TF-slim's relu6 clip of the scaled residual.

The block under test has a zero projection kernel, so its up-projection is its
bias, and each channel's scaled residual is a number chosen here. (Shapes,
counts and the plain residual sum are tested in tests/test_models.py.)
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception import blocks
from inception import layers

SCALE = 0.2
# Scaled residuals of 20, -20 and 0.2: over the clip, under it, and inside it.
PROJECTION_BIAS = np.array([100.0, -100.0, 1.0], np.float32)
# Shortcut values: below zero (the clip shows through relu6's floor) and above
# six (it shows through relu6's ceiling).
SHORTCUTS = (-3.0, 9.0)


def _block(activation, bn_on_sum=False):
  conv_def = nn.Conv
  norm = functools.partial(nn.BatchNorm, use_running_average=True)
  conv_bn = functools.partial(layers.ConvBN, conv=conv_def, norm=norm)
  return blocks.InceptionResNetBlock(
      ((layers.conv(2, 1),),), conv_bn, conv_def, norm, scale=SCALE,
      activation=activation, bn_on_sum=bn_on_sum)


def _run(activation_name, bn_on_sum=False):
  """The block's output on a 1x2 image, and the scaled residual it adds."""
  block = _block(layers.activation(activation_name), bn_on_sum)
  x = jnp.broadcast_to(jnp.array(SHORTCUTS, jnp.float32)[None, None, :, None],
                       (1, 1, 2, 3))
  variables = block.init(jax.random.key(0), x)
  params = dict(variables['params'])
  params['projection'] = {
      'kernel': jnp.zeros_like(params['projection']['kernel']),
      'bias': jnp.asarray(PROJECTION_BIAS)}
  out = block.apply({**variables, 'params': params}, x)
  residual = jnp.float32(SCALE) * jnp.asarray(PROJECTION_BIAS)
  return np.asarray(out), x, residual


def test_relu6_clips_the_scaled_residual_to_six_before_the_sum():
  out, x, residual = _run('relu6')
  expected = jax.nn.relu6(x + jnp.clip(residual, -6.0, 6.0))
  np.testing.assert_array_equal(out, expected)
  # By hand: channel 0 adds min(20, 6) = 6, channel 1 adds max(-20, -6) = -6.
  np.testing.assert_array_equal(out[0, 0, :, 0], [3.0, 6.0])
  np.testing.assert_array_equal(out[0, 0, :, 1], [0.0, 3.0])
  np.testing.assert_array_equal(out[0, 0, :, 2], [0.0, 6.0])
  # Unclipped, relu6(-3 + 20) = 6 and relu6(9 - 20) = 0 instead.
  unclipped = np.asarray(jax.nn.relu6(x + residual))
  assert unclipped[0, 0, 0, 0] == 6.0 and unclipped[0, 0, 1, 1] == 0.0


def test_relu_adds_the_scaled_residual_unclipped():
  out, x, residual = _run('relu')
  np.testing.assert_array_equal(out, jax.nn.relu(x + residual))
  np.testing.assert_allclose(out[0, 0, :, 0], [17.0, 29.0], rtol=1e-6)
  np.testing.assert_array_equal(out[0, 0, :, 1], [0.0, 0.0])


def test_linear_block_adds_the_scaled_residual_unclipped():
  out, x, residual = _run('none')
  np.testing.assert_array_equal(out, x + residual)
  np.testing.assert_allclose(out[0, 0, 0, :], [17.0, -23.0, -2.8], rtol=1e-6)


def test_relu6_clip_comes_before_the_batchnorm_on_the_sum():
  # Running statistics (0, 1) make the sum's BatchNorm x / sqrt(1 + eps).
  out, x, residual = _run('relu6', bn_on_sum=True)
  expected = jax.nn.relu6((x + jnp.clip(residual, -6.0, 6.0))
                          / jnp.sqrt(1.0 + 1e-5))
  np.testing.assert_allclose(out, expected, rtol=1e-6)
  assert out[0, 0, 0, 0] == pytest.approx(3.0 / np.sqrt(1.0 + 1e-5), rel=1e-6)


@pytest.mark.parametrize('name, clip', [('relu6', 6.0), ('relu', None),
                                        ('none', None)])
def test_residual_clip_recognises_the_configured_relu6(name, clip):
  assert blocks.residual_clip(layers.activation(name)) == clip


def test_residual_clip_is_keyed_on_relu6_itself():
  assert blocks.residual_clip(jax.nn.relu6) == 6.0
  assert blocks.residual_clip(nn.relu6) == 6.0
  # A different function that happens to behave like relu6 is not clipped:
  # the rule is TF-slim's `activation_fn == tf.nn.relu6`, an identity test.
  assert blocks.residual_clip(lambda v: jnp.clip(v, 0.0, 6.0)) is None
