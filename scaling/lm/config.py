"""Resolving and validating language-model experiment configs (configs/lm.py).

`resolve` fills the None fields (model dims from the ladder, run settings from the size) and returns a new,
locked config; `validate` checks everything that can be checked before touching a device and raises
`ConfigError` with one line that names the key and the fix. The trainer calls both before any compute.
"""

from __future__ import annotations

import math
from typing import Any

from ml_collections import config_dict

from scaling.core import optim
from scaling.core.errors import ConfigError
from scaling.lm import ladder, sharding
from scaling.lm import model as transformer
from scaling.lm.data import mixture
from scaling.mechanisms import settings as mechanisms

DISTRIBUTED_MODES = ("auto", "off", "on")


def model_config(config: Any) -> transformer.TransformerConfig:
  return transformer.TransformerConfig.from_config(config.model)


def resolve(config: config_dict.ConfigDict, experiment: str = "lm") -> config_dict.ConfigDict:
  """Fills None fields; never mutates the input. `experiment`: the kind of config the caller runs (fine-tuning
  configs are lm configs with a `finetune` section)."""
  c = config_dict.ConfigDict(config.to_dict())  # a plain (placeholder-free) copy
  _check_experiment(c, experiment)
  m, t = c.model, c.train
  if m.size != "custom":
    try:
      shape = ladder.model_shape(m.size)
    except ValueError as e:
      raise ConfigError(str(e)) from None
    for k in ("d_model", "n_layers", "n_heads", "d_ff"):
      if m[k] is None:
        m[k] = getattr(shape, k)
  else:
    missing = [k for k in ("d_model", "n_layers", "n_heads", "d_ff") if m[k] is None]
    if missing:
      raise ConfigError(f"model.size='custom' needs explicit {', '.join('model.' + k for k in missing)}")
  if m.vocab_size is None:
    m.vocab_size = c.data.vocab_size
  if None in (t.steps, t.batch_size, t.learning_rate, t.warmup_steps):
    _check_model(c)  # run settings need a valid model
    n = transformer.param_counts(model_config(c))["non_embedding"]
    rs = ladder.run_settings(n, c.data.seq_len, tokens_per_param=t.tokens_per_param)
    t.steps = rs.steps if t.steps is None else t.steps
    t.batch_size = rs.batch_size if t.batch_size is None else t.batch_size
    t.learning_rate = rs.learning_rate if t.learning_rate is None else t.learning_rate
    t.warmup_steps = min(rs.warmup_steps, max(t.steps // 2, 0)) if t.warmup_steps is None else t.warmup_steps
  c.lock()
  return c


def _check_model(c) -> None:
  try:
    transformer.validate(model_config(c))
  except ValueError as e:
    raise ConfigError(str(e)) from None


def _positive(value, key: str, allow_zero: bool = False) -> None:
  ok = value is not None and (value >= 0 if allow_zero else value > 0)
  if not ok or (isinstance(value, float) and not math.isfinite(value)):
    bound = "non-negative" if allow_zero else "positive"
    raise ConfigError(f"{key}={value!r} must be {bound}")


def _check_experiment(c, experiment: str = "lm") -> None:
  if experiment != "lm" and c.get("experiment") == experiment:
    return
  if c.get("experiment") != "lm":
    raise ConfigError(f"experiment={c.get('experiment')!r}: scaling.train runs 'lm' configs "
                      "(configs/lm.py); toy configs run with python -m scaling.toy_train")


def validate(c: config_dict.ConfigDict, n_devices: int | None = None, n_processes: int = 1) -> None:
  """Raises ConfigError on the first problem found. `n_devices`: global device count (mesh checks)."""
  _check_experiment(c)
  _check_model(c)
  if c.model.vocab_size < c.data.vocab_size:
    raise ConfigError(f"model.vocab_size={c.model.vocab_size} is smaller than data.vocab_size="
                      f"{c.data.vocab_size}; leave model.vocab_size unset to use the data's")
  _positive(c.data.seq_len, "data.seq_len")
  _positive(c.data.vocab_size, "data.vocab_size")
  t = c.train
  _positive(t.steps, "train.steps")
  _positive(t.batch_size, "train.batch_size")
  _positive(t.learning_rate, "train.learning_rate")
  _positive(t.warmup_steps, "train.warmup_steps", allow_zero=True)
  if t.warmup_steps > t.steps:
    raise ConfigError(f"train.warmup_steps={t.warmup_steps} exceeds train.steps={t.steps}; lower the warmup")
  if t.schedule not in optim.SCHEDULES:
    raise ConfigError(f"train.schedule={t.schedule!r} is not one of {optim.SCHEDULES}")
  if not 0 <= t.min_lr_ratio <= 1:
    raise ConfigError(f"train.min_lr_ratio={t.min_lr_ratio} must be in [0, 1]")
  if t.schedule == "wsd" and not 0 < t.decay_fraction <= 1:
    raise ConfigError(f"train.decay_fraction={t.decay_fraction} must be in (0, 1] for the wsd schedule")
  _positive(t.grad_clip, "train.grad_clip", allow_zero=True)
  _positive(t.get("divergence_factor", 0.0), "train.divergence_factor", allow_zero=True)
  _positive(t.weight_decay, "train.weight_decay", allow_zero=True)
  _positive(t.grad_accum, "train.grad_accum")
  _positive(t.get("steps_per_call", 1), "train.steps_per_call")
  _positive(t.log_every, "train.log_every")
  _positive(t.eval_every, "train.eval_every", allow_zero=True)
  if not (0 <= t.b1 < 1 and 0 <= t.b2 < 1):
    raise ConfigError(f"train.b1={t.b1}, train.b2={t.b2} must lie in [0, 1)")
  _positive(c.checkpoint.every, "checkpoint.every")
  _positive(c.checkpoint.keep, "checkpoint.keep")
  if c.sharding.preset not in sharding.PRESETS:
    raise ConfigError(f"sharding.preset={c.sharding.preset!r} is not one of {tuple(sharding.PRESETS)}")
  if c.distributed.mode not in DISTRIBUTED_MODES:
    raise ConfigError(f"distributed.mode={c.distributed.mode!r} is not one of {DISTRIBUTED_MODES}")
  if t.batch_size % n_processes:
    raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by the {n_processes} processes")
  if n_devices is not None:
    try:
      data, fsdp, _ = sharding.resolve_mesh_shape(c.mesh, n_devices)
    except sharding.ShardingError as e:
      raise ConfigError(str(e)) from None
    dp = data * fsdp
    if t.batch_size % dp:
      raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by the data-parallel size "
                        f"data*fsdp={dp}; use a multiple of {dp}")
    if (t.batch_size // dp) % t.grad_accum:
      raise ConfigError(f"per-device batch {t.batch_size // dp} is not divisible by train.grad_accum="
                        f"{t.grad_accum}; pick grad_accum dividing it")
  _check_data(c)
  mechanisms.validate_config(c)


def _check_data(c) -> None:
  """Source, tasks and mixture (scaling/lm/data/mixture.py), as one-line ConfigErrors."""
  try:
    mixture.validate_config(c)
  except ConfigError:
    raise
  except ValueError as e:
    raise ConfigError(str(e)) from None


def summary(c: config_dict.ConfigDict) -> dict:
  """The run-dir summary (scaling/core/rundir.py SUMMARY_KEYS) of a resolved config."""
  mc = model_config(c)
  counts = transformer.param_counts(mc)
  return {
      "size": c.model.size,
      "n_params": counts["total"],
      "n_params_non_embedding": counts["non_embedding"],
      "seed": c.seed,
      "total_steps": c.train.steps,
      "batch_size": c.train.batch_size,
      "seq_len": c.data.seq_len,
      "tokens_per_step": c.train.batch_size * c.data.seq_len,
      "flops_per_token": transformer.flops_per_token(mc, c.data.seq_len),
      "tasks": _task_summary(c),
  }


def _task_summary(c) -> dict:
  return mixture.Mixture.from_config(c).summary()
