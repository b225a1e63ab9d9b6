"""Model-free N* for curves with too few sizes to fit."""

import math

import numpy as np

from analysis import curves


def _curve(N, y, metric="accuracy", chance=0.5):
  N, y = np.asarray(N, float), np.asarray(y, float)
  return curves.Curve(id="c", kind="task", task="cmp", metric=metric, key=f"eval/cmp/{metric}", x_name="N",
                      condition={}, N=N, y=y, seeds=np.zeros_like(N), runs=[], chance=chance)


def test_crossing_is_log_interpolated_between_bracketing_sizes():
  # Means 0.5, 0.6, 0.9 at 1e4, 1e5, 1e6: threshold = 0.5 + (0.9-0.5)/2 = 0.7, reached 1/3 of the way (in value)
  # from 1e5 to 1e6, i.e. at 10^(5 + 1/3).
  c = _curve([1e4, 1e4, 1e5, 1e5, 1e6, 1e6], [0.5, 0.5, 0.55, 0.65, 0.9, 0.9])
  x = curves.interpolated_crossing(c)
  assert math.isclose(x.threshold, 0.7)
  assert math.isclose(x.n_star, 10 ** (5 + 1 / 3), rel_tol=1e-9)


def test_loss_curves_cross_downwards_and_never_learned_is_inf():
  x = curves.interpolated_crossing(_curve([1e4, 1e5, 1e6], [4.0, 3.0, 1.0], metric="loss", chance=5.0))
  assert math.isclose(x.threshold, 3.0) and math.isclose(x.n_star, 1e5)
  never = curves.interpolated_crossing(_curve([1e4, 1e5, 1e6], [0.01, 0.02, 0.01]))
  assert never.n_star == math.inf and "no size beats chance" in never.note


def test_fit_curve_attaches_crossing_only_when_too_few_sizes():
  few = curves.fit_curve(_curve([1e4, 1e5, 1e6], [0.5, 0.6, 0.9]), bootstrap=0)
  assert few.status == "skipped" and few.interpolated is not None
  assert "interpolated_n_star" in few.to_dict()
