"""Tests for inception.convert on the blocks Keras lacks, against NumPy.

Inception-v4 and Inception-ResNet-v1 are not in Keras, so their converted
weights are checked block by block: random tensors under timm's or TF-slim's
names go through the converter, and the project's blocks must compute what a
float64 NumPy pass computes from the same tensors.
"""

import functools

import flax.linen as nn
import jax
import numpy as np

from inception import blocks
from inception import convert
from inception import layers
from inception import models
# The random networks of tests/test_convert.py (cached there, shared).
from test_convert import _random_variables  # pylint: disable=g-bad-import-order
from test_convert import _ROOTS  # pylint: disable=g-bad-import-order


# ---- Inception-v4 and Inception-ResNet-v1: blocks against NumPy -------------
# Keras has neither network. One block of each kind gets random weights under
# the source's names and layout (timm for v4, TF-slim for IRv1), the whole
# file goes through the converter, and the project's blocks must compute what
# a float64 NumPy pass of the paper's block computes from the same tensors.
# The structure below is written from the papers' figures and the released
# graphs, not read from inception/blocks.py.

BN_EPSILON = 1e-3  # TF-slim's and timm's Inception BatchNorm
# Of the largest output. Measured: below 1.5e-6; an epsilon of 1e-5 instead of
# 1e-3 moves the residual blocks' outputs by 1.2e-4 to 3e-4, the others' more.
BLOCK_TOLERANCE = 2e-5


def _same_padding(size, kernel, stride):
  """TensorFlow's SAME: output ceil(size / stride), any odd cell at the end."""
  total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def _np_conv(x, w, stride, padding):
  """x [N, H, W, C], w [kh, kw, C, O]: TensorFlow's conv2d (cross-correlation)."""
  kh, kw = w.shape[:2]
  if padding == 'SAME':
    x = np.pad(x, ((0, 0), _same_padding(x.shape[1], kh, stride),
                   _same_padding(x.shape[2], kw, stride), (0, 0)))
  out_h = (x.shape[1] - kh) // stride + 1
  out_w = (x.shape[2] - kw) // stride + 1
  y = np.zeros((x.shape[0], out_h, out_w, w.shape[3]))
  for i in range(kh):
    for j in range(kw):
      window = x[:, i:i + stride * (out_h - 1) + 1:stride,
                 j:j + stride * (out_w - 1) + 1:stride]
      y += window @ w[i, j]
  return y


def _np_max_pool(x):
  """3x3, stride 2, VALID."""
  out_h, out_w = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
  return np.max([x[:, i:i + 2 * out_h - 1:2, j:j + 2 * out_w - 1:2]
                 for i in range(3) for j in range(3)], axis=0)


def _np_avg_pool(x):
  """3x3, stride 1, SAME; padded cells left out of the divisor (TensorFlow)."""
  h, w = x.shape[1:3]
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  ones = np.pad(np.ones((1, h, w, 1)), ((0, 0), (1, 1), (1, 1), (0, 0)))
  total = sum(padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3))
  count = sum(ones[:, i:i + h, j:j + w] for i in range(3) for j in range(3))
  return total / count


def _c(name, filters, kernel, stride=1, padding='SAME'):
  """A conv+BN+ReLU unit of a reference block (kernel: int or (height, width))."""
  kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
  return ('conv', name, filters, kernel, stride, padding)


_MAX, _AVG = ('max',), ('avg',)


def _fork(*convs):
  return ('fork', convs)


# Flax layer: (timm module, input channels, branches); timm's Inception-v4.
_V4_REFERENCE = {
    'mixed_4a': ('features.4', 160, (
        (_c('branch0.0', 64, 1), _c('branch0.1', 96, 3, padding='VALID')),
        (_c('branch1.0', 64, 1), _c('branch1.1', 64, (1, 7)),
         _c('branch1.2', 64, (7, 1)), _c('branch1.3', 96, 3, padding='VALID')))),
    'mixed_5e': ('features.9', 384, (  # Inception-A
        (_c('branch0', 96, 1),),
        (_c('branch1.0', 64, 1), _c('branch1.1', 96, 3)),
        (_c('branch2.0', 64, 1), _c('branch2.1', 96, 3), _c('branch2.2', 96, 3)),
        (_AVG, _c('branch3.1', 96, 1)))),
    'mixed_6a': ('features.10', 384, (  # Reduction-A, k, l, m, n = 192, 224, 256, 384
        (_c('branch0', 384, 3, 2, 'VALID'),),
        (_c('branch1.0', 192, 1), _c('branch1.1', 224, 3),
         _c('branch1.2', 256, 3, 2, 'VALID')),
        (_MAX,))),
    'mixed_6h': ('features.17', 1024, (  # Inception-B
        (_c('branch0', 384, 1),),
        (_c('branch1.0', 192, 1), _c('branch1.1', 224, (1, 7)),
         _c('branch1.2', 256, (7, 1))),
        (_c('branch2.0', 192, 1), _c('branch2.1', 192, (7, 1)),
         _c('branch2.2', 224, (1, 7)), _c('branch2.3', 224, (7, 1)),
         _c('branch2.4', 256, (1, 7))),
        (_AVG, _c('branch3.1', 128, 1)))),
    'mixed_7a': ('features.18', 1024, (  # Reduction-B
        (_c('branch0.0', 192, 1), _c('branch0.1', 192, 3, 2, 'VALID')),
        (_c('branch1.0', 256, 1), _c('branch1.1', 256, (1, 7)),
         _c('branch1.2', 320, (7, 1)), _c('branch1.3', 320, 3, 2, 'VALID')),
        (_MAX,))),
    'mixed_7d': ('features.21', 1536, (  # Inception-C
        (_c('branch0', 256, 1),),
        (_c('branch1_0', 384, 1),
         _fork(_c('branch1_1a', 256, (1, 3)), _c('branch1_1b', 256, (3, 1)))),
        (_c('branch2_0', 384, 1), _c('branch2_1', 448, (3, 1)),
         _c('branch2_2', 512, (1, 3)),
         _fork(_c('branch2_3a', 256, (1, 3)), _c('branch2_3b', 256, (3, 1)))),
        (_AVG, _c('branch3.1', 256, 1)))),
}

# Flax layer: (TF-slim scope, input channels, residual scale or None, branches);
# facenet's Inception-ResNet-v1 scopes, the paper's Figures 7, 10-13.
_IRV1_REFERENCE = {
    'block35_1': ('Repeat/block35_1', 256, 0.17, (
        (_c('Branch_0/Conv2d_1x1', 32, 1),),
        (_c('Branch_1/Conv2d_0a_1x1', 32, 1), _c('Branch_1/Conv2d_0b_3x3', 32, 3)),
        (_c('Branch_2/Conv2d_0a_1x1', 32, 1), _c('Branch_2/Conv2d_0b_3x3', 32, 3),
         _c('Branch_2/Conv2d_0c_3x3', 32, 3)))),
    'mixed_6a': ('Mixed_6a', 256, None, (  # k, l, m, n = 192, 192, 256, 384
        (_c('Branch_0/Conv2d_1a_3x3', 384, 3, 2, 'VALID'),),
        (_c('Branch_1/Conv2d_0a_1x1', 192, 1), _c('Branch_1/Conv2d_0b_3x3', 192, 3),
         _c('Branch_1/Conv2d_1a_3x3', 256, 3, 2, 'VALID')),
        (_MAX,))),
    'block17_10': ('Repeat_1/block17_10', 896, 0.10, (
        (_c('Branch_0/Conv2d_1x1', 128, 1),),
        (_c('Branch_1/Conv2d_0a_1x1', 128, 1), _c('Branch_1/Conv2d_0b_1x7', 128, (1, 7)),
         _c('Branch_1/Conv2d_0c_7x1', 128, (7, 1))))),
    'mixed_7a': ('Mixed_7a', 896, None, (
        (_c('Branch_0/Conv2d_0a_1x1', 256, 1),
         _c('Branch_0/Conv2d_1a_3x3', 384, 3, 2, 'VALID')),
        (_c('Branch_1/Conv2d_0a_1x1', 256, 1),
         _c('Branch_1/Conv2d_1a_3x3', 256, 3, 2, 'VALID')),
        (_c('Branch_2/Conv2d_0a_1x1', 256, 1), _c('Branch_2/Conv2d_0b_3x3', 256, 3),
         _c('Branch_2/Conv2d_1a_3x3', 256, 3, 2, 'VALID')),
        (_MAX,))),
    'block8_5': ('Repeat_2/block8_5', 1792, 0.20, (
        (_c('Branch_0/Conv2d_1x1', 192, 1),),
        (_c('Branch_1/Conv2d_0a_1x1', 192, 1), _c('Branch_1/Conv2d_0b_1x3', 192, (1, 3)),
         _c('Branch_1/Conv2d_0c_3x1', 192, (3, 1))))),
}
_BLOCK_INPUT = (2, 9, 7)  # batch, height, width: not square, odd and small


def _draw_unit(rng, tensors, names, filters, kernel, channels, layout):
  """Random conv+BN tensors under `names`; returns them in HWIO / vector form.

  Kernels are He-scaled so activations stay of order 1.
  """
  kh, kw = kernel
  w = rng.normal(0, np.sqrt(2 / (kh * kw * channels)), (kh, kw, channels, filters))
  bn = {'beta': rng.normal(0, 0.2, filters), 'mean': rng.normal(0, 0.2, filters),
        'var': rng.uniform(0.5, 1.5, filters), 'gamma': rng.uniform(0.5, 1.5, filters)}
  bn = {k: v.astype(np.float32) for k, v in bn.items()}
  w = w.astype(np.float32)
  if layout == 'timm':  # PyTorch: [out, in, kh, kw]
    tensors[f'{names}.conv.weight'] = w.transpose(3, 2, 0, 1).copy()
    for key, suffix in (('gamma', 'weight'), ('beta', 'bias'),
                        ('mean', 'running_mean'), ('var', 'running_var')):
      tensors[f'{names}.bn.{suffix}'] = bn[key]
  else:  # TF-slim: [kh, kw, in, out], no gamma
    tensors[f'{names}/weights'] = w
    for key, suffix in (('beta', 'beta'), ('mean', 'moving_mean'),
                        ('var', 'moving_variance')):
      tensors[f'{names}/BatchNorm/{suffix}'] = bn[key]
    bn['gamma'] = np.ones(filters, np.float32)
  return w, bn


def _np_branches(x, branches, unit):
  """The concatenated branches; unit(x, name, filters, kernel, stride, padding)."""
  outputs = []
  for branch in branches:
    y = x
    for op in branch:
      if op[0] == 'conv':
        y = unit(y, *op[1:])
      elif op[0] == 'fork':
        y = np.concatenate([unit(y, *c[1:]) for c in op[1]], axis=-1)
      elif op[0] == 'max':
        y = _np_max_pool(y)
      else:
        y = _np_avg_pool(y)
    outputs.append(y)
  return np.concatenate(outputs, axis=-1)


def _np_block(rng, tensors, x, prefix, branches, layout, scale=None):
  """Draws the block's tensors into `tensors` and runs it in float64 NumPy."""
  sep = '.' if layout == 'timm' else '/'

  def unit(y, name, filters, kernel, stride, padding):
    w, bn = _draw_unit(rng, tensors, f'{prefix}{sep}{name}', filters, kernel,
                       y.shape[-1], layout)
    z = _np_conv(y, w.astype(np.float64), stride, padding)
    z = (z - bn['mean']) / np.sqrt(bn['var'].astype(np.float64) + BN_EPSILON)
    return np.maximum(z * bn['gamma'] + bn['beta'], 0)

  mixed = _np_branches(x, branches, unit)
  if scale is None:
    return mixed
  # Residual: linear 1x1 up-projection with bias, scaled, added, then ReLU.
  channels = x.shape[-1]
  w = rng.normal(0, np.sqrt(1 / mixed.shape[-1]), (1, 1, mixed.shape[-1], channels))
  b = rng.normal(0, 0.5, channels)
  tensors[f'{prefix}/Conv2d_1x1/weights'] = w.astype(np.float32)
  tensors[f'{prefix}/Conv2d_1x1/biases'] = b.astype(np.float32)
  up = _np_conv(mixed, w.astype(np.float32).astype(np.float64), 1, 'SAME')
  return np.maximum(x + scale * (up + b.astype(np.float32)), 0)


class _SideBySide(nn.Module):
  """Blocks of a network, each on its own input, in evaluation mode.

  Wired as `models.Inception` wires them: the blocks' tables and residual
  scales come from the network, its BatchNorm settings from the converter.
  """
  net_layers: tuple
  bn_epsilon: float
  bn_scale: bool
  pool_count_include_pad: bool
  residual_scales: tuple

  @nn.compact
  def __call__(self, inputs):
    conv_def = nn.Conv
    norm = functools.partial(nn.BatchNorm, use_running_average=True,
                             epsilon=self.bn_epsilon, use_scale=self.bn_scale,
                             use_fast_variance=False)
    conv_bn = functools.partial(layers.ConvBN, conv=conv_def, norm=norm)
    outputs = []
    for (name, layer), x in zip(self.net_layers, inputs):
      if isinstance(layer, models.Residual):
        block = blocks.InceptionResNetBlock(
            layer.table, conv_bn, conv_def, norm,
            scale=self.residual_scales[layer.kind], activation=nn.relu,
            projection_filters=layer.projection_filters,
            pool_count_include_pad=self.pool_count_include_pad, name=name)
      else:
        block = blocks.InceptionBlock(layer.table, conv_bn,
                                      self.pool_count_include_pad, name=name)
      outputs.append(block(x))
    return outputs


def _run_blocks(variables, model_kwargs, inputs):
  """The converted network's layers named in `inputs` on their inputs."""
  model = models.create_model(**model_kwargs)
  chosen = tuple((n, l) for n, l in model.layers if n in inputs)
  assert [n for n, _ in chosen] == list(inputs)
  module = _SideBySide(chosen, model.bn_epsilon, model.bn_scale,
                       model.pool_count_include_pad, model.residual_scales)
  block_variables = {c: {n: variables[c][n] for n in inputs}
                     for c in ('params', 'batch_stats')}
  outputs = jax.jit(module.apply)(block_variables,
                                  [np.float32(x) for x in inputs.values()])
  return [np.asarray(y) for y in outputs]


def _assert_close(actual, expected, what):
  assert actual.shape == expected.shape, what
  scale = float(np.max(np.abs(expected)))
  assert scale > 0.5, what  # order 1, so the tolerance means something
  np.testing.assert_allclose(actual, expected, rtol=0,
                             atol=BLOCK_TOLERANCE * scale, err_msg=what)


def _block_inputs(rng, reference):
  """A non-negative input (a ReLU's output) per block, of its input width."""
  return {name: np.abs(rng.normal(0, 1, _BLOCK_INPUT + (spec[1],))
                       ).astype(np.float32)
          for name, spec in reference.items()}


def test_inception_v4_blocks_from_timm_match_numpy():
  rng = np.random.default_rng(4)
  tensors = dict(convert.to_timm(
      'inception_v4', _random_variables('inception_v4', False, True)))
  expected_names = set(tensors)
  inputs = _block_inputs(rng, _V4_REFERENCE)
  expected = {name: _np_block(rng, tensors, inputs[name].astype(np.float64),
                              prefix, branches, 'timm')
              for name, (prefix, _, branches) in _V4_REFERENCE.items()}
  assert set(tensors) == expected_names  # every drawn name is one timm has
  variables, model_kwargs = convert.from_timm('inception_v4', tensors)
  assert model_kwargs['bn_scale'] and not model_kwargs['pool_count_include_pad']
  actual = _run_blocks(variables, model_kwargs, inputs)
  for (name, want), got in zip(expected.items(), actual):
    _assert_close(got, want, name)
  # Concatenated widths as the paper gives them (Reduction-A: 1024 at 4x3).
  assert expected['mixed_6a'].shape == (2, 4, 3, 1024)
  assert expected['mixed_7d'].shape[-1] == 1536


def test_inception_resnet_v1_blocks_from_slim_match_numpy():
  rng = np.random.default_rng(5)
  root = _ROOTS['inception_resnet_v1']
  tensors = dict(convert.to_slim(
      'inception_resnet_v1', _random_variables('inception_resnet_v1', False, False)))
  expected_names = set(tensors)
  inputs = _block_inputs(rng, _IRV1_REFERENCE)
  expected = {name: _np_block(rng, tensors, inputs[name].astype(np.float64),
                              f'{root}/{scope}', branches, 'slim', scale)
              for name, (scope, _, scale, branches) in _IRV1_REFERENCE.items()}
  assert set(tensors) == expected_names
  variables, model_kwargs = convert._from_slim_reader(  # pylint: disable=protected-access
      'inception_resnet_v1', {k: v.shape for k, v in tensors.items()},
      tensors.__getitem__, None, 'in-memory checkpoint')
  assert not model_kwargs['bn_scale'] and model_kwargs['num_classes'] == 1000
  actual = _run_blocks(variables, model_kwargs, inputs)
  for (name, want), got in zip(expected.items(), actual):
    _assert_close(got, want, name)
  assert expected['mixed_7a'].shape == (2, 4, 3, 1792)


