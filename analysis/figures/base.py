"""Figure plumbing shared by every figure: the look, saving, the never-raise runner, small helpers."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")  # headless: before pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from analysis.curves import fmt_n  # noqa: E402
from analysis.figures import layout  # noqa: E402

log = logging.getLogger("analysis.figures")

DPI = 110
FORMATS = ("png", "pdf")

class SkipFigure(Exception):
  """The sweep has no data for this figure; the message says what is missing."""


def style():
  sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)
  # constrained layout places titles, colour bars and outside legends; bbox="tight" on top would lay out twice.
  plt.rcParams.update({"figure.dpi": DPI, "savefig.bbox": None, "axes.titlesize": 9, "legend.fontsize": 7,
                       "pdf.fonttype": 42, "figure.constrained_layout.use": True})


def slug(s: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_")


def save(fig, out_dir: str, name: str, formats=FORMATS) -> list[str]:
  os.makedirs(out_dir, exist_ok=True)
  for problem in layout.problems(fig):  # tests/analysis/test_figure_layout.py keeps the report's figures clean
    log.warning("figure %s: %s", name, problem)
  paths = []
  for ext in formats:
    p = os.path.join(out_dir, f"{slug(name)}.{ext}")
    fig.savefig(p, dpi=DPI)
    paths.append(p)
  plt.close(fig)
  return paths


def make(name: str, fn: Callable, *args, **kwargs) -> tuple[list[str], str | None]:
  """Runs one figure function: (paths, None) or ([], reason). Never raises: a figure is not worth a report."""
  style()  # also in worker processes
  try:
    return fn(*args, **kwargs), None
  except SkipFigure as e:
    log.info("figure %s skipped: %s", name, e)
    return [], str(e)
  except Exception as e:  # noqa: BLE001 - a plotting bug must not cost the user the report
    log.warning("figure %s failed: %s: %s", name, type(e).__name__, e, exc_info=True)
    plt.close("all")
    return [], f"error while drawing ({type(e).__name__}: {e})"


def size_palette(values):
  """Size -> colour (viridis, small = dark), by rank among the sizes given: every figure of a report passes all the
  sweep's sizes, so one size has one colour in every figure."""
  vals = sorted(set(float(v) for v in values))
  colors = sns.color_palette("viridis", max(len(vals), 1))
  return dict(zip(vals, colors))


def size_label_palette(values):
  """The same colours keyed by the readable labels (fmt_n) that seaborn hues use."""
  return {fmt_n(v): c for v, c in size_palette(values).items()}


def freq_palette(values):
  """Task frequency -> colour (flare: rare = light, frequent = dark), one colour per frequency in every figure."""
  vals = sorted(set(float(v) for v in values if np.isfinite(v)))
  colors = sns.color_palette("flare", max(len(vals), 1))
  return dict(zip(vals, colors))


def lm_runs(df):
  d = df[(df["experiment"] == "lm") & (df["status"] == "done")].copy()
  d["N"] = d["n_params_non_embedding"].map(fmt_n)  # readable legend labels
  return d


def n_order(d):
  return [fmt_n(n) for n in sorted(d["n_params_non_embedding"].unique())]


def toy_runs(df):
  return df[(df["experiment"] == "toy") & (df["status"] == "done")]


def log_axes(ax, x=True, y=True):
  """Readable log axes: decade labels (10^k) with unlabelled minor ticks, or, on an axis spanning less than about
  two decades, labels at 1-2-5 multiples, so that every axis shows at least three labelled ticks. Call it after
  the data (and any limits) are set."""
  for on, axis, lim in ((x, ax.xaxis, ax.get_xlim()), (y, ax.yaxis, ax.get_ylim())):
    if not on:
      continue
    decades = np.log10(max(lim) / max(min(lim), 1e-300))
    axis.set_minor_formatter(NullFormatter())
    if decades < 1.8:
      subs = (1.0, 2.0, 5.0) if decades >= 0.6 else (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
      axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
      axis.set_major_formatter(FuncFormatter(lambda v, _: fmt_n(v) if v >= 1e4 else f"{v:g}"))
      axis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10) * 0.1, numticks=12))
    else:
      axis.set_major_locator(LogLocator(base=10, numticks=12))
      axis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10) * 0.1, numticks=12))
