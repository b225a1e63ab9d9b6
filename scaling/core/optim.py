"""Optimizer and learning-rate schedules (optax).

AdamW with linear warmup, then one of
  cosine    cosine decay from the peak to min_lr_ratio·peak at the last step
  wsd       warmup-stable-decay: constant, then linear decay to min_lr_ratio·peak over the last decay_fraction
  constant  constant after warmup
Global-norm gradient clipping; weight decay skips norm scales, DoRA magnitudes (both multiplicative gains, which
decay would pull to zero) and (by default) the embeddings.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("cosine", "wsd", "constant")


def lr_schedule(t: Any) -> optax.Schedule:
  peak, steps, warmup = float(t.learning_rate), int(t.steps), int(t.warmup_steps)
  floor = peak * float(t.min_lr_ratio)
  warm = optax.linear_schedule(0.0, peak, max(warmup, 1)) if warmup > 0 else optax.constant_schedule(peak)
  rest = max(steps - warmup, 1)
  if t.schedule == "cosine":
    after = optax.cosine_decay_schedule(peak, rest, alpha=floor / peak if peak else 0.0)
  elif t.schedule == "wsd":
    decay = max(int(round(rest * float(t.decay_fraction))), 1)
    after = optax.join_schedules([optax.constant_schedule(peak), optax.linear_schedule(peak, floor, decay)],
                                 [rest - decay])
  elif t.schedule == "constant":
    after = optax.constant_schedule(peak)
  else:
    raise ValueError(f"train.schedule={t.schedule!r} is not one of {SCHEDULES}")
  return optax.join_schedules([warm, after], [warmup]) if warmup > 0 else after


def decay_mask(params: Any, decay_embeddings: bool) -> Any:
  """True where weight decay applies: matrices, not norm scales or DoRA magnitudes (nor embeddings unless asked)."""

  def keep(path, _):
    keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    if keys and keys[-1] in ("scale", "magnitude"):
      return False
    if not decay_embeddings and keys and keys[0] in ("embed", "unembed"):
      return False
    return True

  return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(t: Any) -> optax.GradientTransformation:
  schedule = lr_schedule(t)
  parts = []
  if t.grad_clip and t.grad_clip > 0:
    parts.append(optax.clip_by_global_norm(float(t.grad_clip)))
  parts.append(optax.adamw(schedule, b1=float(t.b1), b2=float(t.b2), eps=float(t.eps),
                           weight_decay=float(t.weight_decay),
                           mask=lambda p: decay_mask(p, bool(t.decay_embeddings))))
  return optax.chain(*parts)


def global_norm(tree: Any) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))
