"""Training checkpoints with Orbax: asynchronous, atomic, the last K kept.

Layout: `WORKDIR/checkpoints/<step>/` holds two items,

- `state`: the whole train state (step, parameters, BatchNorm statistics,
  optimizer state, their moving averages, the RNG key), written by every
  process for the shards it owns;
- `config`: the run's config as JSON, so evaluation and fine-tuning can
  rebuild the network without guessing.

Orbax writes each step to a temporary folder and renames it when complete, so
a `kill -9` leaves either a whole checkpoint or a temporary folder that the
next run ignores and replaces when it saves that step again. The input
pipeline resumes from the step alone, so the step is all the data position a
checkpoint needs.
"""

import os
from typing import Any, Optional

from absl import logging
import orbax.checkpoint as ocp


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
    self._manager = ocp.CheckpointManager(os.path.abspath(directory),
                                          options=options)

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
    saved = self._manager.save(
        step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            config=ocp.args.JsonSave(config_json)),
        force=force)
    if saved:
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
    """Blocks until the pending asynchronous save is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager's threads."""
    self._manager.close()
