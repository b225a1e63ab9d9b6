"""analysis.learnability: N* on synthetic power-law and step curves, the extrapolated flag, curves that never
cross, the N*(f) law, and the leave-largest-size-out check."""

import math

import numpy as np
import pytest

from analysis import frontier
from analysis import learnability as lb
from analysis import powerlaw as pl

CHANCE = math.log(50)  # a 50-way task's chance loss


def _law(N, E, A, alpha):
  return E + A * np.asarray(N, float) ** -alpha


def _step(N, lo, hi, k, N0):
  return lo + (hi - lo) / (1 + np.exp(k * (np.log(np.asarray(N, float)) - math.log(N0))))


def _noisy(rng, L, sigma):
  return L * np.exp(sigma * rng.standard_normal(np.shape(L)))


# Power law whose halfway-to-E threshold is crossed at exactly 1e8: A = gap·1e8^α with gap = (chance − E)/2.
E, ALPHA = 1.0, 0.4
A = (CHANCE - E) / 2 * 1e8 ** ALPHA
N_STAR_TRUE = 1e8


def test_crossing_inverts_the_curve():
  rng = np.random.default_rng(0)
  for _ in range(20):
    p = {"E": rng.uniform(0.5, 2), "A": 10 ** rng.uniform(1, 4), "alpha": rng.uniform(0.1, 1.5)}
    t = p["E"] + rng.uniform(0.01, 3)
    assert pl.predict("powerlaw", p, lb.crossing("powerlaw", p, t)) == pytest.approx(t, rel=1e-10)
    q = {"L_lo": rng.uniform(0.01, 1), "L_hi": rng.uniform(2, 5), "k": rng.uniform(0.3, 10), "N0": 10 ** rng.uniform(6, 10)}
    t = rng.uniform(q["L_lo"], q["L_hi"])
    assert pl.predict("logistic", q, lb.crossing("logistic", q, t)) == pytest.approx(t, rel=1e-9)


def test_n_star_of_a_power_law_lands_in_its_ci():
  sizes = np.geomspace(1e7, 1e10, 7)
  N = np.repeat(sizes, 3)
  L = _noisy(np.random.default_rng(1), _law(N, E, A, ALPHA), 0.01)
  ns = lb.fit_n_star(N, L, chance=CHANCE, bootstrap=100)
  assert ns.ci[0] <= N_STAR_TRUE <= ns.ci[1], ns
  assert abs(math.log(ns.n_star / N_STAR_TRUE)) < 0.15 and ns.ci[0] <= ns.n_star <= ns.ci[1]
  assert not ns.extrapolated and ns.reason is None and ns.p_cross == 1.0
  assert ns.threshold == pytest.approx((CHANCE + ns.fit.params["E"]) / 2)


def test_n_star_of_a_step_lands_in_its_ci():
  lo, hi, k, N0 = 0.1, 4.6, 3.0, 3e8  # with chance = hi the halfway threshold is crossed at N0
  N = np.repeat(np.geomspace(1e6, 1e10, 9), 3)
  L = _noisy(np.random.default_rng(2), _step(N, lo, hi, k, N0), 0.02)
  ns = lb.fit_n_star(N, L, model="logistic", chance=hi, bootstrap=60)
  assert ns.method == "logistic" and ns.ci[0] <= N0 <= ns.ci[1], ns
  assert abs(math.log(ns.n_star / N0)) < 0.05 and not ns.extrapolated


def test_n_star_from_accuracy():
  # Accuracy climbs from 1% to 99%; 50% accuracy is halfway, crossed at N0.
  N0 = 1e8
  N = np.repeat(np.geomspace(1e6, 1e10, 9), 2)
  err = _noisy(np.random.default_rng(3), _step(N, 0.01, 0.99, 2.5, N0), 0.02)
  ns = lb.fit_n_star(N, 1 - err, metric="accuracy", model="logistic", threshold=0.5, bootstrap=0)
  assert ns.metric == "accuracy" and ns.threshold == 0.5
  assert abs(math.log(ns.n_star / N0)) < 0.1, ns


@pytest.mark.parametrize("lo_exp,hi_exp,beyond", [(6.0, 7.5, "above"), (8.5, 10.0, "below")])
def test_extrapolated_flag_outside_the_trained_sizes(lo_exp, hi_exp, beyond):
  sizes = np.geomspace(10 ** lo_exp, 10 ** hi_exp, 6)
  N = np.repeat(sizes, 2)
  ns = lb.fit_n_star(N, _law(N, E, A, ALPHA), chance=CHANCE, bootstrap=0)
  assert ns.extrapolated and ns.n_star == pytest.approx(N_STAR_TRUE, rel=1e-3)
  assert (ns.n_star > sizes.max()) if beyond == "above" else (ns.n_star < sizes.min())


def test_in_range_is_not_extrapolated():
  N = np.repeat(np.geomspace(1e7, 1e10, 6), 2)
  ns = lb.fit_n_star(N, _law(N, E, A, ALPHA), chance=CHANCE, bootstrap=0)
  assert not ns.extrapolated and ns.n_star == pytest.approx(N_STAR_TRUE, rel=1e-3)


def test_never_crossing_gives_inf_with_a_reason():
  # A task that is never learned: loss stays at chance at every size.
  N = np.repeat(np.geomspace(1e6, 1e10, 7), 2)
  flat = _noisy(np.random.default_rng(4), np.full(len(N), 4.6), 0.01)
  for model in ("powerlaw", "logistic"):
    ns = lb.fit_n_star(N, flat, model=model, threshold=2.3, bootstrap=39)
    assert ns.n_star == math.inf and "never" in ns.reason, ns
    assert ns.ci == (math.inf, math.inf) and ns.p_cross == 0.0 and not ns.extrapolated


def test_curve_below_threshold_everywhere_gives_nan_with_a_reason():
  N = np.repeat(np.geomspace(1e6, 1e10, 9), 2)
  ns = lb.fit_n_star(N, _step(N, 0.1, 4.6, 3.0, 3e8), model="logistic", threshold=10.0, bootstrap=0)
  assert math.isnan(ns.n_star) and "every size" in ns.reason


def test_frequency_law_recovers_gamma():
  gamma, c = 0.8, math.log(1e6) + 0.8 * math.log(0.1)  # N* = 1e6 at f = 0.1
  f = np.geomspace(1e-4, 1e-1, 6)
  rng = np.random.default_rng(5)
  ns = np.exp(c - gamma * np.log(f) + 0.05 * rng.standard_normal(len(f)))
  law = frontier.fit_frequency_law(list(f) + [1e-5], list(ns) + [math.inf])  # a never-learned task is left out
  assert law.n_points == 6 and len(law.excluded) == 1 and not law.weighted
  assert law.ci["gamma"][0] <= gamma <= law.ci["gamma"][1] and abs(law.gamma - gamma) < 0.1, law
  mid, lo, hi = law.predict(3e-3)
  assert lo <= math.exp(c - gamma * math.log(3e-3)) <= hi and lo < mid < hi


def test_frequency_law_end_to_end_from_step_curves():
  # Rarer tasks switch on later: N0(f) = 3e8·(f/1e-2)^-γ; each curve's N* is fitted, then the law.
  gamma = 0.5
  freqs = np.array([3e-3, 1e-2, 3e-2, 1e-1, 3e-1])
  N = np.repeat(np.geomspace(1e6, 1e11, 11), 2)
  rng = np.random.default_rng(6)
  stars = [lb.fit_n_star(N, _noisy(rng, _step(N, 0.1, 4.6, 3.0, 3e8 * (f / 1e-2) ** -gamma), 0.02),
                         model="logistic", chance=4.6, bootstrap=39, seed=i) for i, f in enumerate(freqs)]
  law = frontier.fit_frequency_law(freqs, stars)
  assert law.weighted and abs(law.gamma - gamma) < 0.05, law
  assert law.ci["gamma"][0] <= gamma <= law.ci["gamma"][1]


def test_leave_largest_out_predicts_the_held_out_size():
  sizes = np.geomspace(1e6, 1e10, 7)
  N = np.repeat(sizes, 3)
  L = _noisy(np.random.default_rng(7), _law(N, 1.8, 400.0, 0.35), 0.01)
  h = lb.leave_largest_out(N, L, chance=CHANCE, bootstrap=100)
  assert h.size == pytest.approx(1e10) and h.observed == pytest.approx(L[N == N.max()].mean())
  assert h.error == pytest.approx(h.predicted - h.observed)
  assert abs(h.predicted / _law(1e10, 1.8, 400.0, 0.35) - 1) < 0.03
  assert h.inside and h.interval[0] < h.predicted < h.interval[1]
  assert h.n_star_heldout.size_range[1] == pytest.approx(sizes[-2])
  assert h.n_star_full.size_range[1] == pytest.approx(sizes[-1])
  assert h.n_star_heldout.ci[0] <= h.n_star_full.n_star <= h.n_star_heldout.ci[1]


def test_bad_inputs_raise_one_line_errors():
  N = np.repeat(np.geomspace(1e6, 1e10, 5), 2)
  with pytest.raises(pl.FitError, match="needs >= 6 distinct sizes, got 5"):
    pl.choose_model(N, _law(N, E, A, ALPHA))
  with pytest.raises(pl.FitError, match=">= 2 frequencies with a finite N"):
    frontier.fit_frequency_law([0.1, 0.01], [1e8, math.inf])
  with pytest.raises(pl.FitError, match="metric="):
    lb.fit_n_star(N, _law(N, E, A, ALPHA), metric="perplexity", bootstrap=0)
