"""Fig 4 (paper §3): matched-frequency injection. The rarest task is withheld for G steps, then arrives as G·f rows
in one enlarged batch, so its long-run frequency is the same for every G.

  python launch/sweep.py --config=configs/sweeps/toy_fig4.py --sweep_dir=sweeps/toy_fig4
  python launch/sweep.py --config=configs/sweeps/toy_fig4.py --dry_run

K=32, r=32, α=2, β=1, seed 0 (the `fast` settings of configs/toy.py, 12,800 steps). Task 32 leaves the base
mixture and gets f = 2 extra rows per batch on average (π_32·256 ≈ 2 at β=1): with G=1 every batch carries 2,
with G=1280 (the paper's panel a) every 1280th batch carries 2560 and the run sees 10 injections.
  (a) toy/t32/signal over steps at G=1280, N=32 (spikes and decays) vs N=256 (accumulates);
  (b) toy/t32/signal at the last step over the G × N grid: it falls with G, faster at small N (the same trend
      is asserted at K=8 in tests/toy/test_toy_vs_theory.py); toy/signal_frequent does not move with G;
  (c) toy/cos_rF (rare = the injected task) over training.
`python -m analysis.report --sweep_dir=sweeps/toy_fig4` draws the three panels (analysis/figures.py fig4_withhold).
20 programs of one member each; the narrow ones take a few minutes, N=256 the longest.
"""

from __future__ import annotations

import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  del arg
  c = ml_collections.ConfigDict()
  c.name = "toy_fig4"
  c.entrypoint = "scaling.toy_train"
  c.base = "configs/toy.py"
  c.overrides = {
      "toy": {"betas": (1.0,), "seeds": (0,),
              "inject": {"task": 32, "schedule": "withhold", "frequency": 2.0}},
      "train": {"steps": 12_800, "eval_every": 40, "log_every": 40, "retention_every": 1280},
      "checkpoint": {"every": 1280},
  }
  c.axes = [{"toy.width": [32, 64, 128, 256]}, {"toy.inject.period": [1, 40, 160, 640, 1280]}]
  c.backend = {"local": {"max_parallel": 1}}
  return c
