"""Synthetic sweeps for analysis tests: run dirs written through scaling.core.rundir.RunDir with known laws.

lm_sweep: transformer-like runs, 6 sizes × 2 cmp/add frequencies × 2 seeds.
  background  eval/background/loss(N, D) = BG_E + BG_A/N^BG_ALPHA + BG_B/D^BG_BETA (Chinchilla form)
  cmp         final test loss = CMP_E + CMP_A[f]·N^-CMP_ALPHA          (a power law per frequency)
  add         final test loss = step from log 100 down to 0.05 at N0 = ADD_N0[f]  (a rare task that switches on)
  plus one failed run (status failed, a few metrics), one manifest run that never started, a burst-schedule run,
  interference and probe metrics. The trajectory over steps decays to the final value.
toy_sweep: one toy invocation W per β with member run dirs W/w<width>/, per-task loss_norm = the exact optimal
  loss (scaling.toy.theory) + small noise, toy/retention tables, theory.json; plus withhold members for Fig 4.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from scaling.core import rundir
from scaling.toy import theory as toy_theory

SIZES = [5e4, 1e5, 2e5, 5e5, 1e6, 2e6]
SEEDS = [0, 1]
FREQS = [1.0, 10.0]
STEPS = 200
EVAL_EVERY = 20
TOKENS_PER_STEP = 1024
BG_E, BG_A, BG_ALPHA, BG_B, BG_BETA = 2.0, 60.0, 0.35, 400.0, 0.4
CMP_E, CMP_ALPHA = 0.03, 0.45
CMP_A = {1.0: 120.0, 10.0: 40.0}
ADD_LO, ADD_HI, ADD_K = 0.05, math.log(100), 4.0
ADD_N0 = {1.0: 6e5, 10.0: 1.5e5}
NOISE = 0.01

TOY_K, TOY_R = 8, 8
TOY_WIDTHS = [4, 8, 12, 16, 24, 32, 48]
TOY_BETAS = [1.0, 1.5]


def cmp_loss(N, f):
  return CMP_E + CMP_A[f] * np.asarray(N, float) ** -CMP_ALPHA


def add_loss(N, f):
  x = np.log(np.asarray(N, float)) - math.log(ADD_N0[f])
  return ADD_LO + (ADD_HI - ADD_LO) / (1 + np.exp(ADD_K * x))


def bg_loss(N, D):
  return BG_E + BG_A * np.asarray(N, float) ** -BG_ALPHA + BG_B * np.asarray(D, float) ** -BG_BETA


def _write_manifest(sweep_dir, runs):
  with open(os.path.join(sweep_dir, "manifest.json"), "w") as f:
    json.dump({"schema": 1, "sweep": os.path.basename(sweep_dir), "runs": runs}, f)


def _lm_run(path, N, seed, freqs, rng, *, schedule="random", period=1, steps=STEPS, status="done", reason=None,
            nan_at=None, bg_noise=NOISE):
  run = rundir.RunDir(path)
  tasks = {}
  for t, f in freqs.items():
    tasks[t] = {"frequency_per_batch": f, "frequency_per_token": f * 4 / TOKENS_PER_STEP, "schedule": schedule,
                "period": period, "test_split_sha256": None}
  summary = {"size": f"{N:.0e}", "n_params": int(N * 1.3), "n_params_non_embedding": int(N), "seed": seed,
             "total_steps": STEPS, "batch_size": 16, "seq_len": 64, "tokens_per_step": TOKENS_PER_STEP,
             "flops_per_token": 6.0 * N, "tasks": tasks}
  cfg = {"seed": seed, "data": {"source": "fake", "tasks": {t: {"frequency": f} for t, f in freqs.items()}},
         "model": {"size": summary["size"]}}
  run.write_config("lm", cfg, summary)
  recs = []
  for step in range(0, steps + 1, EVAL_EVERY):
    tokens = step * TOKENS_PER_STEP
    frac = step / STEPS
    rec = {"step": step, "tokens": tokens, "train/loss": float(bg_loss(N, max(tokens, 1)) + 0.02)}
    rec["eval/background/loss"] = float(bg_loss(N, max(tokens, TOKENS_PER_STEP)) *
                                        math.exp(bg_noise * rng.standard_normal()))
    for t, f in freqs.items():
      final = float(cmp_loss(N, f) if t == "cmp" else add_loss(N, f))
      chance = math.log(2) if t == "cmp" else ADD_HI
      # Decays to the final value; the last step is exactly the law (times noise).
      cur = final + (chance + 0.5 - final) * (1 - frac) ** 2
      if schedule == "burst":  # a drop right after each injection that fades
        since = step % period
        cur = cur * (1 - 0.3 * math.exp(-since / max(period / 4, 1)))
      val = cur * math.exp(NOISE * rng.standard_normal())
      if nan_at is not None and step == nan_at:
        val = float("nan")
      rec[f"eval/{t}/loss"] = val
      rec[f"eval/{t}/accuracy"] = float(min(1.0, math.exp(-val)))
      rec[f"eval/{t}/n"] = 5000
      rec[f"eval/{t}_train/loss"] = val * 0.95
      rec[f"eval/{t}_train/accuracy"] = float(min(1.0, math.exp(-0.95 * val)))
      rec[f"data/{t}/count"] = int(f * step)
      rec[f"interference/{t}/cos_g_gr"] = float(0.02 + 0.01 * math.log10(N) + 0.01 * rng.standard_normal())
      rec[f"interference/{t}/cos_gt_gr"] = float(0.3 + 0.05 * rng.standard_normal())
      rec[f"interference/{t}/cos_gnt_gr"] = float(0.1 / math.log10(N) + 0.02 * rng.standard_normal())
      probe = float(max(0.0, 1 - val / chance)) * (1 if t == "cmp" else 10)
      name = "order_r2" if t == "cmp" else "fourier_modes"
      rec[f"probe/{t}/{name}"] = probe
      rec[f"probe/{t}/{name}_l0"] = probe / 2  # a per-layer variant (scaling/mechanisms/probes.py)
      if schedule == "burst" and step > 0 and step % period == 0:  # scaling/mechanisms/retention.py records
        rec[f"retention/{t}/gain"] = 0.3 * cur
        rec[f"retention/{t}/decay"] = 0.3 * cur * (0.9 if N < 1e6 else 0.2)
    recs.append(rec)
  run.append_metrics(recs)
  run.write_status(status, steps, STEPS, reason)
  return run


def lm_sweep(sweep_dir, *, sizes=SIZES, seeds=SEEDS, freqs=FREQS, extras=True, seed=0, bg_noise=NOISE,
             broken=False):
  """Writes the LM-like sweep; returns the manifest run list. broken: add a run with a NaN loss and one whose
  metrics.jsonl is missing (both done per status.json)."""
  rng = np.random.default_rng(seed)
  os.makedirs(sweep_dir, exist_ok=True)
  manifest = []
  for N in sizes:
    for f in freqs:
      for s in seeds:
        rid = f"N{int(N)}-f{f:g}-s{s}"
        _lm_run(os.path.join(sweep_dir, "runs", rid), N, s, {"cmp": f, "add": f}, rng, bg_noise=bg_noise)
        manifest.append({"id": rid, "workdir": f"runs/{rid}", "status": "done", "reason": None})
  if extras:
    _lm_run(os.path.join(sweep_dir, "runs", "failed"), sizes[-1], 9, {"cmp": 1.0}, rng, steps=60, status="failed",
            reason="non-finite loss at step 61")
    manifest.append({"id": "failed", "workdir": "runs/failed", "status": "failed",
                     "reason": "non-finite loss at step 61"})
    manifest.append({"id": "never", "workdir": "runs/never", "status": "pending", "reason": None})
    for N in (sizes[1], sizes[-1]):
      rid = f"burst-N{int(N)}"
      _lm_run(os.path.join(sweep_dir, "runs", rid), N, 0, {"cmp": 1.0}, rng, schedule="burst", period=50)
      manifest.append({"id": rid, "workdir": f"runs/{rid}", "status": "done", "reason": None})
  if broken:
    _lm_run(os.path.join(sweep_dir, "runs", "nan"), sizes[0], 7, {"cmp": 1.0}, rng, nan_at=100)
    run = rundir.RunDir(os.path.join(sweep_dir, "runs", "nometrics"))
    run.write_config("lm", {"seed": 8}, {"n_params_non_embedding": int(sizes[0]), "seed": 8})
    run.write_status("done", STEPS, STEPS)
    manifest += [{"id": i, "workdir": f"runs/{i}", "status": "done", "reason": None} for i in ("nan", "nometrics")]
  _write_manifest(sweep_dir, manifest)
  return manifest


# ---------------------------------------------------------------------------------------------------------------
def toy_spec(beta):
  return toy_theory.ToySpec(K=TOY_K, r=TOY_R, beta=beta, alpha=2.0, seed=0)


def _toy_member(path, width, beta, rng, *, inject=None, steps=1000, every=100, retention="jsonl"):
  """One member run dir as scaling/toy/train.py writes it (retention: jsonl | metrics | npz)."""
  spec = toy_spec(beta)
  run = rundir.RunDir(path)
  inject = inject or {"task": 0, "schedule": "withhold", "period": 1, "frequency": 0.0}
  cfg = {"seed": 0, "model": {"variant": "orthonormal"},
         "toy": {"width": width, "K": TOY_K, "r": TOY_R, "beta": beta, "betas": [], "seeds": [], "alpha": 2.0,
                 "alphas": [], "lam_norm": "first", "basis_seed": 0, "mass": 0.8, "schedule": "random",
                 "rare_tasks": [], "inject": inject},
         "train": {"batch_size": 256, "steps": steps}}
  names = [f"t{k:02d}" for k in range(1, TOY_K + 1)]
  tasks = {n: {"frequency_per_batch": 256 * float(p), "frequency_per_token": float(p), "schedule": "random",
               "period": 1, "pi": float(p), "rows": "base"} for n, p in zip(names, spec.pi)}
  if inject["task"]:
    tasks[names[inject["task"] - 1]].update(frequency_per_batch=inject["frequency"], schedule=inject["schedule"],
                                             period=inject["period"], rows="extra")
  run.write_config("toy", cfg, {"width": width, "seed": 0, "batch_size": 256, "seq_len": 1, "total_steps": steps,
                                "n_params": spec.d * width, "n_params_non_embedding": spec.d * width,
                                "tokens_per_step": 256, "tasks": tasks})
  final = toy_theory.optimal_task_loss(spec, width).normalised
  keep = toy_theory.top_features(spec, width).astype(float)
  F = toy_theory.frequent_set(spec)
  uF = toy_theory.utilities_F(spec)
  w = spec.pi * spec.trace_C
  recs, rets = [], []
  for step in range(0, steps + 1, every):
    frac = step / steps
    rec = {"step": step, "tokens": step * 256}
    cur = final + (1 - final) * (1 - frac) ** 3
    ret = keep * (1 - (1 - frac) ** 3)
    if inject["task"]:
      k = inject["task"] - 1
      G = inject["period"]
      # the injected task's signal spikes at each injection and decays after, faster for small widths
      phase = (step % G) / G if G > 1 else 0.0
      decay = math.exp(-phase * 32 / width)
      cur[k] = 1 - (1 - final[k]) * decay
      ret[k] = keep[k] * decay
    cur = np.clip(cur * np.exp(0.005 * rng.standard_normal(TOY_K)), 1e-4, 1.0)
    sig = 1 - cur
    for n, l, sg in zip(names, cur, sig):
      rec[f"toy/{n}/loss_norm"] = float(l)
      rec[f"toy/{n}/signal"] = float(sg)
      rec[f"toy/{n}/signal_norm"] = float((sg - width / spec.d) / (1 - width / spec.d))
    rec["toy/delta_F"] = float((uF * (1 - ret)).sum())
    rec["toy/grad_F_norm"] = float(toy_theory.grad_F_bound(spec, rec["toy/delta_F"]) * 0.5)
    rec["toy/cos_rF"] = float(-0.1 * (1 - frac) + 0.01 * rng.standard_normal())
    rec["toy/signal_frequent"] = float((w * sig)[F].sum() / w[F].sum())
    rec["toy/signal_rare"] = float((w * sig)[~F].sum() / w[~F].sum())
    rec["train/loss"] = float((spec.pi * cur * spec.trace_C).sum())
    if retention == "metrics" and step == steps:
      rec["toy/retention"] = ret.tolist()
    if step % 500 == 0:
      rets.append({"step": step, "retention": ret.tolist()})
    recs.append(rec)
  run.append_metrics(recs)
  if retention == "jsonl":
    run.append_metrics(rets, name="retention.jsonl")
  elif retention == "npz":
    np.savez(os.path.join(path, "retention.npz"), retention=keep, step=np.array([steps]))
  with open(os.path.join(path, "theory.json"), "w") as f:
    json.dump({"optimal_loss_norm": final.tolist(), "width": width, "beta": beta}, f)
  run.write_status("done", steps, steps)
  return run


def toy_sweep(sweep_dir, *, widths=TOY_WIDTHS, betas=TOY_BETAS, gaps=(1, 8), seed=0):
  """One invocation W per width (members beta=<β>_seed=0, as scaling/toy/train.py), plus withhold invocations
  at β = 1 for each gap G (widths: smallest and largest). Retention: jsonl (β = 1), npz (β = 1.5), metric lists
  (withhold members)."""
  rng = np.random.default_rng(seed)
  manifest = []
  for w in widths:
    wid = f"toy-w{w}"
    W = os.path.join(sweep_dir, "runs", wid)
    for _i, beta in enumerate(betas):
      _toy_member(os.path.join(W, f"beta={float(beta)}_seed=0"), w, beta, rng,
                  retention="npz" if beta == 1.5 else "jsonl")
    rundir.RunDir(W).write_status("done", 1000, 1000, members=[f"beta={float(b)}_seed=0" for b in betas])
    manifest.append({"id": wid, "workdir": f"runs/{wid}", "status": "done", "reason": None})
  for G in gaps:
    for w in (widths[0], widths[-1]):
      wid = f"toy-withhold-G{G}-w{w}"
      W = os.path.join(sweep_dir, "runs", wid)
      _toy_member(os.path.join(W, "beta=1.0_seed=0"), w, 1.0, rng, retention="metrics",
                  inject={"task": TOY_K, "schedule": "withhold", "period": G, "frequency": 1.0})
      rundir.RunDir(W).write_status("done", 1000, 1000)
      manifest.append({"id": wid, "workdir": f"runs/{wid}", "status": "done", "reason": None})
  _write_manifest(sweep_dir, manifest)
  return manifest
