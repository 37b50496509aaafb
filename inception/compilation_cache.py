"""The persistent compilation cache: compiled steps kept across runs.

Compiling the train step of a full-size network takes about half of the time
before its first step (25 to 30 s for Inception-ResNet-v2 on 2 CPU cores).
JAX can keep each compiled program on disk, keyed by the program, the
compile options, the devices and the JAX version, so a run that compiles
what an earlier one did (a resume, a rerun, a sweep point of the same shape,
an evaluation) loads it instead. `config.compilation_cache_dir` names the
directory; the environment variable JAX_COMPILATION_CACHE_DIR, where set,
wins, and an empty field turns the cache off. On CPUs, loading an executable
costs much of what compiling it does; on accelerators it is quick.
"""

import logging
import os

import jax


def setup(directory: str) -> str | None:
  """Points JAX's persistent compilation cache at `directory`.

  Args:
    directory: the cache's directory ('~' expands); '' for no cache.

  Returns:
    The directory in use, or None.
  """
  if os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    return os.environ['JAX_COMPILATION_CACHE_DIR']
  if not directory:
    return None
  path = os.path.expanduser(directory)
  jax.config.update('jax_compilation_cache_dir', path)
  logging.debug('Compilation cache: %s', path)
  return path
