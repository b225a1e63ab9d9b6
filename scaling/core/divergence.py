"""Divergence: the first step at which training went bad, with one step and one reason to record.

For the loop (scaling/core/loop.py) to call on the per-step values it syncs anyway: `first_divergence(first_step,
loss, grad_norm, reference_loss=..., factor=...)` scans a window of steps and returns the first bad one --
a non-finite loss or gradient norm, or a loss above `factor` times the reference (the run's first logged loss: an
explosion that has not reached inf yet) -- so status.json's `step` and its reason name the same step. Values may
carry a member axis (the toy's stacked members): the reason then names the member.
"""

from __future__ import annotations

import dataclasses

import numpy as np

DEFAULT_FACTOR = 1e3


@dataclasses.dataclass(frozen=True)
class Divergence:
  step: int
  reason: str

  def status(self, total_steps: int) -> dict:
    """Keyword arguments for RunDir.write_status."""
    return {"state": "failed", "step": self.step, "total_steps": total_steps, "reason": self.reason}


def first_divergence(first_step: int, loss, grad_norm=None, *, reference_loss: float | None = None,
                     factor: float = DEFAULT_FACTOR, params_finite: bool = True) -> Divergence | None:
  """loss, grad_norm: (T,) or (T, M) values of steps first_step .. first_step+T-1. None when all is well.
  reference_loss: a float, or one per member (M,).

  params_finite=False (a check of the parameters after the window) makes the window's last step the culprit
  when nothing earlier is."""
  loss_TxM = np.asarray(loss, np.float64).reshape(len(loss), -1)
  gn_TxM = None if grad_norm is None else np.asarray(grad_norm, np.float64).reshape(len(loss), -1)
  fix = "lower train.learning_rate, raise train.warmup_steps or check the data"
  checks = [(~np.isfinite(loss_TxM), "non-finite training loss")]
  if gn_TxM is not None:
    checks.append((~np.isfinite(gn_TxM), "non-finite gradient norm"))
  ref = None if reference_loss is None else np.broadcast_to(np.asarray(reference_loss, np.float64),
                                                             loss_TxM.shape[1:])
  if ref is not None and np.isfinite(factor) and np.all(np.isfinite(ref)) and np.all(ref > 0):
    checks.append((loss_TxM > factor * ref, f"loss above {factor:g}x its first value (exploding)"))
  best = None
  for bad_TxM, what in checks:
    rows = np.flatnonzero(bad_TxM.any(axis=1))
    if rows.size and (best is None or rows[0] < best[0]):
      best = (int(rows[0]), what, int(np.flatnonzero(bad_TxM[rows[0]])[0]))
  if best is None:
    if not params_finite:
      step = first_step + len(loss_TxM) - 1
      return Divergence(step, f"non-finite parameters by step {step}; {fix}")
    return None
  row, what, member = best
  step = first_step + row
  who = f" (member {member})" if loss_TxM.shape[1] > 1 else ""
  return Divergence(step, f"{what} at step {step}{who}; {fix}")
