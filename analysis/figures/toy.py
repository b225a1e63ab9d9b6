"""The toy's figures (paper §3): Fig 2a phase diagram, Fig 2b loss vs width, Fig 3 signal vs δ_F, Fig 4 withhold injections."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from analysis import load as load_lib
from analysis import predictions as pr
from analysis.figures.base import FORMATS, SkipFigure, save, size_palette, toy_runs
from scaling.toy import theory as toy_theory


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
  return save(fig, out_dir, "fig2a_toy_phase", formats)


def pick_tasks(K: int, n: int) -> list[int]:
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
    ks = pick_tasks(c.spec.K, 8)
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
  fig.legend(*axes[0][-1].get_legend_handles_labels(), loc="outside lower center", ncol=4, frameon=False)
  fig.suptitle("Fig 2b: task loss vs width", fontsize=10)
  return save(fig, out_dir, "fig2b_toy_loss_vs_width", formats)


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
  t = toy_runs(df)
  t = t[(t["beta"] == c.condition["beta"]) & t["inject_task"].isna()]
  if t[t["metric"] == "signal"].empty:
    raise SkipFigure("toy runs log no toy/<task>/signal")
  logged = t[(t["group"] == "toy") & t["task"].isna() & t["metric"].isin(["signal_rare", "signal_frequent"])]
  if not logged.empty:  # scaling/toy_train.py logs them, with its own rare set (toy.rare_tasks / injected / ¬F)
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
    pal = size_palette(m["width"])
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
  return save(fig, out_dir, "fig3_signal_vs_width_deltaF", formats)


def fig4_withhold(df: pd.DataFrame, out_dir: str, formats=FORMATS):
  """Matched-frequency injection: (a) the injected task's signal over steps, smallest vs largest width at the
  largest gap G; (b) its end-of-training signal over G × width; (c) cos(G_r, G_F) over training."""
  t = toy_runs(df)
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
  return save(fig, out_dir, "fig4_withhold", formats)
