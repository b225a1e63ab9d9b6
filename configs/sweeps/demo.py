"""CPU demo sweep: model size x task frequency, the paper's Fig 5 in miniature (the README's main job).

  python launch/sweep.py --config=configs/sweeps/demo.py --sweep_dir=sweeps/demo   # runs it, then the report
  python launch/sweep.py --config=configs/sweeps/demo.py --dry_run                 # the run table and commands

Three transformer sizes (50K, 200K, 1M non-embedding parameters) x two frequencies of the comparison task T_CMP
(4 and 16 instances per batch of 32 sequences of 16 tokens) injected into the synthetic background language;
1500 steps each, the same data and tokens for every size. Sized for about 7 minutes on a 2-core CPU.

What it shows, measured, is in README.md ("Two commands on a fresh machine").

Per-size learning rate and warmup come from scaling.lm.ladder.run_settings (see --dry_run); steps and batch are fixed
here so every size sees the same tokens. vocab 256 leaves room for the two tasks' disjoint 100-symbol sets.
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
      "data": {"vocab_size": 256, "seq_len": 16, "eval_sequences": 64},
      "train": {"steps": 1500, "batch_size": 32, "log_every": 50, "eval_every": 250},
      "checkpoint": {"every": 750},
  }
  c.axes = [{"model.size": ["50K", "200K", "1M"]}, {"data.tasks.cmp.frequency": [4.0, 16.0]}]
  c.seeds = [0]
  c.backend = {"local": {"max_parallel": 0}}
  return c
