r"""Published weights into Flax variables: timm, TF-slim and Keras.

Each converter returns `(variables, model_kwargs)`: `variables` is
`{'params': ..., 'batch_stats': ...}` as numpy float32 arrays, and
`models.create_model(**model_kwargs)` builds the module they belong to. The
kwargs hold `name`, `num_classes`, `aux_logits`, `bn_scale` and
`pool_count_include_pad` (timm's Inception-v3 counts padded cells in its
average pools, so its logits need True; every other source needs False).

    variables, kwargs = convert.from_timm('inception_v4', tensors)
    model = models.create_model(**kwargs)
    logits = model.apply(variables, images, train=False)

From the command line a conversion writes a directory that `load_converted`
reads back (the variables as an Orbax checkpoint, the settings as JSON):

    python -m inception.convert --model=inception_v4 --source=timm \
        --input=model.safetensors --output=/tmp/inception_v4

A file that does not fit the network fails with one `WeightMismatchError`
naming the missing, unexpected and misshapen tensors, before anything is
compiled. Nothing is skipped, except timm's `num_batches_tracked` counters.
"""

import dataclasses
import functools
import json
import os
from typing import Any, Callable, Iterable, Mapping

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from inception import console
from inception import convert_keras
from inception import convert_names
from inception import models
from inception.convert_names import CONV_BIAS, CONV_BN, DENSE

SOURCES = ('timm', 'slim')
_SHAPE_INPUT = (1, 299, 299, 3)  # the aux head's kernels depend on the input size
_SHOWN = 6  # offending names shown per category in an error


class WeightMismatchError(ValueError):
  """A weight file or model does not fit the network it is converted into."""


@dataclasses.dataclass(frozen=True)
class _Entry:
  """One source tensor and the Flax leaf it becomes.

  Attributes:
    source: the tensor's name in the file (or Keras layer/weight).
    leaf: Flax path: collection, module path, variable name.
    layout: 'same', 'oihw' (torch conv), 'oi' (torch linear) or 'conv1x1'
      (a classifier stored as a 1x1 convolution, TF-slim's Inception-v3).
    background: the source has an extra class 0 on the last axis.
  """
  source: str
  leaf: tuple[str, ...]
  layout: str = 'same'
  background: bool = False


# Per unit kind: (source suffix, Flax leaf below the unit, layout). The entry
# whose leaf ends in 'scale' exists only for networks with a BatchNorm scale.
_RULES = {
    'timm': {
        CONV_BN: (('conv.weight', ('params', 'conv', 'kernel'), 'oihw'),
                  ('bn.weight', ('params', 'bn', 'scale'), 'same'),
                  ('bn.bias', ('params', 'bn', 'bias'), 'same'),
                  ('bn.running_mean', ('batch_stats', 'bn', 'mean'), 'same'),
                  ('bn.running_var', ('batch_stats', 'bn', 'var'), 'same')),
        CONV_BIAS: (('weight', ('params', 'kernel'), 'oihw'),
                    ('bias', ('params', 'bias'), 'same')),
        DENSE: (('weight', ('params', 'kernel'), 'oi'),
                ('bias', ('params', 'bias'), 'same')),
    },
    'slim': {
        CONV_BN: (('weights', ('params', 'conv', 'kernel'), 'same'),
                  ('BatchNorm/gamma', ('params', 'bn', 'scale'), 'same'),
                  ('BatchNorm/beta', ('params', 'bn', 'bias'), 'same'),
                  ('BatchNorm/moving_mean', ('batch_stats', 'bn', 'mean'), 'same'),
                  ('BatchNorm/moving_variance', ('batch_stats', 'bn', 'var'), 'same')),
        CONV_BIAS: (('weights', ('params', 'kernel'), 'same'),
                    ('biases', ('params', 'bias'), 'same')),
        DENSE: (('weights', ('params', 'kernel'), 'same'),
                ('biases', ('params', 'bias'), 'same')),
    },
}
_SEPARATOR = {'timm': '.', 'slim': '/'}
_TIMM_IGNORED = 'bn.num_batches_tracked'


def _plan(name: str, source: str, aux_logits: bool, bn_scale: bool,
          background: bool = False) -> list[_Entry]:
  """The source tensors of a network and the Flax leaves they fill."""
  if source == 'timm' and name not in convert_names.TIMM_MODELS:
    raise ValueError(f'timm has no {name}; timm ships '
                     f'{", ".join(convert_names.TIMM_MODELS)}')
  sep = _SEPARATOR[source]
  root = convert_names.SLIM_ROOTS[name] + '/' if source == 'slim' else ''
  entries = []
  for unit in convert_names.units(name, aux_logits):
    module = unit.timm if source == 'timm' else root + unit.slim
    for suffix, (collection, *leaf), layout in _RULES[source][unit.kind]:
      if leaf[-1] == 'scale' and not bn_scale:
        continue
      if unit.slim_conv_classifier and source == 'slim' and leaf[-1] == 'kernel':
        layout = 'conv1x1'
      entries.append(_Entry(f'{module}{sep}{suffix}',
                            (collection, *unit.path, *leaf), layout,
                            background and unit.kind == DENSE))
  return entries


def _source_shape(shape: tuple[int, ...], entry: _Entry) -> tuple[int, ...]:
  """The shape a source tensor must have to fill a Flax leaf of `shape`."""
  if entry.background:
    shape = shape[:-1] + (shape[-1] + 1,)
  if entry.layout == 'oihw':
    return (shape[3], shape[2], shape[0], shape[1])
  if entry.layout == 'oi':
    return (shape[1], shape[0])
  if entry.layout == 'conv1x1':
    return (1, 1) + shape
  return shape


def _to_flax(x: np.ndarray, entry: _Entry) -> np.ndarray:
  """A source tensor in the Flax layout, as a float32 copy."""
  x = np.array(x, np.float32)
  if entry.layout == 'oihw':
    x = x.transpose(2, 3, 1, 0)
  elif entry.layout == 'oi':
    x = x.T
  elif entry.layout == 'conv1x1':
    x = x.reshape(x.shape[2:])
  if entry.background:
    x = x[..., 1:]
  return np.ascontiguousarray(x)


def _from_flax(x: np.ndarray, entry: _Entry) -> np.ndarray:
  """The inverse of `_to_flax`; the background class gets zeros."""
  x = np.array(x, np.float32)
  if entry.background:
    x = np.concatenate([np.zeros_like(x[..., :1]), x], axis=-1)
  if entry.layout == 'oihw':
    x = x.transpose(3, 2, 0, 1)
  elif entry.layout == 'oi':
    x = x.T
  elif entry.layout == 'conv1x1':
    x = x[None, None]
  return np.ascontiguousarray(x)


def _target_shapes(model_kwargs: Mapping[str, Any]) -> dict[tuple[str, ...], tuple]:
  """Shapes of the network's variables by leaf path, traced without compiling."""
  return _traced_shapes(tuple(sorted(model_kwargs.items())))


@functools.lru_cache(maxsize=8)
def _traced_shapes(model_kwargs: tuple) -> dict[tuple[str, ...], tuple]:
  model = models.create_model(**dict(model_kwargs))
  tree = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                           jnp.zeros(_SHAPE_INPUT), train=False))
  return {tuple(k.key for k in path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _listing(label: str, items: list[str]) -> str:
  shown = ', '.join(items[:_SHOWN])
  more = f', ... ({len(items) - _SHOWN} more)' if len(items) > _SHOWN else ''
  return f'\n  {label} ({len(items)}): {shown}{more}'


def _best_match(source: str, names: Iterable[str], requested: str) -> str:
  """A hint naming the known network whose tensor names fit `names` best."""
  names = {n for n in names if not n.endswith(_TIMM_IGNORED)}
  best, best_score = '', 0.0
  for model in convert_names.MODEL_NAMES:
    for aux in (False, True):
      try:
        expected = {e.source for e in _plan(model, source, aux, source == 'timm')}
      except ValueError:  # timm lacks the network, or the network an aux head
        continue
      score = len(expected & names) / len(expected | names)
      if score > best_score:
        best, best_score = model, score
  if best in ('', requested):
    return ''
  return (f'\n  the names fit {best} best ({best_score:.0%} in common); '
          f'is the file for another network?')


def _assemble(plan: list[_Entry], shapes: Mapping[str, tuple],
              read: Callable[[str], np.ndarray], model_kwargs: Mapping[str, Any],
              what: str, ignored: Iterable[str] = (),
              hint: Callable[[], str] = lambda: '') -> dict:
  """Checks every tensor against the network, then builds the variables.

  Args:
    plan: the expected source tensors.
    shapes: name -> shape of every tensor the source holds.
    read: name -> array.
    model_kwargs: the network, as `create_model` kwargs.
    what: the source, for messages.
    ignored: names that may be present and are dropped (timm's counters).
    hint: returns a line to append to the error.

  Returns:
    `{'params': ..., 'batch_stats': ...}` of float32 numpy arrays.

  Raises:
    WeightMismatchError: listing missing, unexpected and misshapen tensors.
  """
  target = _target_shapes(model_kwargs)
  leaves = {e.leaf for e in plan}
  if leaves != set(target) or len(leaves) != len(plan):
    raise RuntimeError(  # a bug, not a bad file: the tables drifted from models.py
        f'name table of {model_kwargs["name"]} does not cover the Flax model: '
        f'{sorted(set(target) - leaves)[:_SHOWN]} unnamed, '
        f'{sorted(leaves - set(target))[:_SHOWN]} unknown')
  expected = {e.source for e in plan}
  missing = [e.source for e in plan if e.source not in shapes]
  unexpected = sorted(set(shapes) - expected - set(ignored))
  misshapen = [f'{e.source} {tuple(shapes[e.source])} != expected '
               f'{_source_shape(target[e.leaf], e)}'
               for e in plan if e.source in shapes
               and tuple(shapes[e.source]) != _source_shape(target[e.leaf], e)]
  if missing or unexpected or misshapen:
    settings = ', '.join(f'{k}={v}' for k, v in model_kwargs.items())
    raise WeightMismatchError(
        f'{what} does not fit {settings}: {len(missing)} missing, '
        f'{len(unexpected)} unexpected, {len(misshapen)} misshapen tensor(s) '
        f'of {len(expected)} expected'
        + (_listing('missing', missing) if missing else '')
        + (_listing('unexpected', unexpected) if unexpected else '')
        + (_listing('misshapen', misshapen) if misshapen else '') + hint())
  variables: dict = {}
  for e in plan:
    node = variables
    for key in e.leaf[:-1]:
      node = node.setdefault(key, {})
    node[e.leaf[-1]] = _to_flax(read(e.source), e)
  return variables


def _classes(shapes: Mapping[str, tuple], bias: str) -> int:
  """Width of the classifier whose bias is `bias`; 1000 when it is absent."""
  if bias not in shapes or len(shapes[bias]) != 1:
    return 1000  # the mismatch is then reported with everything else
  return int(shapes[bias][0])


def from_timm(name: str, tensors: Mapping[str, np.ndarray]) -> tuple[dict, dict]:
  """Converts a timm state dict (e.g. a hub `model.safetensors`).

  Args:
    name: 'inception_v3', 'inception_v4' or 'inception_resnet_v2'.
    tensors: timm tensor name -> array (PyTorch layouts).

  Returns:
    `(variables, model_kwargs)`; the network has a BatchNorm scale, its classes
    are those of the file's classifier, it has the auxiliary head when the file
    does (timm's Inception-v3 only), and Inception-v3 averages with
    `pool_count_include_pad=True`, as timm does.

  Raises:
    WeightMismatchError: the tensors do not fit the network.
  """
  shapes = {k: tuple(np.shape(v)) for k, v in tensors.items()}
  aux = name == 'inception_v3' and any(k.startswith('AuxLogits.') for k in shapes)
  classifier = convert_names.units(name, False)[-1].timm
  model_kwargs = dict(name=name, num_classes=_classes(shapes, f'{classifier}.bias'),
                      aux_logits=aux, bn_scale=True,
                      pool_count_include_pad=name == 'inception_v3')
  plan = _plan(name, 'timm', aux, bn_scale=True)
  ignored = {f'{u.timm}.{_TIMM_IGNORED}' for u in convert_names.units(name, aux)
             if u.kind == CONV_BN}
  variables = _assemble(plan, shapes, lambda k: tensors[k], model_kwargs,
                        'timm tensors', ignored,
                        lambda: _best_match('timm', shapes, name))
  return variables, model_kwargs


def _from_slim_reader(name: str, shapes: Mapping[str, tuple],
                      read: Callable[[str], np.ndarray],
                      background_class: bool | None, what: str) -> tuple[dict, dict]:
  """`from_slim` on any source of TF-slim names and tensors."""
  if name not in convert_names.SLIM_ROOTS:
    raise ValueError(f'no TF-slim names for {name!r}; known: '
                     f'{", ".join(convert_names.SLIM_ROOTS)}')
  root = convert_names.SLIM_ROOTS[name]
  aux = convert_names.has_aux_head(name) and any(
      k.startswith(f'{root}/AuxLogits/') for k in shapes)
  bn_scale = any(k.endswith('/BatchNorm/gamma') for k in shapes)
  classifier = convert_names.units(name, False)[-1].slim
  classes = _classes(shapes, f'{root}/{classifier}/biases')
  if background_class is None:
    background_class = classes == 1001
    logging.info('%s: %d classifier outputs, %s', what, classes,
                 'class 0 is background, dropped' if background_class
                 else 'no background class')
  model_kwargs = dict(name=name, num_classes=classes - int(background_class),
                      aux_logits=aux, bn_scale=bn_scale, pool_count_include_pad=False)
  plan = _plan(name, 'slim', aux, bn_scale, background_class)
  variables = _assemble(plan, shapes, read, model_kwargs, what,
                        hint=lambda: _best_match('slim', shapes, name))
  return variables, model_kwargs


def from_slim(name: str, path: str, *, background_class: bool | None = None
              ) -> tuple[dict, dict]:
  """Converts a TF-slim checkpoint.

  Inception-ResNet-v1 has no released checkpoint; its names follow facenet's
  TF-slim scopes, with a `Logits/Logits` classifier (facenet's own checkpoints
  add a sixth Block8 and a face-embedding bottleneck, and do not fit).

  Args:
    name: a network of `convert_names.SLIM_ROOTS`.
    path: checkpoint prefix or directory, as `tf.train.load_checkpoint` takes.
    background_class: whether the classifiers hold a class 0 = background, as
      the released 1001-class ImageNet checkpoints do; it is dropped. None
      (default) assumes so exactly when the classifier has 1001 outputs.

  Returns:
    `(variables, model_kwargs)`; no BatchNorm scale unless the checkpoint has
    `BatchNorm/gamma`, the auxiliary head when the checkpoint has one.

  Raises:
    WeightMismatchError: the checkpoint does not fit the network.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top; only this path needs TF
  reader = tf.train.load_checkpoint(path)
  shapes = {k: tuple(v) for k, v in reader.get_variable_to_shape_map().items()}
  return _from_slim_reader(name, shapes, reader.get_tensor, background_class,
                           f'TF-slim checkpoint {path}')


def from_keras(name: str, keras_model: Any) -> tuple[dict, dict]:
  """Converts a `keras.applications` InceptionV3 or InceptionResNetV2.

  The layers are aligned by graph order, not by their counter-numbered names
  (see `convert_keras`); kinds and shapes are checked unit by unit.

  Args:
    name: 'inception_v3' or 'inception_resnet_v2'.
    keras_model: the Keras model, built with `include_top=True`.

  Returns:
    `(variables, model_kwargs)`: no auxiliary head, and a BatchNorm scale only
    if the Keras model has one (keras.applications has none).

  Raises:
    WeightMismatchError: the model does not fit the network.
  """
  what = f'Keras model {keras_model.name!r}'
  try:
    keras_units = convert_keras.units(keras_model)
  except ValueError as e:
    raise WeightMismatchError(f'{what}: {e}') from e
  flax_units = convert_names.units(name, False)
  kinds = [kind for kind, _ in keras_units]
  if kinds != [u.kind for u in flax_units]:
    count = lambda ks: (f'{ks.count(CONV_BN)} conv+BN, {ks.count(CONV_BIAS)} '
                        f'biased conv and {ks.count(DENSE)} dense layers')
    raise WeightMismatchError(
        f'{what} does not fit {name}: in graph order it has {count(kinds)}, '
        f'{name} has {count([u.kind for u in flax_units])} (a model built '
        'without its top has no dense layer)')
  bns = [layers[1] for kind, layers in keras_units if kind == CONV_BN]
  bn_scale, epsilon = bool(bns[0].scale), float(bns[0].epsilon)
  if any(bool(bn.scale) != bn_scale or float(bn.epsilon) != epsilon
         or not bn.center for bn in bns):
    raise WeightMismatchError(f'{what}: its BatchNorm layers differ in scale or '
                              'epsilon, or lack a beta')
  tensors, plan = {}, []
  for unit, (kind, layers) in zip(flax_units, keras_units):
    for leaf, (source, value) in convert_keras.weights(kind, layers).items():
      tensors[source] = np.asarray(value)
      collection = 'batch_stats' if leaf[-1] in ('mean', 'var') else 'params'
      plan.append(_Entry(source, (collection, *unit.path, *leaf)))
  model_kwargs = dict(name=name, num_classes=int(keras_units[-1][1][0].units),
                      aux_logits=False, bn_scale=bn_scale,
                      pool_count_include_pad=False)
  if not np.isclose(epsilon, models.create_model(name).bn_epsilon):
    model_kwargs['bn_epsilon'] = epsilon
  variables = _assemble(plan, {k: v.shape for k, v in tensors.items()},
                        tensors.__getitem__, model_kwargs, what)
  return variables, model_kwargs


def to_timm(name: str, variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Exports Flax variables under timm's names and layouts (inverse of `from_timm`).

  Args:
    name: 'inception_v3', 'inception_v4' or 'inception_resnet_v2'.
    variables: `{'params', 'batch_stats'}` of the network with its published
      block counts; without a BatchNorm scale, timm's gets ones.

  Returns:
    timm tensor name -> array, `num_batches_tracked` counters included (zero).
  """
  aux = convert_names.AUX_HEAD in variables['params']
  bn_scale = 'scale' in variables['params']['conv2d_1a_3x3']['bn']
  out = {}
  for e in _plan(name, 'timm', aux, bn_scale=True):
    if e.leaf[-1] == 'scale' and not bn_scale:
      out[e.source] = np.ones(np.shape(_leaf(variables, e.leaf[:-1] + ('bias',))),
                              np.float32)
    else:
      out[e.source] = _from_flax(_leaf(variables, e.leaf), e)
  for unit in convert_names.units(name, aux):
    if unit.kind == CONV_BN:
      out[f'{unit.timm}.{_TIMM_IGNORED}'] = np.zeros((), np.int64)
  return out


def to_slim(name: str, variables: Mapping[str, Any], *,
            background_class: bool = True) -> dict[str, np.ndarray]:
  """Exports Flax variables under TF-slim's names (the inverse of `from_slim`).

  Args:
    name: a network of `convert_names.SLIM_ROOTS`, with its published blocks.
    variables: `{'params', 'batch_stats'}`.
    background_class: prepend class 0 (zero weights and bias) to the classifiers.

  Returns:
    TF-slim variable name -> array.
  """
  aux = convert_names.AUX_HEAD in variables['params']
  bn_scale = 'scale' in variables['params']['conv2d_1a_3x3']['bn']
  return {e.source: _from_flax(_leaf(variables, e.leaf), e)
          for e in _plan(name, 'slim', aux, bn_scale, background_class)}


def _leaf(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def save_converted(directory: str, variables: Mapping[str, Any],
                   model_kwargs: Mapping[str, Any], source: Mapping[str, Any]) -> None:
  """Writes converted weights for `load_converted`.

  Args:
    directory: created if needed; receives `variables/` (an Orbax checkpoint
      of `{'params', 'batch_stats'}`) and `model.json`.
    variables: the Flax variables.
    model_kwargs: `create_model` kwargs of the network.
    source: where the weights came from, recorded in `model.json`.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  directory = os.path.abspath(directory)
  os.makedirs(directory, exist_ok=True)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.join(directory, 'variables'), dict(variables),
                      force=True)
  with open(os.path.join(directory, 'model.json'), 'w') as f:
    json.dump({'model_kwargs': dict(model_kwargs), 'source': dict(source)}, f,
              indent=2)


def load_converted(directory: str) -> tuple[dict, dict]:
  """Reads what `save_converted` (or this module's command line) wrote.

  Args:
    directory: the `--output` directory of a conversion.

  Returns:
    `(model_kwargs, variables)`: `models.create_model(**model_kwargs)` builds
    the network (pass `dtype=` as well for another compute dtype) and
    `variables` are its `{'params', 'batch_stats'}` as numpy arrays.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  directory = os.path.abspath(directory)
  with open(os.path.join(directory, 'model.json')) as f:
    model_kwargs = json.load(f)['model_kwargs']
  with ocp.StandardCheckpointer() as checkpointer:
    variables = checkpointer.restore(os.path.join(directory, 'variables'))
  return model_kwargs, variables


def main(argv: list[str]) -> None:
  del argv
  console.setup()
  args = flags.FLAGS
  if args.source == 'timm':
    import safetensors.numpy  # pylint: disable=g-import-not-at-top
    variables, model_kwargs = from_timm(args.model,
                                        safetensors.numpy.load_file(args.input))
  else:
    variables, model_kwargs = from_slim(args.model, args.input,
                                        background_class=args.background_class)
  save_converted(args.output, variables, model_kwargs,
                 {'format': args.source, 'input': os.path.abspath(args.input)})
  count = sum(np.size(x) for x in jax.tree.leaves(variables))
  logging.info('Wrote %s (%d values) to %s', model_kwargs, count, args.output)


def _define_flags() -> None:
  """Command-line flags, defined only when run as a program, not on import."""
  flags.DEFINE_enum('model', None, list(convert_names.MODEL_NAMES),
                    'Network the weights belong to.')
  flags.DEFINE_enum('source', None, list(SOURCES),
                    'timm (a model.safetensors) or slim (a TF checkpoint).')
  flags.DEFINE_string('input', None, 'File (timm) or checkpoint prefix (slim).')
  flags.DEFINE_string('output', None, 'Directory to write.')
  flags.DEFINE_bool('background_class', None, 'slim only: the classifiers hold '
                    'a background class 0, to drop; unset: exactly when they '
                    'have 1001 outputs.')
  flags.mark_flags_as_required(['model', 'source', 'input', 'output'])


if __name__ == '__main__':
  _define_flags()
  app.run(main)
