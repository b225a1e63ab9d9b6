"""analysis.powerlaw: Epoch's Chinchilla refit through the CLI, recovery of known laws, the floor's bound, the
logistic alternative, and the CLI's error lines (bootstrap: test_bootstrap.py, profile: test_profile.py)."""

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
  steep = pl.fit_powerlaw(SIZES, _law(SIZES, 1.0, 1e40, 5.0))  # α beyond the power law's [0.01, 4] box
  assert "alpha" in steep.at_bound and steep.params["alpha"] == pytest.approx(4.0)
  assert pl.fit_powerlaw(SIZES, _law(SIZES, 1.0, 400.0, 0.35)).at_bound == []


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
