"""The systems benchmarks/train_throughput.py times: each builds a model, compiles and warms a train step, and
returns a `System` whose `run(n)` takes n synchronised train steps and returns the seconds they took.

  scaling          this project's jitted `train_step` (scaling/lm/step.py), one call per step
  scaling_k        this project's `train_steps`: K steps per call (one lax.scan), K = --steps_per_call
  torch_eager      benchmarks/torch_decoder.py, eager PyTorch
  torch_compile    the same model under `torch.compile`
  nanodo           nanodo's decoder (google-deepmind/nanodo, imported from --nanodo_path) with an optax AdamW step
  peak             a square matmul in the compute dtype: the machine's dense-matmul FLOP/s (best of a few)
  scaling_mmap     (benchmarks/train_throughput.py) `scaling` without scaling/core/hostmem.py's setting
  scaling_remat_dots, scaling_remat_full
                   `scaling` with model.remat = dots / full (the layers then scan: scan_layers="auto")

All train on the same random tokens (batch x seq_len, vocabulary --vocab), AdamW with weight decay 0.1 and
global-norm clipping 1.0. Each module is imported only by the worker process that needs it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable

import numpy as np

SYSTEMS = ("scaling", "scaling_k", "scaling_remat_dots", "scaling_remat_full", "torch_eager", "torch_compile",
           "nanodo", "peak")
REMAT = {"scaling_remat_dots": "dots", "scaling_remat_full": "full"}


@dataclasses.dataclass
class System:
  run: Callable[[int], float]  # n steps -> seconds (synchronised)
  flops_per_token: float  # training FLOPs per token of this system's own model (0 for the peak)
  compile_s: float
  steps_per_call: int = 1


def _tokens(batch: int, seq_len: int, vocab: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, vocab, size=(batch, seq_len + 1), dtype=np.int64)


def _timed(fn: Callable[[], object], sync: Callable[[object], object]) -> float:
  t = time.perf_counter()
  sync(fn())
  return time.perf_counter() - t


def _scaling_config(args, remat: str = "none"):
  from configs import lm  # noqa: PLC0415 - worker-only import (a torch worker never loads JAX)
  from scaling.lm import config as configlib  # noqa: PLC0415
  c = lm.get_config(f"size={args.size}")
  c.data.vocab_size, c.data.seq_len = args.vocab, args.seq_len
  c.train.update(dict(batch_size=args.batch, steps=10**6, learning_rate=1e-3, warmup_steps=1))
  c.model.dtype, c.model.scan_layers, c.model.remat = args.dtype, args.scan_layers, remat
  c.mesh.data = 1
  return configlib.resolve(c)


def build_scaling(args, steps_per_call: int = 1, remat: str = "none") -> System:
  import jax  # noqa: PLC0415

  from scaling.lm import model as transformer  # noqa: PLC0415
  from scaling.lm import step as step_lib  # noqa: PLC0415
  c = _scaling_config(args, remat)
  setup = step_lib.build(c, jax.devices()[:1])
  tok = _tokens(args.batch, args.seq_len, args.vocab).astype(np.int32)
  batch = {"inputs": tok[:, :-1], "targets": tok[:, 1:], "weights": np.ones(tok[:, 1:].shape, np.float32)}
  holder = {"state": setup.init()}
  if steps_per_call == 1:
    placed = setup.place_batch(batch)
    call = lambda s: setup.train_step(s, placed)  # noqa: E731
  else:
    placed = setup.place_batches([batch] * steps_per_call)
    call = lambda s: setup.train_steps(s, placed)  # noqa: E731

  def calls(n_calls: int):
    for _ in range(n_calls):
      holder["state"], metrics = call(holder["state"])
    return metrics

  t = time.perf_counter()
  jax.block_until_ready(calls(1))
  compile_s = time.perf_counter() - t
  jax.block_until_ready(calls(1))

  def run(n: int) -> float:
    n_calls = max(1, n // steps_per_call)
    return _timed(lambda: calls(n_calls), jax.block_until_ready) * n / (n_calls * steps_per_call)

  fpt = transformer.flops_per_token(transformer.TransformerConfig.from_config(c.model), args.seq_len)
  return System(run, fpt, compile_s, steps_per_call)


def build_torch(args, compile: bool) -> System:
  import torch  # noqa: PLC0415 - optional dependency (the `bench` extra)

  from benchmarks import torch_decoder  # noqa: PLC0415
  from scaling.lm import ladder  # noqa: PLC0415
  torch.set_num_threads(args.threads or os.cpu_count())
  device = "cuda" if torch.cuda.is_available() else "cpu"
  shape = ladder.model_shape(args.size)
  step, _ = torch_decoder.make_step(shape, args.vocab, args.seq_len, compile=compile, device=device,
                                    dtype=args.dtype)
  tok = torch.from_numpy(_tokens(args.batch, args.seq_len, args.vocab)).to(device)
  inputs, targets = tok[:, :-1].contiguous(), tok[:, 1:].contiguous()

  def steps(n: int):
    for _ in range(n):
      loss = step(inputs, targets)
    return loss

  t = time.perf_counter()
  float(steps(1))
  compile_s = time.perf_counter() - t
  float(steps(2))
  n_matmul = torch_decoder.n_matmul_params(args.vocab, shape.d_model, shape.n_layers, shape.d_ff)
  fpt = 6.0 * n_matmul + 12.0 * shape.n_layers * args.seq_len * shape.d_model
  return System(lambda n: _timed(lambda: steps(n), float), fpt, compile_s)


def build_nanodo(args) -> System:
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  import optax  # noqa: PLC0415

  from scaling.lm import ladder  # noqa: PLC0415
  sys.path.insert(0, args.nanodo_path)
  from nanodo import model as nanodo_model  # noqa: PLC0415 - peer code, from --nanodo_path only
  s = ladder.model_shape(args.size)
  cfg = nanodo_model.DoConfig(D=s.d_model, H=s.n_heads, L=args.seq_len, N=s.n_layers, V=args.vocab, F=s.d_ff,
                              dtype=jnp.dtype(args.dtype), fsdp_enabled=False)
  model = nanodo_model.TransformerDo(cfg)
  tok = jnp.asarray(_tokens(args.batch, args.seq_len, args.vocab), jnp.int32)
  inputs, targets = tok[:, :-1], tok[:, 1:]
  params = jax.jit(model.init)(jax.random.key(0), inputs)["params"]
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1))

  def loss_fn(p):
    logits = model.apply({"params": p}, inputs)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, targets))

  def step(p, o):
    loss, g = jax.value_and_grad(loss_fn)(p)
    updates, o = tx.update(g, o, p)
    return optax.apply_updates(p, updates), o, loss

  step = jax.jit(step, donate_argnums=(0, 1))
  holder = {"p": params, "o": tx.init(params)}

  def steps(n: int):
    for _ in range(n):
      holder["p"], holder["o"], loss = step(holder["p"], holder["o"])
    return loss

  t = time.perf_counter()
  jax.block_until_ready(steps(1))
  compile_s = time.perf_counter() - t
  jax.block_until_ready(steps(2))
  n_matmul = s.n_layers * (4 * s.d_model**2 + 2 * s.d_model * s.d_ff) + s.d_model * args.vocab  # GELU MLP, tied
  fpt = 6.0 * n_matmul + 12.0 * s.n_layers * args.seq_len * s.d_model
  return System(lambda n: _timed(lambda: steps(n), jax.block_until_ready), fpt, compile_s)


def build_peak(args) -> System:
  """`run(n)` returns the best seconds of one n_peak^3 matmul over max(n, 3) tries, scaled to `n` matmuls."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  n_peak = args.peak_n
  a = jax.random.normal(jax.random.key(0), (n_peak, n_peak), jnp.float32).astype(args.dtype)
  b = jax.random.normal(jax.random.key(1), (n_peak, n_peak), jnp.float32).astype(args.dtype)
  f = jax.jit(lambda x, y: x @ y)
  f(a, b).block_until_ready()

  def run(n: int) -> float:
    return min(_timed(lambda: f(a, b), jax.block_until_ready) for _ in range(max(n, 3))) * n

  return System(run, 0.0, 0.0)


def build(name: str, args) -> System:
  if name == "scaling":
    return build_scaling(args)
  if name == "scaling_k":
    return build_scaling(args, args.steps_per_call)
  if name in REMAT:
    return build_scaling(args, remat=REMAT[name])
  if name in ("torch_eager", "torch_compile"):
    return build_torch(args, compile=name == "torch_compile")
  if name == "nanodo":
    return build_nanodo(args)
  if name == "peak":
    return build_peak(args)
  raise ValueError(f"unknown system {name!r}; choose from {SYSTEMS}")
