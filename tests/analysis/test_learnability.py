"""analysis.learnability: N* on synthetic power-law and step curves, the extrapolated flag, curves that never
cross, thresholds in task units, and the leave-largest-size-out check (the N*(f) law: test_frontier.py)."""

import math

import numpy as np
import pytest

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
  with pytest.raises(pl.FitError, match="metric="):
    lb.fit_n_star(N, _law(N, E, A, ALPHA), metric="perplexity", bootstrap=0)


def test_threshold_in_task_units_and_profile_intervals():
  # Accuracy from chance 0.5 to perfect 1: halfway is accuracy 0.75 (error 0.25) whatever the fitted floor.
  N = np.repeat(np.geomspace(1e6, 1e9, 7), 3)
  err = _noisy(np.random.default_rng(9), _law(N, 0.02, 0.23 * 3e7 ** 0.4, 0.4), 0.02)  # error 0.25 at N = 3e7
  ns = lb.fit_n_star(N, 1 - err, metric="accuracy", chance=0.5, best=1.0)
  assert ns.threshold == pytest.approx(0.75) and "chance 0.5 to 1" in ns.rule
  assert ns.ci_method == "profile" and ns.ci[0] < 3e7 < ns.ci[1] and ns.p_cross > 0.99
  assert ns.fit.ci_method == "profile" and set(ns.fit.ci) == {"E", "A", "alpha"}
  # A floor above the threshold: never learnable by this law, with the data's confidence.
  never = lb.fit_n_star(N, 1 - err, metric="accuracy", threshold=0.99)
  assert never.n_star == math.inf and never.ci[1] == math.inf and never.p_cross < 0.05


def test_leave_largest_out_with_profile_intervals():
  # The held-out size is 4.6x past the others: its 95% prediction interval should hold the observed mean in most
  # of 20 draws (binomial: >= 17 of 20 with probability 0.98 at a true 95%).
  N = np.repeat(np.geomspace(1e6, 1e10, 7), 3)
  hs = [lb.leave_largest_out(N, _noisy(np.random.default_rng(s), _law(N, 1.8, 400.0, 0.35), 0.01), chance=CHANCE)
        for s in range(20)]
  assert sum(h.inside for h in hs) >= 17, [h.inside for h in hs]
  assert all(h.interval[0] < h.predicted < h.interval[1] for h in hs)
  assert all(h.n_star_heldout.ci_method == "profile" for h in hs) and sum(h.n_star_inside for h in hs) >= 17
