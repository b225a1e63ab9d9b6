"""analysis.frontier: the N*(f) law, its inverse f*(N), leave-one-frequency-out, Proposition 6's N_crit, and a toy
sweep over the injected task's rate whose fitted frontier matches Proposition 6 within one width step."""

import math

import numpy as np
import pytest

from analysis import curves, frontier, load
from analysis import learnability as lb
from analysis import powerlaw as pl
from scaling.toy import theory as toy_theory
from tests.analysis import synth_frontier


def _step(N, lo, hi, k, N0):
  return lo + (hi - lo) / (1 + np.exp(k * (np.log(np.asarray(N, float)) - math.log(N0))))


def _noisy(rng, L, sigma):
  return L * np.exp(sigma * rng.standard_normal(np.shape(L)))


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


def test_bad_inputs_raise_one_line_errors():
  with pytest.raises(pl.FitError, match=">= 2 frequencies with a finite N"):
    frontier.fit_frequency_law([0.1, 0.01], [1e8, math.inf])
  with pytest.raises(pl.FitError, match="one N\\* per frequency"):
    frontier.fit_frequency_law([0.1, 0.01], [1e8])


def _exact_law(gamma=0.8, c=math.log(1e6), sd=0.05, freqs=(1.0, 2.0, 4.0, 8.0, 16.0)):
  f = np.array(freqs)
  n = np.exp(c - gamma * np.log(f))
  z = 1.96 * sd
  return frontier.fit_frequency_law(f, n, n_star_ci=[(v * math.exp(-z), v * math.exp(z)) for v in n])


def test_f_star_inverts_the_law_and_its_band():
  law = _exact_law()
  assert law.weighted and law.birge == 1.0 and law.gamma == pytest.approx(0.8)
  for N in (2e5, 1e6, 5e6):
    f, lo, hi = law.f_star(N)
    assert law.n_star_at(f)[0] == pytest.approx(N, rel=1e-9) and lo < f < hi
    # Fieller: the interval's ends are where the law's band passes N.
    assert law.n_star_at(lo)[1] == pytest.approx(N, rel=1e-6) and law.n_star_at(hi)[2] == pytest.approx(N, rel=1e-6)
  # With γ indistinguishable from 0 the frontier cannot place f*: the interval is open.
  flat = frontier.fit_frequency_law([1.0, 2.0], [1e6, 1.01e6], n_star_ci=[(1e5, 1e7), (1e5, 1e7)])
  assert flat.f_star(1e6)[1:] == (0.0, math.inf)


def test_leave_one_frequency_out_flags_an_off_law_frequency():
  law = _exact_law()
  hs = frontier.leave_one_frequency_out(law)
  assert len(hs) == 5 and all(h.n_star_inside and h.f_inside for h in hs)
  f = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
  n = 1e6 * f ** -0.8
  n[2] *= 3.0  # one frequency far off the law
  z = 1.96 * 0.05
  off = frontier.fit_frequency_law(f, n, n_star_ci=[(v * math.exp(-z), v * math.exp(z)) for v in n])
  hs = frontier.leave_one_frequency_out(off)
  assert not hs[2].n_star_inside and hs[2].log_error < -0.5
  assert off.birge > 1  # the scatter widens the law's band


def test_toy_n_crit_is_proposition_6():
  spec = toy_theory.ToySpec(K=16, r=8, beta=1.2)
  crit = toy_theory.critical_widths(spec)[:, 0]
  rare = np.flatnonzero(~toy_theory.frequent_set(spec))
  np.testing.assert_array_equal(frontier.toy_n_crit(spec, spec.pi[rare]), crit[rare])
  assert frontier.within_one_step([11.0, 12.0, 20.0], [8.0, 8.0, 8.0], [4, 8, 16]).tolist() == [True, True, False]


def test_toy_rate_sweep_frontier_agrees_with_proposition_6(tmp_path):
  # The injected task t32 at rates above every other rare task's share: only the frequent set competes with it,
  # which is Proposition 6's setting. Widths on a ×√2 grid, so "one width step" is a factor 1.41.
  widths = [2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64]
  spec = synth_frontier.toy_rare_sweep(str(tmp_path), widths=widths, rates=(0.02, 0.028, 0.04, 0.057, 0.08))
  L = load.load(str(tmp_path))
  cs, notes = curves.build_curves(load.final(L.df), L.configs)
  cs = [c for c in cs if c.condition.get("injected")]
  assert len(cs) == 5 and any("only the injected task" in n for n in notes)
  fits = curves.fit_curves(cs, jobs=1, progress=False)
  (ff,) = frontier.frequency_laws(fits, {1.0: spec})
  assert ff.law is not None and ff.toy["n_crit"] == [17.0, 11.0, 8.0, 6.0, 4.0]
  assert all(ff.toy["agree"]), ff.toy
  assert ff.to_dict()["toy_prop6"]["agree"] == [True] * 5
