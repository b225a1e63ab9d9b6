"""Toy training throughput: members batched in one program vs the same members run one by one.

  python benchmarks/toy_throughput.py                          # Fig-2 column: 4 β × 3 seeds, widths 8…512
  python benchmarks/toy_throughput.py --widths 8 64 --steps 30 --set toy.r=32

Prints, per width, milliseconds per training step of the whole member set trained as ONE program (`batched`:
members stacked on a leading axis) and as separate single-member programs run one after another
(`sequential`), their ratio, the compile time, and the implied wall time of a Fig-2 sweep
(configs/sweeps/toy_fig2.py: steps × widths, evals excluded). Each step is one jitted call here (the trainer
also scans train.steps_per_call steps per call). Timings on a shared machine are noisy: every figure is the
median of --repeats timed blocks, and process CPU time is printed beside wall time.
Prints figures only; never passes or fails.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy on 2 shared cores: one BLAS thread is faster

import argparse  # noqa: E402
import ast  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from configs import toy as toy_configs  # noqa: E402
from scaling.toy import config as toy_config  # noqa: E402
from scaling.toy import program as toy_program  # noqa: E402


def _program(config):
  config = toy_config.resolve(config)
  mems = toy_config.members(config)
  datas = [toy_config.toy_data(config, m.beta) for m in mems]
  prog = toy_program.Program(config, datas, [m.seed for m in mems])
  batches = toy_program.Batches(config, datas, [m.seed for m in mems])
  state = prog.init(prog.keys([m.seed for m in mems]))
  return prog, batches, state


def time_program(config, steps: int, repeats: int) -> tuple[float, float, float]:
  """(compile seconds, median wall seconds per step, median process CPU seconds per step) of one program."""
  prog, batches, state = _program(config)
  host = [batches.step(s) for s in range(steps * repeats + 1)]

  def run(state, s):
    counts, rows, weight = host[s]
    return prog.train_step(state, jnp.int32(s), jnp.asarray(counts, jnp.int32), jnp.float32(weight), rows=rows)

  t0 = time.perf_counter()
  state, m = run(state, 0)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  per_step, cpu_step = [], []
  s = 1
  for _ in range(repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
      state, m = run(state, s)
      s += 1
      if s % 16 == 0:
        jax.block_until_ready(m)
    jax.block_until_ready(m)
    per_step.append((time.perf_counter() - t0) / steps)
    cpu_step.append((time.process_time() - c0) / steps)
  return compile_s, float(np.median(per_step)), float(np.median(cpu_step))


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="", help="configs/toy.py arg (preset), e.g. 'fast'")
  p.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256, 512])
  p.add_argument("--betas", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0])
  p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  p.add_argument("--steps", type=int, default=20, help="timed steps per block")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--sequential", action=argparse.BooleanOptionalAction, default=True,
                 help="also time one single-member program per member (one β and seed each)")
  p.add_argument("--sweep_steps", type=int, default=None, help="steps of the Fig-2 sweep (default: config)")
  p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                 help="config overrides, e.g. toy.r=8 train.batch_size=128 (values parsed as Python literals)")
  a = p.parse_args(argv)
  base = toy_configs.get_config(a.config)
  for item in a.set:
    key, value = item.split("=", 1)
    node = base
    for part in key.split(".")[:-1]:
      node = node[part]
    node[key.split(".")[-1]] = ast.literal_eval(value)
  base.toy.betas, base.toy.seeds = tuple(a.betas), tuple(a.seeds)
  n_members = len(a.betas) * len(a.seeds)
  sweep_steps = a.sweep_steps or base.train.steps
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cpus; K={base.toy.K} "
        f"r={base.toy.r} batch={base.train.batch_size}; {n_members} members (β {a.betas} × seeds {a.seeds})")
  # CPU ms (process time) is the steadier figure on a shared machine; wall ms is what a user waits.
  print(f"{'width':>6} {'mode':>10} {'compile_s':>10} {'ms/step':>9} {'cpu_ms':>9} {'vs seq':>7}")
  totals: dict[str, float] = {}
  for width in a.widths:
    base.toy.width = width
    seq_ms = None
    if a.sequential:
      # Members differ only in β and seed, which change no shape: one member stands for each of them.
      c = base.copy_and_resolve_references()
      c.toy.betas, c.toy.seeds = (a.betas[len(a.betas) // 2],), (a.seeds[0],)
      comp, sec, cpu = time_program(c, a.steps, a.repeats)
      seq_ms = sec * 1e3 * n_members
      totals["sequential"] = totals.get("sequential", 0.0) + (comp * n_members + sec * n_members * sweep_steps)
      print(f"{width:>6} {'sequential':>10} {comp * n_members:>10.1f} {seq_ms:>9.1f} {cpu * 1e3 * n_members:>9.1f} "
            f"{'1.00':>7}", flush=True)
    for mode in ["batched"]:
      c = base.copy_and_resolve_references()
      comp, sec, cpu = time_program(c, a.steps, a.repeats)
      totals[mode] = totals.get(mode, 0.0) + comp + sec * sweep_steps
      ratio = f"{seq_ms / (sec * 1e3):.2f}" if seq_ms else "-"
      print(f"{width:>6} {mode:>10} {comp:>10.1f} {sec * 1e3:>9.1f} {cpu * 1e3:>9.1f} {ratio:>7}", flush=True)
  for mode, tot in totals.items():
    print(f"implied Fig-2 sweep ({len(a.widths)} widths × {n_members} members × {sweep_steps} steps, "
          f"{mode}): {tot / 60:.1f} min (training + compile, evals excluded)")


if __name__ == "__main__":
  main()
