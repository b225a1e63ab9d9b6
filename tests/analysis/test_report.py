"""analysis.report end to end: a partial synthetic sweep (LM + toy) renders report.md / report.html whose every
figure exists and is a valid image, fits.json recovers the known laws, and malformed input is one error line."""

import html.parser
import json
import math
import os
import subprocess
import sys

import matplotlib.image as mpimg
import pytest

from analysis import report
from scaling.core import rundir
from tests.analysis import synth
from tests.analysis import synth_frontier as sf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("report")
  synth.lm_sweep(str(root / "lm"), broken=True)
  synth.toy_sweep(str(root / "toy"), widths=[4, 8, 16, 24, 32, 48], betas=[1.0], gaps=(2,))
  out = root / "out"
  # The real CLI, as launch/sweep.py calls it (a subprocess also keeps the worker fork away from pytest).
  p = subprocess.run([sys.executable, "-m", "analysis.report", "--sweep_dir", str(root / "lm"), "--sweep_dir",
                      str(root / "toy"), "--out", str(out), "--bootstrap", "100", "--toy_bootstrap", "10",
                      "--no_pdf", "--no_progress", "--jobs", "2"],
                     cwd=REPO, capture_output=True, text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  with open(out / "fits.json") as f:
    fits = json.load(f)
  return {"out": out, "stdout": p.stdout, "fits": fits, "md": (out / "report.md").read_text(),
          "html": (out / "report.html").read_text()}


class _Refs(html.parser.HTMLParser):
  def __init__(self):
    super().__init__()
    self.refs = []

  def handle_starttag(self, tag, attrs):
    a = dict(attrs)
    if tag == "img":
      self.refs.append(a["src"])
    if tag in ("link", "script") or (tag == "a" and "href" in a):
      self.refs.append(a.get("href") or a.get("src"))


def test_report_files_and_stdout(built):
  out = built["out"]
  for name in ("report.md", "report.html", "runs.csv", "runs_index.csv", "fits.json"):
    assert (out / name).is_file(), name
  assert built["stdout"].strip().splitlines()[-1] == f"report: {out / 'report.html'}"


def test_html_references_only_existing_valid_images(built):
  parser = _Refs()
  parser.feed(built["html"])
  imgs = [r for r in parser.refs if r.endswith(".png")]
  assert len(imgs) >= 12
  for ref in parser.refs:
    assert not ref.startswith(("http:", "https:", "//", "/")), ref  # self-contained: relative paths only
    path = built["out"] / ref
    assert path.is_file(), ref
    if ref.endswith(".png"):
      img = mpimg.imread(path)
      assert img.ndim == 3 and min(img.shape[:2]) > 100, (ref, img.shape)
  for fig in ("fig1_compute_vs_infinite", "fig2a_toy_phase", "fig2b_toy_loss_vs_width", "fig4_withhold",
              "fig5_heatmaps", "fig9_interference", "nstar_vs_frequency", "scaling_curves_task_add_loss"):
    assert f"figures/{fig}.png" in imgs, fig


def test_gaps_are_listed(built):
  md = built["md"]
  assert "missing: lm/never: no run dir at runs/never (never started)" in md
  assert "failed: lm/runs/failed: non-finite loss at step 61" in md
  assert "excluded: lm/runs/nan: non-finite eval/cmp/loss = nan at step 100" in md
  assert "excluded: lm/runs/nometrics: no metrics" in md
  assert "needs ≥ 5 sizes (got 2)" in md  # the burst runs: two sizes
  lr = built["fits"]["load_report"]
  assert len(lr["missing"]) == 1 and len(lr["failed"]) == 1 and len(lr["excluded"]) == 2


def _curve(fits, cid):
  (c,) = [c for c in fits["curves"] if c["id"] == cid]
  return c


def test_fits_json_recovers_the_synthetic_laws(built):
  fits = built["fits"]
  for f in synth.FREQS:
    c = _curve(fits, f"task:cmp:loss[f={f:g}]")
    assert c["status"] == "ok" and c["model"] == "powerlaw", c
    assert c["fit"]["alpha"] == pytest.approx(synth.CMP_ALPHA, abs=0.05)
    lo, hi = c["fit"]["ci"]["alpha"]
    assert lo < c["fit"]["alpha"] < hi and c["fit"]["n_bootstrap"] == 100
    a = _curve(fits, f"task:add:loss[f={f:g}]")
    assert a["model"] == "logistic", a  # the step-like rare task wins the leave-one-size-out choice
    assert a["fit"]["N0"] == pytest.approx(synth.ADD_N0[f], rel=0.1)
    ns = a["n_star"]  # chance log 100 ≈ the step's top, so the halfway crossing is the step's centre N0
    assert ns["ci"][0] <= synth.ADD_N0[f] <= ns["ci"][1], ns
    assert not ns["extrapolated"] and ns["n_star"] == pytest.approx(synth.ADD_N0[f], rel=0.1)
    assert a["chance"] == pytest.approx(math.log(100))
  law = [l for l in fits["frequency_laws"] if l["id"].startswith("task:add:loss")][0]["law"]
  want = math.log(synth.ADD_N0[1.0] / synth.ADD_N0[10.0]) / math.log(10)
  assert law["gamma"] == pytest.approx(want, abs=0.1)
  toy = fits["toy_theory"]
  assert {t["condition"]["beta"] for t in toy} == {1.0}
  assert all(t["stats"]["learn_width_agreement"] == 1.0 for t in toy)


def test_single_size_sweep_says_what_it_needs(tmp_path, capsys):
  synth.lm_sweep(str(tmp_path / "s"), sizes=[1e5], freqs=[1.0], extras=False)
  assert report.main(["--sweep_dir", str(tmp_path / "s"), "--bootstrap", "0", "--jobs", "1", "--no_pdf",
                      "--no_progress"]) == 0
  md = (tmp_path / "s" / "report.md").read_text()
  assert "needs ≥ 5 sizes (got 1)" in md
  assert "fig1_compute_vs_infinite.png" in md  # points are still plotted


@pytest.mark.parametrize("setup,needle", [
    ("empty", "no run dirs"), ("nometrics", "no usable runs"), ("nodir", "no such directory"),
])
def test_malformed_input_is_one_error_line(tmp_path, capsys, setup, needle):
  sweep = tmp_path / "s"
  if setup != "nodir":
    sweep.mkdir()
  if setup == "nometrics":
    r = rundir.RunDir(str(sweep / "r"))
    r.write_config("lm", {}, {"seed": 0})
    r.write_status("done", 0, 0)
  assert report.main(["--sweep_dir", str(sweep), "--no_progress", "--jobs", "1"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and needle in err and "\n" not in err


def test_bad_flag_is_one_error_line(tmp_path):
  p = subprocess.run([sys.executable, "-m", "analysis.report", "--sweep_dir", str(tmp_path), "--bootstrap", "-1"],
                     cwd=REPO, capture_output=True, text=True, timeout=120)
  assert p.returncode == 2 and p.stderr.startswith("error: ") and len(p.stderr.strip().splitlines()) == 1


# ---- the frontier sections -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def frontier_report(tmp_path_factory):
  root = tmp_path_factory.mktemp("frontier")
  sf.frontier_sweep(str(root / "s"), sizes=sf.SIZES[:5] + (sf.SIZES[-1],), freqs=(1.0, 2.0, 4.0, 16.0), seeds=(0, 1))
  assert report.main(["--sweep_dir", str(root / "s"), "--no_pdf", "--no_progress", "--jobs", "2",
                      "--model", "powerlaw"]) == 0
  with open(root / "s" / "fits.json") as f:
    return {"md": (root / "s" / "report.md").read_text(), "fits": json.load(f), "out": root / "s"}


def test_report_fits_the_frontier_and_plans(frontier_report):
  md, fits = frontier_report["md"], frontier_report["fits"]
  for heading in ("## Learnability frontier N*(f)", "### Planner: upsample instead of scaling", "## Held-out checks"):
    assert heading in md
  (acc,) = [f for f in fits["frequency_laws"] if f["id"].startswith("task:cmp:accuracy")]
  lo, hi = acc["law"]["ci"]["gamma"]
  assert lo < sf.GAMMA < hi and len(acc["leave_one_frequency_out"]) == 4
  assert all(c["fit"]["ci_method"] == "profile" for c in fits["curves"] if c.get("fit"))
  assert all(c["n_star"]["ci_method"] == "profile" for c in fits["curves"] if c.get("n_star"))
  plan = fits["planner"][acc["id"]]
  assert plan["N"] == 2e6 and plan["f_star_ci"][0] < plan["f_star"] < plan["f_star_ci"][1]
  assert "cmp accuracy at N = 2M: f* = " in md
  assert (frontier_report["out"] / "figures" / "frontier.png").is_file()
  assert "figures/frontier.png" in md


def test_a_three_size_sweep_says_why_nothing_is_fitted(tmp_path):
  sf.frontier_sweep(str(tmp_path / "demo"), sizes=(5e4, 2e5, 1e6), freqs=(4.0, 16.0), seeds=(0,))
  assert report.main(["--sweep_dir", str(tmp_path / "demo"), "--no_pdf", "--no_progress", "--jobs", "1"]) == 0
  md = (tmp_path / "demo" / "report.md").read_text()
  assert "### What this sweep supports" in md
  assert "task curves have 3 sizes: a fit with a free floor needs ≥ 5" in md
  assert "one seed per (size, frequency)" in md
  assert "### Interpolated crossings (too few sizes for a fit)" in md
  assert "No frontier: it needs a task with a fitted N* at ≥ 2 frequencies" in md
