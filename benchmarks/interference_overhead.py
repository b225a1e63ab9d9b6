"""Cost of the gradient-interference measurement (scaling/mechanisms/interference.py) against a plain train step.

  python benchmarks/interference_overhead.py                                 # CPU: 1M, batch 32 x 128
  python benchmarks/interference_overhead.py --sizes=20M,300M --batch=256 --seq_len=1024   # accelerator

Times (median of --reps taken round-robin, after compilation): a train step; the vectorised split pass (g, g_t,
g_nt for every active task in one forward + one batched backward); the same gradients the slow way (one full
backward per mask); the g_r pass over --instances train instances (0: all 5000) of every active task; and the whole
measurement (split + g_r + top-K + host sync). Overhead of measuring every k steps = t_measure / (k · t_step).
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp


def _time_interleaved(fns: dict, reps: int) -> dict[str, float]:
  """Median seconds of each fn, the reps taken round-robin so a change in machine load hits all of them alike."""
  for fn in fns.values():
    jax.block_until_ready(fn())  # compile + warm
  out: dict[str, list[float]] = {k: [] for k in fns}
  for _ in range(reps):
    for k, fn in fns.items():
      t = time.perf_counter()
      jax.block_until_ready(fn())
      out[k].append(time.perf_counter() - t)
  return {k: statistics.median(v) for k, v in out.items()}


def measure(size: str, batch: int, seq_len: int, instances: int, reps: int, split: str) -> dict:
  from flax import nnx

  from configs import lm
  from scaling.lm import config as configlib
  from scaling.lm import losses
  from scaling.lm import step as step_lib
  from scaling.lm.data import mixture, pipeline
  from scaling.mechanisms import interference
  c = lm.get_config(f"size={size}")
  c.data.seq_len = seq_len
  c.train.update(dict(batch_size=batch, steps=1000, learning_rate=1e-3, warmup_steps=1))
  c.data.tasks.cmp.frequency = max(1.0, batch / 16)
  c.data.tasks.add.frequency = max(1.0, batch / 16)
  c.mesh.data = -1
  c = configlib.resolve(c)
  setup = step_lib.build(c)
  state = setup.init()
  mix = mixture.Mixture.from_config(c)
  it = pipeline.make_train_iterator(c)
  batch_dev = setup.place_batch(next(it))
  rows = [interference.task_rows(mix.task(n), instances) for n in mix.active_names]
  meas = interference.Interference(setup, mix.active, mix.active_names, rows, split=split)

  holder = {"state": state}

  def train_step():
    holder["state"], m = setup.train_step(holder["state"], batch_dev)
    return m

  split_fn = jax.jit(meas.split_grads)
  n_masks = 1 + len(mix.active)

  @jax.jit
  def naive(p, b):
    denom = jnp.maximum(jnp.sum(b["weights"]), 1.0)
    task_masks = meas.task_masks(b["task_mask"])
    masks = [~jnp.any(task_masks, axis=0)] + list(task_masks)

    def loss(q, m):
      logits = nnx.merge(setup.graphdef, q)(b["inputs"])
      return jnp.sum(losses.token_losses(logits, b["targets"]) * b["weights"] * m) / denom

    return [jax.grad(loss)(p, m.astype(jnp.float32))["blocks"]["mlp"] for m in masks]

  gr = jax.jit(meas.task_grad)
  t = _time_interleaved({
      "step": train_step,
      "split": lambda: split_fn(holder["state"]["params"], batch_dev),
      "naive": lambda: naive(holder["state"]["params"], batch_dev),
      "gr": lambda: [gr(holder["state"]["params"], r) for r in meas.gr_rows],
      "all": lambda: meas.measure_device(holder["state"]["params"], batch_dev)}, reps)
  t_step, t_split, t_naive, t_gr, t_all = (t[k] for k in ("step", "split", "naive", "gr", "all"))
  return {"size": size, "tokens": batch * seq_len, "gr_tokens": sum(r["inputs"].size for r in rows),
          "masks": n_masks, "step": t_step, "split": t_split, "naive": t_naive, "gr": t_gr, "all": t_all}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--sizes", default="1M")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--seq_len", type=int, default=128)
  p.add_argument("--instances", type=int, default=0, help="g_r train instances per task (0: all 5000)")
  p.add_argument("--reps", type=int, default=5)
  p.add_argument("--split", default="label", help="interference_split: label (default) or instance; same cost")
  a = p.parse_args()
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}")
  hdr = (f"{'size':>6} {'batch tok':>9} {'g_r tok':>8} {'step ms':>8} {'split ms':>9} {'naive ms':>9} "
         f"{'g_r ms':>8} {'measure ms':>10} {'every 10':>9} {'every 100':>9} {'every 1000':>10}")
  print(hdr)
  for size in a.sizes.split(","):
    r = measure(size, a.batch, a.seq_len, a.instances, a.reps, a.split)
    over = [r["all"] / (k * r["step"]) for k in (10, 100, 1000)]
    print(f"{r['size']:>6} {r['tokens']:>9} {r['gr_tokens']:>8} {1e3 * r['step']:>8.1f} {1e3 * r['split']:>9.1f} "
          f"{1e3 * r['naive']:>9.1f} {1e3 * r['gr']:>8.1f} {1e3 * r['all']:>10.1f} {over[0]:>8.1%} "
          f"{over[1]:>9.1%} {over[2]:>10.1%}")
  print("split: g, g_t, g_nt for all tasks in one vectorised pass over 1 + tasks masks; naive: one full backward "
        "per mask; g_r: both tasks; overhead every k = measure / (k * step)")


if __name__ == "__main__":
  main()
