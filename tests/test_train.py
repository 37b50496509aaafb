"""Tests of train.py: losses and counts by hand, then real runs of a tiny network.

The runs use configs/tiny.py on the built-in dataset through the real input
pipeline, on 8 emulated devices: the reference run (tests/conftest.py), a run
whose final evaluation fails, and resumes refused for another network or
recipe. Faults injected into real processes (kill -9, SIGTERM to two
processes, a non-finite loss, a full disk) are in tests/test_train_faults.py.
"""

import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import tiny
import input_pipeline
from inception import optim
from inception import plan
from inception import runs
import train

# Measured per run, so they differ between identical runs.
_TIMING = ('train/steps_per_sec', 'train/images_per_sec', 'time', 'hours')


def test_smoothed_cross_entropy_by_hand():
  logits = jnp.array([[10.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
  labels = jnp.array([0, 3])
  log_p = np.log(np.exp([10.0, 0, 0, 0]) / np.exp([10.0, 0, 0, 0]).sum())
  first = -(0.925 * log_p[0] + 0.025 * log_p[1:].sum())
  expected = (first + np.log(4.0)) / 2
  loss = train.smoothed_cross_entropy(logits, labels, 0.1)
  assert float(loss) == pytest.approx(expected, rel=1e-5)


class _KnownLogits(nn.Module):
  """A fake network whose logits are the input's channels at pixel (0, 0)."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    return x[:, 0, 0, :]


def test_eval_step_counts_masked_top1_and_top5():
  logits = np.array([[0, 1, 2, 3, 4, 5, 6],    # label 6: top-1
                     [6, 5, 4, 3, 2, 1, 0],    # label 4: top-5 only
                     [6, 5, 4, 3, 2, 1, 0],    # label 6: neither
                     [0, 0, 0, 0, 0, 0, 9]],   # padding: never counted
                    np.float32)
  batch = {'image': jnp.asarray(logits[:, None, None, :]),
           'label': jnp.array([6, 4, 6, 6]),
           'mask': jnp.array([True, True, True, False])}
  counts = jax.jit(train.make_eval_step(_KnownLogits()))({}, batch)
  assert jax.device_get(counts) == {'top1': 1, 'top5': 2, 'count': 3}
  errors = train.evaluate(jax.jit(train.make_eval_step(_KnownLogits())), {},
                          [batch, batch])
  assert errors == {'eval/top1_error': pytest.approx(4 / 6),
                    'eval/top5_error': pytest.approx(2 / 6),
                    'eval/num_examples': 6}


def test_eval_step_averages_the_softmax_of_views():
  # Mean logits favour class 0 (30 - 2 - 2 > 0); mean probabilities favour
  # class 1 ((1 + 0.12 + 0.12) / 3 < 0.5 for class 0).
  views = np.array([[[30.0, 0.0], [-2.0, 0.0], [-2.0, 0.0]]], np.float32)
  batch = {'image': jnp.asarray(views[:, :, None, None, :]),
           'label': jnp.array([1]), 'mask': jnp.array([True])}
  counts = train.make_eval_step(_KnownLogits())({}, batch)
  assert int(counts['top1']) == 1


class _NormOnly(nn.Module):
  """BatchNorm and the sown values the train step reads, nothing else."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    y = nn.BatchNorm(use_running_average=not train, momentum=0.5,
                     use_scale=False, use_bias=False)(x)
    self.sow('intermediates', 'zero_fraction', jnp.mean(x == 0))
    return y.reshape(y.shape[0], -1)


def test_batch_norm_groups_normalise_each_group_alone():
  x = jnp.concatenate([jnp.full((2, 1, 1, 1), 1.0), jnp.full((2, 1, 1, 1), 3.0),
                       jnp.array([0.0, 2.0]).reshape(2, 1, 1, 1) + 10.0])
  variables = _NormOnly().init(jax.random.PRNGKey(0), x, train=False)
  whole, _, whole_stats, _ = train.forward_train(
      _NormOnly(), variables, x, jax.random.PRNGKey(1), groups=1)
  grouped, aux, stats, zero = train.forward_train(
      _NormOnly(), variables, x, jax.random.PRNGKey(1), groups=3)
  # Groups of two: (1, 1), (3, 3), (10, 12); each normalised to its own mean.
  np.testing.assert_allclose(grouped[:, 0], [0, 0, 0, 0, -1, 1], atol=1e-2)
  assert np.all(np.abs(np.asarray(whole[4:, 0])) > 0.8)  # global mean is 5
  # Moving statistics: 0.5 * initial + 0.5 * (mean of the groups' statistics).
  # Means: groups (1, 3, 11) and the whole batch both give 5.
  assert float(stats['BatchNorm_0']['mean'][0]) == pytest.approx(2.5)
  assert float(whole_stats['BatchNorm_0']['mean'][0]) == pytest.approx(2.5)
  # Variances: groups (0, 0, 1), the whole batch 19; the initial value is 1.
  assert float(stats['BatchNorm_0']['var'][0]) == pytest.approx(0.5 + 0.5 / 3)
  assert float(whole_stats['BatchNorm_0']['var'][0]) == pytest.approx(10.0)
  assert aux is None and float(zero) == 0.0


class _KnownLogitsWithAux(nn.Module):
  """Logits x[:, 0, 0] * scale, aux logits twice those, and a BatchNorm."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    scale = self.param('scale', nn.initializers.ones, ())
    nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
    logits = x[:, 0, 0, :] * scale
    self.sow('intermediates', 'aux_logits', 2.0 * logits)
    self.sow('intermediates', 'zero_fraction', jnp.mean(x == 0))
    return logits


def _smoothed_ce_by_hand(logits, labels, smoothing):
  logits = np.asarray(logits, np.float64)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  targets = np.full(logits.shape, smoothing / logits.shape[-1])
  targets[np.arange(len(labels)), labels] += 1 - smoothing
  return float(-(targets * log_p).sum(-1).mean())


def test_train_step_adds_the_weighted_aux_loss_and_averages_weights():
  model = _KnownLogitsWithAux()
  images = np.zeros((4, 1, 1, 3), np.float32)
  images[:, 0, 0] = [[1, 0, 0], [0, 2, 0], [0, 0, 3], [1, 1, 0]]
  labels = np.array([0, 1, 0, 2])
  variables = model.init(jax.random.PRNGKey(0), images, train=False)
  tx = optax.sgd(0.5)
  state = train.TrainState(
      step=jnp.array(0), params=variables['params'],
      batch_stats=variables['batch_stats'],
      opt_state=tx.init(variables['params']),
      ema={'params': variables['params'],
           'batch_stats': variables['batch_stats']},
      rng=jax.random.PRNGKey(1))
  config = _config(label_smoothing=0.1, aux_loss_weight=0.4, ema_decay=0.9999)
  step = jax.jit(train.make_train_step(model, tx, lambda s: 0.25 + s,
                                       config, batch_norm_groups=1))
  new, metrics = step(state, {'image': jnp.asarray(images),
                              'label': jnp.asarray(labels)})
  main = images[:, 0, 0].astype(np.float64)
  loss_at = lambda scale: (_smoothed_ce_by_hand(scale * main, labels, 0.1) +
                           0.4 * _smoothed_ce_by_hand(2 * scale * main, labels, 0.1))
  grad = (loss_at(1 + 1e-6) - loss_at(1 - 1e-6)) / 2e-6
  assert float(metrics['train/loss']) == pytest.approx(loss_at(1.0), rel=1e-5)
  assert float(metrics['train/grad_norm']) == pytest.approx(abs(grad), rel=1e-4)
  assert float(metrics['train/learning_rate']) == 0.25  # schedule at step 0
  assert float(metrics['train/top1_error']) == 0.5  # rows 0 and 1 correct
  assert int(new.step) == 1
  new_scale = float(new.params['scale'])
  assert new_scale == pytest.approx(1.0 - 0.5 * grad, rel=1e-4)
  # First update: decay min(0.9999, 1/10) = 0.1, so the average moves 90%.
  assert float(new.ema['params']['scale']) == pytest.approx(
      0.1 * 1.0 + 0.9 * new_scale, rel=1e-6)
  np.testing.assert_allclose(new.batch_stats['BatchNorm_0']['mean'],
                             0.5 * images.mean(axis=(0, 1, 2)), rtol=1e-6)


class _SmallConvNet(nn.Module):
  """Two conv+BN+ReLU layers, global average pool, dropout, classifier.

  Sows 'zero_fraction' of its last feature map, as the real networks do.
  """
  num_classes: int = 4

  @nn.compact
  def __call__(self, x, *, train: bool):
    for filters, stride in ((16, 1), (16, 2)):
      x = nn.Conv(filters, (3, 3), strides=stride, use_bias=False)(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                       use_scale=False)(x)
      x = nn.relu(x)
    self.sow('intermediates', 'zero_fraction', jnp.mean(x == 0))
    x = nn.Dropout(0.2, deterministic=not train)(jnp.mean(x, axis=(1, 2)))
    return nn.Dense(self.num_classes)(x)


def _stripes(count, seed):
  """Four classes of 16x16 images: red or blue, horizontal or vertical stripes.

  Class = 2 * colour + orientation; the stripes' phase, the contrast and the
  pixel noise are random, so no single pixel tells the class.
  """
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 4, count)
  colour, vertical = labels // 2, labels % 2
  phase = rng.integers(0, 4, count)
  # Bands two pixels wide, along the rows (horizontal) or the columns.
  grid = np.arange(16)[None, :] + phase[:, None]
  bands = ((grid // 2) % 2).astype(np.float32)  # [N, 16]
  stripes = np.where(vertical[:, None, None] == 1, bands[:, None, :],
                     bands[:, :, None])  # [N, 16, 16]
  contrast = rng.uniform(0.5, 1.0, (count, 1, 1))
  images = np.full((count, 16, 16, 3), -0.5, np.float32)
  images[np.arange(count), :, :, 2 * colour] += contrast * stripes
  images += rng.normal(0, 0.3, images.shape).astype(np.float32)
  return np.clip(images, -1, 1), labels.astype(np.int32)


def test_a_small_network_learns_a_learnable_task():
  train_images, train_labels = _stripes(512, seed=0)
  test_images, test_labels = _stripes(256, seed=1)
  batch_size, num_steps = 32, 120
  config = tiny.get_config()  # label smoothing 0.1, the paper's RMSProp
  assert (config.rmsprop_decay, config.rmsprop_momentum, config.rmsprop_epsilon,
          config.grad_clip_norm) == (0.9, 0.9, 1.0, 2.0)
  # The paper's recipe, at a rate raised for a 120-step run.
  schedule = optim.learning_rate_schedule(
      0.2, steps_per_epoch=len(train_images) / batch_size,
      decay_rate=config.learning_rate_decay_rate,
      decay_epochs=config.learning_rate_decay_epochs, warmup_epochs=0.0)
  tx = optim.optimizer_from_config(schedule, config)
  model = _SmallConvNet()

  def init():  # jitted whole, as train.create_train_state does
    variables = model.init(jax.random.PRNGKey(0), train_images[:1], train=False)
    params, stats = variables['params'], variables['batch_stats']
    return train.TrainState(step=jnp.array(0), params=params, batch_stats=stats,
                            opt_state=tx.init(params),
                            ema={'params': params, 'batch_stats': stats},
                            rng=jax.random.PRNGKey(1))

  state = jax.jit(init)()
  train_step = jax.jit(train.make_train_step(model, tx, schedule, config,
                                             batch_norm_groups=1))
  eval_step = jax.jit(train.make_eval_step(model))
  held_out = [{'image': test_images, 'label': test_labels,
               'mask': np.ones(len(test_labels), bool)}]

  def error(state):
    return train.evaluate(eval_step, {'params': state.params,
                                      'batch_stats': state.batch_stats},
                          held_out)['eval/top1_error']

  before = error(state)
  order = np.random.default_rng(2).permutation(
      np.arange(num_steps * batch_size) % len(train_images))
  losses = []
  for step in range(num_steps):
    index = order[step * batch_size:(step + 1) * batch_size]
    state, metrics = train_step(state, {'image': train_images[index],
                                        'label': train_labels[index]})
    losses.append(metrics['train/loss'])
  losses = np.asarray(jax.device_get(losses))
  after = error(state)
  assert int(state.step) == num_steps
  # Chance is 75% error; trained, under 5% on examples it never saw.
  assert before > 0.5, before
  assert after < 0.05, after
  # The loss falls from above ln 4 = 1.39 toward the entropy of the smoothed
  # targets, 0.35 (its floor).
  assert losses[0] > 1.3, losses[:5]
  assert losses[-20:].mean() < 0.6, losses[-20:]


def test_first_nonfinite_names_the_step():
  records = [{'train/loss': 1.0, 'train/grad_norm': 2.0},
             {'train/loss': 1.0, 'train/grad_norm': np.inf},
             {'train/loss': np.nan, 'train/grad_norm': 2.0}]
  assert train.first_nonfinite(records, first_step=11)[0] == 12
  assert train.first_nonfinite(records[:1], first_step=11) is None


def _config(**overrides):
  config = tiny.get_config()
  for key, value in overrides.items():
    config[key] = value
  return config


class _Crash(Exception):
  """An evaluation that fails, as one out of memory would."""


def test_training_runs_and_evaluates_every_example(reference_run):
  workdir, params, scalars = reference_run
  records = runs.read_metrics(workdir)
  # Train records at every log step; the final evaluation in a record of its
  # own, written after the step's checkpoint was on disk.
  assert [r['step'] for r in records] == [2, 4, 6, 8, 8]
  train_records, evaluation = records[:-1], records[-1]
  for record in train_records:
    assert all(np.isfinite(v) for v in record.values())
    # No decay within the first two epochs (32 steps each); batch = reference.
    assert record['train/learning_rate'] == pytest.approx(0.045)
    assert 0.0 < record['train/zero_fraction'] < 1.0
    assert record['epoch'] == pytest.approx(record['step'] / 32)
    # The L2 penalty is logged apart from the cross-entropy, and summed.
    assert 0.0 < record['train/l2_loss'] < 0.1 * record['train/loss']
    assert record['train/total_loss'] == pytest.approx(
        record['train/loss'] + record['train/l2_loss'], rel=1e-6)
    assert not any(k.startswith('eval/') for k in record)
  assert {k for k in evaluation if k.startswith('train/')} == set()
  assert evaluation['eval/num_examples'] == 40 == scalars['eval/num_examples']
  assert evaluation['eval/top1_error'] == scalars['eval/top1_error']
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['4', '8']
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))


def _strip(records):
  return [{k: v for k, v in r.items() if k not in _TIMING} for r in records]


def test_a_failing_evaluation_keeps_the_final_checkpoint_and_is_redone(
    reference_run, tmp_path, monkeypatch):
  ref_workdir, ref_params, ref_scalars = reference_run

  def failing_eval_iterator(config, mesh):
    raise _Crash('evaluation ran out of memory')

  monkeypatch.setattr(input_pipeline, 'create_eval_iterator',
                      failing_eval_iterator)
  with pytest.raises(_Crash):
    train.train_and_evaluate(_config(), str(tmp_path))
  monkeypatch.undo()
  assert runs.checkpoint_steps(str(tmp_path)) == [4, 8]
  assert [r['step'] for r in runs.read_metrics(str(tmp_path))] == [2, 4, 6, 8]
  # The same command again: nothing to train, the missing evaluation is done.
  state, scalars = train.train_and_evaluate(_config(), str(tmp_path))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params),
               ref_params)
  assert _strip(runs.read_metrics(str(tmp_path))) == _strip(
      runs.read_metrics(ref_workdir))
  assert scalars['eval/top1_error'] == ref_scalars['eval/top1_error']


@pytest.mark.parametrize('field, value, expected', [
    ('model_overrides.width_multiplier', 0.5, 'new --workdir'),
    ('batch_size', 32, '--config.allow_resume_changes=batch_size'),
    ('seed', 1, '--config.allow_resume_changes=seed'),
])
def test_resuming_with_another_network_or_recipe_fails_in_one_line(
    reference_run, tmp_path, field, value, expected):
  workdir = str(tmp_path / 'copy')
  shutil.copytree(reference_run[0], workdir)
  before = sorted(os.listdir(os.path.join(workdir, 'checkpoints')))
  config = _config()
  if '.' in field:
    group, name = field.split('.')
    config[group][name] = value
  else:
    config[field] = value
  with pytest.raises(plan.ConfigError) as e:
    train.train_and_evaluate(config, workdir)
  message = str(e.value)
  assert message.startswith(f'{field.split(".")[0]}: ') and '\n' not in message
  assert expected in message
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == before
