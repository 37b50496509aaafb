"""The tests' compile options: level-0 XLA gives the train step's numbers.

tests/conftest.py compiles everything with LLVM's optimisations off
(`--xla_backend_optimization_level=0`), which saves most of a test network's
compile time; this file shows once that a real train step compiled at the
default level agrees to float32 rounding. The network is small (compiling
configs/tiny.py's at the default level alone costs about 50 CPU-seconds) but
has the operations of the real ones: convolutions of several shapes,
BatchNorm, a concatenation of branches, an average pool, a scaled residual
sum, dropout and a classifier.
"""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from configs import tiny
from inception import multihost
from inception import optim
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _SmallInception(nn.Module):
  """A stem, one two-branch block with a scaled residual, a classifier."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                epsilon=1e-3, use_scale=False)
    conv = lambda f, k, s=1: nn.Conv(f, k, strides=s, padding='SAME',
                                     use_bias=False)
    x = nn.relu(norm()(conv(16, (3, 3), 2)(x)))
    a = nn.relu(norm()(conv(8, (1, 1))(x)))
    b = nn.relu(norm()(conv(8, (1, 7))(nn.relu(norm()(conv(8, (7, 1))(x))))))
    pooled = nn.avg_pool(x, (3, 3), padding='SAME')
    up = nn.Conv(16, (1, 1))(jnp.concatenate([a, b, pooled], axis=-1))
    x = nn.relu(x + 0.17 * up)
    self.sow('intermediates', 'zero_fraction', jnp.mean(x == 0))
    x = nn.Dropout(0.2, deterministic=not train)(jnp.mean(x, axis=(1, 2)))
    return nn.Dense(10)(x)


def _tiny_state_and_batch(config, model, tx, mesh):
  """A train state drawn by numpy (nothing compiled but tx.init) and a batch.

  The same seeds give the same arrays in every process.
  """
  rng = np.random.default_rng(0)
  size = config.image_size
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), np.zeros((1, size, size, 3), np.float32),
      train=False))

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("['kernel']"):  # He-scaled, so activations stay of order 1
      fan_in = int(np.prod(leaf.shape[:-1]))
      return rng.normal(0, np.sqrt(2 / fan_in), leaf.shape).astype(np.float32)
    if name.endswith("['var']"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    return rng.normal(0, 0.1, leaf.shape).astype(np.float32)

  variables = jax.tree_util.tree_map_with_path(draw, shapes)
  params, stats = variables['params'], variables['batch_stats']
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state = train.TrainState(
      step=np.int32(0), params=params, batch_stats=stats,
      opt_state=jax.jit(tx.init)(params),
      ema={'params': params, 'batch_stats': stats}, rng=jax.random.PRNGKey(1))
  state = jax.device_put(state, replicated)
  batch = jax.device_put(
      {'image': rng.uniform(-1, 1, (config.batch_size, size, size, 3)
                            ).astype(np.float32),
       'label': rng.integers(0, 10, config.batch_size).astype(np.int32)},
      jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data')))
  return state, batch


def _one_train_step() -> dict:
  """One real train step of the small network on all devices, as numbers.

  Returns the loss, the gradient norm and checksums of the update (new minus
  old parameters, per leaf) and of the new BatchNorm statistics, with the
  XLA_FLAGS the process runs under.
  """
  config = tiny.get_config()
  config.batch_size = 8
  model = _SmallInception()
  schedule = optim.learning_rate_schedule(
      config.learning_rate, 32.0, config.learning_rate_decay_rate,
      config.learning_rate_decay_epochs, config.warmup_epochs)
  tx = optim.optimizer_from_config(schedule, config)
  state, batch = _tiny_state_and_batch(config, model, tx, multihost.make_mesh())
  before = jax.device_get(state.params)
  step = jax.jit(train.make_train_step(model, tx, schedule, config,
                                       batch_norm_groups=1))
  new, metrics = jax.device_get(step(state, batch))
  updates = jax.tree.map(lambda a, b: np.float64(a) - np.float64(b),
                         new.params, before)
  return {
      'xla_flags': os.environ.get('XLA_FLAGS'),
      'devices': jax.device_count(),
      'loss': float(metrics['train/loss']),
      'grad_norm': float(metrics['train/grad_norm']),
      'update_sums': [float(u.sum()) for u in jax.tree.leaves(updates)],
      'update_norms': [float(np.linalg.norm(u)) for u in jax.tree.leaves(updates)],
      'stats_sums': [float(np.sum(s, dtype=np.float64))
                     for s in jax.tree.leaves(new.batch_stats)],
  }


def test_default_xla_optimisation_gives_the_same_train_step():
  # The tests compile with LLVM's optimisations off (tests/conftest.py); a
  # train step compiled with them on, in a fresh process, must agree. The
  # process runs while this one computes (each compile is one thread).
  env = {k: v for k, v in os.environ.items()
         if k not in ('XLA_FLAGS', 'JAX_COMPILATION_CACHE_DIR')}
  env['PYTHONPATH'] = ROOT
  code = ('import json, runpy; '
          f'print(json.dumps(runpy.run_path({__file__!r})["_one_train_step"]()))')
  other = subprocess.Popen([sys.executable, '-c', code], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
  try:
    here = _one_train_step()
  finally:
    out, err = other.communicate(timeout=600)
  assert other.returncode == 0, err[-3000:]
  default = json.loads(out.strip().splitlines()[-1])
  assert 'xla_backend_optimization_level=0' in here['xla_flags']
  assert default['xla_flags'] is None
  assert default['devices'] == here['devices'] == 8
  assert np.isfinite(here['loss']) and here['grad_norm'] > 0
  # Not bit-identical: measured, loss and gradient norm differ by 1e-7
  # (relative), per-leaf update norms by up to 3e-6, the sums of the updates
  # (signed, so cancelling) by up to 3e-6 of the largest, the sums of the
  # BatchNorm statistics by 1e-6 (relative). Tolerances are ten times those.
  for key in ('loss', 'grad_norm'):
    np.testing.assert_allclose(default[key], here[key], rtol=1e-6, err_msg=key)
  # (checksum, rtol, atol as a fraction of the largest of its kind)
  for key, rtol, atol in (('update_norms', 3e-5, 0.0),
                          ('update_sums', 0.0, 3e-5),
                          ('stats_sums', 1e-5, 0.0)):
    a, b = np.asarray(default[key]), np.asarray(here[key])
    assert a.shape == b.shape and len(a) >= 8, key
    np.testing.assert_allclose(a, b, rtol=rtol,
                               atol=atol * float(np.max(np.abs(b))), err_msg=key)
