"""Sweep dirs -> one tidy table. Loud about every run that is missing, failed, unfinished or unusable.

A run dir is any folder holding config.json (scaling/core/rundir.py), found recursively under each sweep dir; a toy
invocation's workdir W holds member run dirs W/<member>/ and one W/status.json that its members inherit. When
the sweep dir has manifest.json (launch/manifest.py) every manifest run is cross-checked: no run dir = missing,
manifest status failed/running = failed/unfinished with the manifest's reason.

The table is LONG: one row per (run, step, metric key), so any metric of any experiment fits one schema.

  sweep, run                    sweep dir name, run dir path relative to it
  experiment, status            config.json "experiment"; done | failed | running | unknown (status.json)
  size, n_params, n_params_non_embedding, width, seed      from config.json summary (NaN where absent)
  beta, inject_task, inject_period                          toy settings (NaN for transformer runs)
  step, tokens, flops           flops = tokens · summary["flops_per_token"] (NaN when unknown)
  group, task, split, metric    the key split: "eval/cmp/loss" -> eval, cmp, test, loss;
                                "eval/cmp_train/loss" -> eval, cmp, train, loss; "train/loss" -> train, -, -, loss
  frequency_per_batch, frequency_per_token, schedule, period   summary["tasks"][task] (toy: π_k·batch, π_k)
  value                         float

List-valued metrics (e.g. toy/retention, a K×r table) do not fit a scalar column; they are kept in
`Loaded.arrays[run][key] = [(step, ndarray), ...]`. The toy's per-feature retention ‖P_U b_{k,j}‖² is read from
any of: retention.jsonl ({"step", "retention": K×r}, scaling/toy/train.py), a `toy/retention` metric list, or
retention.npz ("retention" (K, r) or (T, K, r) with "step"), all as arrays["toy/retention"].
Helpers: `final(df)` (the last logged value of every metric of every run), `per_task(df, metric)`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analysis.loadreport import MANIFEST, LoadError, LoadReport, check_manifest
from launch import manifest as manifest_lib
from scaling.core import rundir

__all__ = ["COLUMNS", "LoadError", "LoadReport", "Loaded", "discover", "final", "load", "metric", "per_task"]

SKIP_DIRS = {rundir.CHECKPOINT_DIR, "logs", "figures", "slurm", "__pycache__"}
RUN_COLUMNS = ["sweep", "run", "experiment", "status", "size", "n_params", "n_params_non_embedding", "width",
               "seed", "beta", "inject_task", "inject_period"]
TASK_COLUMNS = ["frequency_per_batch", "frequency_per_token", "schedule", "period"]
COLUMNS = RUN_COLUMNS + ["step", "tokens", "flops", "group", "task", "split", "metric", "value"] + TASK_COLUMNS
LOSS_METRICS = ("loss", "loss_norm")  # a non-finite value of these makes a run unusable
RETENTION_JSONL = "retention.jsonl"  # scaling/toy/train.py RETENTION_FILE


@dataclasses.dataclass
class Loaded:
  """df: the tidy long table (usable runs only); runs: one row per run dir found (usable or not);
  configs: run -> config.json; arrays: run -> key -> [(step, array)]; report: the gaps."""

  df: pd.DataFrame
  runs: pd.DataFrame
  configs: dict[str, dict]
  arrays: dict[str, dict[str, list[tuple[int, np.ndarray]]]]
  report: LoadReport

  @property
  def paths(self) -> dict[str, str]:
    """"sweep/run" -> absolute run dir."""
    return {f"{s}/{r}": p for s, r, p in zip(self.runs["sweep"], self.runs["run"], self.runs["path"])}

  def write(self, out_dir: str) -> list[str]:
    """runs.csv (the tidy table), runs_index.csv (one row per run), and runs.parquet when pyarrow is present."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "runs.csv"), os.path.join(out_dir, "runs_index.csv")]
    self.df.to_csv(paths[0], index=False)
    self.runs.to_csv(paths[1], index=False)
    try:
      import pyarrow  # noqa: F401,PLC0415 - optional
      paths.append(os.path.join(out_dir, "runs.parquet"))
      self.df.to_parquet(paths[-1], index=False)
    except ImportError:
      pass
    return paths


# ---------------------------------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------------------------------
def discover(sweep_dir: str) -> list[str]:
  """Absolute paths of every run dir (folder with config.json) under sweep_dir, sorted; nested sweep dirs (with
  their own manifest.json) are left to be passed on their own."""
  found = []
  for root, dirs, files in os.walk(sweep_dir):
    # A folder below holding its own manifest.json is a sweep of its own (e.g. a companion sweep): not ours.
    dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")
                     and not os.path.isfile(os.path.join(root, d, MANIFEST)))
    if rundir.CONFIG_FILE in files:  # also the sweep dir itself: a single run dir passed as the "sweep"
      found.append(os.path.abspath(root))
  return sorted(found)


def _inherited_status(path: str, top: str) -> dict | None:
  """status.json of the run dir, else of the nearest parent below the sweep dir (a toy invocation's W)."""
  p = os.path.abspath(path)
  top = os.path.abspath(top)
  while True:
    status = rundir.RunDir(p).read_status()
    if status is not None or p == top or not p.startswith(top):
      return status
    p = os.path.dirname(p)


def _read_manifest(sweep_dir: str) -> dict | None:
  """launch/manifest.py's reader, tolerant of other schema versions (only the runs list is needed here)."""
  return manifest_lib.read_manifest(sweep_dir, error=LoadError, require_schema=False,
                                    fix="move it away to load the run dirs alone")


# ---------------------------------------------------------------------------------------------------------------
# Run metadata
# ---------------------------------------------------------------------------------------------------------------
def find_mapping(cfg, keys: Iterable[str]):
  """The first dict (breadth-first) in a nested config that holds all `keys`, or None."""
  keys = set(keys)
  queue = [cfg]
  while queue:
    node = queue.pop(0)
    if isinstance(node, dict):
      if keys <= set(node):
        return node
      queue += [v for v in node.values() if isinstance(v, dict)]
  return None


def toy_settings(cfg: dict) -> dict | None:
  """The toy's task-family settings (K, r, beta, alpha, lam_norm, seed, inject) from a resolved config."""
  node = find_mapping(cfg.get("config", {}), ("K", "r", "beta"))
  if node is None:
    return None
  inject = node.get("inject") if isinstance(node.get("inject"), dict) else \
      find_mapping(cfg.get("config", {}), ("task", "schedule", "period", "frequency")) or {}
  seed = node.get("basis_seed", node.get("seed", cfg.get("config", {}).get("seed", 0)))
  alpha = node.get("alphas") or node.get("alpha", 2.0)  # per-task α (complexity sweep) when given
  return {"K": int(node["K"]), "r": int(node["r"]), "beta": float(node["beta"]), "alpha": alpha,
          "lam_norm": node.get("lam_norm", "first"), "seed": int(seed or 0), "inject": dict(inject),
          "mass": float(node.get("mass", 0.8)), "rare_tasks": list(node.get("rare_tasks") or ()),
          "batch_size": node.get("batch_size", cfg.get("summary", {}).get("batch_size"))}


def _num(x):
  try:
    v = float(x)
  except (TypeError, ValueError):
    return math.nan
  return v


def _run_meta(sweep: str, run: str, cfg: dict, status: dict | None) -> dict:
  s = cfg.get("summary", {})
  meta = {"sweep": sweep, "run": run, "experiment": cfg.get("experiment"),
          "status": (status or {}).get("state", "unknown"), "size": s.get("size"),
          "n_params": _num(s.get("n_params")), "n_params_non_embedding": _num(s.get("n_params_non_embedding")),
          "width": _num(s.get("width")), "seed": _num(s.get("seed")), "beta": math.nan, "inject_task": math.nan,
          "inject_period": math.nan}
  toy = toy_settings(cfg) if cfg.get("experiment") == "toy" else None
  if toy is not None:
    meta["beta"] = toy["beta"]
    if toy["inject"].get("task"):
      meta["inject_task"] = _num(toy["inject"]["task"])
      meta["inject_period"] = _num(toy["inject"].get("period"))
    if math.isnan(meta["width"]):
      w = find_mapping(cfg.get("config", {}), ("width",))
      meta["width"] = _num(w["width"]) if w else math.nan
  if meta["size"] is None and not math.isnan(meta["width"]):
    meta["size"] = f"w{int(meta['width'])}"
  if math.isnan(meta["seed"]):
    meta["seed"] = _num(cfg.get("config", {}).get("seed"))
  return meta


def _task_table(cfg: dict) -> dict[str, dict]:
  """task -> {frequency_per_batch, frequency_per_token, schedule, period}; toy tasks from the spec if needed."""
  s = cfg.get("summary", {})
  out = {name: {k: info.get(k) for k in TASK_COLUMNS} for name, info in (s.get("tasks") or {}).items()
         if isinstance(info, dict)}
  toy = toy_settings(cfg) if cfg.get("experiment") == "toy" else None
  if toy is not None:
    from scaling.toy import theory as toy_theory  # noqa: PLC0415 - numpy only
    try:
      spec = toy_theory.ToySpec(K=toy["K"], r=toy["r"], beta=toy["beta"], alpha=_alpha(toy["alpha"]),
                                seed=toy["seed"], lam_norm=toy["lam_norm"])
    except ValueError:
      return out
    bs = _num(toy.get("batch_size"))
    inj = toy["inject"]
    for k, name in enumerate(toy_task_names(toy["K"]), start=1):
      if name in out and out[name].get("frequency_per_token") is not None:
        continue
      pi = float(spec.pi[k - 1])
      row = {"frequency_per_batch": pi * bs, "frequency_per_token": pi, "schedule": "random", "period": 1}
      if inj.get("task") == k:
        f = _num(inj.get("frequency"))
        row = {"frequency_per_batch": f, "frequency_per_token": f / bs if bs else math.nan,
               "schedule": inj.get("schedule"), "period": inj.get("period")}
      out[name] = row
  return out


def toy_task_names(K: int) -> list[str]:
  """t01..tK: the toy's metric names (scaling/toy/data.py task_names; repeated here because importing
  that module pulls in JAX, which analysis never needs)."""
  w = max(2, len(str(K)))
  return [f"t{k:0{w}d}" for k in range(1, K + 1)]


def _alpha(a):
  return tuple(a) if isinstance(a, (list, tuple)) else float(a)


def _split_key(key: str, tasks: dict) -> tuple[str, str | None, str | None, str]:
  parts = key.split("/")
  if len(parts) == 2:
    return parts[0], None, None, parts[1]
  if len(parts) < 2:
    return "", None, None, key
  group, task, metric = parts[0], parts[1], "/".join(parts[2:])
  split = None
  if group == "eval":
    split = "test"
    stem = task[:-len("_train")] if task.endswith("_train") else None
    if stem and (stem in tasks or not tasks):
      task, split = stem, "train"
  return group, task, split, metric


# ---------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------
def _arrays_from_npz(path: str) -> dict[str, list[tuple[int, np.ndarray]]]:
  """retention.npz: 'retention' (K, r) at the end, or (T, K, r) with 'step'/'steps' (T,)."""
  with np.load(path) as z:
    ret = np.asarray(z["retention"]) if "retention" in z else None
    steps = next((np.asarray(z[k]) for k in ("step", "steps") if k in z), None)
  if ret is None:
    return {}
  if ret.ndim == 2:
    return {"toy/retention": [(int(steps.reshape(-1)[-1]) if steps is not None else -1, ret)]}
  steps = steps if steps is not None else np.arange(len(ret))
  return {"toy/retention": [(int(s), r) for s, r in zip(steps, ret)]}


def _arrays_from_jsonl(rd: rundir.RunDir) -> dict[str, list[tuple[int, np.ndarray]]]:
  recs = rd.read_metrics(RETENTION_JSONL, strict=False)
  out = [(int(r["step"]), np.asarray(r["retention"], dtype=float)) for r in recs if "retention" in r]
  return {"toy/retention": out} if out else {}


def _load_run(path: str, sweep: str, run: str, top: str, rep: LoadReport, note: str = ""):
  """-> (meta, rows, arrays, cfg) or None when the run is unusable (reason recorded in rep)."""
  rd = rundir.RunDir(path)
  try:
    cfg = rd.read_config()
    status = _inherited_status(path, top)
    records = rd.read_metrics(strict=False)
  except rundir.RunDirError as e:
    rep.malformed.append((f"{sweep}/{run}", str(e)))
    return None
  meta = _run_meta(sweep, run, cfg, status)
  state = meta["status"]
  if state == "failed":
    rep.failed.append((f"{sweep}/{run}", ((status or {}).get("reason") or "status.json says failed (no reason)")
                       + note))
  elif state == "running":
    rep.unfinished.append((f"{sweep}/{run}", f"running, step {status.get('step')}/{status.get('total_steps')}"
                           + note))
  elif status is None:
    meta["status"] = "unknown"
    rep.unfinished.append((f"{sweep}/{run}", "no status.json (never finished or killed before writing it)" + note))
  if not records:
    rep.excluded.append((f"{sweep}/{run}", "no metrics (metrics.jsonl missing or empty)"))
    return meta, None, {}, cfg
  tasks = _task_table(cfg)
  fpt = _num(cfg.get("summary", {}).get("flops_per_token"))
  rows, arrays = [], {}
  bad = None
  for rec in records:
    step, tokens = rec["step"], _num(rec.get("tokens"))
    for key, v in rec.items():
      if key in ("step", "tokens"):
        continue
      if isinstance(v, (list, tuple)):
        arrays.setdefault(key, []).append((int(step), np.asarray(v, dtype=float)))
        continue
      if isinstance(v, bool) or not isinstance(v, (int, float)):
        continue
      group, task, split, metric = _split_key(key, tasks)
      v = float(v)
      if bad is None and metric in LOSS_METRICS and not math.isfinite(v):
        bad = f"non-finite {key} = {v} at step {step}"
      t = tasks.get(task, {}) if task else {}
      rows.append((step, tokens, tokens * fpt, group, task, split, metric, v,
                   _num(t.get("frequency_per_batch")), _num(t.get("frequency_per_token")), t.get("schedule"),
                   _num(t.get("period"))))
  for name, reader in (("retention.npz", _arrays_from_npz), (RETENTION_JSONL, lambda p: _arrays_from_jsonl(rd))):
    if os.path.isfile(os.path.join(path, name)):
      try:
        arrays.update(reader(os.path.join(path, name)))
      except (OSError, ValueError, KeyError, rundir.RunDirError) as e:
        rep.warnings.append(f"{sweep}/{run}: {name} unreadable ({e}); Fig 2a falls back to task losses")
  if bad:
    rep.excluded.append((f"{sweep}/{run}", bad))
    return meta, None, arrays, cfg
  if not rows:
    rep.excluded.append((f"{sweep}/{run}", "metrics.jsonl has steps but no numeric metrics"))
    return meta, None, arrays, cfg
  return meta, rows, arrays, cfg


def _sweep_names(sweep_dirs: list[str]) -> list[str]:
  names = [os.path.basename(os.path.normpath(d)) or d for d in sweep_dirs]
  seen: dict[str, int] = {}
  out = []
  for n in names:
    seen[n] = seen.get(n, 0) + 1
    out.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
  return out


def load(sweep_dirs: str | list[str], *, progress: bool = False) -> Loaded:
  """Reads every run under the sweep dir(s). Raises LoadError when nothing usable is found."""
  if isinstance(sweep_dirs, str):
    sweep_dirs = [sweep_dirs]
  rep = LoadReport()
  metas, frames, configs, arrays = [], [], {}, {}
  for sweep_dir, sweep in zip(sweep_dirs, _sweep_names(sweep_dirs)):
    if not os.path.isdir(sweep_dir):
      raise LoadError(f"--sweep_dir {sweep_dir}: no such directory; pass the folder launch/sweep.py wrote")
    manifest = _read_manifest(sweep_dir)
    paths = discover(sweep_dir)
    rep.n_run_dirs += len(paths)
    if not paths and manifest is None:
      raise LoadError(f"{sweep_dir}: no run dirs (folders with {rundir.CONFIG_FILE}) and no {MANIFEST}; pass the "
                      "sweep dir that launch/sweep.py wrote, or a folder of run dirs")
    rel = {p: os.path.relpath(p, sweep_dir) for p in paths}
    notes = {} if manifest is None else check_manifest(manifest, sweep, set(rel.values()), rep)
    it = paths
    if progress:
      it = tqdm(paths, desc=f"load {sweep}", leave=False)
    for p in it:
      run = rel[p] if rel[p] != "." else os.path.basename(p)
      note = next((n for wd, n in notes.items() if rel[p] == wd or rel[p].startswith(wd + os.sep)), "")
      out = _load_run(p, sweep, run, sweep_dir, rep, note)
      if out is None:
        continue
      meta, rows, arr, cfg = out
      key = f"{sweep}/{run}"
      meta["usable"] = rows is not None and meta["status"] == "done"
      meta["path"] = p
      metas.append(meta)
      configs[key] = cfg
      if arr:
        arrays[key] = arr
      if rows is not None:
        f = pd.DataFrame(rows, columns=COLUMNS[len(RUN_COLUMNS):])
        for c in RUN_COLUMNS:
          f.insert(RUN_COLUMNS.index(c), c, meta[c])
        frames.append(f)
  runs = pd.DataFrame(metas, columns=RUN_COLUMNS + ["usable", "path"])
  if not frames:
    n = rep.n_run_dirs
    why = "; ".join(f"{r}: {w}" for r, w in (rep.malformed + rep.excluded + rep.missing)[:3])
    raise LoadError(f"no usable runs in {', '.join(sweep_dirs)} ({n} run dirs, "
                    f"{rep.n_manifest_runs} manifest runs){': ' + why if why else ''}")
  df = pd.concat(frames, ignore_index=True)
  for c in ("sweep", "run", "experiment", "status", "size", "group", "task", "split", "metric", "schedule"):
    df[c] = df[c].astype("category")
  return Loaded(df=df, runs=runs, configs=configs, arrays=arrays, report=rep)


# ---------------------------------------------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------------------------------------------
def final(df: pd.DataFrame, only_usable: bool = True, runs: pd.DataFrame | None = None) -> pd.DataFrame:
  """The last logged value of every (run, metric key): metrics are logged at different cadences (train vs
  eval), so this is per key, not one last step per run. only_usable: runs whose status is done."""
  d = df[df["status"] == "done"] if only_usable else df
  keys = ["sweep", "run", "group", "task", "split", "metric"]
  d = d.sort_values("step", kind="stable")
  return d.groupby(keys, observed=True, dropna=False, sort=False).tail(1).reset_index(drop=True)


def per_task(df: pd.DataFrame, metric: str, group: str = "eval", split: str | None = "test",
             last: bool = True) -> pd.DataFrame:
  """Rows of one per-task metric (e.g. 'loss' of eval/<task>/loss), final values when last=True."""
  d = final(df) if last else df
  sel = (d["group"] == group) & (d["metric"] == metric) & d["task"].notna()
  if split is not None:
    sel &= d["split"] == split
  return d[sel].reset_index(drop=True)


def metric(df: pd.DataFrame, key: str) -> pd.DataFrame:
  """Rows of one full metric key ('eval/background/loss', 'toy/delta_F', 'eval/cmp_train/loss')."""
  group, task, split, m = _split_key(key, {})
  sel = (df["group"] == group) & (df["metric"] == m)
  sel &= df["task"].isna() if task is None else (df["task"] == task)
  if split is not None:
    sel &= df["split"] == split
  return df[sel]
