"""Every report figure, rendered from a small synthetic sweep, passes analysis.figures.layout's checks: no legend or
title over another axes' plotting area or over each other, legends inside or below the plots, nothing past the
figure's edge, readable log ticks. And the checks themselves catch deliberately bad layouts."""

import importlib

import matplotlib.pyplot as plt
import numpy as np
import pytest

from analysis.figures import base, layout
from tests.analysis.test_figures import CASES, data  # noqa: F401 - `data` is the synthetic-sweep fixture

# The modules (analysis.figures re-exports a function named `frontier`, which shadows its module as an attribute).
FIGURE_MODULES = [importlib.import_module(f"analysis.figures.{m}") for m in ("lm", "scaling", "frontier", "toy")]


@pytest.fixture
def checked(monkeypatch):
  """Every figure saved while the test runs: name -> its layout problems (checked before the figure is closed)."""
  found = {}
  original = base.save

  def save(fig, out_dir, name, formats=base.FORMATS):
    found[name] = layout.problems(fig)
    return original(fig, out_dir, name, formats)

  for module in FIGURE_MODULES:
    monkeypatch.setattr(module, "save", save)
  return found


@pytest.mark.parametrize("name", list(CASES))
def test_report_figure_layout_is_clean(data, checked, name):  # noqa: F811 - pytest fixture
  base.style()
  CASES[name](data)
  assert checked, f"{name}: no figure was saved"
  bad = {fig: p for fig, p in checked.items() if p}
  assert not bad, bad


def _line_plot(ax, n=20):
  x = np.geomspace(1e4, 1e6, n)
  ax.plot(x, 5 + 100 * x ** -0.3, "o-", label="curve")
  ax.set_xscale("log")


def test_flags_a_side_legend_that_overlaps_the_title():
  """The old Fig 1 layout: a figure legend outside right, level with the title."""
  base.style()
  fig, ax = plt.subplots(figsize=(4, 3))
  _line_plot(ax)
  ax.set_title("a title long enough to reach the legend on the right")
  fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper")
  found = layout.problems(fig)
  plt.close(fig)
  assert any(p.startswith("placement:") for p in found), found


def test_flags_a_legend_over_another_axes_and_over_data():
  base.style()
  fig, (a, b) = plt.subplots(1, 2, figsize=(6, 3), layout="none")  # no engine to make room for the legend
  _line_plot(a)
  _line_plot(b)
  a.legend([f"a long legend entry number {i}" for i in range(6)], loc="upper left", bbox_to_anchor=(0.5, 1.0))
  b.legend(loc="center")
  found = layout.problems(fig)
  plt.close(fig)
  assert any("over the plotting area" in p for p in found), found
  assert any(p.startswith("covers:") for p in found), found


def test_flags_text_past_the_edge_and_unreadable_log_ticks():
  base.style()
  fig, ax = plt.subplots(figsize=(3, 2.5))
  x = np.geomspace(1e4, 1e6, 10)
  ax.plot(x, np.linspace(4, 9, 10))
  ax.set_yscale("log")  # 4..9: under a decade, matplotlib labels minor ticks as 4 × 10^0
  ax.set_xscale("log")
  ax.text(0.5, 0.5, "a note far too long for its axes " * 3, transform=ax.transAxes)
  fig.text(0.9, 0.5, "runs off the right edge of the figure")
  ax.set_ylabel("y " * 60)
  found = layout.problems(fig)
  plt.close(fig)
  kinds = {p.split(":")[0] for p in found}
  assert {"outside", "unreadable"} <= kinds, found
  assert any("note" in p for p in found), found


def test_log_axes_fixes_the_short_log_axis():
  base.style()
  fig, ax = plt.subplots(figsize=(3, 2.5))
  x = np.geomspace(1e4, 1e6, 10)
  ax.plot(x, np.linspace(4, 9, 10))
  ax.set_xscale("log")
  ax.set_yscale("log")
  base.log_axes(ax)
  found = layout.problems(fig)
  plt.close(fig)
  assert not found, found


def test_a_clean_figure_passes():
  base.style()
  fig, ax = plt.subplots(figsize=(4, 3.4))
  _line_plot(ax)
  base.log_axes(ax)
  ax.set_title("clean")
  fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", frameon=False)
  found = layout.problems(fig)
  plt.close(fig)
  assert found == []
