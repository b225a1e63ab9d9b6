"""analysis.profile: profile-likelihood intervals equal a brute-force profile, contain known truths, flag an
unidentified floor, give N* its interval and P(cross), and band the fitted curve."""

import math

import numpy as np
import pytest
from scipy import optimize, stats

from analysis import fitcore, profile, targets
from analysis import powerlaw as pl

SIZES = np.geomspace(1e6, 1e9, 7)


def _law(N, E, A, alpha):
  return E + A * np.asarray(N, float) ** -alpha


def _data(seed, E=1.0, alpha=0.5, sigma=0.02, seeds=3, sizes=SIZES):
  rng = np.random.default_rng(seed)
  N = np.repeat(sizes, seeds)
  A = 2.0 * 3e7 ** alpha  # reducible part 2 at N = 3e7
  return N, _law(N, E, A, alpha) * np.exp(sigma * rng.standard_normal(len(N))), A


def _brute_profile_alpha(fit, alpha):
  """min over (log A, E >= 0) of the RSS in log space at fixed α, from many starts (scipy, independent code)."""
  x, y = np.log(np.exp(fit._logX[:, 0])), fit._y

  def rss(p):
    a, E = p
    with np.errstate(divide="ignore"):
      return float(((np.logaddexp(np.log(max(E, 0.0)), a - alpha * x) - y) ** 2).sum())
  best = math.inf
  for a0 in np.linspace(-5, 15, 9):
    for E0 in (0.0, 0.5, 1.0, 1.5):
      r = optimize.minimize(rss, [a0, E0], method="L-BFGS-B", bounds=[(None, None), (0.0, None)])
      best = min(best, r.fun)
  return best


def test_alpha_interval_matches_a_brute_force_profile():
  N, L, _ = _data(0)
  fit = pl.fit_powerlaw(N, L, delta=None, ci="profile")
  lo, hi = fit.ci["alpha"]
  rss_hat = 2 * fitcore.huber(np.log(fit.predict(N)) - np.log(L), None).sum()
  s2 = rss_hat / (len(L) - 3)
  crit = stats.t.ppf(0.975, len(L) - 3) ** 2
  # At each end the independent profile sits on the critical value; just inside it is below, just outside above.
  for end, inward in ((lo, +1), (hi, -1)):
    lam = (_brute_profile_alpha(fit, end) - rss_hat) / s2
    assert lam == pytest.approx(crit, rel=0.02), (end, lam, crit)
    assert (_brute_profile_alpha(fit, end + inward * 0.2 * (hi - lo)) - rss_hat) / s2 < crit
    assert (_brute_profile_alpha(fit, end - inward * 0.2 * (hi - lo)) - rss_hat) / s2 > crit


def test_intervals_hold_the_truth_and_record_the_method():
  N, L, A = _data(1)
  fit = pl.fit_powerlaw(N, L, delta=None, ci="profile")
  assert fit.ci_method == "profile" and fit.to_dict()["ci_method"] == "profile"
  assert "profile likelihood" in fit.to_dict()["ci_method_description"]
  for k, v in {"E": 1.0, "A": A, "alpha": 0.5}.items():
    assert fit.ci[k][0] < v < fit.ci[k][1], (k, fit.ci[k])
    assert fit.ci[k][0] < fit.params[k] < fit.ci[k][1]
  assert fit.identified == {"E": True, "A": True, "alpha": True}
  # Ten times the noise: intervals widen by roughly ten.
  N2, L2, _ = _data(1, sigma=0.2)
  wide = pl.fit_powerlaw(N2, L2, delta=None, ci="profile")
  assert 4 < np.diff(wide.ci["alpha"])[0] / np.diff(fit.ci["alpha"])[0] < 25


def test_a_flat_curve_leaves_the_floor_unidentified():
  # Over one decade a curve with α = 0.05 changes by 11% of its reducible part, inside 3% noise: any floor from 0
  # up to near the data fits, so E's interval spans most of what the data allow and the fit says so.
  N, L, _ = _data(2, alpha=0.05, sigma=0.03, sizes=np.geomspace(1e6, 1e7, 5))
  fit = pl.fit_powerlaw(N, L, delta=None, ci="profile")
  lo, hi = fit.ci["E"]
  ceiling = math.exp(fit._y.min() + fit._e_margin)
  assert fit.identified["E"] is False
  assert lo == 0.0 and hi > profile.FLAT_FLOOR * ceiling
  # The same curve over three decades with α = 0.5 pins the floor.
  N, L, _ = _data(2, alpha=0.5, sigma=0.03)
  assert pl.fit_powerlaw(N, L, delta=None, ci="profile").identified["E"] is True


def test_n_star_interval_and_p_cross():
  N, L, A = _data(3)
  fit = pl.fit_powerlaw(N, L, delta=None, ci="profile")
  t = targets.Threshold(2.0)  # crossed where the reducible part is 1: N* = (A / 1)^(1/α)
  n, (lo, hi), p = profile.n_star_interval(fit, t)
  assert lo < A ** 2 < hi and lo < n < hi and p > 0.999
  # A threshold below the floor: never crossed, with confidence.
  n, (lo, hi), p = profile.n_star_interval(fit, targets.Threshold(0.5))
  assert n == math.inf and (lo, hi) == (math.inf, math.inf) and p < 0.01
  # A threshold just above the fitted floor: crossing far beyond the sizes, the data cannot exclude "never".
  n, (lo, hi), p = profile.n_star_interval(fit, targets.Threshold(fit.params["E"] * 1.01))
  assert hi == math.inf and 0.05 < p < 0.975 and lo > N.max()
  # A fixed floor above the threshold rules the crossing out exactly.
  fixed = pl.fit_powerlaw(N, L, fix_E=1.2, delta=None, ci="profile")
  assert profile.n_star_interval(fixed, targets.Threshold(1.1)) == (math.inf, (math.inf, math.inf), 0.0)


def test_curve_band_holds_the_true_curve():
  N, L, A = _data(4)
  fit = pl.fit_powerlaw(N, L, delta=None, ci="profile")
  grid = np.geomspace(1e6, 1e9, 9)
  lo, hi = profile.curve_band(fit, grid)
  truth = _law(grid, 1.0, A, 0.5)
  assert np.all(lo < fit.predict(grid)) and np.all(fit.predict(grid) < hi)
  assert np.mean((lo <= truth) & (truth <= hi)) >= 7 / 9
  assert np.all(hi / lo < 1.2)


def test_logistic_and_huber_profiles():
  rng = np.random.default_rng(5)
  N = np.repeat(np.geomspace(1e6, 1e10, 9), 2)
  L = (0.1 + 4.5 / (1 + np.exp(2.0 * (np.log(N) - math.log(3e8))))) * np.exp(0.02 * rng.standard_normal(len(N)))
  fit = pl.fit_logistic(N, L, delta=None, ci="profile")
  assert fit.ci["N0"][0] < 3e8 < fit.ci["N0"][1] and fit.ci["k"][0] < 2.0 < fit.ci["k"][1]
  n, (lo, hi), p = profile.n_star_interval(fit, targets.Threshold(2.35))  # the step's midpoint: N0
  assert lo < 3e8 < hi and p > 0.999
  # Huber with δ at ~1.3 noise scales: nearly the least-squares interval on Gaussian noise.
  Np, Lp, _ = _data(6)
  ls = pl.fit_powerlaw(Np, Lp, delta=None, ci="profile").ci["alpha"]
  hub = pl.fit_powerlaw(Np, Lp, delta=0.027, ci="profile").ci["alpha"]
  assert np.diff(hub)[0] == pytest.approx(np.diff(ls)[0], rel=0.3) and hub[0] < 0.5 < hub[1]
