"""Tests of inception/pretrained.py: fine-tuning from converted weights."""

import flax.traverse_util
import jax
import numpy as np
import optax
import pytest

from configs import tiny
from inception import convert
from inception import models
from inception import multihost
from inception import plan
from inception import pretrained
import train


def _state(config, num_classes, seed=0):
  config.seed = seed
  model = models.create_model_from_config(config, num_classes)
  state, _, shardings = train.create_train_state(
      model, optax.sgd(0.1), config, multihost.make_mesh())
  return state, shardings


def _save(directory, state, **kwargs):
  model_kwargs = dict(name='inception_resnet_v1', num_classes=5,
                      aux_logits=False, bn_scale=False,
                      pool_count_include_pad=False)
  model_kwargs.update(kwargs)
  convert.save_converted(str(directory), {'params': state.params,
                                          'batch_stats': state.batch_stats},
                         model_kwargs, {'source': 'test'})


@pytest.fixture(scope='module')
def five_class_weights(tmp_path_factory):
  directory = tmp_path_factory.mktemp('weights')
  source, _ = _state(tiny.get_config(), num_classes=5, seed=1)
  _save(directory, source)
  return str(directory), jax.device_get(source)


def test_weights_replace_all_but_a_classifier_of_another_size(
    five_class_weights):
  directory, source = five_class_weights
  config = tiny.get_config()
  config.init_from = directory
  fresh, shardings = _state(config, num_classes=10)
  merged = pretrained_merge(config, fresh, shardings)
  flat = flax.traverse_util.flatten_dict
  src, new, init = (flat(jax.device_get(s.params)) for s in (source, merged,
                                                              fresh))
  for path, value in new.items():
    if path[0] == 'logits':
      np.testing.assert_array_equal(value, init[path])  # 5 -> 10 classes
      assert value.shape[-1] == 10
    else:
      np.testing.assert_array_equal(value, src[path])
      if path[-1] == 'kernel':  # biases start at zero in both
        assert not np.array_equal(value, init[path])
  np.testing.assert_array_equal(
      merged.batch_stats['mixed_6a']['branch0_conv0']['bn']['var'],
      source.batch_stats['mixed_6a']['branch0_conv0']['bn']['var'])
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(merged.ema),
               jax.device_get({'params': merged.params,
                               'batch_stats': merged.batch_stats}))


def pretrained_merge(config, state, shardings):
  return pretrained.merge(state, pretrained.load_checked(config), shardings,
                          config.init_from)


def test_weights_of_another_network_fail_in_one_line(five_class_weights,
                                                      tmp_path):
  directory, source = five_class_weights
  _save(tmp_path, source, name='inception_v4')
  config = tiny.get_config()
  config.init_from = str(tmp_path)
  with pytest.raises(plan.ConfigError, match=r"^model: .*set --config.model=inception_v4$"):
    pretrained.load_checked(config)
  config.init_from = directory
  config.model_overrides.width_multiplier = 0.5
  state, shardings = _state(config, num_classes=5)
  with pytest.raises(plan.ConfigError, match='^init_from: .* has shape'):
    pretrained.merge(state, pretrained.load_checked(config), shardings,
                     directory)


def test_a_run_starts_from_the_weights(five_class_weights, tmp_path):
  directory, source = five_class_weights
  config = tiny.get_config()
  config.init_from = directory
  config.num_train_steps = 2
  config.log_every_steps = 2
  state, scalars = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 2 and np.isfinite(scalars['train/loss'])
  # Two small steps move the weights only a little from where they started.
  start = source.params['mixed_6a']['branch0_conv0']['conv']['kernel']
  end = jax.device_get(state.params['mixed_6a']['branch0_conv0']['conv']['kernel'])
  assert np.abs(end - start).max() < 0.1 * np.abs(start).max()
