"""The networks' 2-D convolution, written so that XLA's CPU backend runs it fast.

`Conv` holds the same parameters as `flax.linen.Conv` ('kernel' [kh, kw, in,
out], optional 'bias' [out]), so checkpoints and converted weights load
unchanged. Only the operations differ, and only where measurement on a
2-core CPU (JAX 0.10, float32, batch 8 at 299x299) showed XLA's own
convolution to be slow. The kxk rules apply on the CPU only, to
convolutions of at least 2**28 FLOPs; elsewhere those are XLA's:

- A 1x1 convolution is a matrix product over the channels (`dot_general`).
  Forward and backward are then matrix products: XLA's backward-filter
  convolution of a 35x35x384 -> 96 1x1 layer took 120 ms, the product 16 ms.
- The filter gradient of a kxk convolution is computed from the unrolled
  input windows (im2col) as one matrix product, except for small square
  stride-1 layers, where XLA's own is faster. XLA's takes over a second for
  each wide stem layer (149x149x32 -> 32, 3x3: 1.1 s against 0.33 s).
- A convolution with no padding on a wide input (64 or more a side) gets
  one extra row and column of padding on each unpadded side and its output
  sliced back: XLA's CPU convolution runs such padded windows two to three
  times faster (149x149x32 -> 32, 3x3 VALID: 276 ms against 116 ms).

The numbers are the same up to float32 summation order; the model and
converter tests compare against TF-slim, Keras and timm logits through it.
`python -m inception.benchmark --mode=train` measures the whole step.
"""

import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')
# Input sides from which the padding rule applies, output sides up to which
# square stride-1 filter gradients stay XLA's.
_WIDE = 64
_SMALL_SQUARE = 35
# The kxk rules apply from this many FLOPs a convolution on: below it they
# gain little and cost compile time (a fifth more for the tests' tiny
# networks).
_MIN_FLOPS = 2**28

Pads = tuple[tuple[int, int], tuple[int, int]]


def _xla_conv(x: jax.Array, kernel: jax.Array, stride: int,
              pads: Pads) -> jax.Array:
  return lax.conv_general_dilated(x, kernel, (stride, stride), pads,
                                  dimension_numbers=_DIMENSIONS)


def _forward_cpu(x: jax.Array, kernel: jax.Array, stride: int,
                 pads: Pads) -> jax.Array:
  """XLA's convolution, with the wide-unpadded-input padding rule."""
  if x.shape[1] < _WIDE or x.shape[3] < 16 or all(all(p) for p in pads):
    return _xla_conv(x, kernel, stride, pads)
  # One more output on each side whose padding is 0, then sliced off.
  extra = [[stride * (p == 0) for p in side] for side in pads]
  y = _xla_conv(x, kernel, stride, tuple(
      (p[0] + e[0], p[1] + e[1]) for p, e in zip(pads, extra)))
  (top, bottom), (left, right) = [[e // stride for e in side] for side in extra]
  return y[:, top:y.shape[1] - bottom, left:y.shape[2] - right]


def _windows(x: jax.Array, kernel_shape: tuple[int, ...], stride: int,
             pads: Pads, out_hw: tuple[int, int]) -> jax.Array:
  """[B, out_h, out_w, kh * kw * in]: each output's input window, unrolled."""
  kh, kw = kernel_shape[:2]
  x = jnp.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),))
  out_h, out_w = out_hw
  taps = [lax.slice(x, (0, i, j, 0),
                    (x.shape[0], i + stride * (out_h - 1) + 1,
                     j + stride * (out_w - 1) + 1, x.shape[3]),
                    (1, stride, stride, 1))
          for i in range(kh) for j in range(kw)]
  return jnp.concatenate(taps, axis=-1)


def _filter_gradient(x: jax.Array, grad: jax.Array,
                     kernel_shape: tuple[int, ...], stride: int,
                     pads: Pads) -> jax.Array:
  """d loss / d kernel from the input and the output's gradient."""
  kh, kw = kernel_shape[:2]
  if stride == 1 and kh == kw and grad.shape[1] <= _SMALL_SQUARE:
    return jax.vjp(lambda k: _xla_conv(x, k, stride, pads),
                   jnp.zeros(kernel_shape, x.dtype))[1](grad)[0]
  windows = _windows(x, kernel_shape, stride, pads, grad.shape[1:3])
  # The gradient, not the windows, is transposed for the product: it is the
  # smaller of the two.
  return jnp.einsum('bhwo,bhwk->ok', grad, windows).T.reshape(kernel_shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_cpu(x: jax.Array, kernel: jax.Array, stride: int,
              pads: Pads) -> jax.Array:
  return _forward_cpu(x, kernel, stride, pads)


def _conv_cpu_forward(x, kernel, stride, pads):
  return _forward_cpu(x, kernel, stride, pads), (x, kernel)


def _conv_cpu_backward(stride, pads, residuals, grad):
  x, kernel = residuals
  grad_x = jax.vjp(lambda v: _xla_conv(v, kernel, stride, pads), x)[1](grad)[0]
  return grad_x, _filter_gradient(x, grad, kernel.shape, stride, pads)


_conv_cpu.defvjp(_conv_cpu_forward, _conv_cpu_backward)


def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1,
           padding: str = 'SAME') -> jax.Array:
  """NHWC convolution with an HWIO kernel and TensorFlow's padding rules.

  Args:
    x: [B, H, W, in] features.
    kernel: [kh, kw, in, out] weights.
    stride: the same in both directions.
    padding: 'SAME' or 'VALID'.

  Returns:
    [B, H', W', out] features.
  """
  kh, kw = kernel.shape[:2]
  pads = tuple(lax.padtype_to_pads(x.shape[1:3], (kh, kw), (stride, stride),
                                   padding))
  if (kh, kw) == (1, 1):
    if stride > 1:
      x = x[:, ::stride, ::stride]
    return lax.dot_general(x, kernel[0, 0], (((3,), (0,)), ((), ())))
  out = [(size + sum(p) - k) // stride + 1
         for size, p, k in zip(x.shape[1:3], pads, (kh, kw))]
  if 2 * x.shape[0] * out[0] * out[1] * kernel[..., 0].size * kernel.shape[
      -1] < _MIN_FLOPS:
    return _xla_conv(x, kernel, stride, pads)
  return lax.platform_dependent(
      x, kernel, cpu=lambda a, k: _conv_cpu(a, k, stride, pads),
      default=lambda a, k: _xla_conv(a, k, stride, pads))


class Conv(nn.Module):
  """A 2-D convolution with `flax.linen.Conv`'s parameters and call.

  Attributes:
    features: output channels.
    kernel_size: (height, width).
    strides: the stride, the same in both directions.
    padding: 'SAME' or 'VALID'.
    use_bias: whether to add a learned bias.
    dtype: the computation dtype (None: that of the inputs and parameters).
    param_dtype: the parameters' dtype.
    kernel_init: the kernel's initialiser.
    bias_init: the bias's initialiser.
  """
  features: int
  kernel_size: tuple[int, int]
  strides: int = 1
  padding: str = 'SAME'
  use_bias: bool = True
  dtype: Optional[Any] = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., jax.Array] = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    stride = self.strides
    if isinstance(stride, (tuple, list)):
      if len(set(stride)) != 1:
        raise ValueError(f'strides must be equal in both directions, got '
                         f'{stride}')
      stride = stride[0]
    kernel = self.param('kernel', self.kernel_init,
                        tuple(self.kernel_size) + (x.shape[-1], self.features),
                        self.param_dtype)
    bias = (self.param('bias', self.bias_init, (self.features,),
                       self.param_dtype) if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias,
                                              dtype=self.dtype)
    y = conv2d(x, kernel, stride, self.padding)
    return y if bias is None else y + bias
