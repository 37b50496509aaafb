"""Name tables: which TF-slim scope and timm module each Flax layer comes from.

A network is a list of `Unit`s, one per module that holds weights: a conv+BN
unit, a biased 1x1 projection, or a classifier. The list is in the order the
released graphs create their layers (the order TF-slim and Keras build them),
so `convert.from_keras` can align a Keras model by position, and each unit
names its TF-slim scope and its timm module, so `from_slim` and `from_timm` can
align files by name.

Sources: tensorflow/models research/slim/nets (inception_v3.py, inception_v4.py,
inception_resnet_v2.py), davidsandberg/facenet src/models/inception_resnet_v1.py
(Inception-ResNet-v1 scopes) and huggingface/pytorch-image-models
timm/models (inception_v3.py, inception_v4.py, inception_resnet_v2.py). The
Flax names are those of `inception/layers.py` and `inception/models.py`.
"""

import dataclasses

CONV_BN = 'conv_bn'  # convolution without bias, BatchNorm (Flax `layers.ConvBN`)
CONV_BIAS = 'conv_bias'  # 1x1 convolution with bias, linear (the residual projection)
DENSE = 'dense'  # classifier, a Flax `nn.Dense`

# Roots of the TF-slim variable names.
SLIM_ROOTS = {
    'inception_v3': 'InceptionV3',
    'inception_v4': 'InceptionV4',
    'inception_resnet_v1': 'InceptionResnetV1',
    'inception_resnet_v2': 'InceptionResnetV2',
}
# Flax module of the auxiliary head (`models.Inception`).
AUX_HEAD = 'aux_head'
# Networks timm ships (timm has no Inception-ResNet-v1).
TIMM_MODELS = ('inception_v3', 'inception_v4', 'inception_resnet_v2')


@dataclasses.dataclass(frozen=True)
class Unit:
  """One module with weights, under its Flax, TF-slim and timm names.

  Attributes:
    path: Flax module path, e.g. ('mixed_5b', 'branch1_conv1').
    kind: CONV_BN, CONV_BIAS or DENSE.
    slim: TF-slim scope below the network root, e.g. 'Mixed_5b/Branch_1/Conv2d_0b_5x5'.
    timm: timm module name, e.g. 'Mixed_5b.branch5x5_2'; None where timm has none.
    aux: part of the auxiliary head (present in some files only).
    slim_conv_classifier: a classifier that TF-slim stores as a 1x1
      convolution (Inception-v3's heads) rather than a fully connected layer.
  """
  path: tuple[str, ...]
  kind: str
  slim: str
  timm: str | None
  aux: bool = False
  slim_conv_classifier: bool = False


# A block table: (Flax conv name, TF-slim scope, timm module) per convolution.
# ---- Inception-v3 -----------------------------------------------------------

_V3_A = (
    ('branch0_conv0', 'Branch_0/Conv2d_0a_1x1', 'branch1x1'),
    ('branch1_conv0', 'Branch_1/Conv2d_0a_1x1', 'branch5x5_1'),
    ('branch1_conv1', 'Branch_1/Conv2d_0b_5x5', 'branch5x5_2'),
    ('branch2_conv0', 'Branch_2/Conv2d_0a_1x1', 'branch3x3dbl_1'),
    ('branch2_conv1', 'Branch_2/Conv2d_0b_3x3', 'branch3x3dbl_2'),
    ('branch2_conv2', 'Branch_2/Conv2d_0c_3x3', 'branch3x3dbl_3'),
    ('branch3_conv0', 'Branch_3/Conv2d_0b_1x1', 'branch_pool'),
)
# Mixed_5c's 5x5 branch carries other scope names in the released graph.
_V3_A_5C = (_V3_A[:1]
            + (('branch1_conv0', 'Branch_1/Conv2d_0b_1x1', 'branch5x5_1'),
               ('branch1_conv1', 'Branch_1/Conv_1_0c_5x5', 'branch5x5_2'))
            + _V3_A[3:])
_V3_REDUCTION_A = (
    ('branch0_conv0', 'Branch_0/Conv2d_1a_1x1', 'branch3x3'),
    ('branch1_conv0', 'Branch_1/Conv2d_0a_1x1', 'branch3x3dbl_1'),
    ('branch1_conv1', 'Branch_1/Conv2d_0b_3x3', 'branch3x3dbl_2'),
    ('branch1_conv2', 'Branch_1/Conv2d_1a_1x1', 'branch3x3dbl_3'),
)
_V3_B = (
    ('branch0_conv0', 'Branch_0/Conv2d_0a_1x1', 'branch1x1'),
    ('branch1_conv0', 'Branch_1/Conv2d_0a_1x1', 'branch7x7_1'),
    ('branch1_conv1', 'Branch_1/Conv2d_0b_1x7', 'branch7x7_2'),
    ('branch1_conv2', 'Branch_1/Conv2d_0c_7x1', 'branch7x7_3'),
    ('branch2_conv0', 'Branch_2/Conv2d_0a_1x1', 'branch7x7dbl_1'),
    ('branch2_conv1', 'Branch_2/Conv2d_0b_7x1', 'branch7x7dbl_2'),
    ('branch2_conv2', 'Branch_2/Conv2d_0c_1x7', 'branch7x7dbl_3'),
    ('branch2_conv3', 'Branch_2/Conv2d_0d_7x1', 'branch7x7dbl_4'),
    ('branch2_conv4', 'Branch_2/Conv2d_0e_1x7', 'branch7x7dbl_5'),
    ('branch3_conv0', 'Branch_3/Conv2d_0b_1x1', 'branch_pool'),
)
_V3_REDUCTION_B = (
    ('branch0_conv0', 'Branch_0/Conv2d_0a_1x1', 'branch3x3_1'),
    ('branch0_conv1', 'Branch_0/Conv2d_1a_3x3', 'branch3x3_2'),
    ('branch1_conv0', 'Branch_1/Conv2d_0a_1x1', 'branch7x7x3_1'),
    ('branch1_conv1', 'Branch_1/Conv2d_0b_1x7', 'branch7x7x3_2'),
    ('branch1_conv2', 'Branch_1/Conv2d_0c_7x1', 'branch7x7x3_3'),
    ('branch1_conv3', 'Branch_1/Conv2d_1a_3x3', 'branch7x7x3_4'),
)


def _v3_c(split_3x1: str):
  """Mixed_7b/7c; their 3x1 in branch 1 is `Conv2d_0b_3x1` in 7b, `0c` in 7c."""
  return (
      ('branch0_conv0', 'Branch_0/Conv2d_0a_1x1', 'branch1x1'),
      ('branch1_conv0', 'Branch_1/Conv2d_0a_1x1', 'branch3x3_1'),
      ('branch1_conv1a', 'Branch_1/Conv2d_0b_1x3', 'branch3x3_2a'),
      ('branch1_conv1b', f'Branch_1/{split_3x1}', 'branch3x3_2b'),
      ('branch2_conv0', 'Branch_2/Conv2d_0a_1x1', 'branch3x3dbl_1'),
      ('branch2_conv1', 'Branch_2/Conv2d_0b_3x3', 'branch3x3dbl_2'),
      ('branch2_conv2a', 'Branch_2/Conv2d_0c_1x3', 'branch3x3dbl_3a'),
      ('branch2_conv2b', 'Branch_2/Conv2d_0d_3x1', 'branch3x3dbl_3b'),
      ('branch3_conv0', 'Branch_3/Conv2d_0b_1x1', 'branch_pool'),
  )

# ---- Inception-v4 -----------------------------------------------------------

_V4_MIXED_3A = (('branch1_conv0', 'Branch_1/Conv2d_0a_3x3', 'conv'),)
_V4_MIXED_4A = (
    ('branch0_conv0', 'Branch_0/Conv2d_0a_1x1', 'branch0.0'),
    ('branch0_conv1', 'Branch_0/Conv2d_1a_3x3', 'branch0.1'),
    ('branch1_conv0', 'Branch_1/Conv2d_0a_1x1', 'branch1.0'),
    ('branch1_conv1', 'Branch_1/Conv2d_0b_1x7', 'branch1.1'),
    ('branch1_conv2', 'Branch_1/Conv2d_0c_7x1', 'branch1.2'),
    ('branch1_conv3', 'Branch_1/Conv2d_1a_3x3', 'branch1.3'),
)
_V4_MIXED_5A = (('branch0_conv0', 'Branch_0/Conv2d_1a_3x3', 'conv'),)
_V4_A = (
    ('branch0_conv0', 'Branch_0/Conv2d_0a_1x1', 'branch0'),
    ('branch1_conv0', 'Branch_1/Conv2d_0a_1x1', 'branch1.0'),
    ('branch1_conv1', 'Branch_1/Conv2d_0b_3x3', 'branch1.1'),
    ('branch2_conv0', 'Branch_2/Conv2d_0a_1x1', 'branch2.0'),
    ('branch2_conv1', 'Branch_2/Conv2d_0b_3x3', 'branch2.1'),
    ('branch2_conv2', 'Branch_2/Conv2d_0c_3x3', 'branch2.2'),
    ('branch3_conv0', 'Branch_3/Conv2d_0b_1x1', 'branch3.1'),
)
# Reduction-A of Inception-v4 and both Inception-ResNets.
_REDUCTION_A = (
    ('branch0_conv0', 'Branch_0/Conv2d_1a_3x3', 'branch0'),
    ('branch1_conv0', 'Branch_1/Conv2d_0a_1x1', 'branch1.0'),
    ('branch1_conv1', 'Branch_1/Conv2d_0b_3x3', 'branch1.1'),
    ('branch1_conv2', 'Branch_1/Conv2d_1a_3x3', 'branch1.2'),
)
_V4_B = (
    ('branch0_conv0', 'Branch_0/Conv2d_0a_1x1', 'branch0'),
    ('branch1_conv0', 'Branch_1/Conv2d_0a_1x1', 'branch1.0'),
    ('branch1_conv1', 'Branch_1/Conv2d_0b_1x7', 'branch1.1'),
    ('branch1_conv2', 'Branch_1/Conv2d_0c_7x1', 'branch1.2'),
    ('branch2_conv0', 'Branch_2/Conv2d_0a_1x1', 'branch2.0'),
    ('branch2_conv1', 'Branch_2/Conv2d_0b_7x1', 'branch2.1'),
    ('branch2_conv2', 'Branch_2/Conv2d_0c_1x7', 'branch2.2'),
    ('branch2_conv3', 'Branch_2/Conv2d_0d_7x1', 'branch2.3'),
    ('branch2_conv4', 'Branch_2/Conv2d_0e_1x7', 'branch2.4'),
    ('branch3_conv0', 'Branch_3/Conv2d_0b_1x1', 'branch3.1'),
)
_V4_REDUCTION_B = (
    ('branch0_conv0', 'Branch_0/Conv2d_0a_1x1', 'branch0.0'),
    ('branch0_conv1', 'Branch_0/Conv2d_1a_3x3', 'branch0.1'),
    ('branch1_conv0', 'Branch_1/Conv2d_0a_1x1', 'branch1.0'),
    ('branch1_conv1', 'Branch_1/Conv2d_0b_1x7', 'branch1.1'),
    ('branch1_conv2', 'Branch_1/Conv2d_0c_7x1', 'branch1.2'),
    ('branch1_conv3', 'Branch_1/Conv2d_1a_3x3', 'branch1.3'),
)
_V4_C = (
    ('branch0_conv0', 'Branch_0/Conv2d_0a_1x1', 'branch0'),
    ('branch1_conv0', 'Branch_1/Conv2d_0a_1x1', 'branch1_0'),
    ('branch1_conv1a', 'Branch_1/Conv2d_0b_1x3', 'branch1_1a'),
    ('branch1_conv1b', 'Branch_1/Conv2d_0c_3x1', 'branch1_1b'),
    ('branch2_conv0', 'Branch_2/Conv2d_0a_1x1', 'branch2_0'),
    ('branch2_conv1', 'Branch_2/Conv2d_0b_3x1', 'branch2_1'),
    ('branch2_conv2', 'Branch_2/Conv2d_0c_1x3', 'branch2_2'),
    ('branch2_conv3a', 'Branch_2/Conv2d_0d_1x3', 'branch2_3a'),
    ('branch2_conv3b', 'Branch_2/Conv2d_0e_3x1', 'branch2_3b'),
    ('branch3_conv0', 'Branch_3/Conv2d_0b_1x1', 'branch3.1'),
)

# ---- Inception-ResNet-v1 and -v2 ---------------------------------------------

_IRV2_MIXED_5B = (
    ('branch0_conv0', 'Branch_0/Conv2d_1x1', 'branch0'),
    ('branch1_conv0', 'Branch_1/Conv2d_0a_1x1', 'branch1.0'),
    ('branch1_conv1', 'Branch_1/Conv2d_0b_5x5', 'branch1.1'),
    ('branch2_conv0', 'Branch_2/Conv2d_0a_1x1', 'branch2.0'),
    ('branch2_conv1', 'Branch_2/Conv2d_0b_3x3', 'branch2.1'),
    ('branch2_conv2', 'Branch_2/Conv2d_0c_3x3', 'branch2.2'),
    ('branch3_conv0', 'Branch_3/Conv2d_0b_1x1', 'branch3.1'),
)
_BLOCK35 = _IRV2_MIXED_5B[:1] + (
    ('branch1_conv0', 'Branch_1/Conv2d_0a_1x1', 'branch1.0'),
    ('branch1_conv1', 'Branch_1/Conv2d_0b_3x3', 'branch1.1'),
) + _IRV2_MIXED_5B[3:6]
_BLOCK17 = (
    ('branch0_conv0', 'Branch_0/Conv2d_1x1', 'branch0'),
    ('branch1_conv0', 'Branch_1/Conv2d_0a_1x1', 'branch1.0'),
    ('branch1_conv1', 'Branch_1/Conv2d_0b_1x7', 'branch1.1'),
    ('branch1_conv2', 'Branch_1/Conv2d_0c_7x1', 'branch1.2'),
)
_BLOCK8 = (
    ('branch0_conv0', 'Branch_0/Conv2d_1x1', 'branch0'),
    ('branch1_conv0', 'Branch_1/Conv2d_0a_1x1', 'branch1.0'),
    ('branch1_conv1', 'Branch_1/Conv2d_0b_1x3', 'branch1.1'),
    ('branch1_conv2', 'Branch_1/Conv2d_0c_3x1', 'branch1.2'),
)
# Mixed_7a: Reduction-B of the Inception-ResNets.
_RESNET_REDUCTION_B = (
    ('branch0_conv0', 'Branch_0/Conv2d_0a_1x1', 'branch0.0'),
    ('branch0_conv1', 'Branch_0/Conv2d_1a_3x3', 'branch0.1'),
    ('branch1_conv0', 'Branch_1/Conv2d_0a_1x1', 'branch1.0'),
    ('branch1_conv1', 'Branch_1/Conv2d_1a_3x3', 'branch1.1'),
    ('branch2_conv0', 'Branch_2/Conv2d_0a_1x1', 'branch2.0'),
    ('branch2_conv1', 'Branch_2/Conv2d_0b_3x3', 'branch2.1'),
    ('branch2_conv2', 'Branch_2/Conv2d_1a_3x3', 'branch2.2'),
)

# ---- Networks ---------------------------------------------------------------
# A layer: (Flax name, TF-slim scope, timm module, block table or None for a
# single conv+BN, residual projection: (TF-slim, timm) names or None).

_V3_STEM = [
    ('conv2d_1a_3x3', 'Conv2d_1a_3x3', 'Conv2d_1a_3x3', None, None),
    ('conv2d_2a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2a_3x3', None, None),
    ('conv2d_2b_3x3', 'Conv2d_2b_3x3', 'Conv2d_2b_3x3', None, None),
    ('conv2d_3b_1x1', 'Conv2d_3b_1x1', 'Conv2d_3b_1x1', None, None),
    ('conv2d_4a_3x3', 'Conv2d_4a_3x3', 'Conv2d_4a_3x3', None, None),
]


def _mixed(flax: str, table, timm: str | None = None) -> tuple:
  """A concatenating block whose TF-slim scope is its Flax name capitalised."""
  return (flax, flax.capitalize(), timm or flax.capitalize(), table, None)


def _letters(prefix: str, count: int) -> list[str]:
  return [prefix + chr(ord('b') + i) for i in range(count)]


def _v3_layers() -> list:
  return (_V3_STEM
          + [_mixed('mixed_5b', _V3_A), _mixed('mixed_5c', _V3_A_5C),
             _mixed('mixed_5d', _V3_A), _mixed('mixed_6a', _V3_REDUCTION_A)]
          + [_mixed(n, _V3_B) for n in _letters('mixed_6', 4)]
          + [_mixed('mixed_7a', _V3_REDUCTION_B),
             _mixed('mixed_7b', _v3_c('Conv2d_0b_3x1')),
             _mixed('mixed_7c', _v3_c('Conv2d_0c_3x1'))])


def _v4_layers() -> list:
  """timm keeps Inception-v4 as one `features` sequence, numbered from 0."""
  layers = [(flax, flax.capitalize(), None, None, None)
            for flax in ('conv2d_1a_3x3', 'conv2d_2a_3x3', 'conv2d_2b_3x3')]
  layers += [_mixed('mixed_3a', _V4_MIXED_3A), _mixed('mixed_4a', _V4_MIXED_4A),
             _mixed('mixed_5a', _V4_MIXED_5A)]
  layers += [_mixed(n, _V4_A) for n in _letters('mixed_5', 4)]
  layers += [_mixed('mixed_6a', _REDUCTION_A)]
  layers += [_mixed(n, _V4_B) for n in _letters('mixed_6', 7)]
  layers += [_mixed('mixed_7a', _V4_REDUCTION_B)]
  layers += [_mixed(n, _V4_C) for n in _letters('mixed_7', 3)]
  return [(flax, slim, f'features.{i}', table, proj)
          for i, (flax, slim, _, table, proj) in enumerate(layers)]


def _residual(flax: str, slim_repeat: str, timm_repeat: str, index: int,
              table) -> tuple:
  """Block `index` (from 1) of a `slim.repeat` / timm `nn.Sequential` stage."""
  slim = f'{slim_repeat}/{flax}'
  timm = f'{timm_repeat}.{index - 1}'
  return (flax, slim, timm, table, (f'{slim}/Conv2d_1x1', f'{timm}.conv2d'))


def _resnet_stages(a: int, b: int, c: int) -> tuple:
  """The repeated residual stages of the Inception-ResNets: a, b and c blocks."""
  stage_a = [_residual(f'block35_{i}', 'Repeat', 'repeat', i, _BLOCK35)
             for i in range(1, a + 1)]
  stage_b = [_residual(f'block17_{i}', 'Repeat_1', 'repeat_1', i, _BLOCK17)
             for i in range(1, b + 1)]
  stage_c = [_residual(f'block8_{i}', 'Repeat_2', 'repeat_2', i, _BLOCK8)
             for i in range(1, c + 1)]
  return stage_a, stage_b, stage_c


def _irv2_layers() -> list:
  # The tenth C block is the linear `Block8`, outside the repeat.
  stage_a, stage_b, stage_c = _resnet_stages(10, 20, 9)
  # timm drops the kernel size from the stem names: conv2d_1a, ..., conv2d_4a.
  stem = [(flax, slim, flax[:len('conv2d_1a')], None, None)
          for flax, slim, *_ in _V3_STEM]
  return (stem
          + [('mixed_5b', 'Mixed_5b', 'mixed_5b', _IRV2_MIXED_5B, None)]
          + stage_a + [('mixed_6a', 'Mixed_6a', 'mixed_6a', _REDUCTION_A, None)]
          + stage_b + [('mixed_7a', 'Mixed_7a', 'mixed_7a', _RESNET_REDUCTION_B, None)]
          + stage_c
          + [('block8', 'Block8', 'block8', _BLOCK8,
              ('Block8/Conv2d_1x1', 'block8.conv2d')),
             ('conv2d_7b_1x1', 'Conv2d_7b_1x1', 'conv2d_7b', None, None)])


def _irv1_layers() -> list:
  stage_a, stage_b, stage_c = _resnet_stages(5, 10, 5)
  stem = [(flax, slim, None, None, None) for flax, slim, *_ in _V3_STEM]
  stem.append(('conv2d_4b_3x3', 'Conv2d_4b_3x3', None, None, None))
  layers = (stem + stage_a + [('mixed_6a', 'Mixed_6a', None, _REDUCTION_A, None)]
            + stage_b
            + [('mixed_7a', 'Mixed_7a', None, _RESNET_REDUCTION_B, None)]
            + stage_c)
  # timm has no Inception-ResNet-v1: drop the timm names.
  return [(flax, slim, None, table, proj and (proj[0], None))
          for flax, slim, _, table, proj in layers]


# (layer list, timm classifier, TF-slim classifier, aux head (TF-slim scopes of
# conv0, conv1, logits; timm modules or None), classifier stored as a 1x1 conv).
_NETWORKS = {
    'inception_v3': (
        _v3_layers, 'fc', 'Logits/Conv2d_1c_1x1',
        (('AuxLogits/Conv2d_1b_1x1', 'AuxLogits/Conv2d_2a_5x5',
          'AuxLogits/Conv2d_2b_1x1'),
         ('AuxLogits.conv0', 'AuxLogits.conv1', 'AuxLogits.fc')), True),
    'inception_v4': (
        _v4_layers, 'last_linear', 'Logits/Logits',
        (('AuxLogits/Conv2d_1b_1x1', 'AuxLogits/Conv2d_2a',
          'AuxLogits/Aux_logits'), None), False),
    'inception_resnet_v1': (_irv1_layers, None, 'Logits/Logits', None, False),
    'inception_resnet_v2': (
        _irv2_layers, 'classif', 'Logits/Logits',
        (('AuxLogits/Conv2d_1b_1x1', 'AuxLogits/Conv2d_2a_5x5',
          'AuxLogits/Logits'), None), False),
}
MODEL_NAMES = tuple(_NETWORKS)


def has_aux_head(name: str) -> bool:
  """Whether a released graph of the network has an auxiliary head."""
  return name in _NETWORKS and _NETWORKS[name][3] is not None


def units(name: str, aux_logits: bool) -> list[Unit]:
  """The units of a network with its published block counts, in graph order.

  Args:
    name: a key of `MODEL_NAMES` (networks with released TF-slim or timm names).
    aux_logits: include the auxiliary head (placed where the graph creates it).

  Returns:
    The units, in the order TF-slim and Keras create the layers.

  Raises:
    ValueError: for a network without a name table, or an aux head it lacks.
  """
  if name not in _NETWORKS:
    raise ValueError(f'no weight-name table for {name!r}; '
                     f'known: {", ".join(MODEL_NAMES)}')
  build, timm_logits, slim_logits, aux, conv_classifier = _NETWORKS[name]
  if aux_logits and aux is None:
    raise ValueError(f'{name} has no auxiliary head')
  out = []
  for flax, slim, timm, table, projection in build():
    if table is None:
      out.append(Unit((flax,), CONV_BN, slim, timm))
    else:
      out.extend(Unit((flax, conv), CONV_BN, f'{slim}/{slim_conv}',
                      timm and f'{timm}.{timm_conv}')
                 for conv, slim_conv, timm_conv in table)
    if projection is not None:
      out.append(Unit((flax, 'projection'), CONV_BIAS, *projection))
  if aux_logits:
    slim_aux, timm_aux = aux
    timm_aux = timm_aux or (None, None, None)
    out.extend([
        Unit((AUX_HEAD, 'conv0'), CONV_BN, slim_aux[0], timm_aux[0], aux=True),
        Unit((AUX_HEAD, 'conv1'), CONV_BN, slim_aux[1], timm_aux[1], aux=True),
        Unit((AUX_HEAD, 'logits'), DENSE, slim_aux[2], timm_aux[2], aux=True,
             slim_conv_classifier=conv_classifier)])
  out.append(Unit(('logits',), DENSE, slim_logits, timm_logits,
                  slim_conv_classifier=conv_classifier))
  return out
