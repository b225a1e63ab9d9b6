"""The training objective per token: cross-entropy plus the optional z-loss (PaLM's logsumexp² penalty)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _ce_and_lse(logits_BxLxV, targets_BxL):
  """(cross-entropy, logsumexp of the logits) per token, in float32."""
  logits = logits_BxLxV.astype(jnp.float32)
  vocab_V = jnp.arange(logits.shape[-1], dtype=targets_BxL.dtype)
  target_logit_BxL = jnp.sum(jnp.where(vocab_V == targets_BxL[..., None], logits, 0.0), axis=-1)
  lse_BxL = jax.nn.logsumexp(logits, axis=-1)
  return lse_BxL - target_logit_BxL, lse_BxL


def token_losses(logits_BxLxV, targets_BxL):
  """Cross-entropy (nats) of each target token: logsumexp(logits) − the target's logit, picked by a masked sum
  (no gather, so the backward pass has no scatter)."""
  return _ce_and_lse(logits_BxLxV, targets_BxL)[0]


def token_objective(logits_BxLxV, targets_BxL, z_loss: float):
  """(objective, cross-entropy) per token, (B, L) each: objective = CE + z_loss · logsumexp(logits)²."""
  ce_BxL, lse_BxL = _ce_and_lse(logits_BxLxV, targets_BxL)
  if not z_loss:
    return ce_BxL, ce_BxL
  return ce_BxL + z_loss * lse_BxL**2, ce_BxL


def weighted_sums(logits_BxLxV, batch, z_loss: float):
  """(objective sum, (CE sum, weight sum)) over the batch's weighted tokens: sums, not means, so microbatches
  combine exactly (the caller divides gradients by the total weight). The sums are dots, not fused reductions,
  so they add in the same order inside `train_steps`' scan as in one step."""
  w = batch["weights"].astype(jnp.float32).ravel()
  obj_BxL, ce_BxL = token_objective(logits_BxLxV, batch["targets"], z_loss)
  return jnp.dot(obj_BxL.ravel(), w), (jnp.dot(ce_BxL.ravel(), w), jnp.sum(w))
