"""Processes, devices and preemption: what a run needs to span many hosts.

- `initialize` joins the processes of a multi-host job with
  `jax.distributed.initialize`: from explicit flags, or detected from SLURM,
  Open MPI or a TPU pod; a single process skips it.
- `make_mesh` lays all devices of all processes on one `data` axis; the batch
  is sharded over it and the parameters are replicated.
- `StopSignal` turns SIGTERM (how clusters announce preemption) into a flag
  that every process reads at the same step, so that all of them save the
  same checkpoint and exit together. JAX's own preemption service is turned
  off: without `jax.distributed` it never fires, and with it a second SIGTERM
  handler would race ours.
"""

import signal
import types
from typing import Optional

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

DATA_AXIS = 'data'


def initialize(coordinator_address: Optional[str] = None,
               num_processes: Optional[int] = None,
               process_id: Optional[int] = None) -> None:
  """Starts `jax.distributed` when the job has more than one process.

  Must run before anything touches a device.

  Args:
    coordinator_address: 'host:port' of process 0; None to detect it.
    num_processes: processes in the job; 1 skips initialisation; None to
      detect it.
    process_id: this process's index; None to detect it.
  """
  if num_processes == 1:
    logging.info('Single process: jax.distributed not started.')
    return
  jax.config.update('jax_enable_preemption_service', False)
  explicit = (coordinator_address, num_processes, process_id)
  if any(value is not None for value in explicit):
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes,
                               process_id=process_id)
  else:
    try:
      # Detects SLURM, Open MPI and TPU pods; anything else is a lone process.
      jax.distributed.initialize()
    except ValueError as e:
      logging.info('Running as a single process (no cluster detected: %s).',
                   e)
      return
  logging.info('jax.distributed: process %d of %d, %d local of %d devices.',
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def make_mesh() -> jax.sharding.Mesh:
  """A one-axis mesh, `data`, over every device of every process.

  Returns:
    The mesh. Its axis is of the Auto type: jit places the computation from
    the shardings of the inputs and outputs.
  """
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


class StopSignal:
  """Records SIGTERM and lets all processes agree on stopping.

  Use as a context manager around the training loop; it restores the previous
  handler on exit. Must be entered from the main thread.
  """

  def __init__(self):
    self._received = False
    self._previous = None

  def __enter__(self) -> 'StopSignal':
    self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    signal.signal(signal.SIGTERM, self._previous)

  def _handle(self, signum: int, frame: Optional[types.FrameType]) -> None:
    del frame
    if not self._received:
      logging.warning('Signal %d received: saving a checkpoint at the next '
                      'host step, then exiting.', signum)
    self._received = True

  def should_stop(self) -> bool:
    """Whether any process has received SIGTERM.

    Every process must call this at the same training steps, since with
    several processes it is a collective operation.

    Returns:
      True on every process if at least one process was signalled.
    """
    if jax.process_count() == 1:
      return self._received
    flags = multihost_utils.process_allgather(
        np.array(self._received, dtype=np.int32))
    return bool(np.any(flags))
