"""Tests of inception/multihost.py: the mesh and the SIGTERM flag, in one process.

The multi-process path runs for real in tests/test_train.py (two processes on
loopback).
"""

import os
import signal

import jax

from inception import multihost


def test_mesh_spans_every_device_on_the_data_axis():
  mesh = multihost.make_mesh()
  assert dict(mesh.shape) == {'data': 8}
  assert set(mesh.devices.flat) == set(jax.devices())


def test_one_process_skips_jax_distributed():
  multihost.initialize(num_processes=1)
  assert jax.process_count() == 1


def test_sigterm_sets_the_stop_flag_and_the_handler_is_restored():
  before = signal.getsignal(signal.SIGTERM)
  with multihost.StopSignal() as stop:
    assert not stop.should_stop()
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.should_stop()
  assert signal.getsignal(signal.SIGTERM) is before
