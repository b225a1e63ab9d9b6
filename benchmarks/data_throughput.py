"""Data-pipeline throughput (sequences/s, tokens/s) against what the model consumes per second.

  python benchmarks/data_throughput.py                                   # 1M model, synthetic + cmp/add injected
  python benchmarks/data_throughput.py --workers=0,1,2 --batches=300 --tasks=cmp:10,add:0.1:burst:10
  python benchmarks/data_throughput.py --prepared=auto           # prepared shards vs a 1B model on 8 accelerators
  python benchmarks/data_throughput.py --prepared=DIR --tokenizer=tok.model --accelerators=8 --peak_tflops=989

Pipeline: the full training stream (scaling.lm.data.pipeline.make_train_iterator: synthetic background, task
injection, masks, Grain prefetch) timed over `--batches` batches after a warm-up, once per Grain worker count
(0 = in-process threads). Model: the train step of `--size` at the same batch, timed alone. The ratio says how
many times faster the data arrives than the model can eat it (goal >= 10x). Prints a table; asserts nothing.

--prepared: the same pipeline on a prepared corpus (data.source=prepared; `auto` generates and prepares ~64 MiB of
text with the byte tokenizer) at the paper preset's sequence length, timed on this host, against the tokens/s that
`--accelerators` devices training the paper-preset `--model` consume at `--mfu` of `--peak_tflops` each:
tokens/s = accelerators · mfu · peak / flops_per_token. With 8 accelerators per host that is one host's demand.
"""

from __future__ import annotations

import argparse
import time


def make_config(size: str, batch: int | None, seq_len: int, vocab: int, tasks: str, threads: int):
  from configs import lm
  from scaling.lm import config as configlib
  c = lm.get_config(f"size={size}")
  c.data.vocab_size, c.data.seq_len, c.data.prefetch_threads = vocab, seq_len, threads
  for item in filter(None, tasks.split(",")):  # name:frequency[:schedule[:period]]
    name, freq, *rest = item.split(":")
    c.data.tasks[name].frequency = float(freq)
    if rest:
      c.data.tasks[name].schedule = rest[0]
    if len(rest) > 1:
      c.data.tasks[name].period = int(rest[1])
  if batch:
    c.train.batch_size = batch
  c.mesh.data = -1
  c = configlib.resolve(c)
  configlib.validate(c)
  return c


def pipeline_rate(config, workers: int, batches: int) -> tuple[float, float]:
  """(sequences/s, seconds to the first batch)."""
  from ml_collections import config_dict

  from scaling.lm.data import pipeline
  c = config_dict.ConfigDict(config.to_dict())
  c.data.worker_count = workers
  t0 = time.perf_counter()
  it = pipeline.make_train_iterator(c)
  next(it)
  first = time.perf_counter() - t0
  for _ in range(min(10, batches)):  # fill the prefetch buffers
    next(it)
  t0 = time.perf_counter()
  for _ in range(batches):
    next(it)
  dt = time.perf_counter() - t0
  it.close()
  return batches * c.train.batch_size / dt, first


def model_rate(config, steps: int) -> float:
  """Sequences/s the train step consumes (data pre-placed, so this is the model alone)."""
  import jax

  from scaling.lm import step as step_lib
  from scaling.lm.data import pipeline
  setup = step_lib.build(config, jax.devices()[:1])
  state = setup.init()
  it = pipeline.make_train_iterator(config)
  batches = [setup.place_batch(next(it)) for _ in range(4)]
  for i in range(3):  # compile + warm
    state, m = setup.train_step(state, batches[i % 4])
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for i in range(steps):
    state, m = setup.train_step(state, batches[i % 4])
    if i % 16 == 15:  # CPU fake-device collectives need a sync at least every 16 steps (README, Known traps 1)
      jax.block_until_ready(m)
  jax.block_until_ready(m)
  return steps * config.train.batch_size / (time.perf_counter() - t0)


def prepared_rate(args) -> None:
  """Prepared-shard tokens/s on this host against what the accelerators consume (see the module docstring)."""
  import os
  import subprocess
  import sys
  import tempfile

  import stream_memory

  from configs import lm
  from scaling.lm import config as configlib
  from scaling.lm import model as transformer
  with tempfile.TemporaryDirectory() as d:
    root, tok = args.prepared, args.tokenizer
    if root == "auto":
      glob, root, tok = stream_memory.write_text(os.path.join(d, "text"), 64 << 20), os.path.join(d, "p"), "byte"
      subprocess.run([sys.executable, "-m", "scaling.lm.data.prepare", f"--glob={glob}", "--documents=line",
                      f"--out={root}", "--eval_fraction=0.02"], check=True, stderr=subprocess.DEVNULL,
                     env={**os.environ, "PYTHONPATH": stream_memory.REPO})
    c = lm.get_config(f"size={args.model},preset=paper")
    c.data.update(dict(source="prepared", tokenizer=tok, prefetch_threads=args.threads, eval_sequences=1))
    c.data.prepared.dir = root
    c.data.tasks.cmp.frequency = 10.0
    c.train.batch_size = args.batch or 64
    c = configlib.resolve(c)
    L = c.data.seq_len
    need = args.accelerators * args.mfu * args.peak_tflops * 1e12 / transformer.flops_per_token(
        configlib.model_config(c), L)
    print(f"demand: {args.model} (paper preset, seq_len {L}, vocab {c.data.vocab_size}) on {args.accelerators} "
          f"accelerators at {args.mfu:.0%} MFU of {args.peak_tflops:g} TFLOP/s consumes {need:,.0f} tokens/s")
    print(f"{'workers':>7} {'first batch s':>13} {'tokens/s':>12} {'ratio to demand':>16}")
    for w in (int(x) for x in args.workers.split(",")):
      rate, first = pipeline_rate(c, w, args.batches)
      print(f"{w:>7} {first:>13.2f} {rate * (L + 1):>12,.0f} {rate * (L + 1) / need:>15.1f}x")


def main() -> None:
  import absl.flags
  absl.flags.FLAGS.mark_as_parsed()  # grain mp_prefetch reads absl flags (README, Known traps 3)
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--size", default="1M")
  p.add_argument("--batch", type=int, default=None, help="default: the ladder's run_settings batch")
  p.add_argument("--seq_len", type=int, default=128)
  p.add_argument("--vocab", type=int, default=1024)
  p.add_argument("--tasks", default="cmp:10,add:0.1", help="name:frequency[:schedule[:period]],...")
  p.add_argument("--workers", default="0,2", help="Grain worker-process counts to time")
  p.add_argument("--threads", type=int, default=2, help="Grain prefetch threads (data.prefetch_threads)")
  p.add_argument("--batches", type=int, default=200)
  p.add_argument("--model_steps", type=int, default=20)
  p.add_argument("--prepared", default="", help="a prepared corpus directory, or 'auto' (see above)")
  p.add_argument("--tokenizer", default="byte", help="--prepared: the tokenizer it was prepared with")
  p.add_argument("--model", default="1B", help="--prepared: the consuming model (paper preset)")
  p.add_argument("--accelerators", type=int, default=8)
  p.add_argument("--peak_tflops", type=float, default=989.0, help="per accelerator (H100/H200 bf16 dense: 989)")
  p.add_argument("--mfu", type=float, default=0.4)
  args = p.parse_args()
  if args.prepared:
    prepared_rate(args)
    return
  c = make_config(args.size, args.batch, args.seq_len, args.vocab, args.tasks, args.threads)
  L, B = c.data.seq_len, c.train.batch_size
  print(f"config: size={args.size} batch={B} seq_len={L} vocab={c.data.vocab_size} source={c.data.source} "
        f"tasks={args.tasks or 'none'} prefetch_threads={args.threads}")
  model = model_rate(c, args.model_steps)
  print(f"model consumes: {model:,.0f} sequences/s = {model * L:,.0f} tokens/s ({model / B:.2f} steps/s)")
  print(f"{'workers':>7} {'first batch s':>13} {'sequences/s':>12} {'tokens/s':>12} {'ratio to model':>15}")
  for w in (int(x) for x in args.workers.split(",")):
    rate, first = pipeline_rate(c, w, args.batches)
    print(f"{w:>7} {first:>13.2f} {rate:>12,.0f} {rate * L:>12,.0f} {rate / model:>14.1f}x")


if __name__ == "__main__":
  main()
