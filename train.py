"""Train state, train step, eval step, and the training loop.

The train step is a pure function `(state, batch) -> (state, metrics)`,
jitted over a one-axis `data` mesh: the batch is sharded over the devices of
all processes, the state is replicated, and XLA inserts the gradient
all-reduce. BatchNorm therefore sees the global batch, unless
`batch_norm_group_size` splits it into groups (the paper's per-replica BN).

The loop does host work only at "host steps" (every `log_every_steps`,
checkpoint and evaluation steps, the last step, and the step every process
agreed to stop at after a preemption notice): it fetches the metrics of the
steps since the previous host step in one `jax.device_get`, stops on a
non-finite loss or gradient norm before any checkpoint could store it, writes
the metrics, starts the (asynchronous) save, and only then evaluates, so a
failing evaluation never costs the checkpoint, and a preempted run saves
without evaluating. The last step's save is on disk before its evaluation
starts. An evaluation that a preemption or crash skipped is done when the run
resumes, so the metrics of an interrupted run match an uninterrupted one.

Nothing here imports TensorFlow or CLU at module level: the input pipeline
and the metric writers are imported by `train_and_evaluate` only.
"""

import dataclasses
import functools
import json
import os
from typing import Any, Callable

from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from inception import checkpointing
from inception import initializers
from inception import metrics_io
from inception import models
from inception import multihost
from inception import optim
from inception import plan as plan_lib
from inception import pretrained
from inception import resume
from inception import runs

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


class NonFiniteError(RuntimeError):
  """Training produced a non-finite loss or gradient norm."""


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint holds.

  Attributes:
    step: updates done so far.
    params: network parameters.
    batch_stats: BatchNorm moving statistics.
    opt_state: optimizer state (RMSProp accumulators, momentum).
    ema: moving average of {'params', 'batch_stats'}, used by evaluation.
    rng: base key; step k uses `fold_in(rng, k)`.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema: Any
  rng: jax.Array


def smoothed_cross_entropy(logits: jax.Array, labels: jax.Array,
                           smoothing: float) -> jax.Array:
  """Mean cross-entropy against label-smoothed one-hot targets.

  Args:
    logits: [batch, classes].
    labels: [batch] integer classes.
    smoothing: label smoothing (paper: 0.1): the target puts 1 - smoothing +
      smoothing / classes on the label and smoothing / classes elsewhere.

  Returns:
    A float32 scalar.
  """
  targets = optax.smooth_labels(
      jax.nn.one_hot(labels, logits.shape[-1]), smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets).mean()


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  """Whether the label is among the k largest logits, per example.

  Args:
    logits: [batch, classes].
    labels: [batch] integer classes.
    k: how many top classes count; clipped to the number of classes.

  Returns:
    [batch] bool.
  """
  _, top = jax.lax.top_k(logits, min(k, logits.shape[-1]))
  return jnp.any(top == labels[:, None], axis=-1)


def forward_train(model: Any, variables: Any, images: jax.Array,
                   rng: jax.Array, groups: int):
  """Training forward pass; BatchNorm statistics per group of the batch.

  With groups > 1 the batch is reshaped to [groups, batch/groups, ...] and the
  network is vmapped over the groups, so each BatchNorm normalises within its
  group, as each replica of the paper's setup did; the new moving statistics
  are the mean of the groups' updates.

  Args:
    model: the Linen network; it sows 'zero_fraction' (and 'aux_logits' when
      its auxiliary head is on) into 'intermediates'.
    variables: {'params', 'batch_stats'}.
    images: [B, H, W, 3].
    rng: dropout key; each group gets its own.
    groups: number of groups; B must divide by it.

  Returns:
    (logits, aux_logits or None, new batch_stats, zero_fraction).
  """
  def apply(images, rng):
    logits, state = model.apply(
        variables, images, train=True, rngs={'dropout': rng},
        mutable=['batch_stats', 'intermediates'])
    inter = state['intermediates']
    aux = inter['aux_logits'][0] if 'aux_logits' in inter else None
    return logits, aux, state['batch_stats'], inter['zero_fraction'][0]

  if groups == 1:
    return apply(images, rng)
  grouped = images.reshape(groups, -1, *images.shape[1:])
  logits, aux, stats, zero = jax.vmap(apply)(
      grouped, jax.random.split(rng, groups))
  flat = lambda x: x.reshape(-1, x.shape[-1])
  return (flat(logits), None if aux is None else flat(aux),
          jax.tree.map(lambda s: s.mean(axis=0), stats), zero.mean())


def make_train_step(model: Any, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, config: Any,
                    batch_norm_groups: int
                    ) -> Callable[[TrainState, Batch],
                                  tuple[TrainState, Metrics]]:
  """Builds the pure train step for a network, optimizer and recipe.

  Args:
    model: the Linen network.
    tx: the optimizer (see `optim.create_optimizer`).
    schedule: the learning-rate schedule, for logging.
    config: the run's ConfigDict (label_smoothing, aux_loss_weight,
      ema_decay).
    batch_norm_groups: groups for BatchNorm statistics (1: global batch).

  Returns:
    `train_step(state, batch) -> (state, metrics)`, where batch holds
    'image' [B, H, W, 3] and 'label' [B], and metrics are scalars:
    'train/loss' is the smoothed cross-entropy (with the auxiliary head's
    weighted share), 'train/l2_loss' the weight decay's L2 penalty that the
    optimizer adds as a gradient, 'train/total_loss' their sum.
  """
  smoothing, aux_weight = config.label_smoothing, config.aux_loss_weight
  ema_decay = config.ema_decay
  l2_loss = functools.partial(
      optim.l2_loss, weight_decay=config.weight_decay,
      weight_decay_param_names=config.weight_decay_param_names)

  def train_step(state: TrainState, batch: Batch):
    rng = jax.random.fold_in(state.rng, state.step)
    labels = batch['label']

    def loss_fn(params):
      variables = {'params': params, 'batch_stats': state.batch_stats}
      logits, aux, stats, zero = forward_train(
          model, variables, batch['image'], rng, batch_norm_groups)
      loss = smoothed_cross_entropy(logits, labels, smoothing)
      if aux is not None:
        loss += aux_weight * smoothed_cross_entropy(aux, labels, smoothing)
      return loss, (logits, stats, zero)

    (loss, (logits, stats, zero)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = optim.update_ema(state.ema, {'params': params, 'batch_stats': stats},
                           optim.ema_decay_at(state.step, ema_decay))
    new_state = state.replace(step=state.step + 1, params=params,
                              batch_stats=stats, opt_state=opt_state, ema=ema)
    l2 = l2_loss(state.params)
    metrics = {
        'train/loss': loss,
        'train/l2_loss': l2,
        'train/total_loss': loss + l2,
        'train/grad_norm': optax.tree.norm(grads),
        'train/learning_rate': schedule(state.step),
        'train/top1_error': 1.0 - topk_correct(logits, labels, 1).mean(),
        'train/zero_fraction': zero,
    }
    return new_state, metrics

  return train_step


def eval_probabilities(model: Any, variables: Any,
                       images: jax.Array) -> jax.Array:
  """Class probabilities of each image, the softmax averaged over its views.

  Args:
    model: the Linen network.
    variables: {'params', 'batch_stats'}.
    images: [B, H, W, 3], or [B, V, H, W, 3] for V views of each image.

  Returns:
    float32 [B, classes].
  """
  logits = model.apply(variables, images.reshape(-1, *images.shape[-3:]),
                       train=False)
  probabilities = jax.nn.softmax(logits.astype(jnp.float32))
  return probabilities.reshape(images.shape[0], -1, logits.shape[-1]).mean(1)


def make_eval_step(model: Any) -> Callable[[Any, Batch], Metrics]:
  """Builds the eval step: correct-prediction counts of one padded batch.

  Args:
    model: the Linen network.

  Returns:
    `eval_step(variables, batch) -> counts`, where batch holds 'image'
    ([B, H, W, 3], or [B, V, H, W, 3] for V views of each image, whose
    softmax is averaged), 'label' and 'mask' (True for real examples), and
    counts has int32 'top1', 'top5' and 'count' over the real examples.
  """
  def eval_step(variables, batch):
    scores = eval_probabilities(model, variables, batch['image'])
    mask = batch['mask'].astype(jnp.int32)
    correct = lambda k: jnp.sum(topk_correct(scores, batch['label'], k) * mask)
    return {'top1': correct(1), 'top5': correct(5), 'count': jnp.sum(mask)}

  return eval_step


def evaluate(eval_step: Callable, variables: Any,
             batches: Any) -> dict[str, float]:
  """Top-1/top-5 error over every real example of the evaluation split.

  Args:
    eval_step: the jitted eval step.
    variables: {'params', 'batch_stats'} to evaluate (the moving average).
    batches: an iterable of padded, masked global batches.

  Returns:
    'eval/top1_error', 'eval/top5_error' and 'eval/num_examples'.
  """
  totals = None
  for batch in batches:
    counts = eval_step(variables, batch)
    totals = counts if totals is None else jax.tree.map(jnp.add, totals, counts)
  totals = jax.device_get(totals)
  count = int(totals['count'])
  return {'eval/top1_error': 1.0 - int(totals['top1']) / max(count, 1),
          'eval/top5_error': 1.0 - int(totals['top5']) / max(count, 1),
          'eval/num_examples': count}


def create_train_state(model: Any, tx: optax.GradientTransformation,
                       config: Any, mesh: jax.sharding.Mesh, *,
                       materialize: bool = True):
  """Initialises the replicated train state from shapes.

  Args:
    model: the Linen network.
    tx: the optimizer.
    config: the run's ConfigDict (seed, image_size).
    mesh: the device mesh; the state is replicated over it.
    materialize: False returns only the abstract state (for a restore).

  Returns:
    (state or None, abstract state with shardings, state shardings).
  """
  init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  params_rng, dropout_rng = jax.random.split(init_rng)
  size = config.image_size

  def variables():
    return model.init({'params': params_rng, 'dropout': dropout_rng},
                      jnp.zeros((1, size, size, 3), jnp.float32), train=False)

  def init(drawn):
    # The random kernels come drawn: see inception/initializers.py.
    with initializers.drawn_from(drawn):
      params_and_stats = variables()
    params = params_and_stats['params']
    stats = params_and_stats.get('batch_stats', {})
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=stats, opt_state=tx.init(params),
                      ema={'params': params, 'batch_stats': stats},
                      rng=train_rng)

  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state = None
  if materialize:
    state = jax.jit(init, out_shardings=replicated)(
        initializers.draw(variables, params_rng, replicated))
  shapes = (state if materialize
            else jax.eval_shape(init, initializers.shapes(variables)))
  abstract = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
      shapes)
  shardings = jax.tree.map(lambda _: replicated, abstract)
  return state, abstract, shardings


def first_nonfinite(records: list[dict], first_step: int):
  """The first step whose loss or gradient norm is not finite, or None.

  Args:
    records: host metrics of consecutive steps.
    first_step: the step number of records[0] (steps count from 1).

  Returns:
    (step, record) of the first bad step, or None.
  """
  for i, record in enumerate(records):
    if not (np.isfinite(record['train/loss']) and
            np.isfinite(record['train/grad_norm'])):
      return first_step + i, record
  return None


@dataclasses.dataclass
class _Run:
  """What the loop's host steps need; built once by `train_and_evaluate`."""
  config: Any
  plan: plan_lib.Plan
  mesh: jax.sharding.Mesh
  train_step: Callable
  eval_step: Callable
  checkpointer: checkpointing.Checkpointer
  writer: metrics_io.MetricWriter
  preemption: multihost.Preemption
  eval_batches: Callable[[], Any]


def _is_host_step(run: '_Run', step: int) -> bool:
  every = (run.config.log_every_steps, run.config.checkpoint_every_steps)
  return run.plan.is_eval_step(step) or any(step % n == 0 for n in every)


def _interval_scalars(records: list[dict]) -> dict[str, float]:
  """Means over the steps since the last host step; the latest learning rate."""
  scalars = {k: float(np.mean([r[k] for r in records])) for k in records[0]}
  scalars['train/learning_rate'] = float(records[-1]['train/learning_rate'])
  return scalars


def _host_step(run: _Run, state: TrainState, step: int, pending: list,
               progress: metrics_io.Progress, preempted: bool) -> dict:
  """Checks, logs, saves and then evaluates at a host step.

  Returns:
    The scalars written.

  Raises:
    NonFiniteError: if a step since the last host step went non-finite; no
      checkpoint is written.
  """
  config, total = run.config, run.plan.num_train_steps
  records = jax.device_get(pending)
  bad = first_nonfinite(records, step - len(records) + 1)
  if bad is not None:
    bad_step, record = bad
    run.checkpointer.wait()
    message = (f'step {bad_step}: loss {record["train/loss"]} / gradient norm '
               f'{record["train/grad_norm"]} is not finite; stopped without '
               f'saving (last good checkpoint: step '
               f'{run.checkpointer.latest_step()}); lower learning_rate or '
               f'check the data')
    run.writer.write_diverged(bad_step, bad_step / run.plan.steps_per_epoch,
                              message)
    raise NonFiniteError(message)
  scalars = _interval_scalars(records)
  scalars.update(progress.update(step, scalars))
  run.writer.write_scalars(step, step / run.plan.steps_per_epoch, scalars)
  run.checkpointer.save(step, state, json.loads(config.to_json()),
                        force=preempted or step == total)
  if step == total or preempted:
    run.checkpointer.wait()
  if run.plan.is_eval_step(step) and not preempted:
    scalars.update(_evaluate_and_write(run, state, step))
  progress.restart()
  return scalars


def _evaluate_and_write(run: _Run, state: TrainState, step: int) -> dict:
  """Evaluates the moving average at `step` and writes its own record."""
  scalars = evaluate(run.eval_step, state.ema, run.eval_batches())
  logging.info('step %d: eval top-1 error %.4f, top-5 error %.4f over %d '
               'examples.', step, scalars['eval/top1_error'],
               scalars['eval/top5_error'], scalars['eval/num_examples'])
  run.writer.write_scalars(step, step / run.plan.steps_per_epoch, scalars)
  return scalars


def _train_loop(run: _Run, state: TrainState, start_step: int,
                train_batches: Any) -> tuple[TrainState, dict, bool]:
  """Runs the steps from `start_step` to the end (or to a preemption).

  Returns:
    (final state, scalars of the last host step, whether preempted).
  """
  total = run.plan.num_train_steps
  progress = metrics_io.Progress(start_step, total, run.config.batch_size)
  pending, scalars = [], {}
  for step in range(start_step + 1, total + 1):
    state, metrics = run.train_step(state, next(train_batches))
    pending.append(metrics)
    # Every process asks at every step: with several, it is collective.
    preempted = run.preemption.reached(step)
    if preempted or _is_host_step(run, step):
      scalars = _host_step(run, state, step, pending, progress, preempted)
      pending = []
      if preempted:
        return state, scalars, True
  return state, scalars, False


def recipe(config: Any, plan: plan_lib.Plan
           ) -> tuple[optax.Schedule, optax.GradientTransformation]:
  """The learning-rate schedule and the optimizer the config describes."""
  schedule = optim.learning_rate_schedule(
      plan.learning_rate, plan.steps_per_epoch, config.learning_rate_decay_rate,
      config.learning_rate_decay_epochs, config.warmup_epochs)
  tx = optim.optimizer_from_config(schedule, config)
  return schedule, tx


def _input_pipeline() -> Any:
  """The input pipeline module, imported on first use: it needs TensorFlow."""
  import input_pipeline  # pylint: disable=g-import-not-at-top
  return input_pipeline


def train_and_evaluate(config: Any, workdir: str) -> tuple[TrainState, dict]:
  """Trains (or resumes training) and evaluates, as `config` says.

  Args:
    config: the run's ConfigDict (see configs/default.py).
    workdir: where checkpoints, metrics.jsonl and TensorBoard files go; a
      checkpoint found there is resumed from.

  Returns:
    (final train state, scalars of the last host step, including the final
    evaluation unless the run was preempted).

  Raises:
    plan.ConfigError: for a bad config, before anything compiles.
    NonFiniteError: when the loss or gradient norm goes non-finite.
  """
  mesh = multihost.make_mesh()
  # The dataset is read (and TensorFlow imported) only once the config passes.
  plan = plan_lib.make_plan(
      config, jax.device_count(),
      lambda config: _input_pipeline().get_dataset_info(config))
  input_pipeline = _input_pipeline()
  model = models.create_model_from_config(config, plan.num_classes)
  schedule, tx = recipe(config, plan)
  checkpointer = checkpointing.Checkpointer(
      os.path.join(workdir, 'checkpoints'),
      every_steps=config.checkpoint_every_steps,
      max_to_keep=config.checkpoints_to_keep)
  start_step = checkpointer.latest_step() or 0
  owed = False
  if start_step:
    resume.check(checkpointer.restore_config(start_step),
                 checkpointer.restore_processes(start_step), config,
                 jax.process_count(), workdir)
    owed = _owed_evaluation(plan, workdir, start_step)
  elif config.init_from:
    weights = pretrained.load_checked(config)
  state, abstract, shardings = create_train_state(
      model, tx, config, mesh, materialize=start_step == 0)
  if start_step:
    state = checkpointer.restore(abstract)
  elif config.init_from:
    state = pretrained.merge(state, weights, shardings, config.init_from)
  writer = metrics_io.MetricWriter(workdir, is_main=jax.process_index() == 0,
                                   start_step=start_step)
  writer.write_parameter_overview(abstract.params)
  metrics_io.log_run_start(config, plan, mesh)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  train_step = jax.jit(
      make_train_step(model, tx, schedule, config, plan.batch_norm_groups),
      out_shardings=(shardings, replicated), donate_argnums=(0,))
  eval_step = jax.jit(make_eval_step(model), out_shardings=replicated)
  with multihost.Preemption() as preemption:
    run = _Run(config, plan, mesh, train_step, eval_step, checkpointer, writer,
               preemption, functools.partial(
                   input_pipeline.create_eval_iterator, config, mesh))
    try:
      state, scalars, preempted = _resume_and_train(
          run, state, start_step, owed, input_pipeline)
    finally:
      checkpointer.close()
      writer.close()
  if preempted:
    logging.warning('Preempted: checkpoint of step %d written; run the same '
                    'command to resume.', int(state.step))
  return state, scalars


def _owed_evaluation(plan: plan_lib.Plan, workdir: str, step: int) -> bool:
  """Whether the checkpoint's step was due an evaluation that never ran.

  A preempted run saves without evaluating, and a crash can stop one midway;
  the resumed run does it first. Every process reads the same shared file.
  """
  if not plan.is_eval_step(step):
    return False
  return not any(r['step'] == step and 'eval/top1_error' in r
                 for r in runs.read_metrics(workdir))


def _resume_and_train(run: _Run, state: TrainState, start_step: int,
                      owed: bool, input_pipeline: Any
                      ) -> tuple[TrainState, dict, bool]:
  """Does an owed evaluation, starts the input at `start_step`, trains."""
  scalars = {}
  if owed:
    logging.info('Evaluating step %d, which the interrupted run did not.',
                 start_step)
    scalars = _evaluate_and_write(run, state, start_step)
  if start_step >= run.plan.num_train_steps:
    logging.info('Already trained to step %d.', start_step)
    if not scalars:
      scalars = evaluate(run.eval_step, state.ema, run.eval_batches())
    return state, scalars, False
  if start_step:
    logging.info('Resuming from step %d.', start_step)
  train_batches = input_pipeline.create_train_iterator(
      run.config, run.mesh, start_step=start_step)
  state, later, preempted = _train_loop(run, state, start_step, train_batches)
  return state, later or scalars, preempted
