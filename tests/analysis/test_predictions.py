"""analysis.predictions: Fig 1's exponents on synthetic L_C / L_∞ data, Chinchilla on an (N, D) grid, and the
toy's analytic curves and simulation-vs-theory agreement."""

import json
import math

import numpy as np
import pytest

from analysis import load
from analysis import predictions as pr
from scaling.core import rundir
from scaling.toy import theory as toy_theory
from tests.analysis import synth

E = 1.5
ALPHA_C, A_C = 0.34, 40.0
ALPHA_INF, A_INF = 0.46, 60.0
SIZES = np.geomspace(1e5, 1e7, 6)
BUDGET = 1e15


def _fig1_sweep(root):
  """Runs whose log loss is linear in log FLOPs through (BUDGET, L_C(N)) and (final FLOPs, L_∞(N)), so the
  interpolation at BUDGET is exact; evals at token counts spaced by 2x, bracketing BUDGET for every size."""
  for i, N in enumerate(SIZES):
    run = rundir.RunDir(str(root / f"N{i}"))
    fpt = 6.0 * N
    run.write_config("lm", {"data": {"source": "fake"}}, {"n_params_non_embedding": int(N), "seed": 0,
                                                           "flops_per_token": fpt})
    tokens = np.geomspace(BUDGET / fpt / 64, BUDGET / fpt * 64, 13)
    lc = E + A_C * N ** -ALPHA_C
    li = E + A_INF * N ** -ALPHA_INF
    f_end = tokens[-1] * fpt
    slope = (math.log(li) - math.log(lc)) / (math.log(f_end) - math.log(BUDGET))
    recs = [{"step": 0, "tokens": 0, "eval/background/loss": 10.0}]
    for s, t in enumerate(tokens, start=1):
      loss = math.exp(math.log(lc) + slope * (math.log(t * fpt) - math.log(BUDGET)))
      recs.append({"step": s, "tokens": int(round(t)), "eval/background/loss": loss})
    recs[-1]["eval/background/loss"] = li  # exact despite the integer token rounding
    run.append_metrics(recs)
    run.write_status("done", len(tokens), len(tokens))
  return load.load(str(root))


@pytest.mark.parametrize("fix_E", [E, None])
def test_fig1_exponents_recovered(tmp_path, fix_E):
  L = _fig1_sweep(tmp_path)
  f1 = pr.fig1(L.df, fix_E=fix_E, budget=BUDGET, bootstrap=0)
  assert len(f1.points_C) == len(SIZES) and not f1.left_out
  assert f1.points_C["loss"].to_numpy() == pytest.approx(E + A_C * SIZES ** -ALPHA_C, rel=2e-3)
  assert f1.fit_C.params["alpha"] == pytest.approx(ALPHA_C, abs=0.01)
  assert f1.fit_inf.params["alpha"] == pytest.approx(ALPHA_INF, abs=0.01)
  assert f1.steeper is True
  if fix_E is not None:
    assert f1.fit_C.fixed == {"E": E}


def test_fig1_default_budget_is_reached_by_every_size(tmp_path):
  L = _fig1_sweep(tmp_path)
  pts, C, left = pr.matched_compute(L.df)
  assert pts["N"].nunique() == len(SIZES) and not left
  assert C >= BUDGET  # the largest budget every size brackets


def test_fig1_with_too_few_sizes_says_so(tmp_path):
  L = _fig1_sweep(tmp_path)
  two = L.df[L.df["n_params_non_embedding"] <= SIZES[1]]
  f1 = pr.fig1(two, budget=BUDGET, bootstrap=0)
  assert f1.fit_C is None and f1.reason_C == "needs ≥ 5 sizes (got 2)"
  assert pr.fig1(two, budget=BUDGET, fix_E=E, bootstrap=0).fit_C is not None


def test_chinchilla_on_an_nd_grid(tmp_path):
  synth.lm_sweep(str(tmp_path / "lm"), freqs=[1.0], seeds=[0], extras=False, bg_noise=0.0)
  L = load.load(str(tmp_path / "lm"))
  ch = pr.chinchilla(L.df)
  assert ch.fit is not None and ch.reason is None
  p = ch.fit.params
  for k, v in (("E", synth.BG_E), ("A", synth.BG_A), ("alpha", synth.BG_ALPHA), ("B", synth.BG_B),
               ("beta", synth.BG_BETA)):
    assert p[k] == pytest.approx(v, rel=0.02), (k, p)
  short = L.df[L.df["step"] <= 60]
  assert "needs ≥ 6 distinct (N, D) points" in pr.chinchilla(short[short["n_params_non_embedding"] < 1e5]).reason


def test_toy_analytic_curves_equal_the_theory():
  spec = toy_theory.ToySpec(K=6, r=5, beta=1.3, alpha=1.5, seed=3)
  widths = [1, 3, 7, 12, 30]
  ana = pr.toy_analytic_curves(spec, widths)
  want = toy_theory.optimal_task_loss(spec, np.array(widths)).normalised
  got = ana.pivot(index="width", columns="k", values="loss_norm").to_numpy()
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(ana.pivot(index="width", columns="k", values="n_features").to_numpy(),
                                toy_theory.n_features(spec, np.array(widths)))
  assert sorted(ana["task"].unique()) == [f"t{k:02d}" for k in range(1, 7)]


def test_toy_simulation_agrees_with_theory(tmp_path):
  synth.toy_sweep(str(tmp_path / "toy"), gaps=())
  L = load.load(str(tmp_path / "toy"))
  comps, notes = pr.toy_comparisons(load.final(L.df), L.configs, paths=L.paths)
  assert not notes and sorted(c.condition["beta"] for c in comps) == synth.TOY_BETAS
  for c in comps:
    assert c.stats["theory_json_max_diff"] == 0.0 and c.stats["mass"] == 0.8
    spec = synth.toy_spec(c.condition["beta"])
    assert c.spec == spec and c.widths == synth.TOY_WIDTHS
    assert c.stats["rmse"] < 0.01 and c.stats["learn_width_agreement"] == 1.0
    F = toy_theory.frequent_set(spec)
    crit = c.tasks["N_crit"].to_numpy()
    np.testing.assert_array_equal(np.isnan(crit), F)
    np.testing.assert_array_equal(crit[~F], toy_theory.critical_widths(spec)[~F, 0])
    np.testing.assert_array_equal(c.tasks["theory_learn_width"],
                                  toy_theory.smallest_learning_width(spec, synth.TOY_WIDTHS))
  ret = pr.toy_retention(L)
  assert len(ret) == len(synth.TOY_WIDTHS) * len(synth.TOY_BETAS) * synth.TOY_K * synth.TOY_R
  row = ret[(ret["beta"] == 1.0) & (ret["width"] == 8)]
  keep = toy_theory.top_features(synth.toy_spec(1.0), 8)
  np.testing.assert_allclose(row.sort_values(["k", "j"])["retention"].to_numpy(), keep.ravel().astype(float))


def test_a_theory_json_that_disagrees_is_noted(tmp_path):
  synth.toy_sweep(str(tmp_path / "toy"), widths=[4, 8], betas=[1.0], gaps=())
  path = tmp_path / "toy" / "runs" / "toy-w8" / "beta=1.0_seed=0" / "theory.json"
  th = json.loads(path.read_text())
  th["optimal_loss_norm"][3] += 0.25
  path.write_text(json.dumps(th))
  L = load.load(str(tmp_path / "toy"))
  (c,), notes = pr.toy_comparisons(load.final(L.df), L.configs, paths=L.paths)
  assert c.stats["theory_json_max_diff"] == pytest.approx(0.25)
  assert len(notes) == 1 and "theory.json differs" in notes[0]
