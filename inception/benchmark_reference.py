"""timm's implementation of the same network, the `--reference=timm` of the benchmark.

`python -m inception.benchmark --mode=train|infer --reference=timm` times
this beside the project's step, in the same process and on the same batch
(inception/benchmark_steps.py alternates rounds of the two). PyTorch and timm
are never dependencies of the project: they are imported here only, and
their absence is one line saying to install them.

The reference step is as close to the project's as the two libraries allow:

- the network: `timm.create_model(name)` for inception_v3, inception_v4 and
  inception_resnet_v2 (timm has no other network of the family), the same
  classes and dropout; timm's BatchNorm learns a scale, so its parameter
  count is that of the project's network with `bn_scale=True`, which
  `summary()` reports beside it (`released_graph_params`);
- train: the config's recipe in PyTorch's terms: RMSprop (alpha = the
  config's rmsprop_decay, eps, momentum, weight decay on every parameter),
  cross-entropy with the config's label smoothing (and inception_v3's
  auxiliary loss where the config turns the head on; timm's v4 and IRv2 have
  none), clipping by global norm, and a moving average of the parameters and
  BatchNorm statistics, as the project's step does;
- infer: `eval()` and `torch.no_grad()`, the logits and their softmax;
- bfloat16 through `torch.autocast`; on CUDA channels_last memory, TF32
  for float32 (JAX's default on GPUs) and `cudnn.benchmark` (convolution
  algorithms chosen by timing, as XLA's autotuning does, during the warm-up
  steps); on a CPU one thread per core the process may run on
  (`os.sched_getaffinity`: under `taskset -c 0`, one).

timm's network runs eagerly (no `torch.compile`).
"""

import os
from typing import Any

import jax
import numpy as np

from inception import models

TIMM_NAMES = ('inception_v3', 'inception_v4', 'inception_resnet_v2')
# Overrides that change the network's layers; timm builds only the published one.
_ARCHITECTURE_OVERRIDES = ('repeats', 'width_multiplier', 'residual_activation',
                           'bn_on_sum', 'projection_as_printed')


class Unavailable(RuntimeError):
  """The reference cannot run here; the message says why, in one line."""


def _torch_and_timm() -> tuple[Any, Any]:
  try:
    import timm  # pylint: disable=g-import-not-at-top
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise Unavailable(f'--reference=timm needs PyTorch and timm ({e}); '
                      f'install them: pip install torch timm') from None
  return torch, timm


def check(config: Any) -> None:
  """Raises `Unavailable` unless timm can build the network `config` names.

  Args:
    config: the run's config (model, model_overrides).
  """
  if config.model not in TIMM_NAMES:
    raise Unavailable(f'--reference=timm: timm has no {config.model}; it has '
                      f'{", ".join(TIMM_NAMES)}')
  changed = [name for name in _ARCHITECTURE_OVERRIDES
             if config.model_overrides[name] is not None]
  if changed:
    raise Unavailable(f'--reference=timm builds the published network only; '
                      f'drop model_overrides {", ".join(changed)}')
  _torch_and_timm()


def released_graph_params(model: str, num_classes: int, aux_logits: bool,
                          image_size: int) -> int:
  """Parameters of the project's network with a BatchNorm scale, as timm's."""
  network = models.create_model(model, num_classes=num_classes,
                                aux_logits=aux_logits, bn_scale=True)
  images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), np.float32)
  shapes = jax.eval_shape(
      lambda x: network.init(jax.random.key(0), x, train=False), images)
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes['params']))


class TimmReference:
  """timm's network and one step of it on a fixed batch.

  Attributes:
    run: runs one step and returns once it is done.
  """

  def __init__(self, config: Any, mode: str, images: np.ndarray,
               labels: np.ndarray, *, learning_rate: float, num_classes: int,
               dropout_rate: float):
    """Builds the network, puts the batch on its device, prepares the step.

    Args:
      config: the run's config: model, dtype, aux_logits, the recipe.
      mode: 'train' or 'infer'.
      images: float32 [B, H, W, 3] (NHWC, as the project's).
      labels: int [B].
      learning_rate: the run's peak rate (plan.learning_rate).
      num_classes: classifier width.
      dropout_rate: the project network's dropout.
    """
    check(config)
    torch, timm = _torch_and_timm()
    self._torch, self._timm, self._config = torch, timm, config
    cuda = jax.default_backend() == 'gpu'
    if cuda and not torch.cuda.is_available():
      raise Unavailable('--reference=timm: JAX runs on the GPU but this '
                        'PyTorch has no CUDA; install a CUDA build of torch')
    self._device = 'cuda' if cuda else 'cpu'
    if cuda:
      torch.set_float32_matmul_precision('high')
      torch.backends.cudnn.allow_tf32 = True
      torch.backends.cudnn.benchmark = True
    else:
      torch.set_num_threads(len(os.sched_getaffinity(0)))
    self._aux = (mode == 'train' and config.aux_logits
                 and config.model == 'inception_v3')
    extra = {'aux_logits': True} if self._aux else {}
    self._memory_format = (torch.channels_last if cuda
                           else torch.contiguous_format)
    net = timm.create_model(config.model, pretrained=False,
                            num_classes=num_classes, drop_rate=dropout_rate,
                            **extra)
    self._net = net.to(self._device, memory_format=self._memory_format)
    self._images = torch.from_numpy(
        np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2))).to(
            self._device, memory_format=self._memory_format)
    self._labels = torch.from_numpy(np.asarray(labels).astype(np.int64)).to(
        self._device)
    self._num_classes, self._image_size = num_classes, images.shape[1]
    self.run = (self._train_step(learning_rate) if mode == 'train'
                else self._infer_step())

  def _autocast(self):
    return self._torch.autocast(self._device, dtype=self._torch.bfloat16,
                                enabled=self._config.dtype == 'bfloat16')

  def _sync(self) -> None:
    if self._device == 'cuda':
      self._torch.cuda.synchronize()

  def _train_step(self, learning_rate: float):
    torch, config, net = self._torch, self._config, self._net
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.RMSprop(
        params, lr=learning_rate, alpha=config.rmsprop_decay,
        eps=config.rmsprop_epsilon, momentum=config.rmsprop_momentum,
        weight_decay=config.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    averaged = params + [b for b in net.buffers() if b.is_floating_point()]
    ema = [t.detach().clone() for t in averaged]

    def step():
      with self._autocast():
        outputs = net(self._images)
        if self._aux:
          logits, aux = outputs
          loss = (loss_fn(logits.float(), self._labels) + config.aux_loss_weight
                  * loss_fn(aux.float(), self._labels))
        else:
          loss = loss_fn(outputs.float(), self._labels)
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      if config.grad_clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip_norm)
      optimizer.step()
      if config.ema_decay > 0:
        with torch.no_grad():
          lerp = torch._foreach_lerp_  # pylint: disable=protected-access
          lerp(ema, [t.detach() for t in averaged], 1.0 - config.ema_decay)
      self._sync()

    return step

  def _infer_step(self):
    torch, net = self._torch, self._net
    net.eval()

    def step():
      with torch.no_grad(), self._autocast():
        torch.softmax(net(self._images).float(), dim=-1)
      self._sync()

    return step

  def summary(self) -> dict[str, Any]:
    """The reference's settings and parameter counts, for the JSON record."""
    torch = self._torch
    params = sum(p.numel() for p in self._net.parameters())
    released = released_graph_params(self._config.model, self._num_classes,
                                     self._aux, self._image_size)
    summary = {
        'reference': f'timm {self._config.model}',
        'reference_device': self._device,
        'reference_torch_version': torch.__version__,
        'reference_timm_version': self._timm.__version__,
        'reference_params': int(params),
        'released_graph_params': released,
        'reference_params_match': int(params) == released,
        'reference_aux_logits': self._aux,
        'reference_channels_last': self._memory_format == torch.channels_last,
        'reference_threads': torch.get_num_threads(),
    }
    if self._device == 'cuda':
      summary['reference_peak_memory_bytes'] = torch.cuda.max_memory_allocated()
    return summary
