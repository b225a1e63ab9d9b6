"""analysis.plan on synthetic sweeps with a known frontier N*(f) = N0·f^-γ: f* and its interval, the size needed
at the lowest frequency, a held-out frequency predicted inside its interval, over-upsampling, the emitted
verification sweep config, and one-line errors for malformed input."""

import json
import os
import subprocess
import sys

import pytest

from analysis import load, plan, upsampling
from launch import configfile, expand
from tests.analysis import synth_frontier as sf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
  d = tmp_path_factory.mktemp("plan") / "sweep"
  sf.frontier_sweep(str(d))
  return str(d)


@pytest.fixture(scope="module")
def fitted(sweep):
  """The task's fits and frontier, once (the planner's numbers at any size are then cheap)."""
  return plan.fit_task(load.load(sweep), "cmp", "accuracy")


def _plan(capsys, *args):
  rc = plan.main(list(args) + ["--json"])
  out = capsys.readouterr()
  return rc, (json.loads(out.out) if rc == 0 else None), out.err


def test_f_star_and_the_size_needed_instead(fitted):
  r = fitted.at(2e5)
  assert r["N"] == 2e5 and r["metric"] == "accuracy" and r["threshold"] == pytest.approx(0.75)
  true_f = (2e5 / sf.N0) ** (-1 / sf.GAMMA)  # N*(f) = N0·f^-γ solved for f at N = 200K: ≈ 7.5/batch
  lo, hi = r["f_star_ci"]
  assert lo < true_f < hi and lo < r["f_star"] < hi and hi / lo < 1.5
  assert r["factor"] == pytest.approx(r["f_star"] / 1.0) and r["current_frequency"] == 1.0
  assert r["n_star_at_current_ci"][0] < sf.N0 < r["n_star_at_current_ci"][1]
  law = r["law"]
  assert law["ci"]["gamma"][0] < sf.GAMMA < law["ci"]["gamma"][1] and law["n_points"] == 5
  assert len(r["holdouts"]) == 5 and all(h["n_star_inside"] for h in r["holdouts"])


def test_held_out_frequency_is_predicted_inside_its_interval(tmp_path):
  # The sweep lacks f = 4; at the size where f = 4 truly becomes learnable, the plan's f* interval holds 4.
  d = str(tmp_path / "s")
  sf.frontier_sweep(d, freqs=(1.0, 2.0, 8.0, 16.0), seed=3)
  n_4 = float(sf.n_star(4.0))
  r = plan.fit_task(load.load(d), "cmp").at(n_4)
  assert r["frequencies"] == [1.0, 2.0, 8.0, 16.0] and r["f_star_ci"][0] < 4.0 < r["f_star_ci"][1], r["f_star_ci"]


def test_over_upsampling_is_measured_and_warned(sweep, fitted):
  r = fitted.at(5e4)
  up = r["upsampling"]
  # repeats = f · 20000 steps / 5000 instances; gap = 0.002 × repeats (synth), <= 0.1 up to f = 8 (32 repeats).
  assert [g["repeats"] for g in up["per_frequency"]] == [4.0, 8.0, 16.0, 32.0, 64.0]
  assert up["per_frequency"][-1]["gap"] == pytest.approx(0.128, abs=0.01) and up["repeats_ok"] == 32.0
  assert r["f_star"] > 8 and up["repeats_at_f_star"] == pytest.approx(r["f_star"] * 4.0)
  assert "beyond the 32× at which the sweep still generalised" in up["warning"]
  text = "\n".join(plan.lines(dict(r, size="50K", size_from="as given")))
  assert "f* = " in text and "\nwarning: at f* each train instance repeats" in text
  measured = upsampling.measure(fitted.fin, fitted.configs, "cmp", 1e6)
  assert upsampling.verdict(measured, 2.0).warning is None


def test_emit_config_writes_a_valid_verification_sweep(sweep, tmp_path, capsys):
  path = str(tmp_path / "verify.py")
  rc, r, _ = _plan(capsys, "--sweep_dir", sweep, "--task", "cmp", "--size", "1M", "--emit_config", path)
  assert rc == 0 and r["emitted"] == path and r["size_from"].startswith("size 1M of the sweep")
  cfg = configfile.load(path)
  s = expand.parse(cfg, path)  # the launcher's own structural check
  assert s.entrypoint == "scaling.train" and s.base == "configs/lm.py" and list(s.seeds) == [0, 1, 2]
  axes = dict(kv for g in s.groups for kv in g)
  fs = axes["data.tasks.cmp.frequency"]
  assert axes["model.size"] == ["1M"] and fs[1] == pytest.approx(r["f_star"], rel=1e-2)
  assert fs[0] == pytest.approx(fs[1] / 2, rel=1e-2) and fs[2] == pytest.approx(2 * fs[1], rel=1e-2)
  assert "frequency" not in cfg.overrides["data"]["tasks"]["cmp"]  # the axis is the only frequency setting
  before = open(path).read()
  rc, _, err = _plan(capsys, "--sweep_dir", sweep, "--task", "cmp", "--size", "200K", "--emit_config", path)
  assert rc == 2 and "exists; pass --force" in err and open(path).read() == before


@pytest.mark.parametrize("args,needle", [
    (["--task", "xyz", "--size", "1M"], "task 'xyz' is not in the sweep (LM task curves: cmp)"),
    (["--task", "cmp", "--size", "1B"], "more than 100× outside the fitted sizes"),
    (["--task", "cmp", "--size", "nonsense"], "is neither a size of the sweep"),
    (["--task", "cmp", "--size", "1M", "--frac", "1.5"], "--frac and --level must be in (0, 1)"),
])
def test_malformed_input_is_one_error_line(sweep, capsys, args, needle):
  try:
    rc = plan.main(["--sweep_dir", sweep] + args)
  except SystemExit as e:  # argparse-level errors
    rc = e.code
  err = capsys.readouterr().err
  assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and needle in err, err


def test_a_sweep_with_one_frequency_is_refused_without_a_traceback(tmp_path):
  d = str(tmp_path / "one")
  sf.frontier_sweep(d, freqs=(4.0,), seeds=(0,))
  p = subprocess.run([sys.executable, "-m", "analysis.plan", "--sweep_dir", d, "--task", "cmp", "--size", "1M"],
                     cwd=REPO, capture_output=True, text=True, timeout=120)
  assert p.returncode == 2 and p.stdout == "" and p.stderr.count("\n") == 1
  assert p.stderr.startswith("error: the sweep has 1 frequency of cmp (4/batch); f*(N) needs >= 2"), p.stderr


def test_frontier_that_cannot_be_fitted_says_why(tmp_path, capsys):
  d = str(tmp_path / "few")
  sf.frontier_sweep(d, sizes=sf.SIZES[:3], freqs=(1.0, 4.0))
  rc, _, err = _plan(capsys, "--sweep_dir", d, "--task", "cmp", "--size", "100K")
  assert rc == 2 and "cannot fit the frontier" in err and "needs ≥ 5 sizes" in err and err.count("\n") == 1
