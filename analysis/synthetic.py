"""Synthetic curves with known laws, and one-draw checks of the fits' intervals (benchmarks/fit_coverage.py and
tests/analysis/test_coverage.py run them over grids).

powerlaw_draw: L = E + A·N^-α with log-normal seed noise σ, the truth drawn per draw: E ~ U(0.5, 2); 5–8 sizes
  spanning 2–3 decades from 1e5–1e7; A such that the reducible part at the middle size is E·10^U(−0.5, 0.5) (so
  steep curves flatten inside the sizes); N* at a fixed threshold t placed between 30% and 70% of the way through
  the sizes (log scale).
frontier_draw: per frequency f (n_freqs, spanning ×16), a power law whose crossing of a fixed threshold is at
  N*(f) = N0·f^-γ, fitted per frequency, then the frontier.
"""

from __future__ import annotations

import math

import numpy as np

from analysis import bootstrap, fitcore, frontier, learnability, profile, targets
from scaling.core.errors import FitError

PARAMS = ("E", "A", "alpha", "n_star")


def powerlaw_draw(rng, alpha, sigma, n_seeds, n_sizes=None):
  """-> (N (n,), L (n,), truth {E, A, alpha, n_star}, threshold t)."""
  E = rng.uniform(0.5, 2.0)
  n_sizes = int(rng.integers(5, 9)) if n_sizes is None else n_sizes
  lo, dec = rng.uniform(5, 7), rng.uniform(2, 3)
  sizes = np.geomspace(10 ** lo, 10 ** (lo + dec), n_sizes)
  A = E * 10 ** rng.uniform(-0.5, 0.5) * (10 ** (lo + dec / 2)) ** alpha
  n_star = 10 ** rng.uniform(lo + 0.3 * dec, lo + 0.7 * dec)
  N = np.repeat(sizes, n_seeds)
  L = (E + A * N ** -alpha) * np.exp(sigma * rng.standard_normal(len(N)))
  return N, L, {"E": E, "A": A, "alpha": alpha, "n_star": n_star}, E + A * n_star ** -alpha


def check_powerlaw(N, L, truth, t, method="profile", n_boot=199, seed=0, n_starts=fitcore.N_STARTS):
  """One draw: {param: covered}, the estimates, and whether E was flagged unidentified."""
  seeds = np.tile(np.arange(int(np.sum(N == N[0]))), len(np.unique(N)))
  fit = fitcore.fit_point("powerlaw", N, L, delta=None, seeds=seeds, n_starts=n_starts)
  if method == "profile":
    fit = profile.with_profile_ci(fit)
    _, ci_n, _ = profile.n_star_interval(fit, targets.Threshold(t))
  else:
    fit = bootstrap.bootstrap(fit, n_boot, seed=seed, progress=False)
    ci_n = learnability._order_ci(targets.crossing_of("powerlaw", fit.samples, targets.Threshold(t)), 0.95)
  ci = dict(fit.ci, n_star=ci_n)
  est = dict(fit.params, n_star=float(targets.crossing_of("powerlaw", fit.params, targets.Threshold(t))))
  return {"covered": {k: bool(ci[k][0] <= truth[k] <= ci[k][1]) for k in PARAMS},
          "rel_error": {k: est[k] / truth[k] - 1 for k in ("E", "alpha")},
          "unidentified": not fit.identified.get("E", True), "method": fit.ci_method}


def frontier_draw(rng, gamma, n_freqs=4, sigma=0.02, n_seeds=2, n_sizes=6, alpha=0.5):
  """-> ([(f, N, L)], truth {gamma, c}, threshold t)."""
  E = rng.uniform(0.5, 1.5)
  freqs = np.geomspace(1.0, 16.0, n_freqs)
  lo = rng.uniform(5, 6)
  sizes = np.geomspace(10 ** lo, 10 ** (lo + 2.5), n_sizes)
  n0 = 10 ** (lo + 1.6)  # N* at f = 1 inside the upper part of the sizes; rarer = larger
  t = E * (1 + 10 ** rng.uniform(-0.5, 0))
  curves = []
  for f in freqs:
    ns = n0 * f ** -gamma
    A = (t - E) * ns ** alpha
    N = np.repeat(sizes, n_seeds)
    curves.append((float(f), N, (E + A * N ** -alpha) * np.exp(sigma * rng.standard_normal(len(N)))))
  return curves, {"gamma": gamma, "c": math.log(n0)}, t


def check_frontier(curves, truth, t, n_starts=4):
  """One draw: the fitted exponent, its interval and whether it holds the truth (None when no law)."""
  stars = []
  for _, N, L in curves:
    fit = fitcore.fit_point("powerlaw", N, L, delta=None, n_starts=n_starts)
    fit.ci_method, fit.ci_level = "profile", 0.95
    stars.append(learnability.n_star(fit, threshold=t))
  try:
    law = frontier.fit_frequency_law([c[0] for c in curves], stars)
  except FitError:
    return None
  lo, hi = law.ci["gamma"] if law.ci else (math.nan, math.nan)
  return {"gamma": law.gamma, "ci": (lo, hi), "covered": bool(lo <= truth["gamma"] <= hi), "law": law}
