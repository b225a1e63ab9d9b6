"""Synthetic sweeps with a known learnability frontier, written as run dirs (scaling.core.rundir).

frontier_sweep: LM-like runs of one task (cmp) over sizes × frequencies × seeds. Test accuracy follows
  error = 1 − accuracy = ERR_E + A(f)·N^-ERR_ALPHA with A(f) set so that the curve crosses the default N* level
  (accuracy 0.75, halfway from cmp's chance 0.5 to 1) exactly at N*(f) = N0·(f / F0)^-GAMMA; log-normal seed noise.
  Train-split accuracy exceeds test accuracy by GAP_PER_REPEAT × repeats per instance (f·STEPS/5000), so the highest
  frequencies memorise. Also writes manifest.json and sweep_config.json as launch/sweep.py would.
toy_rare_sweep: toy member run dirs with task K injected evenly (inject schedule interleave) at several per-base-row
  rates π_r × widths; every task's normalised loss is the exact optimum of the combined problem (Theorem 3 on the
  base tasks' shares and the injected rate) plus small noise.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from scaling.core import rundir
from scaling.toy import theory as toy_theory

SIZES = (5e4, 1e5, 2e5, 5e5, 1e6, 2e6)
LABELS = {5e4: "50K", 1e5: "100K", 2e5: "200K", 5e5: "500K", 1e6: "1M", 2e6: "2M"}
FREQS = (1.0, 2.0, 4.0, 8.0, 16.0)
SEEDS = (0, 1, 2)
GAMMA, N0, F0 = 0.8, 1e6, 1.0
ERR_E, ERR_ALPHA = 0.02, 0.4
THRESHOLD_ERR = 0.25  # accuracy 0.75
STEPS, BATCH, SEQ = 20_000, 32, 16
GAP_PER_REPEAT = 0.002
N_TRAIN = 5000


def n_star(f, gamma=GAMMA, n0=N0):
  return n0 * (np.asarray(f, float) / F0) ** -gamma


def error(N, f, gamma=GAMMA, n0=N0):
  A = (THRESHOLD_ERR - ERR_E) * n_star(f, gamma, n0) ** ERR_ALPHA
  return ERR_E + A * np.asarray(N, float) ** -ERR_ALPHA


def _run(path, N, seed, f, acc, train_acc):
  run = rundir.RunDir(path)
  label = LABELS.get(N, f"{N:.0e}")
  summary = {"size": label, "n_params": int(N * 1.2), "n_params_non_embedding": int(N), "seed": seed,
             "total_steps": STEPS, "batch_size": BATCH, "seq_len": SEQ, "tokens_per_step": BATCH * SEQ,
             "flops_per_token": 6.0 * N,
             "tasks": {"cmp": {"frequency_per_batch": f, "frequency_per_token": f * 4 / (BATCH * SEQ),
                               "schedule": "random", "period": None, "test_split_sha256": None}}}
  cfg = {"seed": seed, "data": {"source": "fake", "tasks": {"cmp": {"frequency": f}}}, "model": {"size": label}}
  run.write_config("lm", cfg, summary)
  run.append_metrics([{"step": 0, "tokens": 0, "eval/cmp/accuracy": 0.3, "eval/cmp_train/accuracy": 0.3},
                      {"step": STEPS, "tokens": STEPS * BATCH * SEQ, "eval/cmp/accuracy": acc,
                       "eval/cmp/loss": -math.log(max(acc, 1e-3)), "eval/cmp_train/accuracy": train_acc}])
  run.write_status("done", STEPS, STEPS)


def frontier_sweep(sweep_dir, *, sizes=SIZES, freqs=FREQS, seeds=SEEDS, gamma=GAMMA, n0=N0, sigma=0.03, seed=0):
  """Writes the sweep; returns the true N*(f) per frequency."""
  rng = np.random.default_rng(seed)
  os.makedirs(sweep_dir, exist_ok=True)
  manifest = []
  for N in sizes:
    for f in freqs:
      gap = GAP_PER_REPEAT * f * STEPS / N_TRAIN
      for s in seeds:
        err = float(error(N, f, gamma, n0) * math.exp(sigma * rng.standard_normal()))
        acc = 1.0 - err
        rid = f"N{int(N)}-f{f:g}-s{s}"
        _run(os.path.join(sweep_dir, "runs", rid), N, s, f, acc, min(1.0, acc + gap))
        manifest.append({"id": rid, "workdir": f"runs/{rid}", "status": "done", "reason": None})
  with open(os.path.join(sweep_dir, "manifest.json"), "w") as fh:
    json.dump({"schema": 1, "sweep": os.path.basename(sweep_dir), "runs": manifest}, fh)
  sweep_cfg = {"name": "synth_frontier", "entrypoint": "scaling.train", "base": "configs/lm.py",
               "overrides": {"data": {"vocab_size": 256, "seq_len": SEQ, "tasks": {"cmp": {"frequency": 1.0}}},
                             "train": {"steps": STEPS, "batch_size": BATCH}},
               "axes": [{"model.size": [LABELS[n] for n in sizes]}, {"data.tasks.cmp.frequency": list(freqs)}],
               "seeds": list(seeds), "backend": {"local": {"max_parallel": 0}}, "config": "synth"}
  with open(os.path.join(sweep_dir, "sweep_config.json"), "w") as fh:
    json.dump(sweep_cfg, fh)
  return {f: float(n_star(f, gamma, n0)) for f in freqs}


# ---------------------------------------------------------------------------------------------------------------
TOY_K, TOY_R, TOY_BETA = 32, 32, 1.0
TOY_BATCH = 256


def toy_optimum(spec, width, inject_task, rate):
  """(K,) normalised optimal losses at `width` when task inject_task (1-based) comes at `rate` per base row and the
  base tasks keep their shares of the base rows."""
  k = inject_task - 1
  share = spec.pi.copy()
  share[k] = 0.0
  share /= share.sum()
  share[k] = rate
  u = share[:, None] * spec.lam
  kept = toy_theory.top_mask(u, width)
  return np.where(kept, 0.0, spec.lam).sum(1) / spec.trace_C


def toy_rare_sweep(sweep_dir, *, widths=(2, 4, 8, 16, 32, 64), rates=(0.02, 0.04, 0.08, 0.16), noise=0.01, seed=0):
  """One member run dir per (width, rate); returns the spec."""
  rng = np.random.default_rng(seed)
  spec = toy_theory.ToySpec(K=TOY_K, r=TOY_R, beta=TOY_BETA, alpha=2.0, seed=0)
  names = [f"t{k:02d}" for k in range(1, TOY_K + 1)]
  inj = TOY_K
  for w in widths:
    for rate in rates:
      path = os.path.join(sweep_dir, "runs", f"w{w}-r{rate:g}", "beta=1.0_seed=0")
      run = rundir.RunDir(path)
      inject = {"task": inj, "schedule": "interleave", "period": 1, "frequency": rate * TOY_BATCH}
      cfg = {"seed": 0, "toy": {"width": w, "K": TOY_K, "r": TOY_R, "beta": TOY_BETA, "alpha": 2.0, "lam_norm": "first",
                                "basis_seed": 0, "mass": 0.8, "inject": inject},
             "train": {"batch_size": TOY_BATCH, "steps": 1000}}
      base = spec.pi / (1 - spec.pi[inj - 1])
      tasks = {n: {"frequency_per_batch": TOY_BATCH * float(p), "frequency_per_token": float(p), "schedule": "random",
                   "period": 1, "pi": float(spec.pi[i]), "rows": "base"} for i, (n, p) in enumerate(zip(names, base))}
      tasks[names[inj - 1]].update(frequency_per_batch=rate * TOY_BATCH, frequency_per_token=rate,
                                   schedule="interleave", rows="extra")
      run.write_config("toy", cfg, {"width": w, "seed": 0, "batch_size": TOY_BATCH, "seq_len": 1, "total_steps": 1000,
                                    "n_params": spec.d * w, "n_params_non_embedding": spec.d * w,
                                    "tokens_per_step": TOY_BATCH, "tasks": tasks})
      final = toy_optimum(spec, w, inj, rate)
      vals = np.clip(final * np.exp(noise * rng.standard_normal(TOY_K)), 1e-4, 1.0)
      rec = {"step": 1000, "tokens": 1000 * TOY_BATCH} | {f"toy/{n}/loss_norm": float(v) for n, v in zip(names, vals)}
      run.append_metrics([{"step": 0, "tokens": 0} | {f"toy/{n}/loss_norm": 1.0 for n in names}, rec])
      run.write_status("done", 1000, 1000)
  return spec
