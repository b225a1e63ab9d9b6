"""What a sweep will cost: per-run size, N, tokens, FLOPs and an estimated time (the --dry_run table).

Transformer runs (`scaling.train`) are resolved with scaling.configlib.resolve, so the table shows the derived
per-size settings (batch, steps, learning rate from configs.models.run_settings) exactly as the trainer will use
them, and every run is validated (configlib.validate) before anything starts.

Estimated time per run = startup + FLOPs / throughput. The throughput is, in order of preference:
  1. measured: the median `model_flops_per_s` in perf.jsonl of this sweep's finished runs on the same backend,
     taken from the runs whose model size (FLOPs per token) is nearest;
  2. `backend.<name>.flops_per_s` from the sweep config;
  3. the assumption below (model FLOP/s of one run, i.e. what the trainer's perf.jsonl reports).
The table footer says which one it used.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics

from launch.configfile import SweepError

# Assumed model FLOP/s of one run and fixed start-up seconds (import, compile, first eval), per backend.
#   local: the 2-core CPU dev VM (Nov 2026): a 1M model reaches ~8e10 model FLOP/s unloaded (../shared/STACK.md
#          step rates), 5e9-1e10 while other jobs share the cores (measured from perf.jsonl); 50K models are
#          overhead-bound. 3e10 sits between. Start-up (import + compile) ~15 s.
#   slurm: one GPU (A100/H100 class) at ~30% of a ~3e14 dense bf16 peak; start-up (queue excluded) ~60 s.
#   tpu:   a v5e-8 slice (8 x 197 TFLOP/s bf16) at ~35% MFU; start-up ~120 s.
ASSUMED = {
    "local": {"flops_per_s": 3e10, "startup_s": 15.0},
    "slurm": {"flops_per_s": 1e14, "startup_s": 60.0},
    "tpu": {"flops_per_s": 5.5e14, "startup_s": 120.0},
}


@dataclasses.dataclass
class Row:
  id: str
  cols: dict  # column name -> display value
  flops: float | None = None
  est_s: float | None = None
  flops_per_token: float | None = None


def _lm_rows(runs) -> list[Row]:
  from scaling.lm import config as configlib  # noqa: PLC0415 - imports jax; only transformer sweeps pay for it
  rows = []
  for run in runs:
    try:
      c = configlib.resolve(run.config)
      configlib.validate(c)
    except (configlib.ConfigError, ValueError) as e:
      raise SweepError(f"run {run.id}: {(str(e).splitlines() or [''])[0]}") from None
    s = configlib.summary(c)
    tokens = c.train.steps * s["tokens_per_step"]
    flops = s["flops_per_token"] * tokens
    rows.append(Row(run.id, {"size": c.model.size, "N": _si(s["n_params_non_embedding"]),
                             "steps": str(c.train.steps), "batch": str(c.train.batch_size),
                             "lr": f"{c.train.learning_rate:.3g}", "warmup": str(c.train.warmup_steps),
                             "tokens": _si(tokens), "FLOPs": f"{flops:.2e}"},
                    flops=flops, flops_per_token=s["flops_per_token"]))
  return rows


def _get(cfg, key: str):
  node = cfg
  for part in key.split("."):
    if not hasattr(node, "keys") or part not in node:
      return None
    node = node[part]
  return node


def _generic_rows(runs) -> list[Row]:
  rows = []
  for run in runs:
    cols = {}
    for key, label in (("toy.width", "width"), ("model.width", "width"), ("model.size", "size"),
                       ("train.steps", "steps"), ("seed", "seed")):
      v = _get(run.config, key)
      if v is not None and label not in cols:
        cols[label] = str(v)
    rows.append(Row(run.id, cols))
  return rows


def rows_for(sweep, runs) -> list[Row]:
  """Per-run table rows; raises SweepError when a transformer run's resolved config is invalid."""
  first = runs[0].config if runs else None
  if sweep.entrypoint == "scaling.train" or (first is not None and _get(first, "experiment") == "lm"):
    return _lm_rows(runs)
  return _generic_rows(runs)


def measured_flops_per_s(sweep_dir: str, manifest: dict | None, backend: str) -> list[tuple[float, float]]:
  """[(flops_per_token, median model FLOP/s)] of this sweep's finished runs on `backend` (perf.jsonl)."""
  out = []
  for rec in (manifest or {}).get("runs", []):
    if rec.get("status") != "done" or not rec.get("jobs") or rec["jobs"][-1].get("backend") != backend:
      continue
    run_dir = os.path.join(sweep_dir, rec["workdir"])
    try:
      with open(os.path.join(run_dir, "perf.jsonl")) as f:
        vals = [json.loads(ln).get("model_flops_per_s") for ln in f if ln.strip()]
      with open(os.path.join(run_dir, "config.json")) as f:
        fpt = json.load(f)["summary"]["flops_per_token"]
    except (OSError, json.JSONDecodeError, KeyError):
      continue
    vals = [v for v in vals[1:] if v]  # the first window includes compilation
    if vals and fpt:
      out.append((float(fpt), statistics.median(vals)))
  return out


def estimate(rows: list[Row], backend: str, settings: dict, sweep_dir: str, manifest: dict | None) -> str:
  """Fills Row.est_s; returns the footer line that says where the throughput figure came from."""
  measured = measured_flops_per_s(sweep_dir, manifest, backend)
  startup = float(settings.get("startup_s") or ASSUMED[backend]["startup_s"])
  if measured:
    # Throughput grows with model size (small models are overhead-bound): use the runs of the nearest size.
    source = f"measured: perf.jsonl of {len(measured)} finished runs in this sweep, nearest model size"
    for r in rows:
      if r.flops is not None and r.flops_per_token:
        near = min(abs(math.log(f / r.flops_per_token)) for f, _ in measured)
        fps = statistics.median([v for f, v in measured if abs(math.log(f / r.flops_per_token)) <= near + 1e-9])
        r.est_s = startup + r.flops / fps
    return f"estimated time = {startup:.0f} s start-up + FLOPs / model FLOP/s ({source})"
  if settings.get("flops_per_s"):
    fps, source = float(settings["flops_per_s"]), f"backend.{backend}.flops_per_s from the sweep config"
  else:
    fps, source = ASSUMED[backend]["flops_per_s"], "assumed for this backend (launch/plan.py ASSUMED)"
  for r in rows:
    if r.flops is not None:
      r.est_s = startup + r.flops / fps
  return f"estimated time = {startup:.0f} s start-up + FLOPs / {fps:.2g} FLOP/s ({source})"


def _si(x: float) -> str:
  for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
    if abs(x) >= div:
      return f"{x / div:.3g}{unit}"
  return f"{x:.3g}"


def fmt_seconds(s: float | None) -> str:
  if s is None:
    return "-"
  if s < 90:
    return f"{s:.0f}s"
  if s < 5400:
    return f"{s / 60:.1f}m"
  if s < 86400 * 2:
    return f"{s / 3600:.1f}h"
  return f"{s / 86400:.1f}d"


def table(headers: list[str], body: list[list[str]]) -> str:
  widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
  line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
  return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in body)])


def render(rows: list[Row], statuses: dict[str, str] | None = None, footer: str = "",
           parallel: int = 1) -> str:
  cols = []
  for r in rows:
    cols += [c for c in r.cols if c not in cols]
  has_est = any(r.est_s is not None for r in rows)
  headers = ["run", *cols] + (["est."] if has_est else []) + (["status"] if statuses else [])
  body = []
  for r in rows:
    cells = [r.id, *(r.cols.get(c, "") for c in cols)]
    if has_est:
      cells.append(fmt_seconds(r.est_s))
    if statuses:
      cells.append(statuses.get(r.id, ""))
    body.append(cells)
  out = [table(headers, body)]
  if has_est:
    total = sum(r.est_s or 0 for r in rows)
    flops = sum(r.flops or 0 for r in rows)
    out.append(f"{len(rows)} runs, {flops:.3g} FLOPs, {fmt_seconds(total)} of run time "
               f"(~{fmt_seconds(total / max(parallel, 1))} wall at {parallel} in parallel)")
    out.append(footer)
  else:
    out.append(f"{len(rows)} runs")
  return "\n".join(out)
