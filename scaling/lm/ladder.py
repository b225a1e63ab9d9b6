"""The size ladder: ladder name -> model shape, and parameter count -> run settings.

Names are the *non-embedding* parameter count rounded to a readable figure (the N of scaling laws; embedding
size depends on the vocabulary, which belongs to the data). The paper's ladder (arXiv 2605.29548 §4) is
4M / 20M / 300M / 1B / 4B: OLMo-2 style decoders, depth 8 for 4M and 16 for the rest, widths, heads and MLP
widths scaled together (head dim 64 up to 300M, 128 above; SwiGLU width ~8/3·d rounded to a multiple of 128).
The CPU sizes 2K … 10M follow the same recipe at small depth so tests and the demo run on a laptop.

`tests/lm/test_transformer.py` checks every entry: the exact parameter count of the built module equals the analytic
formula, and the name is within 25% of the non-embedding count.

Shape (this function) and run settings (`run_settings`) are kept apart, OLMo-core ladder style: the shape says
what the model is, the settings say how to train it at that size.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class ModelShape:
  d_model: int
  n_layers: int
  n_heads: int
  d_ff: int


LADDER: dict[str, ModelShape] = {
    # CPU sizes (tests, demo, laptop sweeps).
    "2K": ModelShape(d_model=8, n_layers=2, n_heads=2, d_ff=32),
    "5K": ModelShape(d_model=12, n_layers=2, n_heads=2, d_ff=48),
    "10K": ModelShape(d_model=16, n_layers=2, n_heads=2, d_ff=64),
    "20K": ModelShape(d_model=32, n_layers=2, n_heads=2, d_ff=80),
    "50K": ModelShape(d_model=48, n_layers=2, n_heads=3, d_ff=128),
    "100K": ModelShape(d_model=48, n_layers=4, n_heads=3, d_ff=128),
    "200K": ModelShape(d_model=64, n_layers=4, n_heads=4, d_ff=192),
    "500K": ModelShape(d_model=96, n_layers=4, n_heads=4, d_ff=384),
    "1M": ModelShape(d_model=128, n_layers=4, n_heads=4, d_ff=512),
    "5M": ModelShape(d_model=256, n_layers=6, n_heads=4, d_ff=768),
    "10M": ModelShape(d_model=320, n_layers=8, n_heads=5, d_ff=896),
    # The paper's ladder.
    "4M": ModelShape(d_model=192, n_layers=8, n_heads=3, d_ff=640),
    "20M": ModelShape(d_model=320, n_layers=16, n_heads=5, d_ff=896),
    "300M": ModelShape(d_model=1280, n_layers=16, n_heads=20, d_ff=3328),
    "1B": ModelShape(d_model=2304, n_layers=16, n_heads=18, d_ff=6144),
    "4B": ModelShape(d_model=4608, n_layers=16, n_heads=36, d_ff=12288),
}

PAPER_SIZES = ("4M", "20M", "300M", "1B", "4B")
CPU_SIZES = ("2K", "5K", "10K", "20K", "50K", "100K", "200K", "500K", "1M", "5M", "10M")


def model_shape(size: str) -> ModelShape:
  if size not in LADDER:
    raise ValueError(f"unknown model size {size!r}; choose one of {', '.join(LADDER)} "
                     "(scaling/lm/ladder.py) or set model.size='custom' with explicit dims")
  return LADDER[size]


def parse_count(name: str) -> float:
  """'50K' -> 5e4, '1B' -> 1e9."""
  units = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
  if not name or name[-1] not in units:
    raise ValueError(f"cannot parse parameter count {name!r}; expected e.g. '20M'")
  return float(name[:-1]) * units[name[-1]]


@dataclasses.dataclass(frozen=True)
class RunSettings:
  learning_rate: float
  warmup_steps: int
  batch_size: int  # sequences per optimizer step
  steps: int


def run_settings(n_params: float, seq_len: int, tokens_per_param: float = 20.0,
                 batch_multiple: int = 8, min_batch: int = 8, max_lr: float = 1e-2) -> RunSettings:
  """Default training settings for a model of `n_params` non-embedding parameters.

  Follows the OLMo model-ladder heuristics (Bhagia et al. 2024), expressed per token so they carry to any
  sequence length:
    learning rate  0.0047 · (N / 108M)^(-1/3), capped at `max_lr` (tiny models tolerate but do not need more)
    batch tokens   160 · 2048 · (N / 108M)^(2/3)   (rounded to a multiple of `batch_multiple` sequences)
    tokens         tokens_per_param · N            (Chinchilla's 20 by default)
    warmup tokens  N                               (so warmup_steps = N / batch tokens, at least 1)
  Every value is a default: configs override any of them.
  """
  if n_params <= 0 or seq_len <= 0:
    raise ValueError(f"run_settings needs positive n_params and seq_len, got {n_params}, {seq_len}")
  ratio = n_params / 108e6
  lr = min(0.0047 * ratio ** (-1 / 3), max_lr)
  batch_tokens = 160 * 2048 * ratio ** (2 / 3)
  batch = max(min_batch, int(round(batch_tokens / seq_len / batch_multiple)) * batch_multiple)
  tokens_per_step = batch * seq_len
  steps = max(1, math.ceil(tokens_per_param * n_params / tokens_per_step))
  warmup = max(1, min(steps // 2, math.ceil(n_params / tokens_per_step)))
  return RunSettings(learning_rate=lr, warmup_steps=warmup, batch_size=batch, steps=steps)
