"""The networks' initialisers: Flax's values when called, the right
distributions when drawn in bulk, and the bulk draw's bookkeeping."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception import initializers
from inception import models


def _tiny():
  return models.create_model('inception_resnet_v2', num_classes=7,
                             repeats=(1, 1, 1), width_multiplier=0.25)


def _images():
  return jnp.zeros((1, 75, 75, 3))


@pytest.mark.parametrize('ours, flax_init', [
    (initializers.VarianceScaling(2.0, 'fan_in', 'truncated_normal'),
     nn.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal')),
    (initializers.xavier_uniform(), nn.initializers.xavier_uniform()),
])
def test_called_directly_they_are_flax_initialisers(ours, flax_init):
  key = jax.random.key(3)
  np.testing.assert_array_equal(ours(key, (3, 3, 16, 32)),
                                flax_init(key, (3, 3, 16, 32)))


@pytest.mark.parametrize('init, shape, std, bound', [
    # He: variance 2 / fan_in, fan_in = 3 * 3 * 64.
    (initializers.VarianceScaling(2.0, 'fan_in', 'truncated_normal'),
     (3, 3, 64, 96), math.sqrt(2.0 / 576), 2.0 / 0.87962566103423978
     * math.sqrt(2.0 / 576)),
    # Glorot: uniform on +-sqrt(6 / (fan_in + fan_out)), fan_out = 9 * 96.
    (initializers.xavier_uniform(), (3, 3, 64, 96),
     math.sqrt(2.0 / (576 + 864)), math.sqrt(6.0 / (576 + 864))),
    (initializers.xavier_uniform(), (1536, 1000),
     math.sqrt(2.0 / 2536), math.sqrt(6.0 / 2536)),
])
def test_drawn_values_have_the_initialisers_distribution(init, shape, std,
                                                         bound):
  values = initializers.draw(lambda: init(jax.random.key(0), shape),
                             jax.random.key(1))
  assert len(values) == 1 and values[0].shape == shape
  assert values[0].dtype == np.float32
  assert abs(values[0].std() / std - 1.0) < 0.02
  assert abs(values[0].mean()) < 0.02 * std
  assert np.abs(values[0]).max() <= bound * (1 + 1e-6)
  assert np.abs(values[0]).max() > 0.98 * bound


def test_drawn_init_matches_model_init_but_for_the_random_kernels():
  model = _tiny()
  key = jax.random.key(0)

  def create():
    return model.init(key, _images(), train=False)

  drawn = initializers.draw(create, jax.random.key(1))

  def init(values):
    with initializers.drawn_from(values):
      return create()

  fast = jax.jit(init)(drawn)
  plain = jax.jit(create)()
  assert jax.tree.structure(fast) == jax.tree.structure(plain)
  kernels = 0
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(fast),
                          jax.tree.leaves(plain)):
    assert a.shape == b.shape and a.dtype == b.dtype
    if path[-1].key == 'kernel':
      kernels += 1
      # Same scale as Flax's own draw (where the sample is large enough to
      # tell), different values.
      assert not np.array_equal(a, b)
      if a.size >= 2000:
        assert 0.85 < float(jnp.std(a) / jnp.std(b)) < 1.15
    else:
      np.testing.assert_array_equal(a, b)  # Zeros and ones, as Flax's.
  assert kernels == len(drawn)
  # Every kernel has its own share of the pools: no two are equal.
  flat = sorted(float(v.ravel()[0]) for v in drawn)
  assert len(set(flat)) == len(flat)


def test_the_draw_depends_on_the_key_only():
  model = _tiny()

  def create():
    return model.init(jax.random.key(5), _images(), train=False)

  first = initializers.draw(create, jax.random.key(1))
  again = initializers.draw(create, jax.random.key(1))
  other = initializers.draw(create, jax.random.key(2))
  for a, b, c in zip(first, again, other):
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
  assert [v.shape for v in first] == [
      s.shape for s in initializers.shapes(create)]


def test_values_for_another_network_are_refused():
  small = initializers.draw(
      lambda: _tiny().init(jax.random.key(0), _images(), train=False),
      jax.random.key(1))
  wider = models.create_model('inception_resnet_v2', num_classes=7,
                              repeats=(1, 1, 1), width_multiplier=0.5)
  with pytest.raises(ValueError, match='has shape .* the network asks for'):
    with initializers.drawn_from(small):
      jax.eval_shape(lambda: wider.init(jax.random.key(0), _images(),
                                        train=False))
  with pytest.raises(ValueError, match=r'used 1 of 2 drawn parameters'):
    with initializers.drawn_from(small[:2]):
      initializers.xavier_uniform()(None, small[0].shape)
  with pytest.raises(ValueError, match='asks for more than the 1 drawn'):
    with initializers.drawn_from(small[:1]):
      for _ in range(2):
        initializers.xavier_uniform()(None, small[0].shape)


def test_bad_settings_fail_in_one_line():
  with pytest.raises(ValueError, match="distribution must be one of"):
    initializers.VarianceScaling(1.0, 'fan_in', 'normal')
  with pytest.raises(ValueError, match="mode must be"):
    initializers.VarianceScaling(1.0, 'fan', 'uniform')
