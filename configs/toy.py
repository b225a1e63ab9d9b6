"""The toy (paper §3, Figs 2–4): a width-N linear encoder on K regression tasks with exact theory.

  python -m scaling.toy_train --config=configs/toy.py --workdir=runs/toy-N64 --config.toy.width=64
  python -m scaling.toy_train --config=configs/toy.py:paper,width=64 --workdir=runs/toy-paper-N64
  python -m scaling.toy_train --config=configs/toy.py --workdir=/tmp/x --dry_run

The arg is a comma-separated list of preset names and key=value items: `paper` (the paper's settings) or `fast`
(default), and `width=N`. Any field can be overridden with --config.<key>=<value>; tuple fields take a
Python tuple or list literal: --config.toy.betas="(0.5, 1.0)" (a bare number becomes a 1-tuple).

One invocation trains every member (β in toy.betas) × (seed in toy.seeds) at one width as one program; each
member gets its own run dir under --workdir (scaling/toy/train.py). Empty toy.betas / toy.seeds mean the single
value toy.beta / seed.

Why `fast` differs from the paper: the paper trains 100K steps with Adam and fresh samples (batch and LR not
given); `fast` trains 2000 steps of 256 samples at peak LR 3e-3, with zero-initialised decoders whose LR shrinks as
64/N above width 64. What the settings avoid: at LR 1e-2 an Adam step moves an encoder entry (~1/sqrt(d)) by a
third; decoders initialised at the fan-in scale start rare tasks far above the zero predictor's loss; without the
64/N decoder LR a task seen once every few batches drifts by ~lr·sqrt(N) per appearance. How well `fast` agrees
with Theorem 3, and what the Fig-2 sweep costs, is measured in README.md ("The toy"). Use `paper` for the paper's
step count.
"""

from __future__ import annotations

from ml_collections import config_dict

from scaling.core.configtools import parse_arg

PRESETS = {"fast": False, "paper": False, "width": 64}  # the `:arg` presets and their defaults


def get_config(arg: str = "") -> config_dict.ConfigDict:
  opts = parse_arg(arg, PRESETS, "configs/toy.py:paper,width=64")
  preset = "paper" if opts["paper"] else "fast"
  c = config_dict.ConfigDict()
  c.experiment = "toy"
  c.seed = 0  # the single member's seed when toy.seeds is empty

  # ---- the task family (scaling/toy/data.py) and the members trained together.
  c.toy = config_dict.ConfigDict()
  c.toy.width = opts["width"]  # encoder width N (one program per width)
  c.toy.K = 32  # tasks
  c.toy.r = 32  # features per task; d = K*r
  c.toy.alpha = 2.0  # spectral decay λ_{k,j} ∝ j^-α
  c.toy.alphas = ()  # per-task α (length K) for the complexity sweep; empty: toy.alpha for every task
  c.toy.lam_norm = "first"  # λ_{k,1} = 1 ("first") or Tr(C_k) = 1 ("trace"); see scaling/toy/theory.py
  c.toy.beta = 1.0  # frequency exponent π_k ∝ k^-β of the single member when toy.betas is empty
  c.toy.betas = (0.5, 1.0, 1.5, 2.0)  # members: every β here ...
  c.toy.seeds = (0, 1, 2)  # ... times every seed here (init, task placement and inputs)
  c.toy.basis_seed = 0  # the random orthogonal feature basis, shared by all members and by the theory
  c.toy.mass = 0.8  # the frequent set F holds this much of the task mass
  c.toy.schedule = "random"  # base-batch placement: random (i.i.d. rows, the paper) | interleave (exact counts)
  c.toy.rare_tasks = ()  # 1-based labels whose gradient is G_r in cos(G_r, G_F); empty: the injected task,
  #                        else every task outside F
  # Fig 4: one task leaves the base mixture and arrives in extra rows on top of the batch.
  c.toy.inject = config_dict.ConfigDict()
  c.toy.inject.task = 0  # 1-based label; 0: no injection
  c.toy.inject.schedule = "withhold"  # withhold (gap G = period) | interleave (no gap) | burst
  c.toy.inject.period = 1
  c.toy.inject.frequency = 0.0  # instances per batch, long-run; period*frequency must be whole for withhold

  c.model = config_dict.ConfigDict()
  c.model.variant = "plain"  # plain (Adam on U and D) | orthonormal (U = qr(W), closed-form decoders)
  c.model.init_scale = 1.0  # encoder init std = init_scale / sqrt(d)
  c.model.decoder_init_scale = 0.0  # decoder init std = decoder_init_scale / sqrt(width); 0: zero predictor

  c.train = config_dict.ConfigDict()
  c.train.steps = 2000
  c.train.batch_size = 256  # base rows per step (fresh samples every step)
  c.train.learning_rate = 3e-3
  c.train.warmup_steps = 100
  c.train.lr_mult_encoder = 1.0  # learning rate of U (or W) = learning_rate * lr_mult_encoder
  c.train.lr_mult_decoder = 1.0  # learning rate of D = learning_rate * lr_mult_decoder * min(1, ref / width)
  c.train.decoder_lr_ref_width = 64  # ref above; 0: the decoders' LR does not depend on the width
  c.train.schedule = "cosine"  # cosine | wsd | constant (scaling/core/optim.py)
  c.train.min_lr_ratio = 0.0
  c.train.decay_fraction = 0.2  # wsd only
  c.train.weight_decay = 0.0
  c.train.decay_embeddings = False  # unused by the toy (no embeddings); kept for scaling/core/optim.py
  c.train.b1 = 0.9
  c.train.b2 = 0.999
  c.train.eps = 1e-8
  c.train.grad_clip = 0.0
  # Stop as diverged when a batch loss exceeds this x the first step's (0: off). Injection batches of the
  # "expected" loss average carry many extra rows, so the margin is wide; non-finite values always stop a run.
  c.train.divergence_factor = 100.0
  c.train.loss_average = "batch"  # batch: mean over this batch's rows | expected: / expected rows per batch
  c.train.steps_per_call = 50  # steps per compiled call (lax.scan), cut to divide every cadence below
  c.train.log_every = 50
  c.train.eval_every = 100  # population metrics (SVD-free QR of U); 0: only at the start and the end
  c.train.retention_every = 500  # per-feature retention to retention.jsonl; 0: only at the end

  c.checkpoint = config_dict.ConfigDict()
  c.checkpoint.every = 1000
  c.checkpoint.keep = 2
  c.checkpoint.async_save = False

  if preset == "paper":
    # The paper: Adam, 100K steps, fresh samples every step (paper §3). Batch and LR are not given (default).
    c.train.steps = 100_000
    c.train.warmup_steps = 1000
    c.train.learning_rate = 1e-3
    c.train.log_every = 500
    c.train.eval_every = 1000
    c.train.retention_every = 10_000
    c.checkpoint.every = 10_000
  return c
