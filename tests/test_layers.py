"""The max pool's own gradient against XLA's."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception import layers


def _xla(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')


@pytest.mark.parametrize('side', [7, 8, 15])
def test_max_pool_values_and_gradient_equal_xlas(side):
  x = jax.random.normal(jax.random.key(side), (2, side, side, 3))
  y, ours = jax.vjp(layers.max_pool, x)
  ref, theirs = jax.vjp(_xla, x)
  np.testing.assert_array_equal(y, ref)
  g = jax.random.normal(jax.random.key(0), y.shape)
  # Overlapping windows add in another order: float32 rounding only.
  np.testing.assert_allclose(ours(g)[0], theirs(g)[0], rtol=0, atol=1e-6)
  assert float(jnp.abs(ours(g)[0]).sum()) > 0


def test_ties_send_the_gradient_to_the_first_maximum_as_xla_does():
  # ReLU outputs are full of equal zeros.
  x = jnp.zeros((1, 9, 9, 2)).at[0, 4, 4, 0].set(1.0)
  g = jnp.arange(1.0, 1 + 16 * 2).reshape(1, 4, 4, 2)
  ours = jax.vjp(layers.max_pool, x)[1](g)[0]
  theirs = jax.vjp(_xla, x)[1](g)[0]
  np.testing.assert_array_equal(ours, theirs)
