"""The paper's transformer figures (§4, Figs 5–9) as CPU sweeps, for the reproduction page (docs/REPRODUCTION.md).

  python launch/sweep.py --config=configs/sweeps/paper_lm.py:fig=9 --sweep_dir=sweeps/paper/fig9
  python launch/sweep.py --config=configs/sweeps/paper_lm.py:fig=6b,quick --sweep_dir=sweeps/paper/fig6b --dry_run
  python -m analysis.reproduce --sweeps_root sweeps/paper            # figures, numbers, verdicts

`fig` is one of:
  5    size (50K, 200K, 1M) × frequency (0.5, 2, 8 instances per batch) with T_CMP and T_ADD both injected at that
       frequency: final LABEL train-split loss and test accuracy heat maps.
  6a   task loss over steps per frequency (T_CMP at 0.25, 1, 4, 16 per batch) at 200K and 1M.
  6b   matched frequency (1 instance per batch on average) as N instances every N batches, N ∈ {1, 10, 20, 50,
       100} (data.tasks.cmp.schedule=burst, period=N) at 200K.
  7    probes: T_CMP order feature (probe/cmp/order_r2, held out; order_r2_paper, the paper's top-50-PC
       regression) and T_ADD Fourier modes, every eval, over size (50K, 200K, 1M) × frequency (2, 8).
  8    100 instances every 100 batches (T_CMP burst, period 100): retention/cmp/* around every injection, per size.
  9    the Fig-8 runs plus interference at every injection and every 50 steps (interference/cmp/cos_*), per
       size; its sweep dir also serves Fig 8 when no fig8 dir exists (same runs, same data).

Every run: the built-in synthetic background language, vocabulary 256 (room for the two disjoint 100-symbol task
sets), 16-token sequences (an instance is 4 tokens), per-size learning rate and warmup from
scaling.lm.ladder.run_settings, the same steps and batch for every size so they see the same data. Burst
figures use 128 sequences per batch (a 100-instance injection must fit in one batch). `quick` halves the steps
(and drops the middle size where it keeps the figure's comparison) for a first look; the sizing of the full
sweeps (≤ 90 minutes each on a 2-core CPU) and their measured times are in README.md ("Reproduction").
"""

from __future__ import annotations

import ml_collections

from configs.sweeps.paper_common import figure_sweep

SIZES = ["50K", "200K", "1M"]


def _base(batch: int, steps: int, eval_every: int) -> dict:
  return {"data": {"vocab_size": 256, "seq_len": 16, "eval_sequences": 64},
          "train": {"steps": steps, "batch_size": batch, "log_every": 50, "eval_every": eval_every},
          "checkpoint": {"every": max(eval_every, steps // 2)}}


def _merge(a: dict, b: dict) -> dict:
  out = {k: dict(v) if isinstance(v, dict) else v for k, v in a.items()}
  for k, v in b.items():
    out[k] = {**out.get(k, {}), **v} if isinstance(v, dict) else v
  return out


def _fig5(quick: bool):
  freqs = [0.5, 2.0, 8.0]
  return (_base(64, 1500 if quick else 3000, 250),
          [{"model.size": SIZES}, {"data.tasks.cmp.frequency": freqs, "data.tasks.add.frequency": freqs}])


def _fig6a(quick: bool):
  return (_base(32, 1000 if quick else 2000, 100),
          [{"model.size": ["200K", "1M"]}, {"data.tasks.cmp.frequency": [0.25, 1.0, 4.0, 16.0]}])


def _fig6b(quick: bool):
  over = _merge(_base(128, 1000 if quick else 2000, 100),
                {"data": {"tasks": {"cmp": {"frequency": 1.0, "schedule": "burst"}}}})
  return over, [{"model.size": ["200K"]}, {"data.tasks.cmp.period": [1, 10, 20, 50, 100]}]


def _fig7(quick: bool):
  freqs = [2.0, 8.0]
  over = _merge(_base(64, 1500 if quick else 3000, 250), {"mechanisms": {"probe_every": 250}})
  sizes = ["50K", "1M"] if quick else SIZES
  return over, [{"model.size": sizes}, {"data.tasks.cmp.frequency": freqs, "data.tasks.add.frequency": freqs}]


def _burst100(quick: bool, extra: dict):
  over = _merge(_base(128, 1000 if quick else 2000, 100),
                {"data": {"tasks": {"cmp": {"frequency": 1.0, "schedule": "burst", "period": 100}}},
                 "mechanisms": extra})
  return over, [{"model.size": ["50K", "1M"] if quick else SIZES}]


def _fig8(quick: bool):
  return _burst100(quick, {"retention": True})


def _fig9(quick: bool):
  return _burst100(quick, {"retention": True, "interference_at_injections": True, "interference_every": 50})


FIGURES = {"5": _fig5, "6a": _fig6a, "6b": _fig6b, "7": _fig7, "8": _fig8, "9": _fig9}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return figure_sweep(arg, FIGURES, file="configs/sweeps/paper_lm.py", entrypoint="scaling.train",
                      base="configs/lm.py", default="9", seeds=(0,))
