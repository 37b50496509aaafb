"""Tests of inception/checkpointing.py on 8 emulated devices.

Saves interrupted by kill -9 and by a full disk are in tests/test_train_faults.py.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from inception import checkpointing
from inception import multihost


def _state(value: float):
  mesh = multihost.make_mesh()
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  tree = {'step': jnp.array(3, jnp.int32),
          'params': {'kernel': jnp.full((4, 2), value)},
          'opt': (jnp.ones(3), jnp.zeros(()))}
  return jax.device_put(tree, replicated)


def _abstract(state):
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def test_save_restore_round_trip_with_shardings(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path), every_steps=5, max_to_keep=2)
  state = _state(1.5)
  assert ckpt.save(5, state, {'model': 'inception_v4', 'image_size': 299})
  ckpt.close()
  ckpt = checkpointing.Checkpointer(str(tmp_path), every_steps=5, max_to_keep=2)
  assert ckpt.latest_step() == 5
  restored = ckpt.restore(_abstract(state))
  np.testing.assert_array_equal(restored['params']['kernel'], np.full((4, 2), 1.5))
  assert int(restored['step']) == 3
  assert restored['params']['kernel'].sharding == state['params']['kernel'].sharding
  assert ckpt.restore_config() == {'model': 'inception_v4', 'image_size': 299}
  assert ckpt.restore_processes(5) == 1  # a resume compares it (resume.py)
  ckpt.close()


def test_saves_on_the_interval_or_when_forced_and_keeps_the_last(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path), every_steps=5, max_to_keep=2)
  state = _state(0.0)
  saved = [step for step in (3, 5, 7, 10, 15)
           if ckpt.save(step, state, {}, force=step == 7)]
  ckpt.close()
  assert saved == [5, 7, 10, 15]
  assert sorted(int(d) for d in os.listdir(tmp_path) if d.isdigit()) == [10, 15]
