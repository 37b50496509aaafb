"""Starting a training run from converted published weights (fine-tuning).

`config.init_from` names a directory written by `python -m inception.convert`.
Its settings must describe the configured network; its parameters and
BatchNorm statistics then replace the fresh ones, except the classifiers
(`logits`, and the auxiliary head), which keep their fresh values when their
shape differs (another number of classes) or when the weights lack them.
Everything else must match in name and shape, or the run stops in one line.
"""

from typing import Any

from absl import logging
import flax.traverse_util
import jax
import jax.numpy as jnp

from inception import convert
from inception import plan as plan_lib

# Top-level layers a fine-tuning run may re-initialise.
_CLASSIFIERS = ('logits', 'aux_head')


def load_checked(config: Any) -> dict:
  """Reads `config.init_from` and checks that it fits the configured network.

  Args:
    config: the run's ConfigDict.

  Returns:
    The converted `{'params', 'batch_stats'}`.

  Raises:
    plan.ConfigError: naming the config field that disagrees with the weights.
  """
  kwargs, variables = convert.load_converted(config.init_from)
  pad = bool(config.model_overrides.pool_count_include_pad)
  wanted = {'model': (config.model, kwargs['name']),
            'bn_scale': (config.bn_scale, kwargs['bn_scale']),
            'model_overrides.pool_count_include_pad':
                (pad, kwargs.get('pool_count_include_pad', False))}
  for field, (have, need) in wanted.items():
    if have != need:
      raise plan_lib.ConfigError(
          f'{field}: the weights in {config.init_from} need {field}={need!r}, '
          f'this run has {have!r}; set --config.{field}={need}')
  return variables


def merge(state: Any, variables: dict, shardings: Any, source: str) -> Any:
  """Returns `state` with its parameters, statistics and averages from `variables`.

  Args:
    state: a freshly initialised train state.
    variables: converted `{'params', 'batch_stats'}`.
    shardings: the train state's shardings (the variables are placed alike).
    source: the weights' directory, for messages.

  Returns:
    The new state; the optimizer state stays fresh.

  Raises:
    plan.ConfigError: when a non-classifier tensor is missing or misshapen.
  """
  current = flax.traverse_util.flatten_dict(
      {'params': state.params, 'batch_stats': state.batch_stats})
  loaded = flax.traverse_util.flatten_dict(dict(variables))
  merged, fresh = {}, []
  for path, leaf in current.items():
    new = loaded.get(path)
    if new is not None and tuple(new.shape) == tuple(leaf.shape):
      merged[path] = new
    elif path[1] in _CLASSIFIERS:
      merged[path] = leaf
      fresh.append('/'.join(path))
    else:
      found = 'nothing' if new is None else f'shape {tuple(new.shape)}'
      raise plan_lib.ConfigError(
          f'init_from: {source} has {found} for {"/".join(path)}, the network '
          f'needs {tuple(leaf.shape)}; convert weights of this network')
  unused = sorted('/'.join(p) for p in loaded if p not in current)
  if fresh:
    logging.info('Fine-tuning: %d classifier tensors start fresh: %s',
                 len(fresh), ', '.join(fresh))
  if unused:
    logging.warning('Fine-tuning: %d tensors of %s are not in this network: %s',
                    len(unused), source, ', '.join(unused))
  tree = flax.traverse_util.unflatten_dict(merged)
  # The train step donates the state, so the weights and their average need
  # buffers of their own, not views of host arrays: a jitted copy makes them.
  weights, ema = jax.jit(
      lambda t: (jax.tree.map(jnp.copy, t), jax.tree.map(jnp.copy, t)),
      out_shardings=({'params': shardings.params,
                      'batch_stats': shardings.batch_stats}, shardings.ema))(tree)
  return state.replace(params=weights['params'],
                       batch_stats=weights['batch_stats'], ema=ema)
