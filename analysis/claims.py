"""The paper's figure claims as checks on run dirs: per figure, does its direction hold in our runs, and the numbers.

Each `figN(loaded)` takes an `analysis.load.Loaded` (the runs of that figure's sweep) and returns a `Claim`:
`holds` (the direction of the paper's claim, True / False, or None when the runs lack what it needs), a verdict
word, the numbers behind it and the reason in one sentence. `check(figure, sweep_dir)` loads and checks one dir.

Verdicts: "holds" (direction right and the effect clear of the measured spread, see each function), "holds
weakly" (direction right, effect inside the spread or only part of the comparisons agree), "does not hold at this
scale" (direction wrong), "not measurable" (the metric the claim needs is absent). Sizes are non-embedding
parameters (toy: width); "smallest" / "largest" are the extremes of the sweep's grid.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import pandas as pd
from scipy import stats as sstats

from analysis import load as load_lib
from analysis import predictions as pr
from analysis.curves import fmt_n
from scaling.toy import theory as toy_theory

HOLDS, WEAK, FAILS, NA = "holds", "holds weakly", "does not hold at this scale", "not measurable"
RETAINED = 0.5  # ‖P_U b‖² above this: feature retained (the README's Fig-2 rule)
ONSET = 0.1  # Fig 3: normalised signal s̃ above this: the rare task has started
ONSET_LEVELS = (0.05, 0.1, 0.2, 0.5)  # Fig 3: onset levels reported
FREQUENT_TOL = 0.05  # Fig 4: the frequent signal may move less than this across gaps (the bound)


@dataclasses.dataclass
class Claim:
  figure: str
  holds: bool | None
  verdict: str
  numbers: dict
  reason: str


def verdict(holds: bool | None, clear: bool) -> str:
  if holds is None:
    return NA
  return (HOLDS if clear else WEAK) if holds else FAILS


def _missing(figure: str, what: str) -> Claim:
  return Claim(figure, None, NA, {}, f"the runs log no {what}")


def _lm_final(df: pd.DataFrame, group: str, metric: str, split: str | None = "test") -> pd.DataFrame:
  d = load_lib.final(df[(df["experiment"] == "lm")])
  sel = (d["group"] == group) & (d["metric"] == metric) & d["task"].notna()
  if split is not None:
    sel &= d["split"] == split
  return d[sel & (d["task"] != "background")]


def _rho(x, y) -> float:
  x, y = np.asarray(x, float), np.asarray(y, float)
  if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
    return math.nan
  return float(sstats.spearmanr(x, y).statistic)


def _fmt_table(tab: pd.DataFrame, fmt: str = "{:.3f}") -> dict:
  return {str(i): {str(c): fmt.format(v) for c, v in row.items() if np.isfinite(v)} for i, row in tab.iterrows()}


# ---------------------------------------------------------------------------------------------------------------
# The toy (Figs 2–4)
# ---------------------------------------------------------------------------------------------------------------
def fig2(loaded: load_lib.Loaded) -> Claim:
  """Training keeps Theorem 3's top-N features: recall (top-N features retained) and precision (retained features
  that are top-N) over every run, and Fig 2b's RMSE of the normalised loss against the optimum. Holds when both
  are ≥ 0.9, weakly when both are ≥ 0.7 (the rest of the top-N set is still being learned)."""
  ret = pr.toy_retention(loaded)
  ret = ret[ret["inject_task"].isna()]
  if ret.empty:
    return _missing("2", "toy retention (retention.jsonl)")
  hit = kept = top = 0
  per_width = {}
  for run, g in ret.groupby("run"):
    spec = pr.toy_spec(loaded.configs[run])
    want = toy_theory.top_features(spec, int(g["width"].iloc[0])).astype(bool)
    got = np.zeros_like(want)
    got[g["k"].to_numpy() - 1, g["j"].to_numpy() - 1] = g["retention"].to_numpy() > RETAINED
    h = int((want & got).sum())
    hit, kept, top = hit + h, kept + int(got.sum()), top + int(want.sum())
    w = per_width.setdefault(int(g["width"].iloc[0]), [0, 0])
    w[0], w[1] = w[0] + h, w[1] + int(want.sum())
  recall, precision = hit / max(top, 1), hit / max(kept, 1)
  comps, _ = pr.toy_comparisons(load_lib.final(loaded.df), loaded.configs)
  comps = [c for c in comps if not np.isfinite(c.condition["inject_task"])]
  nums = {"recall (top-N retained)": round(recall, 4), "precision (retained in top-N)": round(precision, 4),
          "recall per width": {w: round(a / max(b, 1), 3) for w, (a, b) in sorted(per_width.items())},
          "Fig 2b loss RMSE vs Theorem 3, per β": {f"{c.condition['beta']:g}": round(c.stats["rmse"], 4)
                                                   for c in comps}}
  holds = min(recall, precision) >= 0.7
  return Claim("2", holds, verdict(holds, min(recall, precision) >= 0.9), nums,
               f"{hit} of the {top} top-N features are retained and {hit} of the {kept} retained features are top-N")


def _theory(loaded: load_lib.Loaded, run: str) -> dict:
  with open(os.path.join(loaded.paths[run], "theory.json")) as f:
    return json.load(f)


def _onsets(sig: pd.DataFrame, dF: pd.DataFrame, theories: dict[str, dict], threshold: float) -> dict:
  """Per rare task and run: δ_F / δ_F* at the first logged step whose normalised signal exceeds `threshold`
  (widths ≥ N_crit), and whether a task below its N_crit ever exceeds it."""
  ratios, early, late, n_below = [], 0, 0, 0
  for run, th in theories.items():
    s_run, d_run = sig[sig["key"] == run], dF[dF["key"] == run].set_index("step")["value"]
    for task in th["rare"]:
      crit, star = th["critical_width"].get(task), th["delta_F_star"].get(task)
      curve = s_run[s_run["task"] == task].sort_values("step")
      above = curve[curve["value"] > threshold]
      if crit is None or not np.isfinite(crit) or int(th["width"]) < crit:
        n_below += 1
        early += int(not above.empty)
      elif above.empty:
        late += 1  # at or above its N_crit but not started within the run
      elif star:
        ratios.append(float(d_run.get(int(above["step"].iloc[0]), math.nan)) / star)
  r = np.asarray([x for x in ratios if np.isfinite(x)])
  return {"ratios": r, "early": early, "n_below": n_below, "late": late}


def fig3(loaded: load_lib.Loaded) -> Claim:
  """Rare tasks start once δ_F falls below δ_F*(N_r^crit) (Prop. 6), and only at widths ≥ N_r^crit. Onset: the
  first logged step whose normalised signal s̃ exceeds ONSET (10% of the way from the random baseline to full);
  its δ_F over δ_F* per (rare task, width ≥ N_crit); below N_crit the task must never exceed ONSET. Holds when
  every onset ratio is ≤ 1.1 and no task starts below its N_crit; weakly when the median onset ratio is ≤ 1.1
  and at most a third of the tasks below N_crit start. The ratios at other onset levels are reported beside."""
  df = loaded.df[(loaded.df["experiment"] == "toy") & loaded.df["inject_task"].isna() & (loaded.df["group"] == "toy")]
  df = df.assign(key=df["sweep"].astype(str) + "/" + df["run"].astype(str))
  sig, dF = df[df["metric"] == "signal_norm"], df[(df["metric"] == "delta_F") & df["task"].isna()]
  if sig.empty or dF.empty:
    return _missing("3", "toy/<task>/signal_norm or toy/delta_F")
  theories = {run: _theory(loaded, run) for run in sig["key"].unique()}
  rare = df[df["metric"] == "signal_rare"].sort_values("step").groupby("width")["value"].last()
  nums = {"final signal_rare per width": {f"{w:g}": round(float(v), 3) for w, v in rare.items()}}
  for level in ONSET_LEVELS:
    o = _onsets(sig, dF, theories, level)
    r = o["ratios"]
    nums[f"onset at s̃ > {level:g}: δ_F / δ_F* median, max (n)"] = (
        (round(float(np.median(r)), 3), round(float(r.max()), 3), len(r)) if len(r) else None)
    nums[f"onset at s̃ > {level:g}: started below N_crit, unstarted at or above N_crit"] = (
        f"{o['early']} of {o['n_below']}", f"{o['late']} of {len(r) + o['late']}")
  o = _onsets(sig, dF, theories, ONSET)
  r, early, n_below = o["ratios"], o["early"], o["n_below"]
  if not len(r) and not n_below:
    return Claim("3", None, NA, nums, "no rare task reached its critical width inside the grid")
  ok_below = early <= n_below / 3
  holds = bool(len(r) and np.median(r) <= 1.1 and ok_below)
  clear = bool(holds and r.max() <= 1.1 and early == 0)
  return Claim("3", holds, verdict(holds, clear), nums,
               f"at onset (s̃ > {ONSET:g}) δ_F was ≤ 1.1 δ_F* in {int((r <= 1.1).sum())} of {len(r)} cases (median "
               f"{np.median(r) if len(r) else math.nan:.2f} δ_F*, earliest {r.max() if len(r) else math.nan:.2f} "
               f"δ_F*); {early} of {n_below} rare tasks started below their critical width")


def fig4(loaded: load_lib.Loaded) -> Claim:
  """Matched-frequency withholding: the injected task's final signal falls with the gap G faster for the narrowest
  width than for the widest, while the frequent signal moves < 0.05 across gaps at every width. Compared among the
  widths that learned the task at the smallest gap (signal ≥ ONSET there; a width that never learned it has
  nothing to lose), as the share of that signal lost at the largest gap. Holds when the narrow model loses the
  larger share and the frequent signal moves < 0.05; weakly when only the first; not measurable with fewer than
  two such widths."""
  df = loaded.df[(loaded.df["experiment"] == "toy") & loaded.df["inject_period"].notna() & (loaded.df["group"] == "toy")]
  if df.empty:
    return _missing("4", "toy runs with a withheld task")
  fin = load_lib.final(df)
  inj = "t" + fin["inject_task"].astype(int).map("{:02d}".format)
  rare = fin[(fin["metric"] == "signal") & (fin["task"].astype(str) == inj)]
  freq = fin[(fin["metric"] == "signal_frequent") & fin["task"].isna()]
  if rare.empty or freq.empty:
    return _missing("4", "toy/<injected task>/signal or toy/signal_frequent")
  tab = rare.pivot_table(index="inject_period", columns="width", values="value")
  ftab = freq.pivot_table(index="inject_period", columns="width", values="value")
  fmove = float((ftab.max() - ftab.min()).max())
  nums = {"rare (injected) final signal, gap × width": _fmt_table(tab),
          "frequent signal: largest move across gaps": round(fmove, 4)}
  crit = _theory(loaded, str(rare["sweep"].iloc[0]) + "/" + str(rare["run"].iloc[0]))["critical_width"]
  nums["critical width of the injected task (Prop. 6)"] = crit.get(str(inj.iloc[0]))
  if len(tab.index) < 2:
    return Claim("4", None, NA, nums, "needs ≥ 2 gaps")
  learned = tab.columns[tab.iloc[0] >= ONSET]
  lost = (tab.iloc[0] - tab.iloc[-1]) / tab.iloc[0]
  nums[f"share of the G={tab.index[0]:g} signal lost at G={tab.index[-1]:g}, widths that learned it"] = {
      f"{w:g}": round(float(lost[w]), 3) for w in learned}
  if len(learned) < 2:
    return Claim("4", None, NA, nums, f"only {len(learned)} width(s) ({', '.join(f'{w:g}' for w in learned)}) "
                 f"learned the injected task even at G={tab.index[0]:g} (signal ≥ {ONSET:g}); the comparison needs "
                 "a narrower width that learns it without a gap")
  narrow, wide = float(lost[learned[0]]), float(lost[learned[-1]])
  holds = narrow > wide
  return Claim("4", holds, verdict(holds, fmove < FREQUENT_TOL), nums,
               f"from G={tab.index[0]:g} to G={tab.index[-1]:g} the rare signal loses {narrow:.0%} at "
               f"N={learned[0]:g} vs {wide:.0%} at N={learned[-1]:g}; the frequent signal moves ≤ {fmove:.3f}")


# ---------------------------------------------------------------------------------------------------------------
# The transformer (Figs 5–9)
# ---------------------------------------------------------------------------------------------------------------
def fig5(loaded: load_lib.Loaded) -> Claim:
  """Who learns: final test accuracy rises with size at fixed frequency and with frequency at fixed size (Spearman
  ρ over the grid, per task). Holds when every ρ > 0 and the largest size at the highest frequency beats the
  smallest size there by more than 0.05 accuracy; weakly when every ρ > 0."""
  acc = _lm_final(loaded.df, "eval", "accuracy")
  acc = acc[acc["schedule"] == "random"]
  if acc.empty:
    return _missing("5", "eval/<task>/accuracy")
  nums, rhos, gaps = {}, [], []
  for task, g in acc.groupby("task", observed=True):
    tab = g.pivot_table(index="n_params_non_embedding", columns="frequency_per_batch", values="value")
    r_size, r_freq = _rho(g["n_params_non_embedding"], g["value"]), _rho(g["frequency_per_batch"], g["value"])
    rhos += [r_size, r_freq]
    gaps.append(float(tab.iloc[-1, -1] - tab.iloc[0, -1]))
    tab.index = [fmt_n(v) for v in tab.index]
    nums[f"{task} test accuracy (size × instances/batch)"] = _fmt_table(tab)
    nums[f"{task} ρ(size, acc), ρ(freq, acc)"] = (round(r_size, 3), round(r_freq, 3))
  holds = all(np.isfinite(r) and r > 0 for r in rhos)
  return Claim("5", holds, verdict(holds, min(gaps) > 0.05), nums,
               "accuracy rises with size and frequency" if holds else "accuracy does not rise with both size and "
               "frequency on every task")


def fig6a(loaded: load_lib.Loaded) -> Claim:
  """Task loss falls faster and lower with frequency: final test loss against frequency at each size (ρ < 0).
  Holds when ρ = −1 at every size; weakly when ρ < 0 at every size."""
  loss = _lm_final(loaded.df, "eval", "loss")
  loss = loss[loss["schedule"] == "random"]
  if loss.empty:
    return _missing("6a", "eval/<task>/loss")
  nums, rhos = {}, []
  for (task, n), g in loss.groupby(["task", "n_params_non_embedding"], observed=True):
    g = g.sort_values("frequency_per_batch")
    rho = _rho(g["frequency_per_batch"], g["value"])
    rhos.append(rho)
    nums[f"{task} N={fmt_n(n)}: final test loss per frequency"] = {f"{f:g}": round(v, 4) for f, v in
                                                                zip(g["frequency_per_batch"], g["value"])}
  holds = all(np.isfinite(r) and r < 0 for r in rhos)
  return Claim("6a", holds, verdict(holds, all(r <= -0.999 for r in rhos)), nums,
               f"ρ(frequency, final loss) = {', '.join(f'{r:.2f}' for r in rhos)}")


def fig6b(loaded: load_lib.Loaded) -> Claim:
  """Matched frequency, N instances every N batches: final task test loss rises with N (ρ > 0 and loss at the
  largest N above the smallest N's). Holds when ρ ≥ 0.9; weakly when ρ > 0."""
  loss = _lm_final(loaded.df, "eval", "loss")
  loss = loss[loss["schedule"].isin(["burst", "withhold"])]
  if loss.empty:
    return _missing("6b", "eval/<task>/loss of burst-scheduled tasks")
  nums, rhos, ends = {}, [], []
  for (task, n), g in loss.groupby(["task", "n_params_non_embedding"], observed=True):
    g = g.sort_values("period")
    rhos.append(_rho(g["period"], g["value"]))
    ends.append(float(g["value"].iloc[-1] - g["value"].iloc[0]))
    nums[f"{task} N={fmt_n(n)}: final test loss per gap N"] = {f"{p:g}": round(v, 4) for p, v in
                                                            zip(g["period"], g["value"])}
  nums["ρ(gap, loss)"] = [round(r, 3) for r in rhos]
  acc = _lm_final(loaded.df, "eval", "accuracy")
  acc = acc[acc["schedule"].isin(["burst", "withhold"])].sort_values("period")
  for (task, n), g in acc.groupby(["task", "n_params_non_embedding"], observed=True):
    nums[f"{task} N={fmt_n(n)}: final test accuracy per gap N"] = {f"{p:g}": round(v, 4) for p, v in
                                                                   zip(g["period"], g["value"])}
  holds = all(np.isfinite(r) and r > 0 for r in rhos) and all(e > 0 for e in ends)
  return Claim("6b", holds, verdict(holds, all(r >= 0.9 for r in rhos)), nums,
               f"ρ(gap, final loss) = {', '.join(f'{r:.2f}' for r in rhos)}")


PROBE_METRICS = ("order_r2", "order_r2_paper", "fourier_modes")


def fig7(loaded: load_lib.Loaded) -> Claim:
  """Probe score rises with size at fixed frequency: final probe/<task>/<metric> of the largest size above the
  smallest at every frequency, for the held-out order probe (the figure's) and the Fourier-mode count; the
  paper-style in-sample order R² is reported beside them. Holds when every comparison agrees and the probe
  tracks accuracy over checkpoints (Spearman ρ > 0.5 pooled); weakly when every comparison agrees."""
  d = load_lib.final(loaded.df[loaded.df["experiment"] == "lm"])
  pr_ = d[(d["group"] == "probe") & d["metric"].isin(PROBE_METRICS)]
  if pr_.empty:
    return _missing("7", "probe/<task>/<metric>")
  nums, ups, ties = {}, [], 0
  for (task, metric), g in pr_.groupby(["task", "metric"], observed=True):
    tab = g.pivot_table(index="n_params_non_embedding", columns="frequency_per_batch", values="value")
    tab.index = [fmt_n(v) for v in tab.index]
    nums[f"{task} {metric} (size × instances/batch)"] = _fmt_table(tab)
    if metric != "order_r2_paper" and len(tab.index) >= 2:
      ups += list((tab.iloc[-1] > tab.iloc[0]).to_numpy())
      ties += int((tab.iloc[-1] == tab.iloc[0]).sum())
  track = _tracking(loaded.df)
  nums["ρ(probe, test accuracy) over checkpoints"] = {k: round(v, 3) for k, v in track.items()}
  if not ups:
    return Claim("7", None, NA, nums, "needs ≥ 2 sizes")
  holds = all(ups)
  clear = holds and all(v > 0.5 for v in track.values())
  return Claim("7", holds, verdict(holds, clear), nums,
               f"{sum(ups)} of {len(ups)} (task, metric, frequency) comparisons have the larger model's probe higher"
               + (f" ({ties} tied: the same score at both sizes)" if ties else ""))


def _tracking(df: pd.DataFrame) -> dict[str, float]:
  d = df[(df["experiment"] == "lm")]
  probes = d[(d["group"] == "probe") & d["metric"].isin(("order_r2", "fourier_modes"))]
  acc = d[(d["group"] == "eval") & (d["split"] == "test") & (d["metric"] == "accuracy")]
  m = probes.merge(acc[["run", "step", "task", "value"]], on=["run", "step", "task"], suffixes=("", "_acc"))
  return {f"{t}/{k}": _rho(g["value"], g["value_acc"]) for (t, k), g in m.groupby(["task", "metric"], observed=True)}


def _per_size(d: pd.DataFrame, value: str = "value") -> dict[float, np.ndarray]:
  return {float(n): g[value].to_numpy(float) for n, g in d.groupby("n_params_non_embedding", observed=True)}


def _ms(x: np.ndarray) -> str:
  x = x[np.isfinite(x)]
  return f"{x.mean():.4f} ± {x.std():.4f} (n={len(x)})" if len(x) else "—"


def fig8(loaded: load_lib.Loaded) -> Claim:
  """100 every 100: the drop of the task loss an injection leaves after the P batches without it, L(i) − L(i+P) =
  gain − decay (retention/<task>/*), averaged over injections, is larger for the largest size than the smallest.
  Holds when the difference exceeds the two sizes' combined standard error; weakly when only its sign agrees."""
  d = loaded.df[(loaded.df["experiment"] == "lm") & (loaded.df["group"] == "retention")]
  if d.empty:
    return _missing("8", "retention/<task>/{gain,decay}")
  nums, res = _task_loss_context(loaded.df), []
  for task, g in d.groupby("task", observed=True):
    # Injection i: its gain is logged at step i + 1, its decay at step i + P (scaling/mechanisms/retention.py).
    gain = g[g["metric"] == "gain"].assign(inj=lambda x: x["step"] - 1)
    decay = g[g["metric"] == "decay"].assign(inj=lambda x: x["step"] - x["period"].astype(float))
    both = gain.merge(decay[["run", "inj", "value"]], on=["run", "inj"], suffixes=("", "_decay"))
    both["kept"] = both["value"] - both["value_decay"]
    kept = _per_size(both, "kept")
    sizes = sorted(kept)
    for n in sizes:
      b = both[both["n_params_non_embedding"] == n]
      nums[f"{task} N={fmt_n(n)}: gain, decay, retained"] = (_ms(b["value"].to_numpy(float)),
                                                             _ms(b["value_decay"].to_numpy(float)), _ms(kept[n]))
    if len(sizes) >= 2:
      a, b = kept[sizes[0]], kept[sizes[-1]]
      se = math.sqrt(a.var() / max(len(a), 1) + b.var() / max(len(b), 1))
      res.append((b.mean() - a.mean(), se))
  if not res:
    return Claim("8", None, NA, nums, "needs ≥ 2 sizes with gain and decay")
  holds = all(diff > 0 for diff, _ in res)
  return Claim("8", holds, verdict(holds, all(diff > se for diff, se in res)), nums,
               "retained drop, largest minus smallest size: " + ", ".join(f"{x:+.4f} (SE {s:.4f})" for x, s in res))


def _task_loss_context(df: pd.DataFrame) -> dict:
  """Final task test loss and accuracy per (task, size): whether the task was learned at all."""
  out = {}
  for metric in ("loss", "accuracy"):
    for (task, n), g in _lm_final(df, "eval", metric).groupby(["task", "n_params_non_embedding"], observed=True):
      out.setdefault(f"{task} N={fmt_n(n)}: final test loss, accuracy", []).append(round(float(g["value"].mean()), 4))
  return {k: tuple(v) for k, v in out.items()}


def _injection_steps(d: pd.DataFrame) -> pd.Series:
  """True where the step is an injection of the row's task (burst: step % period == 0)."""
  per = d["period"].fillna(1).astype(float)
  return (d["schedule"].astype(str) == "burst") & (per >= 2) & (d["step"] % per == 0)


def fig9(loaded: load_lib.Loaded) -> Claim:
  """Interference: |mean cos(g_nt, g_r)| over every measured step is smaller for the largest size than the
  smallest (the paper: 0.10 ± 0.09 at 20M vs ≈ 0 at 1B); cos(g, g_r) at injections (the paper: 0.08 ± 0.02 at
  1B vs 0.04 ± 0.04 at 300M) is reported per size. Holds when the difference of |means| exceeds the smaller
  size's standard deviation / √n; weakly when only its sign agrees."""
  d = loaded.df[(loaded.df["experiment"] == "lm") & (loaded.df["group"] == "interference")]
  if d.empty:
    return _missing("9", "interference/<task>/cos_*")
  d = d.assign(at_injection=_injection_steps(d))
  nums, res, sec = _task_loss_context(loaded.df), [], []
  for task, g in d.groupby("task", observed=True):
    nt = _per_size(g[g["metric"] == "cos_gnt_gr"])
    for n in sorted(nt):
      gs = g[g["n_params_non_embedding"] == n]
      inj = gs[gs["at_injection"]]
      nums[f"{task} N={fmt_n(n)}"] = {
          "cos(g_nt,g_r) all steps": _ms(nt[n]),
          "cos(g,g_r) at injections": _ms(inj[inj["metric"] == "cos_g_gr"]["value"].to_numpy(float)),
          "cos(g_t,g_r) at injections": _ms(inj[inj["metric"] == "cos_gt_gr"]["value"].to_numpy(float)),
          "cos(g_nt,g_r) at injections": _ms(inj[inj["metric"] == "cos_gnt_gr"]["value"].to_numpy(float)),
          "cos(g,g_r) between injections": _ms(gs[~gs["at_injection"] & (gs["metric"] == "cos_g_gr")]["value"]
                                               .to_numpy(float))}
    sizes = sorted(nt)
    if len(sizes) >= 2:
      a, b = nt[sizes[0]], nt[sizes[-1]]
      res.append((abs(a.mean()) - abs(b.mean()), a.std() / math.sqrt(max(len(a), 1))))
      inj = d[(d["task"] == task) & d["at_injection"] & (d["metric"] == "cos_g_gr")]
      at = _per_size(inj)
      if len(at) >= 2:
        sec.append(f"{task}: cos(g, g_r) at injections {at[sizes[-1]].mean():+.3f} at the largest size vs "
                   f"{at[sizes[0]].mean():+.3f} at the smallest (the paper: higher in the larger model)")
  if not res:
    return Claim("9", None, NA, nums, "needs ≥ 2 sizes")
  holds = all(diff > 0 for diff, _ in res)
  return Claim("9", holds, verdict(holds, all(diff > se for diff, se in res)), nums,
               "|mean cos(g_nt, g_r)|, smallest minus largest size: " + ", ".join(f"{x:+.4f} (SE {s:.4f})"
                                                                                  for x, s in res)
               + "".join(f"; {x}" for x in sec))


CHECKS = {"2": fig2, "3": fig3, "4": fig4, "5": fig5, "6a": fig6a, "6b": fig6b, "7": fig7, "8": fig8, "9": fig9}


def finished(loaded: load_lib.Loaded) -> load_lib.Loaded:
  """The same runs with the table cut to those whose status is done (a running or failed run's partial
  metrics must not enter a verdict)."""
  return dataclasses.replace(loaded, df=loaded.df[loaded.df["status"] == "done"])


def check(figure: str, sweep_dir: str | list[str]) -> Claim:
  """Loads the sweep dir(s) and checks one figure's claim on the finished runs."""
  return CHECKS[figure](finished(load_lib.load(sweep_dir)))
