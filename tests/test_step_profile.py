"""Where a step's time goes: placing operations, and a real traced step."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from inception import step_profile


@pytest.mark.parametrize('op_name, placed', [
    ('jit(train_step)/transpose(jvp(Inception))/block35_3/branch_0/conv/'
     'dot_general', ('backward', 'block35_3')),
    ('jit(train_step)/jvp(Inception)/mixed_5b/branch_1_conv_0/bn/reduce_sum',
     ('forward', 'mixed_5b')),
    ('jit(eval_step)/Inception/logits/dot_general', ('forward', 'logits')),
    ('jit(train_step)/transpose(jvp(Inception))/mul', ('backward', '')),
    ('jit(train_step)/add', ('other', '')),
    ('', ('other', '')),
])
def test_operations_are_placed_by_direction_and_layer(op_name, placed):
  assert step_profile.place(op_name) == placed


def test_stage_drops_the_repeat_number():
  assert step_profile.stage('block35_3') == 'block35'
  assert step_profile.stage('mixed_5b') == 'mixed_5b'
  assert step_profile.stage('conv2d_1a_3x3') == 'conv2d_1a_3x3'


class _Net(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(16, (3, 3), name='conv_a')(x))
    x = nn.relu(nn.Conv(32, (3, 3), name='conv_b')(x))
    return nn.Dense(10, name='head')(x.mean(axis=(1, 2)))


def test_a_traced_step_is_summed_by_layer_and_direction():
  net = _Net()
  images = jnp.ones((8, 32, 32, 3))
  params = net.init(jax.random.key(0), images)

  def step(params, images):
    loss, grads = jax.value_and_grad(
        lambda p: jnp.square(net.apply(p, images)).sum())(params)
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), loss

  compiled = jax.jit(step).lower(params, images).compile()
  current = [params]

  def run():
    current[0], loss = compiled(current[0], images)
    jax.block_until_ready((current[0], loss))

  run()
  summary = step_profile.profile(run, compiled, steps=2, top=50)
  layers = {(name, direction): seconds
            for name, direction, seconds in summary['by_layer']}
  for layer in ('conv_a', 'conv_b', 'head'):
    assert layers[(layer, 'forward')] > 0
    assert layers[(layer, 'backward')] > 0
  # The parameter update is outside the network.
  assert any(d == 'other' for _, d, _ in summary['by_kind'])
  total = summary['seconds_per_step']
  assert total > 0
  for table in ('by_kind', 'by_stage', 'by_layer'):
    assert sum(row[-1] for row in summary[table]) == pytest.approx(total,
                                                                   rel=1e-3)
  assert sum(row[-1] for row in summary['by_direction']) == pytest.approx(
      total, rel=1e-3)
