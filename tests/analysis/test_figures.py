"""analysis.figures: every figure renders valid PNG + PDF from synthetic sweeps, and missing data is a logged skip,
never a crash."""

import os

import matplotlib.image as mpimg
import pandas as pd
import pytest

from analysis import curves, frontier, load
from analysis import figures as figs
from analysis import predictions as pr
from tests.analysis import synth


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp("fig")
  synth.lm_sweep(str(root / "lm"), sizes=synth.SIZES[1:], freqs=[1.0, 10.0], seeds=[0])
  synth.toy_sweep(str(root / "toy"), widths=[4, 8, 16, 32, 48], betas=[1.0], gaps=(1, 4))
  L = load.load([str(root / "lm"), str(root / "toy")])
  fin = load.final(L.df)
  cs, _ = curves.build_curves(fin, L.configs)
  fits = curves.fit_curves(cs, bootstrap=20, toy_bootstrap=10, model="powerlaw", jobs=1, progress=False,
                           holdout=False)
  comps, _ = pr.toy_comparisons(fin, L.configs)
  specs = {c.condition["beta"]: c.spec for c in comps}
  return {"L": L, "df": L.df, "fin": fin, "fits": fits, "freq": frontier.frequency_laws(fits, specs), "comps": comps,
          "ret": pr.toy_retention(L), "f1": pr.fig1(L.df, bootstrap=0), "out": str(root / "figures"),
          "fmt": ("png",)}


def _valid(paths, exts=(".png",)):
  assert paths and {os.path.splitext(p)[1] for p in paths} == set(exts)
  for p in paths:
    assert os.path.getsize(p) > 1000
    if p.endswith(".png"):
      img = mpimg.imread(p)
      assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    else:
      with open(p, "rb") as f:
        assert f.read(5) == b"%PDF-"


CASES = {
    "fig1": lambda d: figs.fig1_compute_vs_infinite(d["f1"], d["out"], d["fmt"]),
    "fig2a": lambda d: figs.fig2a_toy_phase(d["comps"], d["ret"], d["out"], d["fmt"]),
    "fig2b": lambda d: figs.fig2b_toy_loss_vs_width(d["comps"], d["out"], d["fmt"]),
    "fig3": lambda d: figs.fig3_signal(d["df"], d["comps"], d["out"], d["fmt"]),
    "fig4": lambda d: figs.fig4_withhold(d["df"], d["out"], d["fmt"]),
    "fig5": lambda d: figs.fig5_heatmaps(d["fin"], d["out"], d["fmt"]),
    "fig6": lambda d: figs.fig6_task_loss_over_steps(d["df"], d["out"], d["fmt"]),
    "fig7": lambda d: figs.fig7_probes(d["df"], d["out"], d["fmt"]),
    "fig8": lambda d: figs.fig8_injections(d["df"], d["out"], d["fmt"]),
    "fig9": lambda d: figs.fig9_interference(d["df"], d["out"], d["fmt"]),
    "scaling": lambda d: [p for name, m in list(figs.scaling_curve_groups(d["fits"]).items())[:2]
                          for p in figs.scaling_curve(name, m, d["out"], d["fmt"])],
    "scaling_toy": lambda d: figs.scaling_curve("toy", [f for f in d["fits"] if f.curve.kind == "toy"], d["out"],
                                                d["fmt"]),
    "nstar": lambda d: figs.nstar_vs_frequency(d["freq"], d["out"], d["fmt"]),
    "frontier": lambda d: figs.frontier(d["freq"], d["fits"], d["out"], d["fmt"],
                                        toy_specs={c.condition["beta"]: c.spec for c in d["comps"]}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_figure_renders(data, name):
  figs.style()
  _valid(CASES[name](data))


def test_png_and_pdf(data):
  figs.style()
  _valid(CASES["fig5"]({**data, "fmt": ("png", "pdf")}), (".png", ".pdf"))


def test_scaling_curves_one_file_per_task_metric(data):
  names = set(figs.scaling_curve_groups(data["fits"]))
  assert {"scaling_curves_background_background_loss", "scaling_curves_task_cmp_loss",
          "scaling_curves_task_add_accuracy", "scaling_curves_toy_beta1"} <= names


@pytest.mark.parametrize("name,needle", [
    ("fig2a", "no toy runs"), ("fig4", "no toy runs with an injected"), ("fig5", "no LM task evals"),
    ("fig7", "no probe"), ("fig9", "no interference"), ("fig8", "burst"),
    ("frontier", "no task has a fitted N* at ≥ 2 frequencies"),
])
def test_missing_data_is_a_skip_with_a_reason(data, name, needle, tmp_path):
  empty = {**data, "df": data["df"].iloc[:0], "fin": data["fin"].iloc[:0], "comps": [], "freq": [],
           "ret": pd.DataFrame(columns=data["ret"].columns), "out": str(tmp_path)}
  paths, why = figs.make(name, CASES[name], empty)
  assert paths == [] and needle in why
  assert not os.listdir(tmp_path)


def test_a_plotting_error_is_reported_not_raised(tmp_path):
  def broken(*_):
    raise KeyError("no such column")
  paths, why = figs.make("broken", broken)
  assert paths == [] and why.startswith("error while drawing (KeyError")
