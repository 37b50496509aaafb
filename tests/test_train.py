"""Tests of train.py: losses and counts by hand, then real runs of a tiny network.

The runs use configs/tiny.py on the built-in dataset through the real input
pipeline, on 8 emulated devices: a reference run, a crashed-and-resumed run
that must end bit-identical to it, a run that goes non-finite, and two real
processes on loopback training together.
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import tiny
import input_pipeline
from inception import checkpointing
from inception import plan
from inception import runs
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
  """Stands in for a machine that dies mid-run."""


def _patch_train_batches(monkeypatch, edit):
  """Wraps the real training stream: edit(index, batch) -> batch."""
  real = input_pipeline.create_train_iterator

  def wrapped(config, mesh, *, start_step=0):
    for index, batch in enumerate(real(config, mesh, start_step=start_step),
                                  start=start_step):
      yield edit(index, batch)

  monkeypatch.setattr(input_pipeline, 'create_train_iterator', wrapped)


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('reference'))
  state, scalars = train.train_and_evaluate(_config(), workdir)
  return workdir, jax.device_get(state.params), scalars


def test_training_runs_learns_and_evaluates_every_example(reference_run):
  workdir, params, scalars = reference_run
  records = runs.read_metrics(workdir)
  assert [r['step'] for r in records] == [2, 4, 6, 8]
  for record in records:
    assert all(np.isfinite(v) for v in record.values())
    # No decay within the first two epochs (32 steps each); batch = reference.
    assert record['train/learning_rate'] == pytest.approx(0.045)
    assert 0.0 < record['train/zero_fraction'] < 1.0
    assert record['epoch'] == pytest.approx(record['step'] / 32)
  assert records[-1]['train/loss'] < records[0]['train/loss'] - 0.1
  assert scalars['eval/num_examples'] == 40
  assert 0.0 <= scalars['eval/top5_error'] <= scalars['eval/top1_error'] <= 1.0
  assert 'eval/top1_error' in records[-1] and 'eval/top1_error' not in records[0]
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['4', '8']
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))


def test_crash_and_resume_ends_exactly_like_the_uninterrupted_run(
    reference_run, tmp_path, monkeypatch):
  ref_workdir, ref_params, ref_scalars = reference_run

  def crash_at_step_7(index, batch):
    if index == 6:
      raise _Crash()
    return batch

  _patch_train_batches(monkeypatch, crash_at_step_7)
  with pytest.raises(_Crash):
    train.train_and_evaluate(_config(), str(tmp_path))
  monkeypatch.undo()
  assert checkpointing.Checkpointer(
      str(tmp_path / 'checkpoints'), every_steps=4, max_to_keep=3
  ).latest_step() == 4
  state, scalars = train.train_and_evaluate(_config(), str(tmp_path))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params),
               ref_params)
  strip = lambda rs: [{k: v for k, v in r.items() if k not in _TIMING} for r in rs]
  assert strip(runs.read_metrics(str(tmp_path))) == strip(
      runs.read_metrics(ref_workdir))
  assert scalars['eval/top1_error'] == ref_scalars['eval/top1_error']


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    reference_run, tmp_path, monkeypatch):
  def poison_step_7(index, batch):
    if index == 6:
      return {**batch, 'image': batch['image'] * jnp.nan}
    return batch

  _patch_train_batches(monkeypatch, poison_step_7)
  # Host steps only at checkpoints (4, 8): step 8 must check before saving.
  with pytest.raises(train.NonFiniteError, match=r'^step 7: .*last good '
                     r'checkpoint: step 4'):
    train.train_and_evaluate(_config(log_every_steps=100), str(tmp_path))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['4']
  records = runs.read_metrics(str(tmp_path))
  assert [r['step'] for r in records] == [4, 7]
  assert 'diverged' not in records[0]
  assert records[1]['diverged'] is True
  assert records[1]['message'].startswith('step 7: loss nan')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_train_together(tmp_path):
  input_pipeline.get_dataset_info(_config())  # prepared before two readers start
  address = f'127.0.0.1:{_free_port()}'
  env = {**os.environ, 'JAX_NUM_CPU_DEVICES': '2', 'PYTHONPATH': ROOT}
  workers = [subprocess.Popen(
      [sys.executable, __file__, address, str(i), str(tmp_path)], env=env,
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
  outputs = [w.communicate(timeout=400) for w in workers]
  for worker, (out, err) in zip(workers, outputs):
    assert worker.returncode == 0, err[-3000:]
  reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
  assert [r['process'] for r in reports] == [0, 1]
  assert all(r['devices'] == 4 for r in reports)
  assert reports[0]['params'] == reports[1]['params']
  assert all(r['eval_examples'] == 40 for r in reports)
  assert all(r['local_replicas_equal'] for r in reports)
  steps = [r['step'] for r in runs.read_metrics(str(tmp_path))]
  assert steps == [2, 4, 6, 8]  # written once, by process 0


def _worker(address: str, process_id: int, workdir: str) -> None:
  """One of the two processes of test_two_processes_train_together."""
  from inception import multihost  # pylint: disable=g-import-not-at-top
  multihost.initialize(address, 2, process_id)
  state, scalars = train.train_and_evaluate(_config(), workdir)
  digest = hashlib.sha256()
  equal = True
  for leaf in jax.tree.leaves(state.params):
    shards = [np.asarray(s.data) for s in leaf.addressable_shards]
    equal &= all(np.array_equal(shards[0], s) for s in shards[1:])
    digest.update(shards[0].tobytes())
  print(json.dumps({'process': jax.process_index(),
                    'devices': jax.device_count(),
                    'params': digest.hexdigest(),
                    'local_replicas_equal': bool(equal),
                    'eval_examples': scalars['eval/num_examples']}))


if __name__ == '__main__':
  _worker(sys.argv[1], int(sys.argv[2]), sys.argv[3])


def test_a_checkpoint_of_another_network_fails_in_one_line(reference_run,
                                                            tmp_path):
  workdir = str(tmp_path / 'copy')
  shutil.copytree(reference_run[0], workdir)
  before = sorted(os.listdir(os.path.join(workdir, 'checkpoints')))
  config = _config()
  config.model_overrides.width_multiplier = 0.5
  with pytest.raises(plan.ConfigError) as e:
    train.train_and_evaluate(config, workdir)
  message = str(e.value)
  assert message.startswith('model_overrides: ') and '\n' not in message
  assert 'new --workdir' in message
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == before
