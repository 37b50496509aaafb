"""Tests of inception/plan.py: every bad config fails in one line; derived values."""

import collections
import importlib

import pytest

from configs import default
from inception import plan

Info = collections.namedtuple('Info', 'num_classes num_train_examples num_eval_examples')


def _config(**overrides):
  config = default.get_config()
  config.model = 'inception_resnet_v2'
  config.image_size = 75
  config.batch_size = 64
  for key, value in overrides.items():
    config[key] = value
  return config


def _info(config):
  del config
  return Info(10, 5000, 1000)


@pytest.mark.parametrize('overrides, field, fix', [
    ({'model': 'inception_v5'}, 'model', 'inception_v4'),
    ({'image_size': 64}, 'image_size', 'image_size=75'),
    ({'train_canvas_size': 74}, 'train_canvas_size', 'train_canvas_size=75'),
    ({'batch_size': 100}, 'batch_size', 'multiple of 8'),
    ({'learning_rate': -0.1}, 'learning_rate', 'positive'),
    ({'dtype': 'float16'}, 'dtype', 'bfloat16'),
    ({'batch_norm_group_size': 3}, 'batch_norm_group_size', 'divisor of 8'),
    ({'ema_decay': 1.0}, 'ema_decay', '[0, 1)'),
    ({'num_epochs': 0.0}, 'num_epochs', 'positive'),
    ({'grad_clip_norm': -1.0}, 'grad_clip_norm', 'turn it off'),
    ({'checkpoint_every_steps': 0}, 'checkpoint_every_steps', 'at least 1'),
    ({'aux_logits': True, 'model': 'inception_resnet_v1'}, 'aux_logits',
     'aux_logits=False'),
    ({'eval_views': '10'}, 'eval_views', 'single, 12 or 144'),
    ({'eval_crop': 'corner'}, 'eval_crop', 'resize_shorter'),
    ({'eval_crop_fraction': 0.0}, 'eval_crop_fraction', '0.875'),
    ({'eval_weights': 'last'}, 'eval_weights', 'moving average'),
])
def test_bad_config_names_the_field_and_the_fix(overrides, field, fix):
  with pytest.raises(plan.ConfigError) as e:
    plan.make_plan(_config(**overrides), 8, _info)
  message = str(e.value)
  assert '\n' not in message
  assert message.startswith(field) or field in message.split(':')[0]
  assert fix in message


def test_bad_model_override_is_a_config_error():
  config = _config()
  config.model_overrides.width_multiplier = -1.0
  with pytest.raises(plan.ConfigError, match='width_multiplier'):
    plan.make_plan(config, 8, _info)


def test_missing_dataset_is_a_config_error_before_anything_else():
  def missing(config):
    raise ValueError('Dataset imagenet2012 needs a manual download in /x')
  with pytest.raises(plan.ConfigError, match='^dataset: .*manual download'):
    plan.make_plan(_config(), 8, missing)


def test_dataset_is_not_read_when_the_config_is_bad():
  def must_not_run(config):
    raise AssertionError('dataset read before the config was checked')
  with pytest.raises(plan.ConfigError, match='image_size'):
    plan.make_plan(_config(image_size=50), 8, must_not_run)


def test_learning_rate_scales_linearly_with_the_global_batch():
  run = plan.make_plan(_config(batch_size=512, reference_batch_size=256,
                               learning_rate=0.045), 8, _info)
  assert run.learning_rate == pytest.approx(0.09)
  assert run.per_device_batch == 64
  assert run.steps_per_epoch == pytest.approx(5000 / 512)


def test_num_train_steps_from_epochs_unless_set():
  assert plan.make_plan(_config(num_epochs=2.0), 8, _info).num_train_steps == 157
  run = plan.make_plan(_config(num_epochs=2.0, num_train_steps=7), 8, _info)
  assert run.num_train_steps == 7


def test_batch_norm_groups():
  assert plan.make_plan(_config(), 8, _info).batch_norm_groups == 1
  run = plan.make_plan(_config(batch_norm_group_size=4), 8, _info)
  assert run.batch_norm_groups == 16
  assert run.num_classes == 10 and run.num_eval_examples == 1000


@pytest.mark.parametrize('name', ['inception_v3', 'inception_v4',
                                  'inception_resnet_v1', 'inception_resnet_v2'])
def test_imagenet_configs_pass_the_checks(name):
  config = importlib.import_module(f'configs.{name}').get_config()
  assert config.model == name and config.dataset == 'imagenet2012'
  imagenet = Info(1000, 1_281_167, 50_000)
  result = plan.make_plan(config, 8, lambda config: imagenet)
  assert result.num_train_steps == 500_456  # ceil(100 epochs * 1,281,167 / 256)


def test_the_views_checked_are_those_the_pipeline_makes():
  preprocessing = importlib.import_module('inception.preprocessing')
  assert plan._VIEWS == preprocessing.VIEWS


def test_evaluations_fall_on_the_first_step_of_each_interval_and_the_end():
  # 5000 examples, batch 64: 78.125 steps an epoch, 8 epochs = 625 steps.
  config = _config(num_epochs=8.0, eval_every_epochs=1.0)
  p = plan.make_plan(config, 8, _info)
  assert p.eval_every_steps == pytest.approx(78.125)
  assert [s for s in range(1, 626) if p.is_eval_step(s)] == [
      79, 157, 235, 313, 391, 469, 547, 625]
  half = plan.make_plan(_config(num_epochs=1.0, eval_every_epochs=0.5), 8,
                        _info)
  assert [s for s in range(1, half.num_train_steps + 1)
          if half.is_eval_step(s)] == [40, 79]
  end_only = plan.make_plan(_config(num_epochs=1.0), 8, _info)
  assert [s for s in range(1, 80) if end_only.is_eval_step(s)] == [79]
