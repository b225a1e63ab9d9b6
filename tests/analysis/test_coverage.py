"""Calibration on synthetic curves with known parameters (a reduced grid; benchmarks/fit_coverage.py runs the full
α × σ × seeds grid): 95% profile intervals of E, A, α and N* hold the truth in 90–98% of 240 draws, the point
estimates are unbiased at σ = 0.005, and the frontier's exponent interval holds the true γ."""

import numpy as np

from analysis import synthetic

# (α, σ, seeds per size): steep and shallow curves, curves that flatten inside the sizes (α = 1.5), 2–5 seeds.
CELLS = [(0.1, 0.002, 2), (0.3, 0.005, 2), (0.6, 0.02, 3), (1.0, 0.05, 5), (1.5, 0.005, 3), (1.5, 0.05, 2)]
DRAWS = 40  # per cell: 240 in all, so a 95% coverage has a binomial s.e. of 0.014


def _draws():
  out = {}
  for alpha, sigma, seeds in CELLS:
    rs = []
    for i in range(DRAWS):
      rng = np.random.default_rng([i, int(alpha * 1000), int(sigma * 1e5), seeds, 17])
      N, L, truth, t = synthetic.powerlaw_draw(rng, alpha, sigma, seeds)
      rs.append(synthetic.check_powerlaw(N, L, truth, t, n_starts=4))
    out[(alpha, sigma, seeds)] = rs
  return out


def test_profile_intervals_are_calibrated_and_estimates_unbiased():
  res = _draws()
  every = [r for rs in res.values() for r in rs]
  assert len(every) >= 200
  coverage = {k: float(np.mean([r["covered"][k] for r in every])) for k in synthetic.PARAMS}
  assert all(0.90 <= c <= 0.98 for c in coverage.values()), coverage
  for (alpha, sigma, _), rs in res.items():
    if sigma == 0.005:
      for k in ("alpha", "E"):
        bias = float(np.mean([r["rel_error"][k] for r in rs]))
        assert abs(bias) < 0.02, (alpha, k, bias)


def test_frontier_exponent_interval_holds_the_truth():
  hits = []
  for gamma in (0.5, 1.0):
    for i in range(15):
      r = synthetic.check_frontier(*synthetic.frontier_draw(np.random.default_rng([i, int(gamma * 10), 3]), gamma))
      assert r is not None
      hits.append(r["covered"])
  assert np.mean(hits) >= 0.9, np.mean(hits)
