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
  # Activation after the residual sum: 'relu' (paper), 'relu6' or 'none'.
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
  # (input pipeline fields go here)

  # ---- Training ----------------------------------------------------------
  # (training fields go here)

  return config
