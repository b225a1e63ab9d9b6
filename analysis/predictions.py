"""The comparisons the paper makes: Fig 1's L_C(N) vs L_∞(N), Chinchilla's L(N, D), and the toy's exact theory.

Fig 1 (paper §2). Both curves are fitted as L(N) = E + A·N^-α (E fixed to the background Bayes loss when known):
  L_∞(N)  final loss of the longest-trained runs of each size (the sweep's stand-in for "trained to convergence").
  L_C(N)  loss at a matched compute budget C: for each run, log loss interpolated linearly in log cumulative
          FLOPs (tokens · flops_per_token) between the two evals that bracket C. Default C: the largest budget
          that the most sizes bracket (see matched_compute); runs that do not bracket it are left out and
          listed. When evals are too sparse to match even 2 sizes, train/loss (logged densely, fresh data) is
          used for L_C and the report says so.
  L_∞ steeper than L_C (α_∞ > α_C) is the paper's claim; between the curves lies what data scaling reaches at
  a size, below L_∞(N) what only a larger model reaches.
Chinchilla: L(N, D) fitted on every eval of every finished run after the first CHINCHILLA_MIN_FRACTION of its
  steps (evals inside a cosine schedule overstate the loss of a run trained to that D, so B, β are indicative).
Toy (paper §3): the optimal width-N loss per task (Theorem 3) against the simulated final normalised losses, and
  Proposition 6's N_r^crit / the theory's smallest learning width against the simulated learnable width.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import pandas as pd

from analysis import load as load_lib
from analysis import powerlaw as pl
from analysis.curves import _jsonable
from scaling.toy import theory as toy_theory

CHINCHILLA_MIN_FRACTION = 0.2
DENSE_KEY = "train/loss"
THEORY_FILE = "theory.json"  # scaling/toy/train.py THEORY_FILE
LEARNED_TOL = 0.5  # a task is "learned" at normalised loss <= 0.5 (toy_theory.smallest_learning_width's tol)


# ---------------------------------------------------------------------------------------------------------------
# Fig 1
# ---------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Fig1:
  """budget: C in FLOPs; points_C / points_inf: per-run (run, N, seed, loss); fits or reasons."""

  key: str
  key_C: str
  budget: float | None
  points_C: pd.DataFrame
  points_inf: pd.DataFrame
  fit_C: pl.FitResult | None
  fit_inf: pl.FitResult | None
  reason_C: str | None
  reason_inf: str | None
  fix_E: float | None
  left_out: list[tuple[str, str]]

  @property
  def steeper(self) -> bool | None:
    if self.fit_C is None or self.fit_inf is None:
      return None
    return self.fit_inf.params["alpha"] > self.fit_C.params["alpha"]

  def to_dict(self):
    out = {"key": self.key, "key_C": self.key_C, "budget_flops": self.budget, "fix_E": self.fix_E,
           "reason_C": self.reason_C,
           "reason_inf": self.reason_inf, "left_out": self.left_out, "inf_steeper_than_C": self.steeper,
           "points_C": self.points_C.to_dict("records"), "points_inf": self.points_inf.to_dict("records")}
    for name, f in (("fit_C", self.fit_C), ("fit_inf", self.fit_inf)):
      out[name] = f.to_dict() if f is not None else None
    return _jsonable(out)


def _series(df: pd.DataFrame, key: str) -> pd.DataFrame:
  d = load_lib.metric(df[(df["status"] == "done") & (df["experiment"] == "lm")], key)
  return d[np.isfinite(d["value"]) & d["n_params_non_embedding"].notna()]


def _bracketed(runs: dict, C: float) -> dict:
  return {r: g for r, g in runs.items()
          if g["flops"].iloc[0] <= C * (1 + 1e-9) and g["flops"].iloc[-1] >= C * (1 - 1e-9)}


def _best_budget(runs: dict) -> float:
  """The budget that the most sizes reach with an eval on both sides of it (ties: the largest budget)."""
  best = (0, 0.0)
  for C in sorted({float(v) for g in runs.values() for v in g["flops"]}):
    sizes = {float(g["n_params_non_embedding"].iloc[0]) for g in _bracketed(runs, C).values()}
    best = max(best, (len(sizes), C))
  return best[1]


def matched_compute(df: pd.DataFrame, key: str = "eval/background/loss", budget: float | None = None):
  """-> (points DataFrame [run, N, seed, flops, loss], C, left_out [(run, why)]).

  budget None: the largest C that every size reaches with evals bracketing it, or failing that the C that the
  most sizes bracket (runs of equal token counts span a compute range as wide as their sizes, and sparse evals
  may bracket no common C at all; the left-out runs are listed).
  """
  d = _series(df, key)
  d = d[d["flops"] > 0]
  runs = {r: g.sort_values("flops") for r, g in d.groupby(["sweep", "run"], observed=True)}
  if not runs:
    return pd.DataFrame(columns=["run", "N", "seed", "flops", "loss"]), None, []
  C = budget if budget is not None else _best_budget(runs)
  rows, left = [], []
  for (sweep, run), g in runs.items():
    fl, L = g["flops"].to_numpy(float), g["value"].to_numpy(float)
    if fl[0] > C * (1 + 1e-9) or fl[-1] < C * (1 - 1e-9):
      left.append((f"{sweep}/{run}", f"no evals bracket C={C:.3g} FLOPs (they span {fl[0]:.3g}..{fl[-1]:.3g})"))
      continue
    logL = np.interp(math.log(C), np.log(fl), np.log(L))
    rows.append({"run": f"{sweep}/{run}", "N": float(g["n_params_non_embedding"].iloc[0]),
                 "seed": float(g["seed"].iloc[0]), "flops": C, "loss": float(math.exp(logL))})
  return pd.DataFrame(rows, columns=["run", "N", "seed", "flops", "loss"]), C, left


def converged(df: pd.DataFrame, key: str = "eval/background/loss") -> pd.DataFrame:
  """Final loss of the longest-trained runs of each size: [run, N, seed, tokens, loss]."""
  d = load_lib.final(_series(df, key))
  if d.empty:
    return pd.DataFrame(columns=["run", "N", "seed", "tokens", "loss"])
  longest = d.groupby("n_params_non_embedding")["tokens"].transform("max")
  d = d[d["tokens"] >= longest]
  return pd.DataFrame({"run": (d["sweep"].astype(str) + "/" + d["run"].astype(str)).to_numpy(),
                       "N": d["n_params_non_embedding"].to_numpy(float), "seed": d["seed"].to_numpy(float),
                       "tokens": d["tokens"].to_numpy(float), "loss": d["value"].to_numpy(float)})


def _fit_points(pts: pd.DataFrame, fix_E, bootstrap, seed):
  if pts.empty:
    return None, "no points"
  n = pts["N"].nunique()
  need = 2 if fix_E is not None else pl.MIN_SIZES_FREE_E
  if n < need:
    return None, f"needs ≥ {need} sizes (got {n})"
  if fix_E is not None and fix_E >= pts["loss"].min():
    fix_E = None
    if n < pl.MIN_SIZES_FREE_E:
      return None, f"the known floor E is not below every loss, and a free E needs ≥ 5 sizes (got {n})"
  seeds = pts["seed"].to_numpy() if pts["seed"].notna().all() else None
  try:
    return pl.fit_powerlaw(pts["N"], pts["loss"], fix_E=fix_E, seeds=seeds, bootstrap=bootstrap, seed=seed,
                           progress=False), None
  except pl.FitError as e:
    return None, str(e)


def fig1(df: pd.DataFrame, *, key: str = "eval/background/loss", fix_E: float | None = None,
         budget: float | None = None, bootstrap: int = 1000, seed: int = 0) -> Fig1:
  """L_C(N) and L_∞(N) with their power-law fits (see the module docstring)."""
  pts_C, C, left = matched_compute(df, key, budget)
  key_C = key
  if pts_C["N"].nunique() < 2 and key != DENSE_KEY:
    # Evals are sparse; the training loss is logged far more often and on fresh data tracks held-out loss.
    alt = matched_compute(df, DENSE_KEY, budget)
    if alt[0]["N"].nunique() > pts_C["N"].nunique():
      (pts_C, C, left), key_C = alt, DENSE_KEY
  pts_inf = converged(df, key)
  fit_C, why_C = _fit_points(pts_C, fix_E, bootstrap, seed)
  fit_inf, why_inf = _fit_points(pts_inf, fix_E, bootstrap, seed)
  return Fig1(key=key, key_C=key_C, budget=C, points_C=pts_C, points_inf=pts_inf, fit_C=fit_C, fit_inf=fit_inf,
              reason_C=why_C, reason_inf=why_inf, fix_E=fix_E, left_out=left)


# ---------------------------------------------------------------------------------------------------------------
# Chinchilla L(N, D)
# ---------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Chinchilla:
  key: str
  points: pd.DataFrame
  fit: pl.FitResult | None
  reason: str | None

  def to_dict(self):
    return _jsonable({"key": self.key, "n_points": len(self.points), "reason": self.reason,
                      "min_fraction": CHINCHILLA_MIN_FRACTION,
                      "fit": self.fit.to_dict() if self.fit is not None else None})


def chinchilla(df: pd.DataFrame, *, key: str = "eval/background/loss", fix_E: float | None = None,
               bootstrap: int = 0, seed: int = 0) -> Chinchilla:
  d = _series(df, key)
  total = d.groupby(["sweep", "run"], observed=True)["step"].transform("max")
  d = d[(d["tokens"] > 0) & (d["step"] >= CHINCHILLA_MIN_FRACTION * total)]
  pts = pd.DataFrame({"N": d["n_params_non_embedding"].to_numpy(float), "D": d["tokens"].to_numpy(float),
                      "loss": d["value"].to_numpy(float), "seed": d["seed"].to_numpy(float)})
  n_pairs = len(pts[["N", "D"]].drop_duplicates())
  need = 4 if fix_E is not None else 6
  if n_pairs < need or pts["N"].nunique() < 2 or pts["D"].nunique() < 2:
    return Chinchilla(key, pts, None, f"needs ≥ {need} distinct (N, D) points with ≥ 2 sizes and ≥ 2 token "
                                      f"counts (got {n_pairs} points, {pts['N'].nunique()} sizes)")
  if fix_E is not None and fix_E >= pts["loss"].min():
    fix_E = None
  try:
    fit = pl.fit_chinchilla(pts["N"], pts["D"], pts["loss"], fix_E=fix_E, bootstrap=bootstrap, seed=seed,
                            progress=False)
  except pl.FitError as e:
    return Chinchilla(key, pts, None, str(e))
  return Chinchilla(key, pts, fit, None)


# ---------------------------------------------------------------------------------------------------------------
# Toy theory
# ---------------------------------------------------------------------------------------------------------------
def toy_spec(cfg: dict) -> toy_theory.ToySpec | None:
  """The ToySpec of a toy run's config (None when the config does not describe the toy)."""
  t = load_lib.toy_settings(cfg)
  if t is None:
    return None
  alpha = tuple(t["alpha"]) if isinstance(t["alpha"], (list, tuple)) else float(t["alpha"])  # per-task α
  return toy_theory.ToySpec(K=t["K"], r=t["r"], beta=t["beta"], alpha=alpha, seed=t["seed"], lam_norm=t["lam_norm"])


def toy_analytic_curves(spec: toy_theory.ToySpec, widths) -> pd.DataFrame:
  """Theorem 3's optimal normalised loss per (task, width): the dashed curves of Fig 2b.
  Columns: task (t01..), k (1-based), width, loss_norm, n_features."""
  w = np.asarray(sorted(set(int(x) for x in widths if 1 <= x <= spec.d)), dtype=np.int64)
  loss = toy_theory.optimal_task_loss(spec, w).normalised  # (W, K)
  nf = toy_theory.n_features(spec, w)
  names = load_lib.toy_task_names(spec.K)
  rows = [{"task": names[k], "k": k + 1, "width": int(wi), "loss_norm": float(loss[i, k]),
           "n_features": int(nf[i, k])} for i, wi in enumerate(w) for k in range(spec.K)]
  return pd.DataFrame(rows)


@dataclasses.dataclass
class ToyComparison:
  """One β (and injection setting): simulated vs analytic. tasks: per-task table; stats: agreement numbers."""

  condition: dict
  spec: toy_theory.ToySpec
  widths: list[int]
  simulated: pd.DataFrame  # task, width, loss_norm (mean over seeds)
  analytic: pd.DataFrame
  tasks: pd.DataFrame
  stats: dict

  def to_dict(self):
    return _jsonable({"condition": self.condition, "spec": dataclasses.asdict(self.spec), "widths": self.widths,
                      "stats": self.stats, "tasks": self.tasks.to_dict("records")})


def _first_width(widths, values, tol):
  ok = np.asarray(values) <= tol
  return float(widths[int(np.argmax(ok))]) if ok.any() else math.inf


def crossing_width(widths, values, tol=LEARNED_TOL) -> float:
  """Where a curve first falls to tol, interpolated linearly in (log width, value) between the bracketing grid
  widths; the smallest width if it starts below, inf if it never gets there."""
  w, v = np.asarray(widths, float), np.asarray(values, float)
  ok = v <= tol
  if not ok.any():
    return math.inf
  i = int(np.argmax(ok))
  if i == 0:
    return float(w[0])
  t = (v[i - 1] - tol) / (v[i - 1] - v[i])
  return float(math.exp(math.log(w[i - 1]) + t * (math.log(w[i]) - math.log(w[i - 1]))))


def _theory_json_diff(run_dirs: list[str], spec, width_of: dict) -> float | None:
  """Max |theory.json optimal_loss_norm − toy_theory's| over the runs that wrote one (a consistency check of
  the trainer's recorded predictions against the spec read back from config.json); None if none did."""
  diffs = []
  for d in run_dirs:
    path = os.path.join(d, THEORY_FILE)
    if not os.path.isfile(path):
      continue
    try:
      with open(path) as f:
        got = np.asarray(json.load(f).get("optimal_loss_norm"), dtype=float)
    except (OSError, ValueError, TypeError):
      continue
    want = toy_theory.optimal_task_loss(spec, int(width_of[d])).normalised
    if got.shape == want.shape:
      diffs.append(float(np.max(np.abs(got - want))))
  return max(diffs) if diffs else None


def toy_comparisons(fin: pd.DataFrame, configs: dict[str, dict], *, paths: dict[str, str] | None = None,
                    mass: float | None = None) -> tuple[list[ToyComparison], list[str]]:
  """Per toy setting (β, injection) with a common spec: the Fig 2b comparison and the N_crit table.
  mass: the frequent set's share (default: toy.mass of the runs' config, else 0.8). paths: run -> run dir, to
  cross-check each run's theory.json."""
  toy = fin[(fin["experiment"] == "toy") & (fin["group"] == "toy") & (fin["metric"] == "loss_norm")
            & fin["task"].notna() & fin["width"].notna()]
  out, notes = [], []
  if toy.empty:
    return out, notes
  for (beta, it, ip), d in toy.groupby(["beta", "inject_task", "inject_period"], dropna=False, observed=True):
    runs = (d["sweep"].astype(str) + "/" + d["run"].astype(str)).unique()
    specs = {toy_spec(configs[r]) for r in runs if r in configs}
    specs.discard(None)
    cond = {"beta": float(beta), "inject_task": float(it), "inject_period": float(ip)}
    if len(specs) != 1:
      notes.append(f"toy β={beta:g}: {len(specs)} different task specs among its runs; no theory comparison")
      continue
    spec = specs.pop()
    settings = load_lib.toy_settings(configs[runs[0]]) or {}
    m = mass if mass is not None else settings.get("mass", 0.8)
    sim = d.groupby(["task", "width"], observed=True)["value"].mean().reset_index()
    sim = sim.rename(columns={"value": "loss_norm"})
    widths = sorted(int(w) for w in sim["width"].unique())
    ana = toy_analytic_curves(spec, widths)
    both = sim.merge(ana, on=["task", "width"], suffixes=("_sim", "_theory"))
    err = both["loss_norm_sim"] - both["loss_norm_theory"]
    F = toy_theory.frequent_set(spec, m)
    crit = toy_theory.critical_widths(spec, m)[:, 0]
    theory_learn = toy_theory.smallest_learning_width(spec, widths, tol=LEARNED_TOL)
    names = load_lib.toy_task_names(spec.K)
    rows = []
    for k, name in enumerate(names):
      s = sim[sim["task"] == name].sort_values("width")
      ws, vs = s["width"].to_numpy(), s["loss_norm"].to_numpy()
      sim_learn = _first_width(ws, vs, LEARNED_TOL) if len(s) else math.nan
      rows.append({"task": name, "k": k + 1, "pi": float(spec.pi[k]), "frequent": bool(F[k]),
                   "N_crit": float(crit[k]), "theory_learn_width": float(theory_learn[k]),
                   "sim_learn_width": sim_learn,
                   "sim_crossing": crossing_width(ws, vs) if len(s) else math.nan,
                   "agree": bool(sim_learn == theory_learn[k])})  # inf == inf: never learned by either
    tasks = pd.DataFrame(rows)
    rare = tasks[~tasks["frequent"]]
    stats = {"rmse": float(np.sqrt(np.mean(err ** 2))) if len(err) else math.nan,
             "max_abs_err": float(np.max(np.abs(err))) if len(err) else math.nan,
             "corr": float(np.corrcoef(both["loss_norm_sim"], both["loss_norm_theory"])[0, 1])
             if len(both) > 2 and both["loss_norm_theory"].std() > 0 else math.nan,
             "n_points": int(len(both)), "learn_width_agreement": float(tasks["agree"].mean()),
             "learn_width_agreement_rare": float(rare["agree"].mean()) if len(rare) else math.nan,
             "n_frequent": int(F.sum()), "mass": m}
    if paths:
      width_of = {paths[r]: w for r, w in d.groupby(d["sweep"].astype(str) + "/" + d["run"].astype(str),
                                                    observed=True)["width"].first().items() if r in paths}
      diff = _theory_json_diff(list(width_of), spec, width_of)
      stats["theory_json_max_diff"] = diff
      if diff is not None and diff > 1e-9:
        notes.append(f"toy β={beta:g}: theory.json differs from toy_theory on the spec in config.json by up to "
                     f"{diff:.3g} (recomputed values are used)")
    out.append(ToyComparison(condition=cond, spec=spec, widths=widths, simulated=sim, analytic=ana, tasks=tasks,
                             stats=stats))
  return out, notes


def toy_retention(loaded: load_lib.Loaded) -> pd.DataFrame:
  """Final per-feature retention ‖P_U b_{k,j}‖² of every toy run that stored it (toy/retention metric lists or
  retention.npz): columns run, beta, width, inject_task, inject_period, k, j, retention."""
  rows = []
  usable = loaded.runs[loaded.runs["usable"] & (loaded.runs["experiment"] == "toy")]
  for _, r in usable.iterrows():
    key = f"{r['sweep']}/{r['run']}"
    series = loaded.arrays.get(key, {}).get("toy/retention")
    if not series:
      continue
    arr = np.asarray(series[-1][1], dtype=float)
    spec = toy_spec(loaded.configs[key])
    if arr.ndim == 1 and spec is not None and arr.size == spec.K * spec.r:
      arr = arr.reshape(spec.K, spec.r)
    if arr.ndim != 2:
      continue
    for k in range(arr.shape[0]):
      for j in range(arr.shape[1]):
        rows.append({"run": key, "beta": r["beta"], "width": r["width"], "inject_task": r["inject_task"],
                     "inject_period": r["inject_period"], "k": k + 1, "j": j + 1, "retention": float(arr[k, j])})
  return pd.DataFrame(rows, columns=["run", "beta", "width", "inject_task", "inject_period", "k", "j", "retention"])
