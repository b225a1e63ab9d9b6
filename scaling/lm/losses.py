"""The training objective per token: cross-entropy plus the optional z-loss (PaLM's logsumexp² penalty)."""

from __future__ import annotations

import jax
import optax


def token_losses(logits_BxLxV, targets_BxL):
  """Cross-entropy (nats) of each target token."""
  return optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, targets_BxL)


def token_objective(logits_BxLxV, targets_BxL, z_loss: float):
  """(objective, cross-entropy) per token, (B, L) each: objective = CE + z_loss · logsumexp(logits)²."""
  ce_BxL = token_losses(logits_BxLxV, targets_BxL)
  if not z_loss:
    return ce_BxL, ce_BxL
  return ce_BxL + z_loss * jax.nn.logsumexp(logits_BxLxV, axis=-1) ** 2, ce_BxL
