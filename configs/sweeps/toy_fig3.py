"""Fig 3 (paper §3): rare vs frequent signal during training, against δ_F and the threshold δ_F*(N_r^crit).

  python launch/sweep.py --config=configs/sweeps/toy_fig3.py --sweep_dir=sweeps/toy_fig3
  python launch/sweep.py --config=configs/sweeps/toy_fig3.py --dry_run

7 widths (8 … 512) × β = 1 × 3 seeds, K=32, r=32, α=2, with population metrics every 20 steps. Plot per member
toy/<task>/signal (rare tasks: theory.json's "rare", frequent: "frequent"; or the aggregates toy/signal_rare,
toy/signal_frequent) against step and against toy/delta_F; a rare task's signal should start rising only once
toy/delta_F falls below theory.json's delta_F_star[task], and only at widths >= critical_width[task].
toy/grad_F_norm against grad_F_bound_coef * sqrt(toy/delta_F) shows Theorem 4's bound (it holds exactly for
orthonormal U with optimal decoders: add model.variant="orthonormal" to the overrides to check it tightly).
"""

from __future__ import annotations

import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  del arg
  c = ml_collections.ConfigDict()
  c.name = "toy_fig3"
  c.entrypoint = "scaling.toy_train"
  c.base = "configs/toy.py"
  c.overrides = {"toy": {"betas": (1.0,), "seeds": (0, 1, 2)},
                 "train": {"eval_every": 20, "log_every": 20, "retention_every": 200}}
  c.axes = [{"toy.width": [8, 16, 32, 64, 128, 256, 512]}]
  c.backend = {"local": {"max_parallel": 1}}
  return c
