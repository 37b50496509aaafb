"""The networks' random initialisers, and drawing all of them at once.

`jax.jit(model.init)` compiles each random initialiser into kernels of its
own: the random bits, the truncated-normal transform and the scaling, once per
parameter. For full-size Inception-ResNet-v2 (245 random kernels) that compile
took 25 s on 2 CPU cores, a third of the time before the first step, while
the network's forward pass, which `init` traces, is dead code to XLA.

The initialisers here are the networks' (`variance_scaling`, and its
`xavier_uniform` case). Called as usual they are Flax's, value for value. Under
`drawn_from(values)` they hand out given arrays instead, in the order the
network asks for them, and `draw(init_fn, key)` makes those arrays: it runs
`init_fn` abstractly to learn which parameters are random, draws one pool of
standard variates per distribution, from `key` (one small compile each), and
cuts each parameter's share from it, scaled on the host. The values are then
fed to the jitted init as arguments, which leaves it nothing random to compile:

    values = initializers.draw(lambda: model.init(rngs, x, train=False), key)

    def init(values):
      with initializers.drawn_from(values):
        return model.init(rngs, x, train=False)

    variables = jax.jit(init)(values)

The shares are independent draws of each initialiser's distribution, so a
network starts as well as from per-parameter draws; the values differ from
`model.init`'s, and depend only on `key` and the network.
"""

import contextlib
import contextvars
import dataclasses
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# A truncated normal on [-2, 2] has this standard deviation (Flax's constant).
_TRUNCATED_STD = 0.87962566103423978
_DISTRIBUTIONS = ('truncated_normal', 'uniform')


class _Recorder:
  """Notes what each initialiser call asks for; returns zeros."""

  def __init__(self):
    self.calls: list[tuple['VarianceScaling', tuple[int, ...], Any]] = []

  def take(self, init: 'VarianceScaling', shape: tuple[int, ...], dtype: Any):
    self.calls.append((init, tuple(shape), dtype))
    return jnp.zeros(shape, dtype)


class _Feeder:
  """Hands out given arrays in order, checking each one's shape."""

  def __init__(self, values: Sequence[Any]):
    self.values = list(values)
    self.next = 0

  def take(self, init: 'VarianceScaling', shape: tuple[int, ...], dtype: Any):
    del init
    if self.next >= len(self.values):
      raise ValueError(f'the network asks for more than the {len(self.values)} '
                       f'drawn parameters; draw them with the same init function')
    value = self.values[self.next]
    self.next += 1
    if tuple(value.shape) != tuple(shape):
      raise ValueError(f'drawn parameter {self.next} has shape {value.shape}, '
                       f'the network asks for {tuple(shape)}; draw them with '
                       f'the same init function')
    return value.astype(dtype)


_SOURCE: contextvars.ContextVar = contextvars.ContextVar('initializer_source',
                                                         default=None)


def _fans(shape: tuple[int, ...]) -> tuple[float, float]:
  """Fan in and out of a kernel whose last two axes are (in, out)."""
  receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
  fan_in = shape[-2] * receptive if len(shape) > 1 else shape[-1]
  return fan_in, shape[-1] * receptive


@dataclasses.dataclass(frozen=True)
class VarianceScaling:
  """Flax's `variance_scaling(scale, mode, distribution)` for kernels.

  Attributes:
    scale: variance numerator.
    mode: 'fan_in', 'fan_out' or 'fan_avg'.
    distribution: 'truncated_normal' (on two standard deviations, rescaled to
      the variance) or 'uniform'.
  """
  scale: float
  mode: str
  distribution: str

  def __post_init__(self):
    if self.distribution not in _DISTRIBUTIONS:
      raise ValueError(f'distribution must be one of {_DISTRIBUTIONS}, got '
                       f'{self.distribution!r}')
    if self.mode not in ('fan_in', 'fan_out', 'fan_avg'):
      raise ValueError(f"mode must be 'fan_in', 'fan_out' or 'fan_avg', got "
                       f'{self.mode!r}')

  def factor(self, shape: tuple[int, ...]) -> float:
    """What a standard variate of the distribution is multiplied by."""
    fan_in, fan_out = _fans(shape)
    fan = {'fan_in': fan_in, 'fan_out': fan_out,
           'fan_avg': (fan_in + fan_out) / 2}[self.mode]
    variance = self.scale / max(1.0, fan)
    if self.distribution == 'truncated_normal':
      return math.sqrt(variance) / _TRUNCATED_STD
    return math.sqrt(3.0 * variance)

  def __call__(self, key: jax.Array, shape: Sequence[int],
               dtype: Any = jnp.float32) -> jax.Array:
    source = _SOURCE.get()
    if source is not None:
      return source.take(self, tuple(shape), dtype)
    return nn.initializers.variance_scaling(
        self.scale, self.mode, self.distribution)(key, shape, dtype)


def xavier_uniform() -> VarianceScaling:
  """Glorot's uniform initialiser, as `nn.initializers.xavier_uniform()`."""
  return VarianceScaling(1.0, 'fan_avg', 'uniform')


@contextlib.contextmanager
def _source(source: Any):
  token = _SOURCE.set(source)
  try:
    yield source
  finally:
    _SOURCE.reset(token)


@contextlib.contextmanager
def drawn_from(values: Sequence[Any]):
  """Within it, the initialisers return `values`, in the order of the calls.

  Raises:
    ValueError: on leaving it, when not every value was used.
  """
  with _source(_Feeder(values)) as feeder:
    yield
  if feeder.next != len(feeder.values):
    raise ValueError(f'the network used {feeder.next} of {len(feeder.values)} '
                     f'drawn parameters; draw them with the same init function')


def _standard(distribution: str, key: jax.Array, size: int) -> np.ndarray:
  """`size` standard variates of `distribution`, on the host."""
  if distribution == 'truncated_normal':
    draw = lambda k: jax.random.truncated_normal(k, -2.0, 2.0, (size,))
  else:
    draw = lambda k: jax.random.uniform(k, (size,), minval=-1.0, maxval=1.0)
  return np.asarray(jax.jit(draw)(key))


def _calls(init_fn: Callable[[], Any]) -> list:
  with _source(_Recorder()) as recorder:
    # A new function each time: JAX reuses the trace of a function it has
    # seen, which would skip the calls this records.
    jax.eval_shape(lambda: init_fn())  # pylint: disable=unnecessary-lambda
  return recorder.calls


def shapes(init_fn: Callable[[], Any]) -> list[jax.ShapeDtypeStruct]:
  """What `draw` returns, as shapes only (for `jax.eval_shape`)."""
  return [jax.ShapeDtypeStruct(shape, dtype)
          for _, shape, dtype in _calls(init_fn)]


def draw(init_fn: Callable[[], Any], key: jax.Array,
         sharding: jax.sharding.Sharding | None = None) -> list[Any]:
  """The random parameters `init_fn` asks the initialisers here for.

  Args:
    init_fn: calls the network's init; it runs only abstractly here.
    key: a PRNG key; the values depend on it and on the calls alone.
    sharding: where to put them (a replicated one: every process draws the
      same values); None keeps them on the host.

  Returns:
    One array per call, in call order, for `drawn_from`.
  """
  calls = _calls(init_fn)
  values: list[Any] = [None] * len(calls)
  for index, distribution in enumerate(_DISTRIBUTIONS):
    chosen = [(i, init, shape, dtype)
              for i, (init, shape, dtype) in enumerate(calls)
              if init.distribution == distribution]
    if not chosen:
      continue
    total = sum(math.prod(shape) for _, _, shape, _ in chosen)
    pool = _standard(distribution, jax.random.fold_in(key, index), total)
    offset = 0
    for i, init, shape, dtype in chosen:
      size = math.prod(shape)
      share = pool[offset:offset + size].reshape(shape) * init.factor(shape)
      values[i] = share.astype(dtype)
      offset += size
  if sharding is not None:
    values = [jax.make_array_from_callback(v.shape, sharding, lambda _, v=v: v)
              for v in values]
  return values
