"""Tests of inception/optim.py against values computed by hand."""

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from inception import optim


def _schedule(warmup_epochs=0.0):
  return optim.learning_rate_schedule(
      0.1, steps_per_epoch=10, decay_rate=0.94, decay_epochs=2.0,
      warmup_epochs=warmup_epochs)


@pytest.mark.parametrize('step, expected', [
    (0, 0.1), (19, 0.1), (20, 0.094), (39, 0.094), (40, 0.1 * 0.94**2),
    (205, 0.1 * 0.94**10)])
def test_schedule_is_a_staircase_of_0_94_every_two_epochs(step, expected):
  assert float(_schedule()(step)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize('step, expected', [
    (0, 0.0), (5, 0.05), (10, 0.1), (25, 0.094)])
def test_warmup_ramps_linearly_and_keeps_the_staircase(step, expected):
  assert float(_schedule(warmup_epochs=1.0)(step)) == pytest.approx(
      expected, rel=1e-6, abs=1e-9)


def _tf_rmsprop_by_hand(w, grads, lr, decay=0.9, momentum=0.9, eps=1.0,
                        weight_decay=0.0):
  """TensorFlow's RMSProp update, written out, for a scalar weight."""
  ms, mom = 1.0, 0.0
  for g in grads:
    g = g + weight_decay * w
    ms = decay * ms + (1 - decay) * g * g
    mom = momentum * mom + lr * g / math.sqrt(ms + eps)
    w = w - mom
  return w


def _run(tx, params, grads):
  state = tx.init(params)
  for g in grads:
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
  return params


def test_rmsprop_matches_tensorflow_semantics():
  tx = optim.create_optimizer(
      lambda step: 0.1, rmsprop_decay=0.9, rmsprop_momentum=0.9,
      rmsprop_epsilon=1.0, grad_clip_norm=0.0, weight_decay=0.0,
      weight_decay_param_names=('kernel',))
  grads = [0.5, -0.25, 1.5]
  params = _run(tx, {'kernel': jnp.array(1.0)},
                [{'kernel': jnp.array(g)} for g in grads])
  expected = _tf_rmsprop_by_hand(1.0, grads, lr=0.1)
  # Two steps by hand: 1 - 0.05/sqrt(1.925) = 0.96396, then ... = 0.89484.
  assert _tf_rmsprop_by_hand(1.0, [0.5, 0.5], lr=0.1) == pytest.approx(
      0.8948419, abs=1e-6)
  assert float(params['kernel']) == pytest.approx(expected, abs=1e-6)
  # PyTorch's variant (accumulator from 0, eps outside the root) differs.
  torch_style = _run(optax.rmsprop(0.1, decay=0.9, eps=1.0, momentum=0.9,
                                   eps_in_sqrt=False),
                     {'kernel': jnp.array(1.0)},
                     [{'kernel': jnp.array(g)} for g in grads])
  assert abs(float(torch_style['kernel']) - expected) > 1e-3


def test_weight_decay_touches_only_the_named_parameters():
  tx = optim.create_optimizer(
      lambda step: 0.1, rmsprop_decay=0.9, rmsprop_momentum=0.9,
      rmsprop_epsilon=1.0, grad_clip_norm=0.0, weight_decay=0.5,
      weight_decay_param_names=('kernel',))
  params = {'conv': {'kernel': jnp.array(2.0)}, 'bn': {'bias': jnp.array(2.0)}}
  zero = {'conv': {'kernel': jnp.array(0.0)}, 'bn': {'bias': jnp.array(0.0)}}
  out = _run(tx, params, [zero])
  assert float(out['conv']['kernel']) == pytest.approx(
      _tf_rmsprop_by_hand(2.0, [0.0], lr=0.1, weight_decay=0.5), abs=1e-6)
  assert float(out['conv']['kernel']) < 2.0
  assert float(out['bn']['bias']) == 2.0


def test_clipping_scales_the_gradient_to_the_global_norm():
  tx = optim.create_optimizer(
      lambda step: 0.1, rmsprop_decay=0.9, rmsprop_momentum=0.9,
      rmsprop_epsilon=1.0, grad_clip_norm=2.0, weight_decay=0.0,
      weight_decay_param_names=())
  # Global norm 5 (3-4-5); clipped to 2 the gradients become 1.2 and 1.6.
  out = _run(tx, {'a': jnp.array(0.0), 'b': jnp.array(0.0)},
             [{'a': jnp.array(3.0), 'b': jnp.array(4.0)}])
  assert float(out['a']) == pytest.approx(
      _tf_rmsprop_by_hand(0.0, [1.2], lr=0.1), abs=1e-6)
  assert float(out['b']) == pytest.approx(
      _tf_rmsprop_by_hand(0.0, [1.6], lr=0.1), abs=1e-6)


def test_decay_mask_marks_leaves_by_name():
  params = {'conv': {'kernel': 1, 'bias': 2}, 'bn': {'bias': 3, 'scale': 4}}
  assert optim.decay_mask(params, ('kernel', 'scale')) == {
      'conv': {'kernel': True, 'bias': False},
      'bn': {'bias': False, 'scale': True}}


@pytest.mark.parametrize('step, expected', [
    (0, 0.1), (8, 0.5), (1000, 1001 / 1010), (10**6, 0.9999)])
def test_ema_decay_follows_tensorflow_num_updates_rule(step, expected):
  assert float(optim.ema_decay_at(step, 0.9999)) == pytest.approx(expected, rel=1e-6)


def test_ema_decay_zero_tracks_the_latest_weights():
  assert float(optim.ema_decay_at(5, 0.0)) == 0.0
  out = optim.update_ema({'w': jnp.array(1.0)}, {'w': jnp.array(3.0)}, 0.0)
  assert float(out['w']) == 3.0


def test_update_ema_mixes_average_and_latest():
  out = optim.update_ema({'w': jnp.array([1.0, 2.0])},
                         {'w': jnp.array([3.0, 6.0])}, jnp.array(0.75))
  np.testing.assert_allclose(out['w'], [1.5, 3.0])
