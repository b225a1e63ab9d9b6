"""The main job's toy part: the paper's Fig 2 (which features a width-N encoder keeps, against Theorem 3) at K = 8.

  python launch/sweep.py --config=configs/sweeps/demo_toy.py --sweep_dir=sweeps/demo_toy   # on its own
  (configs/sweeps/demo.py lists it as a companion: the main job runs it into sweeps/demo/demo_toy/ and reports both)

Five widths (2 … 32) × 4 β (0.5, 1, 1.5, 2) × 1 seed with configs/toy.py's `fast` settings, at K = 8 tasks of r = 8
features (d = 64) instead of the paper's K = r = 32. One run per width trains its 4 β members as one program.

Why these values: the smaller task family keeps the exact theory (Theorem 3's boundary and optimal losses depend
only on K, r, α, β) while every width trains in seconds, so the phase diagram and the loss-vs-width curves fit
beside the transformer sweep in the main job's ten minutes; widths 2 … 32 run from keeping only the frequent tasks'
top features to holding half of all 64 directions. configs/sweeps/toy_fig2.py is the paper-sized version
(K = r = 32, widths 8 … 512, 3 seeds, ~19 minutes).
"""

from __future__ import annotations

import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  del arg
  c = ml_collections.ConfigDict()
  c.name = "demo_toy"
  c.entrypoint = "scaling.toy_train"
  c.base = "configs/toy.py"
  c.overrides = {"toy": {"K": 8, "r": 8, "betas": (0.5, 1.0, 1.5, 2.0), "seeds": (0,)}}
  c.axes = [{"toy.width": [2, 4, 8, 16, 32]}]
  c.backend = {"local": {"max_parallel": 2}}
  return c
