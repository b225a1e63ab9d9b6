"""Divergence detection names the first bad step, whatever the kind of badness, and the member."""

import numpy as np

from scaling.core.divergence import first_divergence


def test_healthy_window_is_none():
  assert first_divergence(1, [3.0, 2.9, 2.8], [1.0, 1.0, 1.0], reference_loss=3.0) is None


def test_first_bad_step_wins_across_kinds():
  loss = [3.0, 2.0, np.nan, 1.0]
  gn = [1.0, np.inf, 1.0, 1.0]
  d = first_divergence(11, loss, gn, reference_loss=3.0)
  assert d.step == 12 and d.reason.startswith("non-finite gradient norm at step 12")
  assert d.status(100) == {"state": "failed", "step": 12, "total_steps": 100, "reason": d.reason}


def test_explosion_before_inf_and_the_member_is_named():
  loss_TxM = np.array([[1.0, 1.0], [1.0, 5e3], [1.0, 1e31]])
  d = first_divergence(1, loss_TxM, np.ones_like(loss_TxM), reference_loss=1.0)
  assert d.step == 2 and "exploding" in d.reason and "(member 1)" in d.reason


def test_non_finite_parameters_blame_the_window_end():
  d = first_divergence(5, [1.0, 1.0], params_finite=False)
  assert d.step == 6 and d.reason.startswith("non-finite parameters by step 6")
