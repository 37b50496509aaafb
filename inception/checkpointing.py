"""Training checkpoints with Orbax: asynchronous, atomic, the last K kept.

Layout: `WORKDIR/checkpoints/<step>/` holds three items,

- `state`: the whole train state (step, parameters, BatchNorm statistics,
  optimizer state, their moving averages, the RNG key), written by every
  process for the shards it owns;
- `config`: the run's config as JSON, so evaluation and fine-tuning can
  rebuild the network without guessing;
- `run`: how many processes wrote it (a resume with another count reads
  other batches; inception/resume.py).

Orbax writes each step to a temporary folder and renames it when complete, so
a `kill -9` leaves either a whole checkpoint or a temporary folder that the
next run ignores and replaces when it saves that step again. The input
pipeline resumes from the step alone, so the step is all the data position a
checkpoint needs.

A save that the disk has no room for is refused before it starts, and one
that fails for want of space all the same (the disk filled up meanwhile)
raises `DiskFullError` when it is noticed; either says which checkpoint is
intact. A failed save's temporary folder is ignored and replaced like any
other.
"""

import errno
import os
import shutil
from typing import Any, Optional, Sequence

from absl import logging
import jax
import orbax.checkpoint as ocp


def _write_each_array_from_one_replica() -> None:
  """Turns off Orbax's replica-parallel writes of replicated arrays.

  With them, every replicated array is cut into one slice per device, and
  each slice is a separately dispatched (and, the first time, compiled) JAX
  operation: over 8 CPU devices the first save of the tiny test network's
  9 MB state took 28 s, later ones 2.5 s; written whole from one replica,
  0.35 s. Orbax already turns them off on GPUs. The handler keeps the
  default one's array-metadata store.
  """
  default = ocp.type_handlers.get_type_handler(jax.Array)
  # Orbax warns of every override, before any console is set up.
  quiet = lambda record: 'overriding' not in record.getMessage()
  logging.get_absl_logger().addFilter(quiet)
  try:
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(
            use_replica_parallel=False,
            array_metadata_store=getattr(default, '_array_metadata_store',
                                         None)),
        override=True)
  finally:
    logging.get_absl_logger().removeFilter(quiet)


_write_each_array_from_one_replica()


class DiskFullError(RuntimeError):
  """A checkpoint could not be written: the disk is full."""


def is_disk_full(error: BaseException) -> bool:
  """Whether `error`, or an error it was raised from, is 'no space left'.

  Tensorstore, which writes the arrays, reports it as a ValueError whose text
  carries the OS error; Python's own writes raise OSError(ENOSPC).
  """
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
      return True
    if 'No space left on device' in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


class Checkpointer:
  """Saves and restores train states under one directory.

  Saves happen every `every_steps` steps, or when forced (end of training,
  preemption); the newest `max_to_keep` are kept.
  """

  def __init__(self, directory: str, *, every_steps: int, max_to_keep: int):
    """Opens (and creates) the checkpoint directory.

    Args:
      directory: where step folders go, e.g. WORKDIR/checkpoints.
      every_steps: the regular save interval.
      max_to_keep: how many of the newest checkpoints to keep.
    """
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(
            every_steps),
        preservation_policy=ocp.checkpoint_managers.LatestN(max_to_keep),
        enable_async_checkpointing=True,
        cleanup_tmp_directories=True)
    self._directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(self._directory, options=options)
    self._pending = None

  def _disk_full(self, step: Optional[int], why: str = 'no space left on '
                 'device') -> DiskFullError:
    """The error for a save (the newest asked for: `step`) out of space."""
    self._manager.reload()
    complete = self._manager.all_steps()
    intact = (f'the checkpoint of step {max(complete)} is intact' if complete
              else 'no earlier checkpoint exists')
    return DiskFullError(
        f'{why} for the checkpoint of step {step} in {self._directory}; '
        f'{intact}: free space (or move the workdir), then run the same '
        f'command to resume')

  def _check_space(self, step: int, state: Any) -> None:
    """Refuses a save that the disk has no room for, before writing a byte.

    The estimate is the state's size in memory (compression saves about a
    tenth on trained weights), so a save never starts that would fail
    halfway; a disk that fills up during a save is caught from the error.
    The save still in flight is waited for first (Orbax's save would wait
    for it anyway), so that the free space and the newest complete
    checkpoint named in the error are those after it.
    """
    self._finish(self._manager.wait_until_finished)
    needed = sum(leaf.nbytes for leaf in jax.tree.leaves(state))
    free = shutil.disk_usage(self._directory).free
    if needed > free:
      raise self._disk_full(
          step, f'not enough space ({free / 2**20:.1f} MiB free, about '
          f'{needed / 2**20:.1f} MiB needed)')

  def _finish(self, call, *args, **kwargs):
    """Runs a manager call that may surface the pending save's failure."""
    try:
      return call(*args, **kwargs)
    except Exception as e:  # pylint: disable=broad-except
      if is_disk_full(e):
        raise self._disk_full(self._pending) from e
      raise

  def latest_step(self) -> Optional[int]:
    """The step of the newest complete checkpoint, or None."""
    return self._manager.latest_step()

  def save(self, step: int, state: Any, config_json: dict,
           force: bool = False) -> bool:
    """Starts writing `state` if `step` is due (or `force`); returns at once.

    Args:
      step: the training step the state has reached.
      state: the train state (a pytree of global arrays).
      config_json: the run's config as a JSON-compatible dict.
      force: save even if `step` is not a multiple of the interval.

    Returns:
      Whether a save was started.
    """
    if force or self._manager.should_save(step):
      self._check_space(step, state)
    pending, self._pending = self._pending, step
    saved = self._finish(
        self._manager.save, step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            config=ocp.args.JsonSave(config_json),
            run=ocp.args.JsonSave({'processes': jax.process_count()})),
        force=force)
    if not saved:
      self._pending = pending
    else:
      logging.info('Checkpoint of step %d started.', step)
    return saved

  def restore(self, abstract_state: Any, step: Optional[int] = None) -> Any:
    """Reads a train state, placed as `abstract_state` says.

    Args:
      abstract_state: a pytree of `jax.ShapeDtypeStruct` with shardings, of
        the structure the checkpoint was saved with.
      step: which checkpoint; None for the newest.

    Returns:
      The train state.
    """
    step = self.latest_step() if step is None else step
    restored = self._manager.restore(
        step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state)))
    logging.info('Restored the checkpoint of step %d.', step)
    return restored.state

  def restore_processes(self, step: int) -> Optional[int]:
    """How many processes wrote the checkpoint of `step`; None if unknown."""
    if not os.path.isdir(os.path.join(self._directory, str(step), 'run')):
      return None
    restored = self._manager.restore(
        step, args=ocp.args.Composite(run=ocp.args.JsonRestore()))
    return restored.run['processes']

  def restore_config(self, step: Optional[int] = None) -> dict:
    """Reads the config a checkpoint was written with.

    Args:
      step: which checkpoint; None for the newest.

    Returns:
      The config as a dict.
    """
    step = self.latest_step() if step is None else step
    restored = self._manager.restore(
        step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    return restored.config

  def wait(self) -> None:
    """Blocks until the pending asynchronous save is on disk.

    Raises:
      DiskFullError: the save ran out of space.
    """
    self._finish(self._manager.wait_until_finished)

  def close(self) -> None:
    """Waits for pending saves and releases the manager's threads.

    Raises:
      DiskFullError: the pending save ran out of space.
    """
    self._finish(self._manager.close)



class Reader:
  """Reads saved steps, configs and parts of train states, for evaluation.

  Only the fields asked for are read (a partial restore), so an evaluation of
  the moving average reads neither the raw weights nor the optimizer state,
  and the shapes come from the checkpoint itself: no network or optimizer is
  built. Nothing is created on disk.
  """

  def __init__(self, directory: str):
    """Opens WORKDIR/checkpoints for reading.

    Args:
      directory: the checkpoints folder; it must exist.
    """
    self._directory = directory
    self._manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        item_handlers={'state': ocp.PyTreeCheckpointHandler(),
                       'config': ocp.JsonCheckpointHandler(),
                       'run': ocp.JsonCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(create=False))

  def steps(self) -> list[int]:
    """The steps of the complete checkpoints, ascending."""
    return sorted(self._manager.all_steps())

  def resolve(self, step: Optional[int]) -> int:
    """The step to read: `step`, or the newest when None.

    Raises:
      FileNotFoundError: no checkpoint, or none of that step; the message
        lists the steps there are.
    """
    steps = self.steps()
    if not steps:
      raise FileNotFoundError(f'no checkpoint in {self._directory}')
    if step is None:
      return steps[-1]
    if step not in steps:
      raise FileNotFoundError(
          f'no checkpoint of step {step} in {self._directory}; it has steps '
          f'{", ".join(map(str, steps))}')
    return step

  def config(self, step: int) -> dict:
    """The config the checkpoint of `step` was written with, as a dict."""
    restored = self._manager.restore(
        step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    return restored.config

  def fields(self, step: int, names: Sequence[str],
             sharding: jax.sharding.Sharding) -> dict:
    """Reads some top-level fields of the saved train state.

    Args:
      step: a saved step.
      names: fields of the train state, e.g. ('ema',).
      sharding: where every array goes (replicated over a mesh).

    Returns:
      {name: pytree of arrays}.
    """
    tree = self._manager.item_metadata(step)['state'].tree
    abstract = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                          sharding=sharding),
        {name: tree[name] for name in names})
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
            item=abstract,
            restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
            partial_restore=True)))
    logging.info('Read %s of the checkpoint of step %d.', ', '.join(names),
                 step)
    return dict(restored.state)

  def close(self) -> None:
    """Releases the manager."""
    self._manager.close()
