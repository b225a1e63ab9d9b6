"""The paper's figures (Figs 1–9 where the sweep has the data), per-curve scaling plots, N* vs frequency and the
learnability frontier.

Every function takes the tidy table and/or fit objects plus an output folder, writes `<name>.png` (and `.pdf`)
and returns the paths; when the sweep lacks what a figure needs it raises `SkipFigure(reason)`, which `make`
turns into a logged, listed skip. Headless (Agg), seaborn styling, one look for all. Modules: base (plumbing),
lm (Figs 1, 5–9), toy (Figs 2–4), scaling (per-curve fits, N* vs frequency), frontier (the size × frequency plane).
"""

from analysis.figures.base import DPI, FORMATS, SkipFigure, fmt_n, make, slug, style
from analysis.figures.frontier import frontier
from analysis.figures.lm import (
                                 fig1_compute_vs_infinite,
                                 fig5_heatmaps,
                                 fig6_task_loss_over_steps,
                                 fig7_probes,
                                 fig8_injections,
                                 fig9_interference,
)
from analysis.figures.scaling import nstar_vs_frequency, scaling_curve, scaling_curve_groups, scaling_curves
from analysis.figures.toy import fig2a_toy_phase, fig2b_toy_loss_vs_width, fig3_signal, fig4_withhold

__all__ = ["DPI", "FORMATS", "SkipFigure", "fig1_compute_vs_infinite", "fig2a_toy_phase", "fig2b_toy_loss_vs_width",
           "fig3_signal", "fig4_withhold", "fig5_heatmaps", "fig6_task_loss_over_steps", "fig7_probes",
           "fig8_injections", "fig9_interference", "fmt_n", "frontier", "make", "nstar_vs_frequency",
           "scaling_curve", "scaling_curve_groups", "scaling_curves", "slug", "style"]
