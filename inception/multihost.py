"""Processes, devices and preemption: what a run needs to span many hosts.

- `initialize` joins the processes of a multi-host job with
  `jax.distributed.initialize`: from explicit flags, or detected from SLURM,
  Open MPI or a TPU pod; a single process skips it.
- `make_mesh` lays all devices of all processes on one `data` axis; the batch
  is sharded over it and the parameters are replicated.
- `Preemption` names the step at which a preempted run stops. With several
  processes it is JAX's preemption service: SIGTERM (how clusters announce
  preemption) to any process reaches the others through the distributed
  runtime, and `reached_preemption_sync_point` returns True on every process
  at the same step, the step after the furthest one any process had reached.
  A single process has no coordinator; there a SIGTERM handler stops the run
  at the next step.
"""

import signal
import types
from typing import Optional

from absl import logging
import jax
from jax.experimental import multihost_utils

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


class Preemption:
  """Tells the training loop at which step every process stops for preemption.

  Use as a context manager around the training loop and call `reached` after
  every step, on every process. A single process installs a SIGTERM handler
  (restored on exit; enter from the main thread); several processes rely on
  the handler that `jax.distributed.initialize` installs for JAX's
  preemption service, so no Python handler may replace it.
  """

  def __init__(self):
    self._received = False
    self._previous = None
    self._shared = False

  def __enter__(self) -> 'Preemption':
    self._shared = jax.process_count() > 1
    if not self._shared:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    if not self._shared:
      signal.signal(signal.SIGTERM, self._previous)

  def _handle(self, signum: int, frame: Optional[types.FrameType]) -> None:
    del frame
    if not self._received:
      logging.warning('Signal %d received: saving a checkpoint after this '
                      'step, then exiting.', signum)
    self._received = True

  def reached(self, step: int) -> bool:
    """Whether the run must save at `step` and stop.

    Args:
      step: the step just dispatched; consecutive on every process.

    Returns:
      With several processes, True on all of them at the same step once any
      of them was signalled; with one, whether it was signalled.
    """
    if not self._shared:
      return self._received
    reached = multihost_utils.reached_preemption_sync_point(step)
    if reached:
      logging.warning('Preemption notice: every process saves at step %d, '
                      'then exits.', step)
    return reached
