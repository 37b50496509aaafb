"""Default configuration: every field the code reads, each with why it exists.

Model, hardware and dataset variants import this file and override only what
differs. Command-line overrides use these names, e.g. `--config.batch_size=64`.
"""

import ml_collections


def get_model_config() -> ml_collections.ConfigDict:
  """Ablation knobs of the network; None keeps the network's published value."""
  m = ml_collections.ConfigDict()
  # Residual scale for the A, B and C residual blocks (released: 0.17, 0.10, 0.20).
  m.residual_scales = ml_collections.FieldReference(None, field_type=tuple)
  # Activation after the residual sum: 'relu' (paper), 'relu6' (also clips the
  # scaled residual to [-6, 6] before the sum, as TF-slim does) or 'none'.
  m.residual_activation = ml_collections.FieldReference(None, field_type=str)
  # BatchNorm on the residual sums; the paper keeps BN on traditional layers only.
  m.bn_on_sum = ml_collections.FieldReference(None, field_type=bool)
  # Dropout rate before the classifier (paper: keep 0.8, i.e. rate 0.2).
  m.dropout_rate = ml_collections.FieldReference(None, field_type=float)
  # Blocks per stage (A, B, C); small values give test and demo networks.
  m.repeats = ml_collections.FieldReference(None, field_type=tuple)
  # Multiplies every filter count: narrow demo networks, or the paper's wider nets.
  m.width_multiplier = ml_collections.FieldReference(None, field_type=float)
  # BatchNorm moving-average momentum and epsilon (released: 0.9997 and 1e-3).
  m.bn_momentum = ml_collections.FieldReference(None, field_type=float)
  m.bn_epsilon = ml_collections.FieldReference(None, field_type=float)
  # Average pools count padded cells (True: Flax/PyTorch default, timm's v3).
  # False is TensorFlow's rule, which the released graphs use.
  m.pool_count_include_pad = ml_collections.FieldReference(None, field_type=bool)
  # inception_resnet_v2_paper only: residual projections as printed in the
  # paper (1154 and 2048 filters, with a projection shortcut) instead of
  # matching their input (1152 and 2144).
  m.projection_as_printed = ml_collections.FieldReference(None, field_type=bool)
  return m


def get_config() -> ml_collections.ConfigDict:
  """Returns the default configuration."""
  config = ml_collections.ConfigDict()

  # ---- Model -------------------------------------------------------------
  # Network name, one of inception.models.MODEL_NAMES.
  config.model = 'inception_v4'
  # Auxiliary classifier where the network defines one (v3, slim's v4 and IRv2).
  config.aux_logits = False
  # Learn a BatchNorm scale (gamma); the released TF-slim graphs have none.
  config.bn_scale = False
  # Compute dtype: 'float32', or 'bfloat16' on GPUs. Parameters stay float32.
  config.dtype = 'float32'
  # Ablation knobs of the network.
  config.model_overrides = get_model_config()

  # ---- Data --------------------------------------------------------------
  # 'builtin' (generated shapes, no download), 'builtin_hard' (25 classes of
  # filled shapes among clutter, no download), a TFDS name ('imagenet2012'),
  # or 'folder:/path/to/images' (one subfolder per class).
  config.dataset = 'builtin'
  # TFDS data directory: prepared datasets, ImageNet's downloads/manual/ and
  # prepared image folders. None is TFDS's default (~/tensorflow_datasets).
  config.data_dir = ml_collections.FieldReference(None, field_type=str)
  # Splits in TFDS syntax; slices hold data out, e.g. 'train[:90%]'.
  config.train_split = 'train'
  config.eval_split = 'validation'
  # Side of the square network input (paper: 299; 75 is the networks' minimum).
  config.image_size = 299
  # Inception crop of the released training preprocessing.
  config.crop_min_object_covered = 0.1
  config.crop_aspect_ratio_range = (0.75, 1.33)
  config.crop_area_range = (0.05, 1.0)
  config.crop_max_attempts = 100
  # Training crops of up to train_canvas_size**2 pixels travel unresized
  # (uint8, packed in buffers of that many pixels) and the accelerator resizes
  # them; larger ones are resized on the host. At 384, 0.44 MB an image to the
  # device; the host resizes 5% of the crops of 500x375 images (ImageNet's
  # usual size), which saves it about a tenth of its work (README, Speed). At
  # least image_size.
  config.train_canvas_size = 384
  # TF-slim's fast colour distortion (random brightness, then saturation).
  config.color_distortion = True
  # Evaluation crop: 'central' (TF-slim: the fraction of each side, resized) or
  # 'resize_shorter' (timm: shorter side to image_size / fraction, centre crop).
  config.eval_crop = 'central'
  config.eval_crop_fraction = 0.875
  # Evaluation views per image: 'single', '12' or '144' (the paper's crops).
  config.eval_views = 'single'
  # --mode=eval: the checkpoint step to evaluate (None: the newest) and its
  # weights, 'ema' (the moving average, as the paper evaluates) or 'raw'.
  config.eval_step = ml_collections.FieldReference(None, field_type=int)
  config.eval_weights = 'ema'
  # Training examples shuffled together, held as encoded images in host memory
  # (2-3 windows of about 1.1 GB per 10,000 ImageNet images); a resume reads
  # at most one.
  config.shuffle_window = 10_000
  # Batches tf.data prepares ahead of training, per process.
  config.prefetch_batches = 2

  # ---- Training ----------------------------------------------------------
  # Global batch over all devices and hosts; must divide by the device count.
  config.batch_size = 256
  # Peak learning rate at `reference_batch_size` (paper: 0.045). The rate used
  # is learning_rate * batch_size / reference_batch_size (inception/plan.py).
  config.learning_rate = 0.045
  # Batch at which `learning_rate` holds: one 8-GPU host of 32 images each.
  config.reference_batch_size = 256
  # Staircase decay, as in the paper: x0.94 every 2 epochs.
  config.learning_rate_decay_rate = 0.94
  config.learning_rate_decay_epochs = 2.0
  # Linear warm-up from 0; the paper has none, large batches may need some.
  config.warmup_epochs = 0.0
  # Training length in epochs (the v3 paper trains 100).
  config.num_epochs = 100.0
  # When set, the number of steps to train; wins over num_epochs.
  config.num_train_steps = ml_collections.FieldReference(None, field_type=int)
  # RMSProp in TensorFlow's semantics (epsilon inside the square root,
  # accumulator starting at 1): decay, momentum and epsilon of the paper.
  config.rmsprop_decay = 0.9
  config.rmsprop_momentum = 0.9
  config.rmsprop_epsilon = 1.0
  # Clip gradients to this global norm (paper: 2.0); 0 turns clipping off.
  config.grad_clip_norm = 2.0
  # L2 weight decay (TF-slim: 4e-5) on the parameters optim.decay_mask marks:
  # 'kernel' (conv and dense weights), 'bias' (conv and dense biases, never
  # BatchNorm's), 'bn_bias' (BatchNorm offsets), 'scale' (a learned BN scale).
  # TF-slim's v3/v4 recipe is ('kernel',); its IRv2 recipe ('kernel', 'bias').
  # The penalty is logged as train/l2_loss (train/loss leaves it out).
  config.weight_decay = 4e-5
  config.weight_decay_param_names = ('kernel',)
  # Label smoothing of the targets (paper: 0.1).
  config.label_smoothing = 0.1
  # Weight of the auxiliary head's loss when `aux_logits` is on (paper: 0.4).
  config.aux_loss_weight = 0.4
  # Decay of the parameter and BatchNorm-statistics moving average that
  # evaluation uses (paper: "running average of the parameters"); 0 evaluates
  # the raw weights. Early steps use min(decay, (1+step)/(10+step)), as TF does.
  config.ema_decay = 0.9999
  # BatchNorm statistics over groups of this many images, like the paper's
  # per-replica BN; 0 uses the global batch.
  config.batch_norm_group_size = 0
  # Console progress, metric writes and non-finite checks happen this often.
  config.log_every_steps = 100
  # Evaluation (with the averaged weights) this often, in epochs, and always
  # at the end: the points of the error curves (Figures 8 to 11 of the paper).
  # 0 evaluates only at the end.
  config.eval_every_epochs = 0.0
  # Orbax checkpoint this often, at the end and on SIGTERM; keeps the last few.
  config.checkpoint_every_steps = 1000
  config.checkpoints_to_keep = 3
  # Compiled steps are kept here and reused by later runs that compile the
  # same programs (inception/compilation_cache.py); '' keeps none. The
  # environment variable JAX_COMPILATION_CACHE_DIR, where set, wins.
  config.compilation_cache_dir = '~/.cache/inception/xla'
  # Seeds parameters, dropout and the input order; resumed runs reuse it.
  config.seed = 0
  # Fine-tuning: a directory of converted weights (python -m inception.convert
  # --output) to start from; classifiers of another class count start fresh.
  # A run that resumes from its own checkpoint ignores it.
  config.init_from = ml_collections.FieldReference(None, field_type=str)
  # A resumed run must be the run that wrote the checkpoint: a field that
  # changes its steps (batch_size, seed, train_split, learning-rate settings,
  # ..., or 'processes', the process count) stops it in one line, unless
  # named here, comma-separated ('batch_size,seed'). The length (num_epochs,
  # num_train_steps), logging, saving and evaluation settings may always
  # change (inception/resume.py).
  config.allow_resume_changes = ''

  return config
