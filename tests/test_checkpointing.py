"""Tests of inception/checkpointing.py on 8 emulated devices."""

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
  ckpt.close()


def test_saves_on_the_interval_or_when_forced_and_keeps_the_last(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path), every_steps=5, max_to_keep=2)
  state = _state(0.0)
  saved = [step for step in (3, 5, 7, 10, 15)
           if ckpt.save(step, state, {}, force=step == 7)]
  ckpt.close()
  assert saved == [5, 7, 10, 15]
  assert sorted(int(d) for d in os.listdir(tmp_path) if d.isdigit()) == [10, 15]


def test_an_unfinished_save_is_ignored_and_replaced(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path), every_steps=5, max_to_keep=2)
  ckpt.save(5, _state(2.0), {})
  ckpt.close()
  # What a kill -9 in the middle of writing step 10 leaves behind.
  os.makedirs(tmp_path / '10.orbax-checkpoint-tmp' / 'state')
  ckpt = checkpointing.Checkpointer(str(tmp_path), every_steps=5, max_to_keep=2)
  assert ckpt.latest_step() == 5
  restored = ckpt.restore(_abstract(_state(0.0)))
  np.testing.assert_array_equal(restored['params']['kernel'], np.full((4, 2), 2.0))
  # The resumed run reaches step 10 again and saves it over the leftovers.
  assert ckpt.save(10, _state(3.0), {})
  ckpt.close()
  assert sorted(os.listdir(tmp_path)) == ['10', '5']
