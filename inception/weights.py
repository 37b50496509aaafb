"""The weights that evaluation and prediction run: a run's checkpoint, or converted weights.

Two kinds of directory hold weights:

- a run's workdir (`WORKDIR/checkpoints/<step>/`, see inception/checkpointing.py):
  the moving average of the weights ('ema', what the paper evaluates) or the
  raw ones ('raw'), of the newest checkpoint or of a given step; the network
  is rebuilt from the config saved beside them;
- a converted-weights directory (`model.json` and `variables/`, written by
  `python -m inception.convert`): published weights ('converted').

`load` tells them apart and fails in one line (`WeightsError`) for anything
else, before anything is compiled.
"""

import dataclasses
import os
from typing import Any, Callable, Optional

import jax

from inception import checkpointing
from inception import convert
from inception import models
from inception import multihost

WEIGHTS = ('ema', 'raw')
# Which fields of the train state each kind of weights reads.
_FIELDS = {'ema': ('ema',), 'raw': ('params', 'batch_stats')}


class WeightsError(ValueError):
  """Weights that cannot be loaded; the message names the directory and the fix."""


@dataclasses.dataclass(frozen=True)
class Loaded:
  """Weights ready to run.

  Attributes:
    model: the Linen network; `model.apply(variables, images, train=False)`.
    variables: {'params', 'batch_stats'}, replicated over the mesh.
    config: the run's ConfigDict (from its checkpoint), None for converted
      weights.
    kind: 'ema', 'raw' or 'converted'.
    step: the checkpoint's training step, None for converted weights.
    num_classes: the classifier's width.
    path: the directory read.
  """
  model: Any
  variables: dict
  config: Any
  kind: str
  step: Optional[int]
  num_classes: int
  path: str


def _replicated(mesh: Optional[jax.sharding.Mesh]) -> jax.sharding.Sharding:
  if mesh is None:
    mesh = multihost.make_mesh()
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def num_classes_of(variables: dict) -> int:
  """The classifier width of a network's variables."""
  return int(variables['params']['logits']['bias'].shape[-1])


def load_run(workdir: str, *, weights: str = 'ema', step: Optional[int] = None,
             mesh: Optional[jax.sharding.Mesh] = None,
             check: Optional[Callable[[dict], None]] = None) -> Loaded:
  """Reads the weights of a run's checkpoint and rebuilds its network.

  Args:
    workdir: the run's directory.
    weights: 'ema' (the moving average) or 'raw'.
    step: which checkpoint; None for the newest.
    mesh: the variables are replicated over it; None: all devices.
    check: called with the checkpoint's config (a dict) before any array is
      read; raises to refuse it.

  Returns:
    The loaded weights, with the run's config.

  Raises:
    WeightsError: no checkpoint, no checkpoint of that step, or unknown
      weights.
  """
  import ml_collections  # pylint: disable=g-import-not-at-top
  if weights not in WEIGHTS:
    raise WeightsError(f'eval_weights: {weights!r} is not one of {WEIGHTS}')
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory):
    raise WeightsError(f'no checkpoint in {workdir}: it has no checkpoints/ '
                       f'folder')
  reader = checkpointing.Reader(directory)
  try:
    try:
      step = reader.resolve(step)
    except FileNotFoundError as e:
      raise WeightsError(str(e)) from None
    saved = reader.config(step)
    if check is not None:
      check(saved)
    fields = reader.fields(step, _FIELDS[weights], _replicated(mesh))
  finally:
    reader.close()
  variables = (fields['ema'] if weights == 'ema' else
               {'params': fields['params'],
                'batch_stats': fields['batch_stats']})
  config = ml_collections.ConfigDict(saved)
  classes = num_classes_of(variables)
  model = models.create_model_from_config(config, classes)
  return Loaded(model, variables, config, weights, step, classes, workdir)


def load_converted(directory: str, *, dtype: Any = None,
                   mesh: Optional[jax.sharding.Mesh] = None) -> Loaded:
  """Reads converted weights (python -m inception.convert) and builds their network.

  Args:
    directory: the conversion's --output directory.
    dtype: compute dtype; None keeps float32.
    mesh: the variables are replicated over it; None: all devices.

  Returns:
    The loaded weights (config None).
  """
  kwargs, variables = convert.load_converted(directory)
  if dtype is not None:
    kwargs = {**kwargs, 'dtype': dtype}
  model = models.create_model(**kwargs)
  variables = jax.device_put(dict(variables), _replicated(mesh))
  return Loaded(model, variables, None, 'converted', None,
                num_classes_of(variables), directory)


def load(path: str, *, weights: str = 'ema', step: Optional[int] = None,
         mesh: Optional[jax.sharding.Mesh] = None) -> Loaded:
  """Reads a run's checkpoint or converted weights, whichever `path` holds.

  Args:
    path: a run's workdir or a converted-weights directory.
    weights: for a run: 'ema' or 'raw'.
    step: for a run: which checkpoint; None for the newest.
    mesh: the variables are replicated over it; None: all devices.

  Returns:
    The loaded weights.

  Raises:
    WeightsError: `path` is neither, or has no usable checkpoint.
  """
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    return load_run(path, weights=weights, step=step, mesh=mesh)
  if os.path.isfile(os.path.join(path, 'model.json')):
    return load_converted(path, mesh=mesh)
  raise WeightsError(
      f'{path} is neither a run\'s workdir (with checkpoints/) nor converted '
      f'weights (with model.json); pass a --workdir of main.py or an --output '
      f'of python -m inception.convert')
