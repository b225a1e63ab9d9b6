"""analysis.powerlaw: Epoch's Chinchilla refit through the CLI, recovery of known laws, bootstrap CIs,
the logistic alternative, and the CLI's error lines."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from analysis import powerlaw as pl

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHINCHILLA_CSV = os.path.join(REPO, "tests", "reference", "chinchilla_svg_extracted.csv")  # see its README
# Epoch AI's refit of Chinchilla's approach 3 (Besiroglu et al. 2024), 5 highest-loss rows excluded.
EPOCH = {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.348, "beta": 0.366}
SIZES = np.geomspace(1e6, 1e10, 8)


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "analysis.powerlaw", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=300)


def _law(N, E, A, alpha):
  return E + A * np.asarray(N, float) ** -alpha


def _noisy(rng, L, sigma):
  return L * np.exp(sigma * rng.standard_normal(np.shape(L)))


def test_chinchilla_cli_reproduces_epoch_refit():
  p = _cli("--csv", CHINCHILLA_CSV, "--n", "Model Size", "--d_from_flops", "Training FLOP", "--loss", "loss",
           "--exclude_top", "5", "--no_progress")
  assert p.returncode == 0, p.stderr
  out = json.loads(p.stdout)  # exactly one JSON object on stdout
  assert out["n_points"] == 245 - 5 and out["n_excluded"] == 5
  assert abs(out["alpha"] - EPOCH["alpha"]) <= 0.01, out
  assert abs(out["beta"] - EPOCH["beta"]) <= 0.01, out
  assert abs(out["E"] - EPOCH["E"]) <= 0.02, out
  # A and B trade off against α and β; a few percent is the spread between Epoch's own refits.
  assert abs(out["A"] / EPOCH["A"] - 1) < 0.05 and abs(out["B"] / EPOCH["B"] - 1) < 0.05, out
  assert out["at_bound"] == [] and out["converged"]


def test_exclude_top_drops_the_highest_losses(tmp_path, capsys):
  N = np.repeat(SIZES, 2)
  L = _law(N, 1.5, 400.0, 0.35)
  L[3] = 50.0  # one wild row
  csv = tmp_path / "d.csv"
  csv.write_text("n,loss\n" + "".join(f"{n},{l}\n" for n, l in zip(N, L)))
  outs = []
  for k in ("0", "1"):
    assert pl.main(["--csv", str(csv), "--n", "n", "--loss", "loss", "--exclude_top", k, "--no_progress"]) == 0
    outs.append(json.loads(capsys.readouterr().out))
  assert outs[0]["loss"] > 1e-3 and outs[0]["n_points"] == 16
  # Without the wild row the remaining data are exact, so the fit is too.
  assert outs[1]["n_points"] == 15 and outs[1]["loss"] < 1e-12
  assert abs(outs[1]["alpha"] - 0.35) < 1e-5


@pytest.mark.parametrize("E,A,alpha", [(0.5, 50.0, 0.2), (1.8, 400.0, 0.35), (2.5, 2e4, 0.7)])
def test_powerlaw_recovers_known_parameters(E, A, alpha):
  N = np.repeat(SIZES, 3)
  exact = pl.fit_powerlaw(N, _law(N, E, A, alpha))
  for k, v in dict(E=E, A=A, alpha=alpha).items():
    assert abs(exact.params[k] / v - 1) < 1e-4, (k, exact.params)
  assert exact.at_bound == [] and exact.n_sizes == 8
  noisy = pl.fit_powerlaw(N, _noisy(np.random.default_rng(1), _law(N, E, A, alpha), 0.003))
  assert abs(noisy.params["alpha"] - alpha) < 0.1 * alpha and abs(noisy.params["E"] - E) < 0.05 * E, noisy
  np.testing.assert_allclose(noisy.predict(SIZES), _law(SIZES, E, A, alpha), rtol=0.01)


@pytest.mark.parametrize("truth", [EPOCH, {"E": 1.0, "A": 100.0, "B": 1000.0, "alpha": 0.25, "beta": 0.45}])
def test_chinchilla_law_recovers_known_parameters(truth):
  N, D = (g.ravel() for g in np.meshgrid(np.geomspace(1e7, 1e10, 6), np.geomspace(1e9, 1e12, 6)))
  L = truth["E"] + truth["A"] * N ** -truth["alpha"] + truth["B"] * D ** -truth["beta"]
  exact = pl.fit_chinchilla(N, D, L)
  for k, v in truth.items():
    assert abs(exact.params[k] / v - 1) < 1e-4, (k, exact.params)
  noisy = pl.fit_chinchilla(N, D, _noisy(np.random.default_rng(2), L, 0.002))
  assert abs(noisy.params["alpha"] - truth["alpha"]) < 0.05 and abs(noisy.params["beta"] - truth["beta"]) < 0.05
  assert abs(noisy.params["E"] - truth["E"]) < 0.05 * truth["E"], noisy
  # D=None is the infinite-data curve E + A/N^α.
  np.testing.assert_allclose(exact.predict([1e12]), _law([1e12], truth["E"], truth["A"], truth["alpha"]), rtol=1e-4)


def test_fixed_E_allows_few_sizes_and_free_E_needs_five():
  N = np.repeat(SIZES[:3], 2)
  L = _law(N, 1.5, 400.0, 0.35)
  fit = pl.fit_powerlaw(N, L, fix_E=1.5)
  assert fit.fixed == {"E": 1.5} and fit.params["E"] == 1.5
  assert abs(fit.params["alpha"] / 0.35 - 1) < 1e-5 and abs(fit.params["A"] / 400 - 1) < 1e-4
  Nf = np.repeat(SIZES[:4], 2)
  with pytest.raises(pl.FitError, match=r"needs >= 5 distinct sizes, got 4.*fix"):
    pl.fit_powerlaw(Nf, _law(Nf, 1.5, 400.0, 0.35))


def test_fit_ending_on_a_bound_is_flagged():
  steep = pl.fit_powerlaw(SIZES, _law(SIZES, 1.0, 1e16, 2.6))  # α beyond the [0.01, 2] box
  assert "alpha" in steep.at_bound and steep.params["alpha"] == pytest.approx(2.0)
  assert pl.fit_powerlaw(SIZES, _law(SIZES, 1.0, 400.0, 0.35)).at_bound == []


def test_bootstrap_is_deterministic_and_keeps_every_size():
  rng = np.random.default_rng(3)
  N = np.repeat(SIZES, 3)
  fit = pl.fit_powerlaw(N, _noisy(rng, _law(N, 1.8, 400.0, 0.35), 0.01))
  a = pl.bootstrap(fit, 30, seed=5, progress=False)
  b = pl.bootstrap(fit, 30, seed=5, progress=False)
  c = pl.bootstrap(fit, 30, seed=6, progress=False)
  np.testing.assert_array_equal(a.samples["alpha"], b.samples["alpha"])
  assert not np.array_equal(a.samples["alpha"], c.samples["alpha"])
  assert a.ci["alpha"][0] < fit.params["alpha"] < a.ci["alpha"][1] and "E" in a.ci
  sampler = pl._Resampler(fit)
  for _ in range(50):
    idx, _ = sampler.draw(rng)
    assert len(idx) == len(N) and set(np.exp(fit._logX[idx, 0]).round()) == set(SIZES.round())


def test_bootstrap_single_seed_uses_noise_draws():
  # One run per size: the resampler cannot draw seeds, so it adds residual-scale noise to every point.
  rng = np.random.default_rng(4)
  sizes = np.geomspace(1e6, 1e10, 12)
  fit = pl.fit_powerlaw(sizes, _noisy(rng, _law(sizes, 1.8, 400.0, 0.35), 0.01))
  sampler = pl._Resampler(fit)
  assert len(sampler.noise_rows) == 12 and sampler.sigma == pytest.approx(pl.noise_std(fit))
  assert 0.005 < sampler.sigma < 0.02  # the residual std estimates the 0.01 we put in
  b = pl.bootstrap(fit, 40, progress=False)
  lo, hi = b.ci["alpha"]
  assert lo < fit.params["alpha"] < hi and hi - lo > 0.005


def _batch_case(kind):
  rng = np.random.default_rng(11)
  N = np.repeat(SIZES[:6], 2)
  seeds = np.tile([0, 1], 6)
  if kind == "powerlaw":
    return pl.fit_powerlaw(N, _noisy(rng, _law(N, 1.8, 400.0, 0.35), 0.01), seeds=seeds)
  if kind == "fixed_E":
    return pl.fit_powerlaw(N, _noisy(rng, _law(N, 1.8, 400.0, 0.35), 0.01), fix_E=1.8, seeds=seeds)
  if kind == "single_seed":
    return pl.fit_powerlaw(SIZES, _noisy(rng, _law(SIZES, 1.8, 400.0, 0.35), 0.01))
  if kind == "chinchilla":
    Nc, Dc = np.repeat(SIZES[::2], 4), np.tile(np.geomspace(1e9, 1e11, 4), 4)
    return pl.fit_chinchilla(Nc, Dc, _noisy(rng, 1.8 + 400 * Nc ** -0.34 + 2000 * Dc ** -0.37, 0.01))
  raise ValueError(kind)


@pytest.mark.parametrize("kind", ["powerlaw", "fixed_E", "single_seed", "chinchilla"])
def test_batched_bootstrap_matches_one_by_one_refits(kind):
  """The batched refits (the default) give the intervals of one L-BFGS-B refit per resample.

  Draw by draw they agree for >= 90% of resamples; the others differ by up to ~2% in a parameter at an equal
  objective: with δ = 1e-3 the Huber fit is nearly L1, whose minimum can be a flat set, and the two paths stop at
  different points of it (test_batched_refits_reach_the_same_objective). Logistic fits are never batched.
  """
  fit = _batch_case(kind)
  a = pl.bootstrap(fit, 200, seed=1, progress=False)
  b = pl.bootstrap(fit, 200, seed=1, progress=False, batched=False)
  for k in fit.params:
    if k in fit.fixed:
      continue
    np.testing.assert_allclose(a.ci[k], b.ci[k], rtol=2e-3, err_msg=k)
    assert np.isclose(a.samples[k], b.samples[k], rtol=1e-3).mean() >= 0.9, k


@pytest.mark.parametrize("kind", ["powerlaw", "chinchilla"])
def test_batched_refits_reach_the_same_objective(kind):
  fit = _batch_case(kind)
  rng = np.random.default_rng(2)
  sampler = pl._Resampler(fit)
  data = [sampler.draw(rng) for _ in range(100)]
  idx, y = np.stack([i for i, _ in data]), np.stack([v for _, v in data])
  theta, certified = pl._batch_refit(fit, idx, y)
  assert certified.mean() > 0.9
  for r in np.flatnonzero(certified):
    model = pl._make_model(fit.method, fit._logX[idx[r]], y[r], fit._centre, fit.fixed.get("E"), fit.delta,
                           fit._x_range)
    ref = pl._lbfgsb(model, fit._theta, pl._BOOT_OPTIONS).fun
    assert model.value_grad(theta[r])[0] <= ref * (1 + 1e-6), r


def test_bootstrap_ci_coverage():
  """95% intervals should hold the truth in ~95% of datasets (8 sizes x 3 seeds, 1% seed noise).

  100 datasets x 39 resamples keeps this at ~15 s. Few resamples are legitimate because coverage is an average
  over datasets: with R = 39 the 95% interval is [min, max] of the draws (percentile_interval's rank rule
  p·(R+1)), which holds a further exchangeable draw with probability (R−1)/(R+1) = 0.95 exactly; R only adds
  jitter to each interval, independent of the data noise. The band [0.85, 0.99] allows the ±0.02 binomial
  error of 100 datasets. (The same datasets with 200 resamples: α 0.96.)
  """
  E, A, alpha = 1.5, 400.0, 0.35
  N = np.repeat(np.geomspace(1e6, 1e9, 8), 3)
  rng = np.random.default_rng(7)
  hits = {"alpha": 0, "E": 0, "pred": 0}
  n_data = 100
  for i in range(n_data):
    fit = pl.fit_powerlaw(N, _noisy(rng, _law(N, E, A, alpha), 0.01), bootstrap=39, seed=i, progress=False,
                          n_starts=4)
    hits["alpha"] += fit.ci["alpha"][0] <= alpha <= fit.ci["alpha"][1]
    hits["E"] += fit.ci["E"][0] <= E <= fit.ci["E"][1]
    lo, hi = fit.predict_interval([1e10])  # an extrapolation 10x past the largest size
    hits["pred"] += lo[0] <= _law(1e10, E, A, alpha) <= hi[0]
  coverage = {k: v / n_data for k, v in hits.items()}
  assert all(0.85 <= c <= 0.99 for c in coverage.values()), coverage


def _step(N, lo, hi, k, N0):
  return lo + (hi - lo) / (1 + np.exp(k * (np.log(N) - np.log(N0))))


def test_logistic_recovers_a_step_and_wins_the_model_choice():
  rng = np.random.default_rng(8)
  N = np.repeat(SIZES, 2)
  truth = dict(L_lo=0.1, L_hi=4.6, k=3.0, N0=3e8)
  exact = pl.fit_logistic(N, _step(N, *truth.values()))
  for key, v in truth.items():
    assert abs(exact.params[key] / v - 1) < 1e-4, (key, exact.params)
  L = _noisy(rng, _step(N, *truth.values()), 0.02)
  choice = pl.choose_model(N, L, n_starts=4)
  assert choice.winner == "logistic" and choice.errors["logistic"] < choice.errors["powerlaw"]
  assert choice.n_folds == 8 and choice.fits["logistic"].method == "logistic"
  smooth = pl.choose_model(N, _noisy(rng, _law(N, 1.8, 400.0, 0.35), 0.01), n_starts=4)
  assert smooth.winner == "powerlaw", smooth.errors


@pytest.fixture
def csv_file(tmp_path):
  N = np.repeat(SIZES[:6], 2)
  L = _noisy(np.random.default_rng(9), _law(N, 1.8, 400.0, 0.35), 0.01)
  path = tmp_path / "runs.csv"
  path.write_text("n,seed,loss,bad\n" + "".join(f"{n},{i % 2},{l},{'' if i == 2 else 1}\n"
                                                 for i, (n, l) in enumerate(zip(N, L))))
  return str(path)


def test_cli_bootstrap_prints_cis(csv_file, capsys):
  rc = pl.main(["--csv", csv_file, "--n", "n", "--loss", "loss", "--bootstrap", "30", "--seed_col", "seed",
                "--no_progress"])
  out = json.loads(capsys.readouterr().out)
  assert rc == 0 and set(out["ci"]) == {"E", "A", "alpha"} and out["n_bootstrap"] == 30
  for k in ("E", "A", "alpha"):
    assert out["ci"][k][0] <= out[k] <= out["ci"][k][1]


@pytest.mark.parametrize("args,needle", [
    (["--csv", "/nonexistent/x.csv", "--n", "n", "--loss", "loss"], "no such file"),
    (["--n", "size", "--loss", "loss"], "column 'size'.*has columns: n, seed, loss, bad"),
    (["--n", "n", "--loss", "bad"], "column 'bad' has 1 NaN"),
    (["--n", "n", "--loss", "loss", "--exclude_top", "4"], "got 4.*fix"),
    (["--n", "n", "--loss", "loss", "--d", "n", "--d_from_flops", "n"], "not allowed with"),
])
def test_cli_bad_input_is_one_error_line(csv_file, capsys, args, needle):
  if "--csv" not in args:
    args = ["--csv", csv_file] + args
  try:
    rc = pl.main(args + ["--no_progress"])
  except SystemExit as e:  # argparse's own errors
    rc = e.code
  err = capsys.readouterr().err
  assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
  assert __import__("re").search(needle, err), err


def test_cli_error_has_no_traceback(csv_file):
  p = _cli("--csv", csv_file, "--n", "nope", "--loss", "loss")
  assert p.returncode == 2 and p.stdout == ""
  assert p.stderr.startswith("error: column 'nope'") and p.stderr.count("\n") == 1, p.stderr
