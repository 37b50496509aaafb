"""Reads the weights of a Keras functional model in graph order.

Keras names its layers from a process-wide counter (`conv2d_17`,
`batch_normalization_17`), and `model.layers` lists them breadth-first, so
neither names nor list order say which layer is which. The graph does: a
depth-first walk from the output that visits each layer's inputs in order
meets the layers in the order the builder created them, branch by branch,
which for keras.applications is the order of the TF-slim graphs and of
`convert_names.units`. `convert.from_keras` aligns the two lists.

Only public Keras properties are used (`layers`, `input`, `output`,
`outputs`, the layers' variables), and Keras is never imported: layer types
are told apart by class name, so this module loads without TensorFlow.
"""

from typing import Any

from inception.convert_names import CONV_BIAS, CONV_BN, DENSE


def _as_list(x: Any) -> list:
  return list(x) if isinstance(x, (list, tuple)) else [x]


def _graph_order(model: Any) -> tuple[list, Any]:
  """The model's layers in depth-first post-order, and a layer -> inputs function."""
  producer = {}
  for layer in model.layers:
    for out in _as_list(layer.output):
      producer[id(out)] = layer

  def parents(layer):
    if type(layer).__name__ == 'InputLayer':
      return []
    return [producer[id(x)] for x in _as_list(layer.input)]

  order, seen = [], set()
  stack = [(producer[id(out)], False) for out in reversed(model.outputs)]
  while stack:  # iterative: the graphs are deeper than Python's recursion limit
    layer, expanded = stack.pop()
    if expanded:
      order.append(layer)
    elif id(layer) not in seen:
      seen.add(id(layer))
      stack.append((layer, True))
      stack.extend((p, False) for p in reversed(parents(layer)) if id(p) not in seen)
  return order, parents


def units(model: Any) -> list[tuple[str, tuple]]:
  """The model's layers with weights, grouped as the networks' units.

  Args:
    model: a Keras functional model.

  Returns:
    (kind, layers) in graph order: (CONV_BN, (conv, batch_norm)) for an
    unbiased convolution followed by BatchNorm, (CONV_BIAS, (conv,)) for a
    biased one, (DENSE, (dense,)) for a classifier.

  Raises:
    ValueError: a layer holds weights that fit none of these units.
  """
  order, parents = _graph_order(model)
  bn_after = {id(parents(layer)[0]): layer for layer in order
              if type(layer).__name__ == 'BatchNormalization'}
  found, paired = [], 0
  for layer in order:
    kind = type(layer).__name__
    if kind == 'Conv2D' and (id(layer) in bn_after) != layer.use_bias:
      found.append((CONV_BIAS, (layer,)) if layer.use_bias
                   else (CONV_BN, (layer, bn_after[id(layer)])))
      paired += not layer.use_bias
    elif kind == 'Dense':
      found.append((DENSE, (layer,)))
    elif layer.weights and kind != 'BatchNormalization':
      raise ValueError(
          f'Keras layer {layer.name} ({kind}) has weights the networks have no '
          'place for (their convolutions are either biased, or unbiased and '
          'followed by BatchNorm)')
  if paired != len(bn_after):
    raise ValueError(f'{len(bn_after) - paired} Keras BatchNorm layer(s) do not '
                     'follow an unbiased convolution')
  return found


def weights(kind: str, layers: tuple) -> dict[tuple[str, ...], tuple[str, Any]]:
  """The variables of one unit.

  Args:
    kind: CONV_BN, CONV_BIAS or DENSE.
    layers: the unit's Keras layers, as `units` returns them.

  Returns:
    Flax leaf below the unit (e.g. ('bn', 'mean')) -> (Keras layer/variable
    name, variable). The BatchNorm scale is included only if Keras has one.
  """
  if kind == CONV_BN:
    conv, bn = layers
    out = {('conv', 'kernel'): (f'{conv.name}/kernel', conv.kernel),
           ('bn', 'bias'): (f'{bn.name}/beta', bn.beta),
           ('bn', 'mean'): (f'{bn.name}/moving_mean', bn.moving_mean),
           ('bn', 'var'): (f'{bn.name}/moving_variance', bn.moving_variance)}
    if bn.scale:
      out[('bn', 'scale')] = (f'{bn.name}/gamma', bn.gamma)
    return out
  layer = layers[0]
  return {('kernel',): (f'{layer.name}/kernel', layer.kernel),
          ('bias',): (f'{layer.name}/bias', layer.bias)}
