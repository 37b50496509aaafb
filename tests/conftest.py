"""Test session set-up: eight emulated CPU devices, so sharding code runs in every test."""

import atexit
import os
import shutil
import tempfile

# Must be set before JAX initialises its backend; sharded code paths then run as
# they would on an 8-GPU host.
os.environ.setdefault('JAX_NUM_CPU_DEVICES', '8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Compile once per session: runs of the same network in-process and in the
# subprocesses the tests start (which inherit these variables) reuse each
# other's executables. LLVM's optimisations are skipped: they cost most of the
# compile time of a test network and change results only at float32 rounding
# (measured in tests/test_compile_options.py).
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(
      prefix='inception-tests-jax-cache-')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'],
                  ignore_errors=True)
os.environ.setdefault('XLA_FLAGS', '--xla_backend_optimization_level=0')


import pytest  # pylint: disable=g-import-not-at-top,g-bad-import-order


@pytest.fixture(scope='session')
def reference_run(tmp_path_factory):
  """configs/tiny.py trained once, uninterrupted, in the test process.

  Returns:
    (workdir, final parameters on the host, scalars of the last host step).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from configs import tiny  # pylint: disable=g-import-not-at-top
  import train  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp('reference'))
  state, scalars = train.train_and_evaluate(tiny.get_config(), workdir)
  return workdir, jax.device_get(state.params), scalars
