"""The networks: Inception-v3, Inception-v4, Inception-ResNet-v1 and -v2.

Each network is a flat sequence of named layers (the released graphs' scope
names, lower-cased: `conv2d_1a_3x3`, `mixed_5b`, `block35_3`, `mixed_6a`, ...)
built from the block tables of `blocks.py`, and one module, `Inception`, runs
any such sequence. `create_model` is the entry point:

    model = create_model('inception_v4', num_classes=1000)
    variables = model.init(jax.random.key(0), images, train=False)
    logits = model.apply(variables, images, train=False)

In training, `mutable=['batch_stats', 'intermediates']` also returns, under
`intermediates`, the auxiliary logits (`aux_logits`, when the head is on) and
the fraction of zero activations in the last feature map (`zero_fraction`),
each as a 1-tuple. Images are NHWC floats in [-1, 1], at least 75x75.
"""

import dataclasses
import functools
import string
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from inception import blocks
from inception import conv as conv_op
from inception import initializers
from inception import layers
from inception.layers import MaxPool, conv, conv_v

MIN_INPUT_SIZE = 75


@dataclasses.dataclass(frozen=True)
class Mixed:
  """A layer that is an `InceptionBlock` over `table`."""
  table: blocks.Table


@dataclasses.dataclass(frozen=True)
class Residual:
  """A layer that is an `InceptionResNetBlock`.

  Attributes:
    table: the residual branches.
    kind: 0, 1 or 2 for the A, B or C residual scale.
    projection_filters: projection width; None matches the input.
    final: the released IRv2's last block: scale 1.0 and no activation.
  """
  table: blocks.Table
  kind: int
  projection_filters: int | None = None
  final: bool = False


def _repeat(prefix: str, count: int, layer: Any, letters: bool) -> list:
  """`count` copies of `layer`, named `prefix` + b, c, d... or + 1, 2, 3..."""
  if letters:
    if count > 25:
      raise ValueError(f'at most 25 blocks per stage, got {count}')
    return [(prefix + string.ascii_lowercase[i + 1], layer) for i in range(count)]
  return [(f'{prefix}{i + 1}', layer) for i in range(count)]


_V3_STEM = [
    ('conv2d_1a_3x3', conv_v(32, 3, 2)),
    ('conv2d_2a_3x3', conv_v(32, 3)),
    ('conv2d_2b_3x3', conv(64, 3)),
    ('maxpool_3a_3x3', MaxPool()),
    ('conv2d_3b_1x1', conv_v(80, 1)),
    ('conv2d_4a_3x3', conv_v(192, 3)),
    ('maxpool_5a_3x3', MaxPool()),
]

_V4_STEM = _V3_STEM[:3] + [
    ('mixed_3a', Mixed(blocks.STEM_V4_MIXED_3A)),
    ('mixed_4a', Mixed(blocks.STEM_V4_MIXED_4A)),
    ('mixed_5a', Mixed(blocks.STEM_V4_MIXED_5A)),
]


def _inception_v3(repeats: None, printed: bool) -> list:
  del printed
  if repeats is not None:
    raise ValueError('inception_v3 has no repeated blocks (each differs); '
                     'drop model_overrides.repeats or use another network')
  return _V3_STEM + [
      ('mixed_5b', Mixed(blocks.inception_v3_a(32))),
      ('mixed_5c', Mixed(blocks.inception_v3_a(64))),
      ('mixed_5d', Mixed(blocks.inception_v3_a(64))),
      ('mixed_6a', Mixed(blocks.INCEPTION_V3_REDUCTION_A)),
      ('mixed_6b', Mixed(blocks.inception_v3_b(128))),
      ('mixed_6c', Mixed(blocks.inception_v3_b(160))),
      ('mixed_6d', Mixed(blocks.inception_v3_b(160))),
      ('mixed_6e', Mixed(blocks.inception_v3_b(192))),
      ('mixed_7a', Mixed(blocks.INCEPTION_V3_REDUCTION_B)),
      ('mixed_7b', Mixed(blocks.INCEPTION_V3_C)),
      ('mixed_7c', Mixed(blocks.INCEPTION_V3_C)),
  ]


def _inception_v4(repeats: tuple[int, int, int], printed: bool) -> list:
  del printed
  a, b, c = repeats
  return (_V4_STEM
          + _repeat('mixed_5', a, Mixed(blocks.INCEPTION_A), letters=True)
          + [('mixed_6a', Mixed(blocks.reduction_a(192, 224, 256, 384)))]
          + _repeat('mixed_6', b, Mixed(blocks.INCEPTION_B), letters=True)
          + [('mixed_7a', Mixed(blocks.REDUCTION_B))]
          + _repeat('mixed_7', c, Mixed(blocks.INCEPTION_C), letters=True))


def _inception_resnet_v1(repeats: tuple[int, int, int], printed: bool) -> list:
  del printed
  a, b, c = repeats
  return (_V3_STEM[:6] + [('conv2d_4b_3x3', conv_v(256, 3, 2))]
          + _repeat('block35_', a, Residual(blocks.INCEPTION_RESNET_V1_A, 0),
                    letters=False)
          + [('mixed_6a', Mixed(blocks.reduction_a(192, 192, 256, 384)))]
          + _repeat('block17_', b, Residual(blocks.INCEPTION_RESNET_V1_B, 1),
                    letters=False)
          + [('mixed_7a', Mixed(blocks.INCEPTION_RESNET_V1_REDUCTION_B))]
          + _repeat('block8_', c, Residual(blocks.INCEPTION_RESNET_V1_C, 2),
                    letters=False))


def _inception_resnet_v2(repeats: tuple[int, int, int], printed: bool) -> list:
  del printed
  a, b, c = repeats
  if c < 1:
    raise ValueError('inception_resnet_v2 needs at least one C block (its last '
                     'block is the linear one); set model_overrides.repeats[2] >= 1')
  return (_V3_STEM
          + [('mixed_5b', Mixed(blocks.INCEPTION_RESNET_V2_STEM_MIXED_5B))]
          + _repeat('block35_', a, Residual(blocks.INCEPTION_RESNET_V2_A, 0),
                    letters=False)
          + [('mixed_6a', Mixed(blocks.reduction_a(256, 256, 384, 384)))]
          + _repeat('block17_', b, Residual(blocks.INCEPTION_RESNET_V2_B, 1),
                    letters=False)
          + [('mixed_7a', Mixed(blocks.INCEPTION_RESNET_V2_REDUCTION_B))]
          + _repeat('block8_', c - 1, Residual(blocks.INCEPTION_RESNET_V2_C, 2),
                    letters=False)
          + [('block8', Residual(blocks.INCEPTION_RESNET_V2_C, 2, final=True)),
             ('conv2d_7b_1x1', conv(1536, 1))])


def _inception_resnet_v2_paper(repeats: tuple[int, int, int],
                               printed: bool) -> list:
  a, b, c = repeats
  return (_V4_STEM
          + _repeat('block35_', a, Residual(blocks.INCEPTION_RESNET_V2_A, 0),
                    letters=False)
          + [('mixed_6a', Mixed(blocks.reduction_a(256, 256, 384, 384)))]
          + _repeat('block17_', b, Residual(blocks.INCEPTION_RESNET_V2_B, 1,
                                            1154 if printed else None),
                    letters=False)
          + [('mixed_7a', Mixed(blocks.INCEPTION_RESNET_V2_REDUCTION_B))]
          + _repeat('block8_', c, Residual(blocks.INCEPTION_RESNET_V2_C, 2,
                                           2048 if printed else None),
                    letters=False))


@dataclasses.dataclass(frozen=True)
class NetworkDef:
  """What distinguishes one network: its layers and its published settings.

  Attributes:
    build: (repeats, projection_as_printed) -> list of (name, layer).
    repeats: published blocks per stage (A, B, C); None where blocks differ.
    aux: where the auxiliary head sits and how its conv spans the grid, as
      (layer name or 'last_b', conv_kernel_from_grid); None without a head.
    conv_init: 'he' (variance scaling, TF-slim's v3/v4) or 'glorot' (IRv2).
  """
  build: Callable[..., list]
  repeats: tuple[int, int, int] | None
  aux: tuple[str, bool] | None
  conv_init: str


NETWORKS: dict[str, NetworkDef] = {
    'inception_v3': NetworkDef(_inception_v3, None, ('mixed_6e', False), 'he'),
    'inception_v4': NetworkDef(_inception_v4, (4, 7, 3), ('last_b', True), 'he'),
    'inception_resnet_v1': NetworkDef(_inception_resnet_v1, (5, 10, 5), None,
                                      'glorot'),
    'inception_resnet_v2': NetworkDef(_inception_resnet_v2, (10, 20, 10),
                                      ('last_b', True), 'glorot'),
    'inception_resnet_v2_paper': NetworkDef(_inception_resnet_v2_paper,
                                            (5, 10, 5), None, 'glorot'),
}
MODEL_NAMES = tuple(NETWORKS)

_CONV_INITS = {
    'he': initializers.VarianceScaling(2.0, 'fan_in', 'truncated_normal'),
    'glorot': initializers.xavier_uniform(),
}


class Inception(nn.Module):
  """Any network of the family: a sequence of named layers and a classifier.

  Attributes:
    layers: (name, layer) pairs, each a `layers.Conv`, `layers.MaxPool`,
      `Mixed` or `Residual`.
    num_classes: classifier width.
    aux_after: name of the layer the auxiliary head reads; None for no head.
    aux_kernel_from_grid: see `blocks.AuxHead`.
    residual_scales: scale of the A, B and C residual blocks.
    residual_activation: name of the activation after the residual sums.
    bn_on_sum: BatchNorm on the residual sums.
    dropout_rate: dropout before the classifier, in training.
    bn_momentum, bn_epsilon, bn_scale: BatchNorm settings.
    pool_count_include_pad: average-pool divisor rule.
    conv_init: key of `_CONV_INITS`.
    dtype: compute dtype; parameters stay float32 and logits are float32.
  """
  layers: tuple[tuple[str, Any], ...]
  num_classes: int = 1000
  aux_after: str | None = None
  aux_kernel_from_grid: bool = True
  residual_scales: tuple[float, float, float] = (0.17, 0.10, 0.20)
  residual_activation: str = 'relu'
  bn_on_sum: bool = False
  dropout_rate: float = 0.2
  bn_momentum: float = 0.9997
  bn_epsilon: float = 1e-3
  bn_scale: bool = False
  pool_count_include_pad: bool = False
  conv_init: str = 'he'
  dtype: Any = jnp.float32

  def _layer(self, name: str, layer: Any, conv_bn, conv_def, norm):
    """Builds the module for one entry of `layers`."""
    if isinstance(layer, layers.Conv):
      return conv_bn(layer, name=name)
    if isinstance(layer, MaxPool):
      return layers.max_pool
    if isinstance(layer, Mixed):
      return blocks.InceptionBlock(layer.table, conv_bn,
                                   self.pool_count_include_pad, name=name)
    return blocks.InceptionResNetBlock(
        layer.table, conv_bn, conv_def, norm,
        scale=1.0 if layer.final else self.residual_scales[layer.kind],
        activation=(None if layer.final
                    else layers.activation(self.residual_activation)),
        projection_filters=layer.projection_filters, bn_on_sum=self.bn_on_sum,
        pool_count_include_pad=self.pool_count_include_pad, name=name)

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    if x.ndim != 4 or min(x.shape[1:3]) < MIN_INPUT_SIZE:
      raise ValueError(f'images must be NHWC and at least {MIN_INPUT_SIZE}x'
                       f'{MIN_INPUT_SIZE}, got shape {x.shape}; resize them or '
                       f'raise image_size')
    conv_def = functools.partial(conv_op.Conv, dtype=self.dtype,
                                 kernel_init=_CONV_INITS[self.conv_init])
    # Two-pass batch variance, as TensorFlow and PyTorch compute it in training.
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                      momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                      use_scale=self.bn_scale, dtype=self.dtype,
                      use_fast_variance=False)
    conv_bn = functools.partial(layers.ConvBN, conv=conv_def, norm=norm)
    dense = functools.partial(nn.Dense, dtype=self.dtype,
                              kernel_init=initializers.xavier_uniform())

    x = x.astype(self.dtype)
    for name, layer in self.layers:
      x = self._layer(name, layer, conv_bn, conv_def, norm)(x)
      if name == self.aux_after and (train or self.is_initializing()):
        aux = blocks.AuxHead(self.num_classes, conv_bn, dense,
                             self.aux_kernel_from_grid, name='aux_head')(x)
        self.sow('intermediates', 'aux_logits', aux.astype(jnp.float32))
    self.sow('intermediates', 'zero_fraction',
             jnp.mean((x == 0).astype(jnp.float32)))
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = dense(self.num_classes, name='logits')(x)
    return x.astype(jnp.float32)


OVERRIDES = ('residual_scales', 'residual_activation', 'bn_on_sum', 'dropout_rate',
             'repeats', 'width_multiplier', 'bn_momentum', 'bn_epsilon',
             'pool_count_include_pad', 'projection_as_printed')
_RESIDUAL_ONLY = ('residual_scales', 'residual_activation', 'bn_on_sum')


def _scale_layer(layer: Any, width: float) -> Any:
  """`layer` with every filter count times `width`."""
  if isinstance(layer, (Mixed, Residual)):
    filters = layer.projection_filters if isinstance(layer, Residual) else None
    layer = dataclasses.replace(layer, table=layers.scale_filters(layer.table, width))
    if filters is not None:
      layer = dataclasses.replace(
          layer, projection_filters=layers.scaled(filters, width))
    return layer
  return layers.scale_filters(layer, width)


def create_model(name: str, *, num_classes: int = 1000, aux_logits: bool = False,
                 bn_scale: bool = False, dtype: Any = jnp.float32,
                 **overrides: Any) -> Inception:
  """Builds a network of the family by name.

  Args:
    name: one of `MODEL_NAMES`.
    num_classes: classifier width.
    aux_logits: add the auxiliary head (only where the network defines one).
    bn_scale: learn a BatchNorm scale; the released TF-slim graphs have none.
    dtype: compute dtype (a dtype or its name, e.g. 'bfloat16').
    **overrides: ablation settings, any of `OVERRIDES`: `repeats` (blocks per
      stage A, B, C), `width_multiplier`, `residual_scales` (A, B, C),
      `residual_activation` ('relu', 'relu6', 'none'), `bn_on_sum`,
      `dropout_rate`, `bn_momentum`, `bn_epsilon`, `pool_count_include_pad`,
      `projection_as_printed` (inception_resnet_v2_paper only).

  Returns:
    The Linen module.

  Raises:
    ValueError: for an unknown name or override, or one the network lacks.
  """
  if name not in NETWORKS:
    raise ValueError(f'unknown model {name!r}; known models: {", ".join(MODEL_NAMES)}')
  unknown = sorted(set(overrides) - set(OVERRIDES))
  if unknown:
    raise ValueError(f'unknown model override(s) {unknown}; known: {", ".join(OVERRIDES)}')
  net = NETWORKS[name]
  residual = name.startswith('inception_resnet')
  for key in _RESIDUAL_ONLY if not residual else ():
    if key in overrides:
      raise ValueError(f'{name} has no residual blocks; drop override {key!r}')
  if aux_logits and net.aux is None:
    raise ValueError(f'{name} has no auxiliary head; set aux_logits=False')
  printed = overrides.pop('projection_as_printed', False)
  if printed and name != 'inception_resnet_v2_paper':
    raise ValueError('projection_as_printed applies to inception_resnet_v2_paper only')
  repeats = overrides.pop('repeats', None)
  if repeats is not None and (len(repeats) != 3 or min(repeats) < 0):
    raise ValueError(f'repeats must be three block counts >= 0, got {repeats!r}')
  net_layers = net.build(tuple(repeats) if repeats is not None else net.repeats,
                         printed)
  width = overrides.pop('width_multiplier', 1.0)
  if width <= 0:
    raise ValueError(f'width_multiplier must be positive, got {width}')
  if width != 1.0:
    net_layers = [(n, _scale_layer(layer, width)) for n, layer in net_layers]
  aux_after = None
  if aux_logits:
    aux_after, _ = net.aux
    if aux_after == 'last_b':
      b_names = [n for n, l in net_layers if n.startswith(('mixed_6', 'block17_'))
                 and n != 'mixed_6a']
      if not b_names:
        raise ValueError('the auxiliary head reads the last B block; repeats[1] must be >= 1')
      aux_after = b_names[-1]
  if 'residual_scales' in overrides:
    overrides['residual_scales'] = tuple(float(s) for s in overrides['residual_scales'])
    if len(overrides['residual_scales']) != 3:
      raise ValueError('residual_scales must hold three scales (A, B, C)')
  return Inception(
      layers=tuple(net_layers), num_classes=num_classes, aux_after=aux_after,
      aux_kernel_from_grid=net.aux[1] if net.aux else True, bn_scale=bn_scale,
      conv_init=net.conv_init, dtype=jnp.dtype(dtype), **overrides)


def create_model_from_config(config: Any, num_classes: int) -> Inception:
  """Builds the network that `config` names (see configs/default.py).

  Args:
    config: a ConfigDict with `model`, `aux_logits`, `bn_scale`, `dtype` and
      `model_overrides`, whose None fields keep the network's published values.
    num_classes: classifier width, from the dataset.

  Returns:
    The Linen module.
  """
  overrides = {k: v for k, v in config.model_overrides.items() if v is not None}
  return create_model(config.model, num_classes=num_classes,
                      aux_logits=config.aux_logits, bn_scale=config.bn_scale,
                      dtype=config.dtype, **overrides)
