"""The paper's figures (Figs 1–9 where the sweep has the data), per-curve scaling plots and N* vs frequency.

Every function takes the tidy table and/or fit objects plus an output folder, writes `<name>.png` (and `.pdf`)
and returns the paths; when the sweep lacks what a figure needs it raises `SkipFigure(reason)`, which `make`
turns into a logged, listed skip. Headless (Agg), seaborn styling, one look for all.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")  # headless: before pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis import load as load_lib  # noqa: E402
from analysis import predictions as pr  # noqa: E402
from scaling.toy import theory as toy_theory  # noqa: E402

log = logging.getLogger(__name__)
DPI = 110
FORMATS = ("png", "pdf")
MAX_TOY_PANELS = 16


class SkipFigure(Exception):
  """The sweep has no data for this figure; the message says what is missing."""


def style():
  sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)
  # constrained layout places titles, colour bars and outside legends; bbox="tight" on top would lay out twice.
  plt.rcParams.update({"figure.dpi": DPI, "savefig.bbox": None, "axes.titlesize": 9, "legend.fontsize": 7,
                       "pdf.fonttype": 42, "figure.constrained_layout.use": True})


def slug(s: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_")


def _save(fig, out_dir: str, name: str, formats=FORMATS) -> list[str]:
  os.makedirs(out_dir, exist_ok=True)
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


def _size_palette(values):
  vals = sorted(set(values))
  colors = sns.color_palette("viridis", max(len(vals), 1))
  return dict(zip(vals, colors))


def _fmt_n(n: float) -> str:
  for unit, s in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
    if n >= unit:
      return f"{n / unit:.3g}{s}"
  return f"{n:.3g}"


def _lm(df):
  d = df[(df["experiment"] == "lm") & (df["status"] == "done")].copy()
  d["N"] = d["n_params_non_embedding"].map(_fmt_n)  # readable legend labels
  return d


def _n_order(d):
  return [_fmt_n(n) for n in sorted(d["n_params_non_embedding"].unique())]


def _toy(df):
  return df[(df["experiment"] == "toy") & (df["status"] == "done")]


# ---------------------------------------------------------------------------------------------------------------
# Fig 1
# ---------------------------------------------------------------------------------------------------------------
def fig1_compute_vs_infinite(f1: pr.Fig1, out_dir: str, formats=FORMATS) -> list[str]:
  """L_C(N) (matched compute) and L_∞(N) (final) with fits; between them what data scaling reaches, below L_∞
  what only model scaling reaches."""
  if f1 is None or (f1.points_C.empty and f1.points_inf.empty):
    raise SkipFigure("no LM runs with a background loss")
  fig, ax = plt.subplots(figsize=(5, 3.6))
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
  ax.set_title("Fig 1: compute-matched vs converged loss")
  fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper")
  return _save(fig, out_dir, "fig1_compute_vs_infinite", formats)


# ---------------------------------------------------------------------------------------------------------------
# Toy: Figs 2–4
# ---------------------------------------------------------------------------------------------------------------
def _plain_toy(comps):
  return [c for c in comps if not np.isfinite(c.condition.get("inject_task", np.nan))]


def fig2a_toy_phase(comps: list, retention: pd.DataFrame, out_dir: str, formats=FORMATS):
  """Feature retained vs width × task, against Theorem 3's boundary (exact entry width of each task's first
  feature). Colour: retention ‖P_U b_{k,1}‖² when the runs stored it, else 1 − normalised loss."""
  comps = _plain_toy(comps)
  if not comps:
    raise SkipFigure("no toy runs without injection")
  fig, axes = plt.subplots(1, len(comps), figsize=(3.4 * len(comps), 3.2), squeeze=False)
  for ax, c in zip(axes[0], comps):
    beta = c.condition["beta"]
    ret = retention[(retention["beta"] == beta) & retention["inject_task"].isna() & (retention["j"] == 1)] \
        if not retention.empty else retention
    if not ret.empty:
      tab = ret.groupby(["width", "k"])["retention"].mean().unstack("k")
      what = "retention of feature 1"
    else:
      sim = c.simulated.copy()
      sim["k"] = sim["task"].str[1:].astype(int)
      tab = (1 - sim.pivot_table(index="width", columns="k", values="loss_norm"))
      what = "1 − normalised loss (no retention stored)"
    tab = tab.sort_index()
    K = c.spec.K
    ks = np.arange(1, K + 1)
    widths = tab.index.to_numpy(float)
    im = ax.pcolormesh(np.arange(0.5, K + 1), np.arange(len(widths) + 1), tab.reindex(columns=ks).to_numpy(),
                       cmap="magma", vmin=0, vmax=1, shading="flat")
    entry = toy_theory.phase_boundary(c.spec)[:, 0]  # exact entry width of feature 1
    # Position of each entry width on the (categorical) width axis: first row whose width >= entry.
    ypos = np.array([np.searchsorted(widths, e, side="left") if np.isfinite(e) else len(widths) for e in entry])
    ax.step(np.concatenate([ks - 0.5, [K + 0.5]]), np.concatenate([ypos, [ypos[-1]]]), where="post",
            color="cyan", lw=1.5, label="Theorem 3 boundary")
    ax.set_yticks(np.arange(len(widths)) + 0.5, [f"{w:g}" for w in widths])
    ax.set_xlabel("task k (frequency rank)")
    ax.set_ylabel("width N")
    ax.set_title(f"β={beta:g}: {what}")
    fig.colorbar(im, ax=ax, fraction=0.05)
  axes[0][0].legend(loc="lower right")
  fig.suptitle("Fig 2a: toy phase diagram", fontsize=10)
  return _save(fig, out_dir, "fig2a_toy_phase", formats)


def _pick_tasks(K: int, n: int) -> list[int]:
  if K <= n:
    return list(range(1, K + 1))
  return sorted(set(int(round(x)) for x in np.geomspace(1, K, n)))


TOY_LOSS_YMAX = 1.3  # chance (the zero predictor) is 1


def fig2b_toy_loss_vs_width(comps: list, out_dir: str, formats=FORMATS):
  """Per-task normalised loss vs width for each β (solid: simulated), with Theorem 3's optimum (dashed)."""
  comps = _plain_toy(comps)
  if not comps:
    raise SkipFigure("no toy runs without injection")
  fig, axes = plt.subplots(1, len(comps), figsize=(3.4 * len(comps), 3.2), squeeze=False, sharey=True)
  for ax, c in zip(axes[0], comps):
    ks = _pick_tasks(c.spec.K, 8)
    pal = dict(zip(ks, sns.color_palette("rocket", len(ks))))
    dense = pr.toy_analytic_curves(c.spec, np.unique(np.geomspace(min(c.widths), max(c.widths), 200).astype(int)))
    for k in ks:
      name = load_lib.toy_task_names(c.spec.K)[k - 1]
      s = c.simulated[c.simulated["task"] == name].sort_values("width")
      a = dense[dense["k"] == k]
      ax.plot(s["width"], s["loss_norm"], "o-", ms=3, color=pal[k], label=f"t{k}")
      ax.step(a["width"], a["loss_norm"], where="post", ls="--", lw=1, color=pal[k])
    over = c.simulated[c.simulated["loss_norm"] > TOY_LOSS_YMAX]
    if len(over):  # an unconverged decoder can sit far above chance; keep the 0..1 range readable
      ax.text(0.02, 0.97, f"{len(over)} points above {TOY_LOSS_YMAX:g} (max {over['loss_norm'].max():.3g})",
              transform=ax.transAxes, va="top", fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("width N")
    ax.set_title(f"β={c.condition['beta']:g} (dashed: Theorem 3)")
  axes[0][0].set_ylim(-0.03, TOY_LOSS_YMAX)
  axes[0][0].set_ylabel("normalised task loss ℓ_k / Tr(C_k)")
  fig.legend(*axes[0][-1].get_legend_handles_labels(), loc="outside right center")
  fig.suptitle("Fig 2b: task loss vs width", fontsize=10)
  return _save(fig, out_dir, "fig2b_toy_loss_vs_width", formats)


def _rare_frequent_signal(d: pd.DataFrame, spec) -> pd.DataFrame:
  """Signal of the rare / frequent sets from per-task signal, weighted by π_k Tr(C_k) (= models/toy.py's
  signal_rare / signal_frequent: captured utility over total utility of the set)."""
  F = toy_theory.frequent_set(spec)
  names = load_lib.toy_task_names(spec.K)
  w = dict(zip(names, spec.pi * spec.trace_C))
  isF = dict(zip(names, F))
  s = d[d["metric"] == "signal"].copy()
  s["w"] = s["task"].astype(str).map(w)
  s["set"] = np.where(s["task"].astype(str).map(isF), "frequent", "rare")
  s["ws"] = s["w"] * s["value"]
  g = s.groupby(["run", "width", "step", "set"], observed=True)[["ws", "w"]].sum().reset_index()
  g["signal"] = g["ws"] / g["w"]
  return g


def fig3_signal(df: pd.DataFrame, comps: list, out_dir: str, formats=FORMATS):
  """(a) final rare / frequent signal vs width; (b) a rare task's normalised signal vs δ_F over training, one
  line per width, with δ_F*(N_r^crit) (the rare task starts once δ_F falls below it)."""
  comps = _plain_toy(comps)
  if not comps:
    raise SkipFigure("no toy runs without injection")
  c = min(comps, key=lambda x: abs(x.condition["beta"] - 1.0))  # the paper's β = 1 when present
  t = _toy(df)
  t = t[(t["beta"] == c.condition["beta"]) & t["inject_task"].isna()]
  if t[t["metric"] == "signal"].empty:
    raise SkipFigure("toy runs log no toy/<task>/signal")
  logged = t[(t["group"] == "toy") & t["task"].isna() & t["metric"].isin(["signal_rare", "signal_frequent"])]
  if not logged.empty:  # scaling/toy/train.py logs them, with its own rare set (toy.rare_tasks / injected / ¬F)
    rs = logged.assign(set=logged["metric"].astype(str).str[len("signal_"):], signal=logged["value"])
  else:
    rs = _rare_frequent_signal(t[t["group"] == "toy"], c.spec)
  fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.3))
  last = rs.sort_values("step").groupby(["run", "set"]).tail(1)
  sns.lineplot(data=last, x="width", y="signal", hue="set", marker="o", ax=a, errorbar=None)
  a.set_xscale("log", base=2)
  a.set_title(f"final signal captured (β={c.condition['beta']:g})")
  # (b): the most frequent rare task whose N_crit lies inside the width grid.
  tasks = c.tasks[~c.tasks["frequent"] & (c.tasks["N_crit"] <= max(c.widths))].sort_values("k")
  dF = t[(t["group"] == "toy") & (t["metric"] == "delta_F") & t["task"].isna()]
  if tasks.empty or dF.empty:
    b.text(0.5, 0.5, "no rare task with N_crit inside the width grid,\nor no toy/delta_F logged", ha="center",
           va="center", transform=b.transAxes)
  else:
    row = tasks.iloc[0]
    name = row["task"]
    sig = t[(t["group"] == "toy") & (t["task"] == name) & (t["metric"] == "signal_norm")]
    m = sig.merge(dF[["run", "step", "value"]], on=["run", "step"], suffixes=("", "_dF"))
    pal = _size_palette(m["width"])
    for w, g in m.groupby("width"):
      g = g.sort_values("step")
      b.plot(g["value_dF"], g["value"], "-", color=pal[w], label=f"N={w:g}")
    ds = toy_theory.delta_F_star(c.spec, int(row["N_crit"]))
    b.axvline(ds, color="k", ls="--", lw=1, label=f"δ_F*(N_crit={int(row['N_crit'])})")
    b.set_xscale("log")
    b.invert_xaxis()
    b.set_xlabel("δ_F (frequent residual), training →")
    b.set_ylabel(f"{name} normalised signal")
    b.set_title(f"rare task {name} (π={row['pi']:.3f})")
    b.legend(fontsize=6)
  fig.suptitle("Fig 3: rare vs frequent signal", fontsize=10)
  return _save(fig, out_dir, "fig3_signal_vs_width_deltaF", formats)


def fig4_withhold(df: pd.DataFrame, out_dir: str, formats=FORMATS):
  """Matched-frequency injection: (a) the injected task's signal over steps, smallest vs largest width at the
  largest gap G; (b) its end-of-training signal over G × width; (c) cos(G_r, G_F) over training."""
  t = _toy(df)
  t = t[t["inject_period"].notna() & (t["group"] == "toy")]
  if t.empty:
    raise SkipFigure("no toy runs with an injected (withheld) task")
  t = t.copy()
  t["inj"] = "t" + t["inject_task"].astype(int).map("{:02d}".format)
  sig = t[(t["metric"] == "signal") & (t["task"].astype(str) == t["inj"])]
  if sig.empty:
    raise SkipFigure("the injected task's toy/<task>/signal is not logged")
  fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
  G = sig["inject_period"].max()
  widths = sorted(sig["width"].unique())
  for w in (widths[0], widths[-1]):
    g = sig[(sig["inject_period"] == G) & (sig["width"] == w)].groupby("step")["value"].mean()
    axes[0].plot(g.index, g.to_numpy(), label=f"N={w:g}")
  axes[0].set_title(f"(a) injected task signal, G={G:g}")
  axes[0].set_xlabel("step")
  axes[0].legend()
  end = sig.sort_values("step").groupby(["run"], observed=True).tail(1)
  tab = end.pivot_table(index="inject_period", columns="width", values="value")
  tab.index, tab.columns = [f"{v:g}" for v in tab.index], [f"{v:g}" for v in tab.columns]
  sns.heatmap(tab, ax=axes[1], cmap="viridis", annot=True, fmt=".2f", cbar=False)
  axes[1].set_title("(b) end-of-training injected signal")
  axes[1].set_ylabel("gap G")
  cos = t[(t["metric"] == "cos_rF") & t["task"].isna()]
  if cos.empty:
    axes[2].text(0.5, 0.5, "toy/cos_rF not logged", ha="center", transform=axes[2].transAxes)
  else:
    sns.lineplot(data=cos, x="step", y="value", hue="width", style="inject_period", ax=axes[2], errorbar=None,
                 palette="viridis")
    axes[2].set_ylabel("cos(G_r, G_F)")
  axes[2].set_title("(c) interference over training")
  fig.suptitle("Fig 4: withhold injections", fontsize=10)
  return _save(fig, out_dir, "fig4_withhold", formats)


# ---------------------------------------------------------------------------------------------------------------
# LM: Figs 5–9
# ---------------------------------------------------------------------------------------------------------------
def _task_names(df):
  d = df[(df["group"] == "eval") & df["task"].notna() & (df["task"] != "background")]
  return sorted(d["task"].astype(str).unique())


def fig5_heatmaps(fin: pd.DataFrame, out_dir: str, formats=FORMATS):
  """Size × frequency heat maps of each task's final train-split loss (LABEL token) and test accuracy."""
  d = _lm(fin)
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
      tab.index = [_fmt_n(v) for v in tab.index]
      tab.columns = [f"{v:g}" for v in tab.columns]
      sns.heatmap(tab, ax=ax, cmap=cmap, annot=True, fmt=".2f", cbar=False,
                  **({"vmin": 0, "vmax": 1} if "accuracy" in title else {}))
      ax.set_title(f"{task}: {title}")
      ax.set_xlabel("instances per batch")
      ax.set_ylabel("N (non-embedding)")
  fig.suptitle("Fig 5: who learns the task", fontsize=10)
  return _save(fig, out_dir, "fig5_heatmaps", formats)


def fig6_task_loss_over_steps(df: pd.DataFrame, out_dir: str, formats=FORMATS):
  """(a) task test loss over steps, one line per frequency, for the smallest / middle / largest size;
  (b) matched frequency with bursts (schedule burst, one line per period), when the sweep has them."""
  d = _lm(df)
  d = d[(d["group"] == "eval") & (d["split"] == "test") & (d["metric"] == "loss") & d["task"].notna()
        & (d["task"] != "background")]
  if d.empty:
    raise SkipFigure("no LM task evals")
  tasks = sorted(d["task"].astype(str).unique())
  rnd = d[d["schedule"] == "random"]
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
      sns.lineplot(data=g.rename(columns={"frequency_per_batch": "instances/batch"}), x="step", y="value",
                   hue="instances/batch", ax=ax, errorbar=None, palette="viridis", legend=ax is row[0])
      ax.set_title(f"{task}, N={_fmt_n(n)}")
      ax.set_yscale("log")
      ax.set_ylabel("test loss (nats)")
    if not burst.empty:
      ax = row[-1]
      g = burst[burst["task"] == task]
      if g.empty:
        ax.set_axis_off()
      else:
        sns.lineplot(data=g, x="step", y="value", hue="period", style="N", style_order=_n_order(g), ax=ax,
                     errorbar=None, palette="rocket")
        ax.set_title(f"{task}: matched frequency, bursts")
  fig.suptitle("Fig 6: task loss over training", fontsize=10)
  return _save(fig, out_dir, "fig6_task_loss_over_steps", formats)


def fig7_probes(df: pd.DataFrame, out_dir: str, formats=FORMATS):
  """Probe scores (probe/<task>/<metric>) against the task's test accuracy at the same steps, by size."""
  d = _lm(df)
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
    sns.scatterplot(data=g, x="value_acc", y="value", hue="N", hue_order=_n_order(g), ax=ax, palette="viridis",
                    s=14, legend=ax is axes[0][0])
    ax.set_xlabel(f"{task} test accuracy")
    ax.set_ylabel(f"probe {metric}")
    ax.set_title(f"{task}: {metric}")
  fig.suptitle("Fig 7: probes track accuracy", fontsize=10)
  return _save(fig, out_dir, "fig7_probes", formats)


def fig8_injections(df: pd.DataFrame, out_dir: str, formats=FORMATS):
  """Burst schedule: task eval loss over steps with the injection steps marked, one panel per size; plus, when
  the runs log retention/<task>/{gain,decay}, the mean per-injection gain and decay per size."""
  d = _lm(df)
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
    ax.set_title(f"N={_fmt_n(n)}")
    ax.set_xlabel("step (grey: injections)")
    ax.set_ylabel("task test loss (nats)")
    ax.legend()
  if not ret.empty:
    ax = axes[0][-1]
    m = ret.groupby(["N", "n_params_non_embedding", "task", "metric"], observed=True)["value"].mean().reset_index()
    m = m.sort_values("n_params_non_embedding").astype({"metric": str, "N": str})  # categoricals: all levels
    sns.barplot(data=m, x="N", y="value", hue="metric", hue_order=["gain", "decay"], ax=ax, order=_n_order(ret),
                errorbar=None)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_title("per injection: gain vs decay (decay ≈ gain: forgotten)")
    ax.set_ylabel("nats")
  fig.suptitle("Fig 8: loss around injections", fontsize=10)
  return _save(fig, out_dir, "fig8_injections", formats)


def fig9_interference(df: pd.DataFrame, out_dir: str, formats=FORMATS):
  """Gradient-interference cosines (interference/<task>/cos_*) over steps, one line per size."""
  d = _lm(df)
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
      sns.lineplot(data=g, x="step", y="value", hue="N", hue_order=_n_order(d), ax=ax, palette="viridis",
                   errorbar=("sd", 1), legend=ax is axes[0][-1])
      ax.axhline(0, color="k", lw=0.5)
      ax.set_title(f"{task}: {metric}")
      ax.set_ylabel("cosine")
      if ax.get_legend() is not None:
        ax.get_legend().remove()
        fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", title="N")
  fig.suptitle("Fig 9: gradient interference", fontsize=10)
  return _save(fig, out_dir, "fig9_interference", formats)


# ---------------------------------------------------------------------------------------------------------------
# Scaling curves and N*
# ---------------------------------------------------------------------------------------------------------------
def _draw_fit(ax, cf, color, label):
  c = cf.curve
  y = c.y if c.metric != "accuracy" else c.y
  ax.scatter(c.N, y, s=12, color=color, alpha=0.8, label=label)
  if cf.fit is None:
    return
  grid = np.geomspace(c.N.min() / 1.5, c.N.max() * 1.5, 150)
  to_metric = (lambda v: 1 - v) if c.metric == "accuracy" else (lambda v: v)
  ax.plot(grid, to_metric(cf.fit.predict(grid)), color=color, lw=1.2)
  if cf.fit.samples is not None:
    lo, hi = cf.fit.predict_interval(grid)
    lo, hi = to_metric(lo), to_metric(hi)
    ax.fill_between(grid, np.minimum(lo, hi), np.maximum(lo, hi), color=color, alpha=0.15, lw=0)
  ns = cf.nstar
  if ns is not None and np.isfinite(ns.n_star):
    ax.axvline(ns.n_star, color=color, ls=":", lw=1)
    if ns.ci is not None and np.isfinite(ns.ci[0]):
      hi_ci = ns.ci[1] if np.isfinite(ns.ci[1]) else grid.max()
      ax.axvspan(max(ns.ci[0], 1e-300), hi_ci, color=color, alpha=0.06, lw=0)


def scaling_curve_groups(fits: list) -> dict[str, list]:
  """Figure name -> the curve fits it shows: one figure per (kind, task, metric); toy: one per β."""
  groups: dict[str, list] = {}
  for f in fits:
    c = f.curve
    if c.kind == "toy":
      groups.setdefault(f"scaling_curves_toy_beta{c.condition['beta']:g}", []).append(f)
    else:
      groups.setdefault(f"scaling_curves_{c.kind}_{c.task}_{c.metric}", []).append(f)
  return dict(sorted(groups.items()))


def scaling_curves(fits: list, out_dir: str, formats=FORMATS) -> list[str]:
  """Every scaling-curve figure (see scaling_curve)."""
  groups = scaling_curve_groups(fits)
  if not groups:
    raise SkipFigure("no curves")
  return [p for name, members in groups.items() for p in scaling_curve(name, members, out_dir, formats)]


def scaling_curve(name: str, members: list, out_dir: str, formats=FORMATS) -> list[str]:
  """Points per seed, the fit, its bootstrap band, N* (dotted) with its CI (shaded). Toy: small multiples."""
  if not members:
    raise SkipFigure("no curves")
  first = members[0].curve
  if first.kind == "toy":
    members = sorted(members, key=lambda m: m.curve.task)
    pick = set(_pick_tasks(len(members), MAX_TOY_PANELS))
    members = [m for i, m in enumerate(members, start=1) if i in pick]
    ncol = min(4, len(members))
    nrow = math.ceil(len(members) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.2 * nrow), squeeze=False, sharey=True)
    for ax, m in zip(axes.flat, members):
      _draw_fit(ax, m, "tab:blue", None)
      ax.set_xscale("log", base=2)
      ax.set_yscale("log")
      ax.axhline(0.5, color="grey", ls="--", lw=0.6)
      ax.set_title(m.curve.task + ("" if m.fit is not None else f"\n(no fit: {m.reason})"), fontsize=7)
    for ax in list(axes.flat)[len(members):]:
      ax.set_axis_off()
    fig.suptitle(f"toy β={first.condition['beta']:g}: normalised loss vs width (fit, 95% band, N* dotted)",
                 fontsize=9)
    return _save(fig, out_dir, name, formats)
  fig, ax = plt.subplots(figsize=(4.6, 3.3))
  pal = sns.color_palette("viridis", len(members))
  for color, m in zip(pal, sorted(members, key=lambda m: str(m.curve.id))):
    c = m.curve
    lab = c.label().replace(f"{c.task} {c.metric}", "").strip() or c.task
    lab += f" ({m.model})" if m.fit is not None else " (no fit, see report)"
    _draw_fit(ax, m, color, lab)
  ax.set_xscale("log")
  if first.metric != "accuracy":
    ax.set_yscale("log")
  if first.chance is not None:
    ax.axhline(first.chance, color="grey", ls="--", lw=0.8, label="chance")
  if first.fix_E is not None:
    ax.axhline(first.fix_E, color="grey", ls=":", lw=0.8, label="E (entropy rate)")
  ax.set_xlabel("non-embedding parameters N")
  ax.set_ylabel(f"final {first.key}")
  ax.set_title(f"{first.task}: {first.metric} vs N" + ("" if first.kind == "background" else " (dotted: N*)"),
               fontsize=8)
  fig.legend(*ax.get_legend_handles_labels(), fontsize=6, loc="outside right upper")
  return _save(fig, out_dir, name, formats)


def nstar_vs_frequency(freq_fits: list, out_dir: str, formats=FORMATS) -> list[str]:
  """N* against frequency with CI bars, the fitted law N* ∝ f^-γ and its 95% prediction band."""
  usable = [f for f in freq_fits if f.points]
  if not usable:
    raise SkipFigure("no task has N* at ≥ 2 frequencies")
  fig, axes = plt.subplots(1, len(usable), figsize=(3.6 * len(usable), 3.2), squeeze=False)
  for ax, ff in zip(axes[0], usable):
    pts = np.array([p[:4] for p in ff.points], dtype=float)
    fin = np.isfinite(pts[:, 1])
    lo = np.where(np.isfinite(pts[:, 2]), pts[:, 2], pts[:, 1])
    hi = np.where(np.isfinite(pts[:, 3]), pts[:, 3], pts[:, 1] * 10)
    ax.errorbar(pts[fin, 0], pts[fin, 1], yerr=[pts[fin, 1] - lo[fin], hi[fin] - pts[fin, 1]], fmt="o", ms=4,
                capsize=2, label="N* (95% CI)")
    if (~fin).any():
      top = np.nanmax(pts[fin, 1]) * 3 if fin.any() else 1.0
      ax.scatter(pts[~fin, 0], np.full((~fin).sum(), top), marker="^", color="tab:red", label="never learned")
    if ff.law is not None:
      g = np.geomspace(pts[:, 0].min() / 2, pts[:, 0].max() * 2, 100)
      pred = np.array([ff.law.predict(x) for x in g])
      ax.plot(g, pred[:, 0], "k-", lw=1, label=f"γ={ff.law.gamma:.2f}")
      if np.isfinite(pred[:, 1]).all():
        ax.fill_between(g, pred[:, 1], pred[:, 2], color="k", alpha=0.1, lw=0, label="95% prediction")
    else:
      ax.text(0.05, 0.05, ff.reason or "", transform=ax.transAxes, fontsize=6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("frequency (" + ("instances per batch" if ff.freq_name == "frequency_per_batch" else "π_k") + ")")
    ax.set_ylabel("N*")
    ax.set_title(f"{ff.kind} {ff.task} {ff.metric} " + ", ".join(f"{k}={v}" for k, v in ff.condition.items()
                                                                if v is not None), fontsize=7)
    ax.legend(fontsize=6)
  fig.suptitle("Learnable size N* vs frequency", fontsize=10)
  return _save(fig, out_dir, "nstar_vs_frequency", formats)
