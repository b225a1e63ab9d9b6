"""Training throughput and MFU of the transformer, against this machine's measured dense-matmul peak.

  python benchmarks/train_throughput.py                          # CPU: 1M and 10M models
  python benchmarks/train_throughput.py --sizes=20M,300M --batch=64 --seq_len=1024 --dtype=bfloat16   # GPU

Peak: the best FLOP/s of a large square matmul in the compute dtype, measured in this process just before the
models (shared, noisy machines: compare runs only through the MFU ratio, which is measured side by side).
MFU = tokens/s · flops_per_token / peak, with flops_per_token from scaling.lm.model.flops_per_token
(6·N_matmul + 12·L·T·d_attn, the PaLM convention). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp


def matmul_peak(dtype: str, n: int, reps: int = 10) -> float:
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
  f = jax.jit(lambda x, y: x @ y)
  f(a, b).block_until_ready()
  best = float("inf")
  for _ in range(reps):
    t = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n**3 / best


def measure(size: str, batch: int, seq_len: int, vocab: int, dtype: str, steps: int, remat: str) -> dict:
  from configs import lm
  from scaling.lm import config as configlib
  from scaling.lm import model as transformer
  from scaling.lm import step as step_lib
  from scaling.lm.data import pipeline
  c = lm.get_config(f"size={size}")
  c.data.vocab_size, c.data.seq_len = vocab, seq_len
  c.train.update(dict(batch_size=batch, steps=steps + 10, learning_rate=1e-3, warmup_steps=1))
  c.model.dtype, c.model.remat = dtype, remat
  c.mesh.data = -1
  c = configlib.resolve(c)
  setup = step_lib.build(c)
  state = setup.init()
  it = pipeline.make_train_iterator(c)
  batches = [setup.place_batch(next(it)) for _ in range(4)]
  t0 = time.perf_counter()
  state, m = setup.train_step(state, batches[0])
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  for i in range(2):  # warm
    state, m = setup.train_step(state, batches[i % 4])
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for i in range(steps):
    state, m = setup.train_step(state, batches[i % 4])
    if i % 16 == 15:  # CPU fake-device collectives need a sync at least every 16 steps (README, Known traps 1)
      jax.block_until_ready(m)
  jax.block_until_ready(m)
  dt = time.perf_counter() - t0
  mc = configlib.model_config(c)
  fpt = transformer.flops_per_token(mc, seq_len)
  tokens_per_s = steps * batch * seq_len / dt
  return {"size": size, "params": transformer.param_counts(mc)["non_embedding"], "compile_s": compile_s,
          "steps_per_s": steps / dt, "tokens_per_s": tokens_per_s, "model_flops_per_s": tokens_per_s * fpt}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--sizes", default="1M,10M")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--seq_len", type=int, default=128)
  p.add_argument("--vocab", type=int, default=512)
  p.add_argument("--dtype", default=None, help="compute dtype (default float32 on CPU, bfloat16 elsewhere)")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--remat", default="none")
  p.add_argument("--peak_n", type=int, default=None, help="matmul size for the peak measurement")
  args = p.parse_args()
  platform = jax.devices()[0].platform
  dtype = args.dtype or ("float32" if platform == "cpu" else "bfloat16")
  peak_n = args.peak_n or (2048 if platform == "cpu" else 8192)
  peak = matmul_peak(dtype, peak_n) * len(jax.devices())
  print(f"device: {jax.devices()[0].device_kind} x{len(jax.devices())} ({platform}), dtype {dtype}")
  print(f"measured dense-matmul peak: {peak / 1e9:,.1f} GFLOP/s ({peak_n}^3 matmul, all devices)")
  print(f"{'size':>6} {'N(non-emb)':>12} {'compile s':>10} {'steps/s':>9} {'tokens/s':>12} "
        f"{'model GFLOP/s':>14} {'MFU':>7}")
  for size in args.sizes.split(","):
    r = measure(size, args.batch, args.seq_len, args.vocab, dtype, args.steps, args.remat)
    print(f"{r['size']:>6} {r['params']:>12,} {r['compile_s']:>10.1f} {r['steps_per_s']:>9.2f} "
          f"{r['tokens_per_s']:>12,.0f} {r['model_flops_per_s'] / 1e9:>14.2f} {r['model_flops_per_s'] / peak:>7.1%}")


if __name__ == "__main__":
  main()
