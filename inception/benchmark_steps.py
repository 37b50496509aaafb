"""Train and infer modes of `python -m inception.benchmark`: timing the steps.

`step_benchmark(config, mode)` builds the step a run uses (train.py's train
step with the config's network, optimizer and recipe, or its eval step) on a
synthetic batch made once on the devices, times it, and works out the
figures inception/benchmark.py's docstring lists: throughput, initialisation
and compile time, peak memory, XLA's FLOP count and its share of the peak
rate of a matmul measured in the same run. `benchmark_config` reads the
config files without ml_collections (inception/config_files.py), and nothing
here imports TensorFlow or CLU.

All timing reads `time.perf_counter` twice per measurement, at its start and
end, so tests can replace `time` with a clock of known durations.
"""

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from inception import config_files
from inception import initializers
from inception import models
from inception import multihost
from inception import plan as plan_lib
from inception import step_profile
import train


@dataclasses.dataclass(frozen=True)
class _DatasetSizes:
  """What `plan.make_plan` reads from a dataset: ImageNet's split sizes.

  They place only the learning-rate schedule's stairs, which change no
  step's cost.
  """
  num_classes: int
  num_train_examples: int = 1_281_167
  num_eval_examples: int = 50_000


def benchmark_config(model: str | None = None, config_path: str | None = None,
                     *, batch_size: int | None = None,
                     image_size: int | None = None,
                     dtype: str | None = None,
                     aux_logits: bool | None = None) -> tuple[Any, str]:
  """The run's config that a benchmark measures.

  Args:
    model: the network; None keeps the config file's.
    config_path: the config file; None: configs/<model>.py, or
      configs/imagenet.py for a network without one (model None:
      inception_v4).
    batch_size, image_size, dtype, aux_logits: overrides; None keeps the
      file's.

  Returns:
    (config, the config file's path).
  """
  if config_path is None:
    config_path = config_files.network_config_path(model or 'inception_v4')
  config = config_files.load(config_path)
  if model is not None:
    config.model = model
  for field, value in (('batch_size', batch_size), ('image_size', image_size),
                       ('dtype', dtype), ('aux_logits', aux_logits)):
    if value is not None:
      config[field] = value
  # plan.check_config wants crops of an image to fit the input pipeline's
  # canvas; no pipeline runs here.
  config.train_canvas_size = max(config.train_canvas_size, config.image_size)
  return config, config_path


def synthetic_batch(config: Any, num_classes: int, mesh: jax.sharding.Mesh,
                    mask: bool) -> dict[str, jax.Array]:
  """A batch made on the devices, on P('data') as the input pipeline's.

  Args:
    config: reads batch_size and image_size.
    num_classes: labels are below it.
    mesh: a mesh with a 'data' axis.
    mask: add the evaluation batches' 'mask' (all True).

  Returns:
    'image' float32 [B, S, S, 3] in [-1, 1], 'label' int32 [B] (and 'mask').
  """
  size, count = config.image_size, config.batch_size

  def make():
    image_key, label_key = jax.random.split(jax.random.key(0))
    batch = {'image': jax.random.uniform(image_key, (count, size, size, 3),
                                         jnp.float32, -1.0, 1.0),
             'label': jax.random.randint(label_key, (count,), 0, num_classes,
                                         jnp.int32)}
    if mask:
      batch['mask'] = jnp.ones((count,), bool)
    return batch

  data = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  return jax.jit(make, out_shardings=data)()


@dataclasses.dataclass
class _Step:
  """A compiled step and its device-resident inputs.

  Attributes:
    run: runs one step and returns once it is done.
    compiled: the compiled step, for XLA's cost and memory analyses.
    init_seconds: building its state or variables.
    compile_seconds: lowering and compiling it.
    params: parameters of the network.
  """
  run: Callable[[], None]
  compiled: Any
  init_seconds: float
  compile_seconds: float
  params: int


def _count(tree: Any) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _train_step(config: Any, plan: plan_lib.Plan, model: Any,
                mesh: jax.sharding.Mesh, batch: dict) -> _Step:
  """train.py's train step, built and jitted as train_and_evaluate does."""
  schedule, tx = train.recipe(config, plan)
  start = time.perf_counter()
  state, _, shardings = train.create_train_state(model, tx, config, mesh)
  jax.block_until_ready(state)
  init_seconds = time.perf_counter() - start
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  step = jax.jit(
      train.make_train_step(model, tx, schedule, config, plan.batch_norm_groups),
      out_shardings=(shardings, replicated), donate_argnums=(0,))
  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_seconds = time.perf_counter() - start
  params = _count(state.params)
  current = [state]  # Donated: each step's state feeds the next.

  def run():
    current[0], metrics = compiled(current[0], batch)
    jax.block_until_ready((current[0], metrics))

  return _Step(run, compiled, init_seconds, compile_seconds, params)


def _infer_step(config: Any, plan: plan_lib.Plan, model: Any,
                mesh: jax.sharding.Mesh, batch: dict) -> _Step:
  """train.py's eval step on freshly initialised variables."""
  del plan
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  key = jax.random.key(config.seed)

  def create():
    images = jnp.zeros((1, config.image_size, config.image_size, 3))
    return model.init({'params': key, 'dropout': key}, images, train=False)

  def init(drawn):
    with initializers.drawn_from(drawn):
      variables = create()
    return {'params': variables['params'],
            'batch_stats': variables.get('batch_stats', {})}

  start = time.perf_counter()
  drawn = initializers.draw(create, key)
  variables = jax.block_until_ready(
      jax.jit(init, out_shardings=replicated)(drawn))
  init_seconds = time.perf_counter() - start
  step = jax.jit(train.make_eval_step(model), out_shardings=replicated)
  start = time.perf_counter()
  compiled = step.lower(variables, batch).compile()
  compile_seconds = time.perf_counter() - start

  def run():
    jax.block_until_ready(compiled(variables, batch))

  return _Step(run, compiled, init_seconds, compile_seconds,
               _count(variables['params']))


def time_rounds(runners: dict[str, Callable[[], None]], steps: int,
                warmup: int, steps_per_round: int) -> dict[str, list[float]]:
  """Seconds of each call, the runners taking turns in rounds.

  Args:
    runners: name -> a function that runs one step to completion.
    steps: timed calls of each runner.
    warmup: untimed calls of each runner first.
    steps_per_round: calls of one runner before the next takes its turn.

  Returns:
    name -> the `steps` durations, in the order they ran.
  """
  for run in runners.values():
    for _ in range(warmup):
      run()
  times = {name: [] for name in runners}
  while any(len(t) < steps for t in times.values()):
    for name, run in runners.items():
      for _ in range(min(steps_per_round, steps - len(times[name]))):
        start = time.perf_counter()
        run()
        times[name].append(time.perf_counter() - start)
  return times


def peak_matmul_flops(dtype: Any, size: int, mesh: jax.sharding.Mesh,
                      repeats: int = 5) -> float:
  """FLOP/s of a square matmul on every device of `mesh` at once, the median.

  Args:
    dtype: the operands' dtype.
    size: the matrices' side.
    mesh: one matmul per device, over its 'data' axis.
    repeats: timed runs, after one untimed.

  Returns:
    2 * size**3 * devices over the median seconds of a run.
  """
  devices = mesh.devices.size
  data = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))

  def make():
    a_key, b_key = jax.random.split(jax.random.key(1))
    shape = (devices, size, size)
    return (jax.random.normal(a_key, shape, dtype),
            jax.random.normal(b_key, shape, dtype))

  a, b = jax.jit(make, out_shardings=data)()
  matmul = jax.jit(lambda a, b: jnp.einsum('dij,djk->dik', a, b),
                   out_shardings=data).lower(a, b).compile()
  jax.block_until_ready(matmul(a, b))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(matmul(a, b))
    times.append(time.perf_counter() - start)
  return 2.0 * size**3 * devices / float(np.median(times))


def peak_memory(compiled: Any) -> tuple[int | None, str | None]:
  """The devices' peak memory, or the compiled step's where none is kept.

  Returns:
    (bytes, source): the largest peak_bytes_in_use of the local devices
    ('device.memory_stats'), else what XLA's memory analysis of `compiled`
    says one device holds while the step runs: its arguments, outputs and
    temporaries, less the outputs that reuse donated arguments
    ('compiled.memory_analysis'); else (None, None). The analysis's own
    peak_memory_in_bytes is not used: on CPUs it leaves the temporaries out.
  """
  stats = [device.memory_stats() for device in jax.local_devices()]
  if all(s and 'peak_bytes_in_use' in s for s in stats):
    return max(s['peak_bytes_in_use'] for s in stats), 'device.memory_stats'
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None, None
  held = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
          + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)
  return int(held), 'compiled.memory_analysis'


def flops_per_step(compiled: Any, num_devices: int) -> float | None:
  """XLA's FLOP count of a compiled step over all devices, or None.

  The cost analysis describes the partitioned program, which each device
  runs, so it is multiplied by the device count.
  """
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # Older JAX: one dict per program.
    cost = cost[0] if cost else None
  flops = (cost or {}).get('flops')
  return float(flops) * num_devices if flops and flops > 0 else None


def step_benchmark(config: Any, mode: str, *, steps: int = 20, warmup: int = 3,
                   steps_per_round: int = 5, matmul_size: int | None = None,
                   num_classes: int = 1000,
                   reference: str | None = None,
                   profile: bool = False) -> dict[str, Any]:
  """Times the train or eval step of the network and recipe `config` gives.

  Args:
    config: the run's config (see `benchmark_config`).
    mode: 'train' or 'infer'.
    steps: timed steps (of each side with a reference).
    warmup: untimed steps before them.
    steps_per_round: with a reference, steps per turn of each side.
    matmul_size: side of the peak-rate matmul; None: 8192 on accelerators,
      2048 on CPUs.
    num_classes: classifier width.
    reference: 'timm' to time timm's network beside it, or None.
    profile: also trace two steps and add `step_profile.profile`'s summary
      under 'profile'.

  Returns:
    The figures of the module docstring.
  """
  mesh = multihost.make_mesh()
  plan = plan_lib.make_plan(config, jax.device_count(),
                            lambda _: _DatasetSizes(num_classes))
  model = models.create_model_from_config(config, plan.num_classes)
  batch = synthetic_batch(config, plan.num_classes, mesh, mask=mode == 'infer')
  step = (_train_step if mode == 'train' else _infer_step)(
      config, plan, model, mesh, batch)
  runners = {'project': step.run}
  if reference is not None:
    from inception import benchmark_reference  # pylint: disable=g-import-not-at-top
    host = jax.device_get(batch)
    ref = benchmark_reference.TimmReference(
        config, mode, host['image'], host['label'],
        learning_rate=plan.learning_rate, num_classes=plan.num_classes,
        dropout_rate=model.dropout_rate)
    runners['reference'] = ref.run
  times = time_rounds(runners, steps, warmup, steps_per_round)
  memory, memory_source = peak_memory(step.compiled)
  seconds = float(np.median(times['project']))
  images_per_sec = config.batch_size / seconds
  flops = flops_per_step(step.compiled, mesh.devices.size)
  flops_per_image = None if flops is None else flops / config.batch_size
  if matmul_size is None:
    matmul_size = 2048 if jax.default_backend() == 'cpu' else 8192
  peak = peak_matmul_flops(jnp.dtype(config.dtype), matmul_size, mesh)
  achieved = None if flops is None else flops_per_image * images_per_sec
  result = {
      **_context(config, plan, mesh), 'mode': mode, 'params': step.params,
      'steps': steps, 'warmup': warmup, 'step_seconds_median': seconds,
      'images_per_sec': images_per_sec, 'init_seconds': step.init_seconds,
      'compile_seconds': step.compile_seconds,
      'peak_memory_bytes': memory, 'peak_memory_source': memory_source,
      'flops_per_image': flops_per_image, 'achieved_flops_per_sec': achieved,
      'peak_flops_per_sec': peak, 'peak_matmul_size': matmul_size,
      'peak_fraction': None if achieved is None else achieved / peak,
  }
  if profile:
    result['profile'] = step_profile.profile(step.run, step.compiled)
  if reference is not None:
    reference_ips = config.batch_size / float(np.median(times['reference']))
    result.update(ref.summary(), reference_images_per_sec=reference_ips,
                  ratio=images_per_sec / reference_ips)
  return result


def _context(config: Any, plan: plan_lib.Plan,
             mesh: jax.sharding.Mesh) -> dict[str, Any]:
  """What was measured, where, and with which software."""
  return {
      'model': config.model, 'batch_size': config.batch_size,
      'image_size': config.image_size, 'dtype': config.dtype,
      'aux_logits': config.aux_logits, 'num_classes': plan.num_classes,
      'backend': jax.default_backend(),
      'device_kind': jax.devices()[0].device_kind,
      'num_devices': int(mesh.devices.size),
      'jax_version': jax.__version__,
      'jaxlib_version': getattr(jaxlib, '__version__', None),
      'compilation_cache_dir': getattr(jax.config, 'jax_compilation_cache_dir',
                                       None),
  }
