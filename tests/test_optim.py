"""Tests of inception/optim.py against values computed by hand."""

import math

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from inception import models
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


def test_bias_marks_layer_biases_and_bn_bias_the_batchnorm_offsets():
  params = {'conv': {'kernel': 1, 'bias': 2}, 'bn': {'bias': 3, 'scale': 4}}
  assert optim.decay_mask(params, ('kernel', 'bias')) == {
      'conv': {'kernel': True, 'bias': True},
      'bn': {'bias': False, 'scale': False}}
  assert optim.decay_mask(params, ('bn_bias',)) == {
      'conv': {'kernel': False, 'bias': False},
      'bn': {'bias': True, 'scale': False}}


@pytest.fixture(scope='module')
def tiny_irv2_params():
  """Parameter shapes of a narrow IRv2 with the aux head and BN on the sums."""
  model = models.create_model('inception_resnet_v2', num_classes=10,
                              aux_logits=True, repeats=(1, 1, 1),
                              width_multiplier=0.25, bn_on_sum=True)
  variables = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 75, 75, 3)), train=False))
  return variables['params']


def _marked(params, names):
  mask = flax.traverse_util.flatten_dict(optim.decay_mask(params, names))
  return {path for path, m in mask.items() if m}


def test_decay_mask_on_a_network_kernels_only(tiny_irv2_params):
  flat = flax.traverse_util.flatten_dict(tiny_irv2_params)
  kernels = {path for path in flat if path[-1] == 'kernel'}
  assert len(kernels) > 20
  assert _marked(tiny_irv2_params, ('kernel',)) == kernels


def test_decay_mask_on_a_network_adds_layer_biases_not_batchnorm(
    tiny_irv2_params):
  flat = flax.traverse_util.flatten_dict(tiny_irv2_params)
  kernels = _marked(tiny_irv2_params, ('kernel',))
  added = _marked(tiny_irv2_params, ('kernel', 'bias')) - kernels
  # The biased layers by name: every residual block's up-projection (the final
  # block8 included) and both classifiers.
  assert added == {
      ('block35_1', 'projection', 'bias'), ('block17_1', 'projection', 'bias'),
      ('block8', 'projection', 'bias'), ('logits', 'bias'),
      ('aux_head', 'logits', 'bias')}
  batchnorm = {path for path in flat
               if path[-1] == 'bias' and path[-2] in ('bn', 'sum_bn')}
  assert ('block35_1', 'sum_bn', 'bias') in batchnorm
  assert ('conv2d_1a_3x3', 'bn', 'bias') in batchnorm
  assert not added & batchnorm
  # Every bias is one or the other, and 'bn_bias' selects the BatchNorm ones.
  assert added | batchnorm == {path for path in flat if path[-1] == 'bias'}
  assert _marked(tiny_irv2_params, ('bn_bias',)) == batchnorm


def _small_params():
  return {'conv': {'kernel': jnp.array([1.0, 2.0]), 'bias': jnp.array([3.0])},
          'bn': {'bias': jnp.array([4.0]), 'scale': jnp.array([5.0])}}


@pytest.mark.parametrize('names, expected', [
    (('kernel',), 0.5 * 0.1 * (1 + 4)),
    (('kernel', 'bias'), 0.5 * 0.1 * (1 + 4 + 9)),
    (('kernel', 'bias', 'bn_bias', 'scale'), 0.5 * 0.1 * (1 + 4 + 9 + 16 + 25))])
def test_l2_loss_by_hand(names, expected):
  loss = optim.l2_loss(_small_params(), 0.1, names)
  assert loss.dtype == jnp.float32 and loss.shape == ()
  assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_l2_loss_is_zero_without_weight_decay():
  loss = optim.l2_loss(_small_params(), 0.0, ('kernel', 'bias'))
  assert loss.dtype == jnp.float32 and float(loss) == 0.0


@pytest.mark.parametrize('names', [('kernel',), ('kernel', 'bias')])
def test_l2_loss_gradient_is_the_decay_the_optimizer_adds(names):
  params = _small_params()
  grad = jax.grad(optim.l2_loss)(params, 0.1, names)
  tx = optax.add_decayed_weights(
      0.1, mask=lambda p: optim.decay_mask(p, names))
  zeros = jax.tree.map(jnp.zeros_like, params)
  added, _ = tx.update(zeros, tx.init(params), params)
  jax.tree.map(np.testing.assert_allclose, grad, added)
  # Not vacuous: the decay reaches the kernel and spares the BatchNorm offset.
  np.testing.assert_allclose(grad['conv']['kernel'], [0.1, 0.2], rtol=1e-6)
  assert float(grad['bn']['bias'][0]) == 0.0


@pytest.mark.parametrize('names', [('kernel',), ('kernel', 'bias')])
def test_optimizer_decay_equals_stepping_on_the_l2_loss_gradient(names):
  # create_optimizer with weight decay and a zero gradient moves the weights as
  # the same optimizer without decay does on the gradient of l2_loss.
  def optimizer(weight_decay):
    return optim.create_optimizer(
        lambda step: 0.1, rmsprop_decay=0.9, rmsprop_momentum=0.9,
        rmsprop_epsilon=1.0, grad_clip_norm=0.0, weight_decay=weight_decay,
        weight_decay_param_names=names)
  params = _small_params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  decayed = _run(optimizer(0.5), params, [zeros])
  on_loss = _run(optimizer(0.0), params,
                 [jax.grad(optim.l2_loss)(params, 0.5, names)])
  jax.tree.map(np.testing.assert_allclose, decayed, on_loss)
  assert float(decayed['conv']['kernel'][0]) < 1.0
  assert (float(decayed['conv']['bias'][0]) < 3.0) == ('bias' in names)
  assert float(decayed['bn']['bias'][0]) == 4.0


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
