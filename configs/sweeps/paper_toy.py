"""The paper's toy figures (§3, Figs 2–4) as sweeps, for the reproduction page (docs/REPRODUCTION.md).

  python launch/sweep.py --config=configs/sweeps/paper_toy.py:fig=2 --sweep_dir=sweeps/paper/fig2
  python launch/sweep.py --config=configs/sweeps/paper_toy.py:fig=4,quick --sweep_dir=sweeps/paper/fig4
  python -m analysis.reproduce --sweeps_root sweeps/paper            # figures, numbers, verdicts

`fig` is 2 (phase diagram and loss vs width across β), 3 (rare/frequent signal against δ_F and Prop. 6's threshold)
or 4 (withhold gap G × width at matched frequency). Without `quick`: Figs 2 and 3 are the full grids of
configs/sweeps/toy_fig2.py / toy_fig3.py, Fig 4 is toy_fig4.py's widths at three of its gaps (1, 160, 1280;
sized for ≤ 90 minutes on a 2-core CPU); the measured times are in README.md ("Reproduction"). `quick` keeps a
sub-grid for a first look in minutes (fewer widths, one seed, fewer gaps; Fig 4 at half the steps with widths 32
and 256 only; its claim compares widths that learn the injected task at G=1, see analysis/claims.py fig4).
The sweep dir must be named fig2 / fig3 / fig4 under the sweeps root for analysis.reproduce.
Every run uses the `fast` toy settings of configs/toy.py (K=32, r=32, α=2).
"""

from __future__ import annotations

import ml_collections

from configs.sweeps.paper_common import figure_sweep


# Per figure: (overrides, axes) for the full grid and for `quick`.
_FIG2_FULL = [{"toy.width": [8, 16, 32, 64, 128, 256, 512]}]
_FIG2_QUICK = [{"toy.width": [8, 16, 32, 64, 128]}]
_FIG3_FULL = [{"toy.width": [8, 16, 32, 64, 128, 256, 512]}]
_FIG3_QUICK = [{"toy.width": [8, 32, 128]}]
_FIG4_FULL = [{"toy.width": [32, 64, 128, 256]}, {"toy.inject.period": [1, 160, 1280]}]
_FIG4_QUICK = [{"toy.width": [32, 256]}, {"toy.inject.period": [1, 160, 640]}]


def _fig2(quick: bool) -> tuple[dict, list]:
  seeds = (0,) if quick else (0, 1, 2)
  return {"toy": {"betas": (0.5, 1.0, 1.5, 2.0), "seeds": seeds}}, _FIG2_QUICK if quick else _FIG2_FULL


def _fig3(quick: bool) -> tuple[dict, list]:
  seeds = (0,) if quick else (0, 1, 2)
  return ({"toy": {"betas": (1.0,), "seeds": seeds},
           "train": {"eval_every": 20, "log_every": 20, "retention_every": 200}},
          _FIG3_QUICK if quick else _FIG3_FULL)


def _fig4(quick: bool) -> tuple[dict, list]:
  # Task 32 leaves the base mixture and gets f = 2 rows per batch on average (π_32·256 ≈ 2 at β=1); with gap G it
  # arrives as 2G rows every G-th batch. quick: 6400 steps, so G=640 still gives 10 injections.
  steps = 6400 if quick else 12_800
  return ({"toy": {"betas": (1.0,), "seeds": (0,),
                   "inject": {"task": 32, "schedule": "withhold", "frequency": 2.0}},
           "train": {"steps": steps, "eval_every": 40, "log_every": 40, "retention_every": 640},
           "checkpoint": {"every": 640}},
          _FIG4_QUICK if quick else _FIG4_FULL)


FIGURES = {"2": _fig2, "3": _fig3, "4": _fig4}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return figure_sweep(arg, FIGURES, file="configs/sweeps/paper_toy.py", entrypoint="scaling.toy_train",
                      base="configs/toy.py", default="2")
