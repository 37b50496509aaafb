"""The paper's blocks: their tables of filters, and the modules that run them.

Each table is a tuple of branches (see `layers.py`), named after the block in
the paper (AAAI-17 figures) or in the released Inception-v3 graph. Branch
order and kernel orientation follow the released TF-slim graphs, which the
published weights assume.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception import layers
from inception.layers import AvgPool, Fork, MaxPool, conv, conv_v

ModuleDef = Any
Table = tuple[tuple[Any, ...], ...]

# ---- Inception-v3 (the released graph, the paper's baseline) ---------------


def inception_v3_a(pool_filters: int) -> Table:
  """35x35 block (Mixed_5b/c/d) with a pool projection of `pool_filters`."""
  return ((conv(64, 1),),
          (conv(48, 1), conv(64, 5)),
          (conv(64, 1), conv(96, 3), conv(96, 3)),
          (AvgPool(), conv(pool_filters, 1)))


INCEPTION_V3_REDUCTION_A: Table = (
    (conv_v(384, 3, 2),),
    (conv(64, 1), conv(96, 3), conv_v(96, 3, 2)),
    (MaxPool(),))


def inception_v3_b(c7: int) -> Table:
  """17x17 block (Mixed_6b..6e) with `c7` filters in its factorised 7x7 paths."""
  return ((conv(192, 1),),
          (conv(c7, 1), conv(c7, (1, 7)), conv(192, (7, 1))),
          (conv(c7, 1), conv(c7, (7, 1)), conv(c7, (1, 7)), conv(c7, (7, 1)),
           conv(192, (1, 7))),
          (AvgPool(), conv(192, 1)))


INCEPTION_V3_REDUCTION_B: Table = (
    (conv(192, 1), conv_v(320, 3, 2)),
    (conv(192, 1), conv(192, (1, 7)), conv(192, (7, 1)), conv_v(192, 3, 2)),
    (MaxPool(),))

_SPLIT_384 = Fork((conv(384, (1, 3)), conv(384, (3, 1))))
INCEPTION_V3_C: Table = (
    (conv(320, 1),),
    (conv(384, 1), _SPLIT_384),
    (conv(448, 1), conv(384, 3), _SPLIT_384),
    (AvgPool(), conv(192, 1)))

# ---- Inception-v4 (Figures 3-9) --------------------------------------------

STEM_V4_MIXED_3A: Table = ((MaxPool(),), (conv_v(96, 3, 2),))
STEM_V4_MIXED_4A: Table = (
    (conv(64, 1), conv_v(96, 3)),
    (conv(64, 1), conv(64, (1, 7)), conv(64, (7, 1)), conv_v(96, 3)))
STEM_V4_MIXED_5A: Table = ((conv_v(192, 3, 2),), (MaxPool(),))

INCEPTION_A: Table = (
    (conv(96, 1),),
    (conv(64, 1), conv(96, 3)),
    (conv(64, 1), conv(96, 3), conv(96, 3)),
    (AvgPool(), conv(96, 1)))

INCEPTION_B: Table = (
    (conv(384, 1),),
    (conv(192, 1), conv(224, (1, 7)), conv(256, (7, 1))),
    (conv(192, 1), conv(192, (7, 1)), conv(224, (1, 7)), conv(224, (7, 1)),
     conv(256, (1, 7))),
    (AvgPool(), conv(128, 1)))

_SPLIT_256 = Fork((conv(256, (1, 3)), conv(256, (3, 1))))
INCEPTION_C: Table = (
    (conv(256, 1),),
    (conv(384, 1), _SPLIT_256),
    (conv(384, 1), conv(448, (3, 1)), conv(512, (1, 3)), _SPLIT_256),
    (AvgPool(), conv(256, 1)))


def reduction_a(k: int, l: int, m: int, n: int) -> Table:
  """Reduction-A (Figure 7) with the filter counts of the paper's Table 1."""
  return ((conv_v(n, 3, 2),),
          (conv(k, 1), conv(l, 3), conv_v(m, 3, 2)),
          (MaxPool(),))


REDUCTION_B: Table = (
    (conv(192, 1), conv_v(192, 3, 2)),
    (conv(256, 1), conv(256, (1, 7)), conv(320, (7, 1)), conv_v(320, 3, 2)),
    (MaxPool(),))

# ---- Inception-ResNet-v1 (Figures 10-14) -----------------------------------

INCEPTION_RESNET_V1_A: Table = (
    (conv(32, 1),),
    (conv(32, 1), conv(32, 3)),
    (conv(32, 1), conv(32, 3), conv(32, 3)))
INCEPTION_RESNET_V1_B: Table = (
    (conv(128, 1),),
    (conv(128, 1), conv(128, (1, 7)), conv(128, (7, 1))))
INCEPTION_RESNET_V1_REDUCTION_B: Table = (
    (conv(256, 1), conv_v(384, 3, 2)),
    (conv(256, 1), conv_v(256, 3, 2)),
    (conv(256, 1), conv(256, 3), conv_v(256, 3, 2)),
    (MaxPool(),))
INCEPTION_RESNET_V1_C: Table = (
    (conv(192, 1),),
    (conv(192, 1), conv(192, (1, 3)), conv(192, (3, 1))))

# ---- Inception-ResNet-v2 (Figures 16-19; released as block35/17/8) ---------

INCEPTION_RESNET_V2_STEM_MIXED_5B: Table = (
    (conv(96, 1),),
    (conv(48, 1), conv(64, 5)),
    (conv(64, 1), conv(96, 3), conv(96, 3)),
    (AvgPool(), conv(64, 1)))
INCEPTION_RESNET_V2_A: Table = (
    (conv(32, 1),),
    (conv(32, 1), conv(32, 3)),
    (conv(32, 1), conv(48, 3), conv(64, 3)))
INCEPTION_RESNET_V2_B: Table = (
    (conv(192, 1),),
    (conv(128, 1), conv(160, (1, 7)), conv(192, (7, 1))))
INCEPTION_RESNET_V2_REDUCTION_B: Table = (
    (conv(256, 1), conv_v(384, 3, 2)),
    (conv(256, 1), conv_v(288, 3, 2)),
    (conv(256, 1), conv(288, 3), conv_v(320, 3, 2)),
    (MaxPool(),))
INCEPTION_RESNET_V2_C: Table = (
    (conv(192, 1),),
    (conv(192, 1), conv(224, (1, 3)), conv(256, (3, 1))))


class InceptionBlock(nn.Module):
  """Parallel branches concatenated: Inception-A/B/C, the reductions, stem mixes.

  Attributes:
    table: the block's branches.
    conv_bn: `layers.ConvBN` with `conv` and `norm` bound.
    pool_count_include_pad: average-pool divisor rule.
  """
  table: Table
  conv_bn: ModuleDef
  pool_count_include_pad: bool

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return layers.apply_branches(x, self.table, self.conv_bn,
                                 self.pool_count_include_pad)


def residual_clip(
    activation: Callable[[jnp.ndarray], jnp.ndarray] | None) -> float | None:
  """The bound on the scaled residual that TF-slim sets for `activation`.

  TF-slim's block35/17/8 clip `scale * up` to [-6, 6] when their activation is
  `tf.nn.relu6`, and to nothing otherwise. The activation arrives as a callable
  (`layers.activation`), so relu6 is recognised by identity. `nn.relu6` is
  `jax.nn.relu6` today; both are checked in case a release separates them.

  Args:
    activation: the function applied after the residual sum, or None.

  Returns:
    6.0 for relu6; None (no clip) for any other activation or None.
  """
  if activation is jax.nn.relu6 or activation is nn.relu6:
    return 6.0
  return None


class InceptionResNetBlock(nn.Module):
  """Inception-ResNet-A/B/C: x + scale * projection(branches), then activation.

  The projection is a linear 1x1 convolution with bias and no BatchNorm (the
  paper keeps BatchNorm on the traditional layers only); the scale multiplies
  its biased output. When the projection's width differs from the input's (the
  paper's printed 1154 and 2048), the shortcut is a linear 1x1 projection too.

  With `relu6` after the sum, the scaled residual is first clipped to [-6, 6],
  as TF-slim's blocks do; see `residual_clip`. Other activations add the scaled residual unclipped.

  Attributes:
    table: the residual branches.
    conv_bn: `layers.ConvBN` with `conv` and `norm` bound.
    conv: `nn.Conv` with dtype and initialiser bound (for the projections).
    norm: `nn.BatchNorm` with mode and settings bound (for `bn_on_sum`).
    scale: residual scale.
    activation: applied after the sum; None for a linear output.
    projection_filters: width of the projection; None matches the input.
    bn_on_sum: BatchNorm on the sum, before the activation.
    pool_count_include_pad: average-pool divisor rule.
  """
  table: Table
  conv_bn: ModuleDef
  conv: ModuleDef
  norm: ModuleDef
  scale: float
  activation: Callable[[jnp.ndarray], jnp.ndarray] | None
  projection_filters: int | None = None
  bn_on_sum: bool = False
  pool_count_include_pad: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    mixed = layers.apply_branches(x, self.table, self.conv_bn,
                                  self.pool_count_include_pad)
    filters = self.projection_filters or x.shape[-1]
    up = self.conv(filters, (1, 1), use_bias=True, name='projection')(mixed)
    shortcut = x
    if filters != x.shape[-1]:
      shortcut = self.conv(filters, (1, 1), use_bias=True, name='shortcut')(x)
    residual = self.scale * up
    clip = residual_clip(self.activation)
    if clip is not None:
      residual = jnp.clip(residual, -clip, clip)
    x = shortcut + residual
    if self.bn_on_sum:
      x = self.norm(name='sum_bn')(x)
    if self.activation is not None:
      x = self.activation(x)
    return x


class AuxHead(nn.Module):
  """The auxiliary classifier on the 17x17 grid (Inception-v3; slim's v4, IRv2).

  5x5/3 average pool, 1x1 conv (128), a conv (768) covering the rest of the
  grid, then a linear classifier. Below 299x299 inputs the grid is smaller than
  5x5, and the pool and conv kernels shrink to fit, as in the released graphs.

  Attributes:
    num_classes: classifier width.
    conv_bn: `layers.ConvBN` with `conv` and `norm` bound.
    dense: `nn.Dense` with dtype and initialiser bound.
    conv_kernel_from_grid: the 768 conv spans the whole pooled grid (slim's v4
      and IRv2); otherwise it is 5x5, shrunk to fit (v3).
  """
  num_classes: int
  conv_bn: ModuleDef
  dense: ModuleDef
  conv_kernel_from_grid: bool

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    pool = tuple(min(5, s) for s in x.shape[1:3])
    x = nn.avg_pool(x, pool, strides=(3, 3), padding='VALID')
    x = self.conv_bn(conv(128, 1), name='conv0')(x)
    grid = x.shape[1:3]
    kernel = grid if self.conv_kernel_from_grid else tuple(min(5, s) for s in grid)
    x = self.conv_bn(conv_v(768, kernel), name='conv1')(x)
    x = jnp.mean(x, axis=(1, 2))
    return self.dense(self.num_classes, name='logits')(x)
