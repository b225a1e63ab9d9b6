"""Fig 2 (paper §3): which toy features a width-N encoder keeps, and per-task loss vs width, against Theorem 3.

  python launch/sweep.py --config=configs/sweeps/toy_fig2.py --sweep_dir=sweeps/toy_fig2
  python launch/sweep.py --config=configs/sweeps/toy_fig2.py --dry_run

7 widths (8 … 512) × 4 β (0.5, 1, 1.5, 2) × 3 seeds with the `fast` settings of configs/toy.py (K=32, r=32,
α=2). One run per width; each trains its 12 (β, seed) members as one program and writes one run dir per member
(<sweep_dir>/<run>/beta=1.0_seed=0/...). Widths run one at a time: a run already uses both cores (~19 min in all
on a 2-core CPU, N=512 a third of it).
  (a) phase diagram: retention.jsonl's last record (‖P_U b_{k,j}‖² > 0.5: retained) per width × task, against
      theory.json's entry_width (the Theorem-3 boundary: column 1 is each task's first feature);
  (b) toy/<task>/loss_norm at the last step vs width, one curve per β, against theory.json's optimal_loss_norm.
"""

from __future__ import annotations

import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  del arg
  c = ml_collections.ConfigDict()
  c.name = "toy_fig2"
  c.entrypoint = "scaling.toy_train"
  c.base = "configs/toy.py"
  c.overrides = {"toy": {"betas": (0.5, 1.0, 1.5, 2.0), "seeds": (0, 1, 2)}}
  c.axes = [{"toy.width": [8, 16, 32, 64, 128, 256, 512]}]
  c.backend = {"local": {"max_parallel": 1}}
  return c
