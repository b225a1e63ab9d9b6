"""CPU demo sweep: model size x rare-task frequency, the paper's Fig 5 and learnability frontier in miniature.

  python launch/sweep.py --config=configs/sweeps/demo.py --sweep_dir=sweeps/demo   # runs it, then the report
  python launch/sweep.py --config=configs/sweeps/demo.py --dry_run                 # the run table and commands

Grid: five transformer sizes (10K, 20K, 50K, 100K, 200K non-embedding parameters) x three frequencies of the
comparison task T_CMP (32, 48, 64 instances per batch of 128 sequences) x two seeds = 30 runs, each 1000 steps on
the same tokens; then its companion configs/sweeps/demo_toy.py (the toy's Fig 2 at K = 8: 5 widths x 4 beta, into
<sweep_dir>/demo_toy/); then one analysis report over both (N* per frequency with 95% CIs, the frontier N*(f), the
planner, the held-out check, the plateau flags, the toy's phase diagram against Theorem 3). Sized for a 2-core CPU; what it measures is in README.md ("What the main job
shows").

Why these values:
- Sizes span 20x in N, five points for a per-frequency fit; all are small enough that the background, not the
  step count, is meant to limit them: the second-order chain (vocab² contexts) holds far more facts than any of
  them can store, so the background keeps every size's capacity busy and capacity spent on it is not free for
  T_CMP.
- vocab 256: room for T_CMP's 100 symbols (drawn at random, so they are also background tokens whose embeddings
  the background gradients keep moving) with a non-trivial background over the rest.
- seq_len 8 and batch 128: the task instance takes 4 tokens of a row, so short rows make the task a visible share
  of the tokens at few tokens per step; 128 rows per step give 32-64 instances per batch (1/4 to 1/2 of the rows)
  at a cost per step that small models on a CPU spend mostly on fixed overhead anyway.
- The copy regime is off: its motifs repeat with a period of at least 8 tokens, which 8-token rows cannot hold.
- Frequencies 32, 48, 64: chosen from probe runs (README) so that at this budget N* falls among the trained sizes
  at every frequency: each then has a fitted N* with a finite interval, the frontier N*(f) rests on three points,
  and the lowest frequency has sizes on both sides of N*. A lower frequency puts N* far beyond the sizes, and an
  N* extrapolated that far would dominate the frontier fit.
- 1000 steps, warmup 50, the ladder's learning rate (0.01 at every one of these sizes), cosine to 10%: the same
  schedule and tokens for every size (the default warmup, N tokens, would be 210 steps at 200K and 9 at 10K).
- 8 steps per jitted call, evaluation every 250 steps on 1000 test instances (standard error of an accuracy
  <= 0.016), no checkpoints but the last: the host loop and evaluation would otherwise cost more than training.
- max_parallel 2: one run per core.

This is a fixed-budget experiment: every run gets 1000 steps, and the report's plateau check says which runs' task
accuracy was still moving at the end (near N* some are: they learn, but slowly). Read N* here as "the size that
learns the task within this budget at this frequency", the paper's Fig 5 at CPU scale, not as an asymptote.
"""

from __future__ import annotations

import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  del arg
  c = ml_collections.ConfigDict()
  c.name = "demo"
  c.entrypoint = "scaling.train"
  c.base = "configs/lm.py"
  c.overrides = {
      "data": {"vocab_size": 256, "seq_len": 8, "eval_sequences": 128, "task_eval_limit": 1000,
               "task_train_probe": 500, "synthetic": {"regimes": {"copy": 0.0}}},
      "train": {"steps": 1000, "batch_size": 128, "warmup_steps": 50, "steps_per_call": 8, "log_every": 125,
                "eval_every": 250},
      "checkpoint": {"every": 1000},
  }
  c.axes = [{"model.size": ["10K", "20K", "50K", "100K", "200K"]}, {"data.tasks.cmp.frequency": [32.0, 48.0, 64.0]}]
  c.seeds = [0, 1]
  c.backend = {"local": {"max_parallel": 2}}
  c.companions = ["configs/sweeps/demo_toy.py"]  # the toy's Fig 2 at K = 8, reported with these runs
  return c
