"""The language-model figures: Fig 1 (compute-matched vs converged loss) and Figs 5–9 (paper §4)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from analysis import predictions as pr
from analysis.figures.base import (
  FORMATS,
  SkipFigure,
  fmt_n,
  freq_palette,
  lm_runs,
  log_axes,
  n_order,
  save,
  size_label_palette,
)


def fig1_compute_vs_infinite(f1: pr.Fig1, out_dir: str, formats=FORMATS) -> list[str]:
  """L_C(N) (matched compute) and L_∞(N) (final) with fits; between them what data scaling reaches, below L_∞
  what only model scaling reaches."""
  if f1 is None or (f1.points_C.empty and f1.points_inf.empty):
    raise SkipFigure("no LM runs with a background loss")
  fig, ax = plt.subplots(figsize=(5, 4.2))
  allN = pd.concat([f1.points_C["N"], f1.points_inf["N"]])
  grid = np.geomspace(allN.min() / 1.5, allN.max() * 3, 200)
  colors = {"C": "tab:orange", "inf": "tab:blue"}
  lab_C = f"L_C(N): loss at C={f1.budget:.2g} FLOPs" + (" (train loss)" if f1.key_C != f1.key else "")
  for pts, fit, k, lab in ((f1.points_C, f1.fit_C, "C", lab_C),
                           (f1.points_inf, f1.fit_inf, "inf", "L_∞(N): final loss")):
    if pts.empty:
      continue
    ax.scatter(pts["N"], pts["loss"], s=14, color=colors[k], alpha=0.8, label=lab)
    if fit is not None:
      ax.plot(grid, fit.predict(grid), color=colors[k],
              label=f"fit α={fit.params['alpha']:.3f}" + (f" [{fit.ci['alpha'][0]:.2f}, {fit.ci['alpha'][1]:.2f}]"
                                                          if fit.ci and "alpha" in fit.ci else ""))
  if f1.fit_C is not None and f1.fit_inf is not None:
    lc, li = f1.fit_C.predict(grid), f1.fit_inf.predict(grid)
    ax.fill_between(grid, li, np.maximum(lc, li), color="tab:green", alpha=0.15, label="learnable via data scaling")
    floor = f1.fit_inf.params["E"] if f1.fit_inf.params["E"] > 0 else li.min() * 0.9
    ax.fill_between(grid, np.full_like(grid, floor), li, color="tab:purple", alpha=0.12,
                    label="learned via model scaling")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("non-embedding parameters N")
  ax.set_ylabel(f"{f1.key} (nats)")
  log_axes(ax)
  ax.set_title("Fig 1: background loss at matched compute vs final")
  fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=7, frameon=False)
  return save(fig, out_dir, "fig1_compute_vs_infinite", formats)




def _task_names(df):
  d = df[(df["group"] == "eval") & df["task"].notna() & (df["task"] != "background")]
  return sorted(d["task"].astype(str).unique())


def fig5_heatmaps(fin: pd.DataFrame, out_dir: str, formats=FORMATS):
  """Size × frequency heat maps of each task's final train-split loss (LABEL token) and test accuracy."""
  d = lm_runs(fin)
  d = d[(d["group"] == "eval") & (d["schedule"] == "random")]
  tasks = _task_names(d)
  if not tasks:
    raise SkipFigure("no LM task evals (eval/<task>/...) in finished runs")
  fig, axes = plt.subplots(len(tasks), 2, figsize=(8, 2.8 * len(tasks)), squeeze=False)
  for row, task in zip(axes, tasks):
    dt = d[d["task"] == task]
    tr = dt[(dt["split"] == "train") & (dt["metric"] == "loss")]
    which = "train-split loss"
    if tr.empty:
      tr, which = dt[(dt["split"] == "test") & (dt["metric"] == "loss")], "test loss (no train probe)"
    acc = dt[(dt["split"] == "test") & (dt["metric"] == "accuracy")]
    for ax, data, title, cmap in ((row[0], tr, which, "rocket_r"), (row[1], acc, "test accuracy", "viridis")):
      if data.empty:
        ax.set_axis_off()
        continue
      tab = data.pivot_table(index="n_params_non_embedding", columns="frequency_per_batch", values="value")
      tab = tab.sort_index(ascending=False)
      tab.index = [fmt_n(v) for v in tab.index]
      tab.columns = [f"{v:g}" for v in tab.columns]
      sns.heatmap(tab, ax=ax, cmap=cmap, annot=True, fmt=".2f", cbar=False,
                  **({"vmin": 0, "vmax": 1} if "accuracy" in title else {}))
      ax.set_title(f"{task}: {title}")
      ax.set_xlabel("instances per batch")
      ax.set_ylabel("N (non-embedding)")
      ax.tick_params(axis="y", rotation=0)
  fig.suptitle("Fig 5: final task loss and accuracy over size × frequency (seed mean)", fontsize=10)
  return save(fig, out_dir, "fig5_heatmaps", formats)


def fig6_task_loss_over_steps(df: pd.DataFrame, out_dir: str, formats=FORMATS):
  """(a) task test loss over steps, one line per frequency, for the smallest / middle / largest size;
  (b) matched frequency with bursts (schedule burst, one line per period), when the sweep has them."""
  d = lm_runs(df)
  d = d[(d["group"] == "eval") & (d["split"] == "test") & (d["metric"] == "loss") & d["task"].notna()
        & (d["task"] != "background")]
  if d.empty:
    raise SkipFigure("no LM task evals")
  tasks = sorted(d["task"].astype(str).unique())
  rnd = d[d["schedule"] == "random"]
  pal = freq_palette(rnd["frequency_per_batch"])
  sizes = sorted(rnd["n_params_non_embedding"].unique())
  show = sorted({sizes[0], sizes[len(sizes) // 2], sizes[-1]}) if sizes else []
  burst = d[d["schedule"].isin(["burst", "withhold"])]
  ncol = len(show) + (1 if not burst.empty else 0)
  if ncol == 0:
    raise SkipFigure("no task evals with a random or burst schedule")
  fig, axes = plt.subplots(len(tasks), ncol, figsize=(3.2 * ncol, 2.6 * len(tasks)), squeeze=False, sharey="row")
  for row, task in zip(axes, tasks):
    for ax, n in zip(row, show):
      g = rnd[(rnd["task"] == task) & (rnd["n_params_non_embedding"] == n)]
      if g.empty:
        ax.set_axis_off()
        continue
      for f, h in g.groupby("frequency_per_batch"):
        h = h.groupby("step")["value"].mean()
        ax.plot(h.index, h.to_numpy(), ".-", ms=3, lw=1.2, color=pal[float(f)], label=f"{f:g}")
      ax.set_title(f"{task} test loss, N={fmt_n(n)}")
      ax.set_yscale("log")
      ax.set_xlabel("step")
      ax.set_ylabel("test loss (nats)")
      if ax is row[0]:
        ax.legend(title="instances/batch", fontsize=6, title_fontsize=6, loc="lower left")
    if not burst.empty:
      ax = row[-1]
      g = burst[burst["task"] == task]
      if g.empty:
        ax.set_axis_off()
      else:
        sns.lineplot(data=g, x="step", y="value", hue="period", style="N", style_order=n_order(g), ax=ax,
                     errorbar=None, palette="rocket")
        ax.set_title(f"{task}: matched frequency, bursts")
  for ax in axes.flat:
    if ax.axison and ax.get_yscale() == "log":
      log_axes(ax, x=False)
  fig.suptitle("Fig 6: task test loss over training, per frequency (seed mean)", fontsize=10)
  return save(fig, out_dir, "fig6_task_loss_over_steps", formats)


def fig7_probes(df: pd.DataFrame, out_dir: str, formats=FORMATS):
  """Probe scores (probe/<task>/<metric>) against the task's test accuracy at the same steps, by size."""
  d = lm_runs(df)
  # The unsuffixed keys (probe/cmp/order_r2: layer 1; probe/add/fourier_modes: modes in any layer); per-layer
  # variants end in _l<i>.
  probes = d[(d["group"] == "probe") & ~d["metric"].astype(str).str.contains(r"_l\d+$", regex=True)]
  if probes.empty:
    raise SkipFigure("no probe/<task>/<metric> metrics logged (issue 7)")
  acc = d[(d["group"] == "eval") & (d["split"] == "test") & (d["metric"] == "accuracy")]
  m = probes.merge(acc[["run", "step", "task", "value"]], on=["run", "step", "task"], suffixes=("", "_acc"))
  if m.empty:
    raise SkipFigure("probe metrics are not logged at steps with a task eval")
  keys = sorted(m.groupby(["task", "metric"], observed=True).groups.keys())
  fig, axes = plt.subplots(1, len(keys), figsize=(3.4 * len(keys), 3), squeeze=False)
  for ax, (task, metric) in zip(axes[0], keys):
    g = m[(m["task"] == task) & (m["metric"] == metric)]
    sns.scatterplot(data=g, x="value_acc", y="value", hue="N", hue_order=n_order(g), ax=ax,
                    palette=size_label_palette(d["n_params_non_embedding"].dropna()),
                    s=14, legend=ax is axes[0][0])
    ax.set_xlabel(f"{task} test accuracy")
    ax.set_ylabel(f"probe {metric}")
    ax.set_title(f"{task}: {metric}")
  fig.suptitle("Fig 7: probes track accuracy", fontsize=10)
  return save(fig, out_dir, "fig7_probes", formats)


def fig8_injections(df: pd.DataFrame, out_dir: str, formats=FORMATS):
  """Burst schedule: task eval loss over steps with the injection steps marked, one panel per size; plus, when
  the runs log retention/<task>/{gain,decay}, the mean per-injection gain and decay per size."""
  d = lm_runs(df)
  ev = d[(d["group"] == "eval") & (d["split"] == "test") & (d["metric"] == "loss") & (d["schedule"] == "burst")]
  ret = d[(d["group"] == "retention") & d["metric"].isin(["gain", "decay"])]
  if ev.empty and ret.empty:
    raise SkipFigure("no runs with a burst schedule (data.tasks.<t>.schedule=burst)")
  sizes = sorted(ev["n_params_non_embedding"].unique())
  ncol = len(sizes) + (0 if ret.empty else 1)
  fig, axes = plt.subplots(1, ncol, figsize=(3.4 * ncol, 3), squeeze=False)
  for ax, n in zip(axes[0], sizes):
    g = ev[ev["n_params_non_embedding"] == n]
    for (task, period), h in g.groupby(["task", "period"], observed=True):
      h = h.groupby("step")["value"].mean()
      ax.plot(h.index, h.to_numpy(), ".-", ms=3, label=f"{task} P={period:g}")
      for s in np.arange(0, h.index.max() + 1, period):
        ax.axvline(s, color="grey", lw=0.5, alpha=0.5)
    ax.set_title(f"N={fmt_n(n)}")
    ax.set_xlabel("step (grey: injections)")
    ax.set_ylabel("task test loss (nats)")
    ax.legend()
  if not ret.empty:
    ax = axes[0][-1]
    m = ret.groupby(["N", "n_params_non_embedding", "task", "metric"], observed=True)["value"].mean().reset_index()
    m = m.sort_values("n_params_non_embedding").astype({"metric": str, "N": str})  # categoricals: all levels
    sns.barplot(data=m, x="N", y="value", hue="metric", hue_order=["gain", "decay"], ax=ax, order=n_order(ret),
                errorbar=None)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_title("per injection: gain vs decay\n(decay ≈ gain: forgotten)")
    ax.set_ylabel("nats")
  fig.suptitle("Fig 8: loss around injections", fontsize=10)
  return save(fig, out_dir, "fig8_injections", formats)


def fig9_interference(df: pd.DataFrame, out_dir: str, formats=FORMATS):
  """Gradient-interference cosines (interference/<task>/cos_*) over steps, one line per size."""
  d = lm_runs(df)
  d = d[(d["group"] == "interference") & d["metric"].astype(str).str.startswith("cos")]
  if d.empty:
    raise SkipFigure("no interference/<task>/cos_* metrics logged (issue 7)")
  tasks = sorted(d["task"].astype(str).unique())
  metrics = sorted(d["metric"].astype(str).unique())
  fig, axes = plt.subplots(len(tasks), len(metrics), figsize=(3.2 * len(metrics), 2.6 * len(tasks)),
                           squeeze=False, sharex=True)
  for row, task in zip(axes, tasks):
    for ax, metric in zip(row, metrics):
      g = d[(d["task"] == task) & (d["metric"] == metric)]
      sns.lineplot(data=g, x="step", y="value", hue="N", hue_order=n_order(d), ax=ax,
                   palette=size_label_palette(d["n_params_non_embedding"].dropna()), errorbar=("sd", 1),
                   legend=ax is axes[0][-1])
      ax.axhline(0, color="k", lw=0.5)
      ax.set_title(f"{task}: {metric}")
      ax.set_ylabel("cosine")
      if ax.get_legend() is not None:
        ax.get_legend().remove()
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", title="N", ncol=8,
                   frameon=False)
  fig.suptitle("Fig 9: gradient interference", fontsize=10)
  return save(fig, out_dir, "fig9_interference", formats)
