"""The networks' convolution against XLA's: values and both gradients."""

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from inception import conv

# (input side, in, kernel, out, stride, padding): every path of conv.py.
CASES = [
    (9, 8, (1, 1), 6, 1, 'SAME'),     # matrix product
    (9, 8, (1, 1), 6, 2, 'VALID'),    # strided matrix product
    (6, 5, (3, 3), 7, 1, 'SAME'),     # small square: XLA's filter gradient
    (10, 5, (3, 3), 7, 2, 'VALID'),   # strided: unrolled windows
    (9, 5, (1, 7), 4, 1, 'SAME'),     # not square: unrolled windows
    (9, 5, (7, 1), 4, 1, 'SAME'),
    (11, 3, (5, 5), 4, 1, 'VALID'),
    (15, 16, (3, 3), 4, 1, 'VALID'),  # wide, unpadded: the padding rule
    (17, 16, (3, 3), 4, 2, 'VALID'),
    (14, 16, (3, 3), 4, 1, 'SAME'),   # wide and padded: unrolled windows
    (14, 16, (1, 7), 4, 1, 'SAME'),   # wide, unpadded in one direction
]


def _xla(x, kernel, stride, padding):
  return lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                  precision=lax.Precision.HIGHEST)


@pytest.fixture
def small_layers_take_the_cpu_rules(monkeypatch):
  # The rules' thresholds, lowered so that small layers exercise every path.
  monkeypatch.setattr(conv, '_MIN_FLOPS', 0)
  monkeypatch.setattr(conv, '_WIDE', 12)
  monkeypatch.setattr(conv, '_SMALL_SQUARE', 6)


@pytest.mark.parametrize('side,cin,kernel,cout,stride,padding', CASES)
@pytest.mark.usefixtures('small_layers_take_the_cpu_rules')
def test_values_and_gradients_equal_xlas_convolution(side, cin, kernel, cout,
                                                     stride, padding):
  kx, kk, kg = jax.random.split(jax.random.key(side * 31 + cin), 3)
  x = jax.random.normal(kx, (2, side, side, cin))
  k = jax.random.normal(kk, kernel + (cin, cout)) / np.sqrt(cin * np.prod(kernel))
  ref, ref_vjp = jax.vjp(lambda a, b: _xla(a, b, stride, padding), x, k)
  out, out_vjp = jax.vjp(lambda a, b: conv.conv2d(a, b, stride, padding), x, k)
  assert out.shape == ref.shape
  g = jax.random.normal(kg, ref.shape)
  for mine, theirs in zip((out,) + out_vjp(g), (ref,) + ref_vjp(g)):
    scale = float(jnp.abs(theirs).max())
    assert float(jnp.abs(mine - theirs).max()) <= 1e-5 * scale


def test_small_layers_keep_xlas_convolution():
  x, k = jnp.ones((2, 14, 14, 16)), jnp.ones((3, 3, 16, 4))
  text = jax.jit(lambda a, b: jax.grad(
      lambda b: conv.conv2d(a, b, 1, 'VALID').sum())(b)).lower(x, k).as_text()
  assert 'concatenate' not in text


def test_the_module_has_flax_convs_parameters_and_outputs():
  x = jax.random.normal(jax.random.key(0), (2, 12, 12, 5))
  ours = conv.Conv(7, (3, 1), strides=2, padding='SAME', use_bias=True)
  flax_conv = nn.Conv(7, (3, 1), strides=2, padding='SAME', use_bias=True)
  variables = ours.init(jax.random.key(1), x)
  theirs = flax_conv.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, theirs)
  np.testing.assert_array_equal(variables['params']['kernel'],
                                theirs['params']['kernel'])
  variables = {'params': {'kernel': variables['params']['kernel'],
                          'bias': jnp.arange(7.0)}}
  np.testing.assert_allclose(ours.apply(variables, x),
                             flax_conv.apply(variables, x), atol=1e-5)


@pytest.mark.usefixtures('small_layers_take_the_cpu_rules')
def test_the_cpu_rules_stay_off_other_backends():
  x = jnp.ones((1, 14, 14, 16))
  k = jnp.ones((3, 3, 16, 4))
  step = jax.jit(lambda a, b: jax.grad(
      lambda b: conv.conv2d(a, b, 1, 'VALID').sum())(b))
  on = {platform: step.trace(x, k).lower(
      lowering_platforms=(platform,)).as_text() for platform in ('cpu', 'cuda')}
  # The CPU's filter gradient unrolls the windows; elsewhere it is XLA's own
  # convolution.
  assert 'concatenate' in on['cpu']
  assert 'concatenate' not in on['cuda'] and 'convolution' in on['cuda']
