"""The paper's transformer figures (§4, Figs 5–9) as CPU sweeps, for the reproduction page (docs/REPRODUCTION.md).

  python launch/sweep.py --config=configs/sweeps/paper_lm.py:fig=9 --sweep_dir=sweeps/paper/fig9
  python launch/sweep.py --config=configs/sweeps/paper_lm.py:fig=6b,quick --sweep_dir=sweeps/paper/fig6b --dry_run
  python -m analysis.reproduce --sweeps_root sweeps/paper            # figures, numbers, verdicts

`fig` is one of:
  5    size (20K, 50K, 200K) × frequency (16, 32, 48 instances per batch) with T_CMP and T_ADD both injected at that
       frequency: final LABEL train-split loss and test accuracy heat maps.
  6a   task loss over steps per frequency (T_CMP at 8, 16, 32, 64 per batch) per size.
  6b   matched frequency (32 instances per batch on average) as 32·N instances every N batches, N ∈ {1, 2, 4}
       (data.tasks.cmp.schedule=burst, period=N) at 200K; N = 4 fills a whole batch of 128, the longest period
       this mean frequency allows.
  7    probes: T_CMP order feature (probe/cmp/order_r2, held out; order_r2_paper, the paper's top-50-PC
       regression) and T_ADD Fourier modes, every eval, over size × frequency (16, 32).
  8    the paper's "100 instances every 100 batches" at a learnable mean frequency: 128 instances (a whole batch)
       every 4 batches, T_CMP burst: retention/cmp/* around every injection, per size.
  9    the Fig-8 runs plus interference at every injection and every 50 steps (interference/cmp/cos_*), per
       size; its sweep dir also serves Fig 8 when no fig8 dir exists (same runs, same data).

Every run uses the demo sweep's regime (configs/sweeps/demo.py says why each value), where T_CMP is learned at CPU
scale: the built-in synthetic background language without its copy regime, vocabulary 256, 8-token rows (an
instance is 4 tokens), 128 rows per batch, warmup 50 steps, the ladder's learning rate, 8 steps per jitted call
(the loop cuts a call short at every callback step, so the per-injection callbacks see every step they need), the
same steps for every size so they see the same data. The paper's frequencies (≤ 1 instance per batch) are scaled
up to the demo's (16–64 per batch), where sizes 20K–200K separate. `quick` runs 1000 steps and drops the middle
size (20K vs 200K: the demo's contrast at 32 per batch); the full grids run 2000 steps over 20K, 50K, 200K. Their
measured times are in README.md ("Reproduction").
"""

from __future__ import annotations

import ml_collections

from configs.sweeps.paper_common import figure_sweep

# N instances every N batches at 32 per batch on average: 4 × 32 = 128 fills a whole batch, the longest period
# a batch of 128 holds at this mean frequency.
BURST_PERIODS = [1, 2, 4]
SIZES = ["20K", "50K", "200K"]
QUICK_SIZES = ["20K", "200K"]  # the demo's contrast at 32 instances per batch: 0.17 vs 0.76 test accuracy


def _base(steps: int, eval_every: int) -> dict:
  return {"data": {"vocab_size": 256, "seq_len": 8, "eval_sequences": 128, "task_eval_limit": 1000,
                   "task_train_probe": 500, "synthetic": {"regimes": {"copy": 0.0}}},
          "train": {"steps": steps, "batch_size": 128, "warmup_steps": 50, "steps_per_call": 8, "log_every": 125,
                    "eval_every": eval_every},
          "checkpoint": {"every": steps}}


def _steps(quick: bool) -> int:
  return 1000 if quick else 2000


def _merge(a: dict, b: dict) -> dict:
  out = {k: dict(v) if isinstance(v, dict) else v for k, v in a.items()}
  for k, v in b.items():
    out[k] = {**out.get(k, {}), **v} if isinstance(v, dict) else v
  return out


def _sizes(quick: bool) -> list[str]:
  return QUICK_SIZES if quick else SIZES


def _fig5(quick: bool):
  freqs = [16.0, 32.0, 48.0]
  return (_base(_steps(quick), 250),
          [{"model.size": _sizes(quick)}, {"data.tasks.cmp.frequency": freqs, "data.tasks.add.frequency": freqs}])


def _fig6a(quick: bool):
  return (_base(_steps(quick), 100),
          [{"model.size": _sizes(quick)}, {"data.tasks.cmp.frequency": [8.0, 16.0, 32.0, 64.0]}])


def _fig6b(quick: bool):
  over = _merge(_base(_steps(quick), 100), {"data": {"tasks": {"cmp": {"frequency": 32.0, "schedule": "burst"}}}})
  return over, [{"model.size": ["200K"]}, {"data.tasks.cmp.period": BURST_PERIODS}]


def _fig7(quick: bool):
  freqs = [16.0, 32.0]
  over = _merge(_base(_steps(quick), 250), {"mechanisms": {"probe_every": 250}})
  return over, [{"model.size": _sizes(quick)},
                {"data.tasks.cmp.frequency": freqs, "data.tasks.add.frequency": freqs}]


def _burst(quick: bool, extra: dict):
  over = _merge(_base(_steps(quick), 100),
                {"data": {"tasks": {"cmp": {"frequency": 32.0, "schedule": "burst", "period": BURST_PERIODS[-1]}}},
                 "mechanisms": extra})
  return over, [{"model.size": _sizes(quick)}]


def _fig8(quick: bool):
  return _burst(quick, {"retention": True})


def _fig9(quick: bool):
  return _burst(quick, {"retention": True, "interference_at_injections": True, "interference_every": 50})


FIGURES = {"5": _fig5, "6a": _fig6a, "6b": _fig6b, "7": _fig7, "8": _fig8, "9": _fig9}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return figure_sweep(arg, FIGURES, file="configs/sweeps/paper_lm.py", entrypoint="scaling.train",
                      base="configs/lm.py", default="9", seeds=(0,))
