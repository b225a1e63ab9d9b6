"""Resident memory while streaming a prepared corpus much larger than the eval set: it stays flat.

  python benchmarks/stream_memory.py                         # train split 100x the eval set, byte tokens
  python benchmarks/stream_memory.py --factor=300 --seq_len=1024 --format=numpy

Writes generated text (--factor x the eval set's tokens, plus the eval set), prepares it
(`python -m scaling.lm.data.prepare`, worker processes), then reads one full pass of the train split through the
training pipeline (scaling.lm.data.pipeline.make_train_iterator, data.source=prepared) and prints this process's
RSS against the tokens read so far. For contrast, the last line loads the same files with data.source=local_text
(which holds the corpus in memory). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_mib() -> float:
  return psutil.Process().memory_info().rss / 2**20


def write_text(directory: str, n_bytes: int, files: int = 8, seed: int = 0) -> str:
  """About `n_bytes` of Zipf-distributed made-up words, one sentence per line, over `files` files."""
  rng = np.random.default_rng(seed)
  letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
  vocab = ["".join(rng.choice(letters, rng.integers(2, 9))) for _ in range(5000)]
  p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
  os.makedirs(directory, exist_ok=True)
  for f in range(files):
    with open(os.path.join(directory, f"part-{f:03d}.txt"), "w") as fh:
      written = 0
      while written < n_bytes // files:
        words = rng.choice(len(vocab), 20000, p=p / p.sum())
        block = "\n".join(" ".join(vocab[w] for w in words[i:i + 12]) + "." for i in range(0, len(words), 12))
        fh.write(block + "\n")
        written += len(block) + 1
  return os.path.join(directory, "*.txt")


def config(source: str, args, root: str = "", glob: str = ""):
  from configs import lm
  from scaling.lm import config as configlib
  c = lm.get_config("size=1M")
  c.data.update(dict(source=source, vocab_size=258, seq_len=args.seq_len, eval_sequences=args.eval_sequences,
                     prefetch_threads=2))
  c.data.prepared.dir = root
  c.data.local_text.glob, c.data.local_text.eval_fraction = glob, 1 / (args.factor + 1)
  c.data.tasks.cmp.frequency = 1.0
  c.train.batch_size = args.batch
  c.mesh.data = 1
  c = configlib.resolve(c)
  configlib.validate(c, n_devices=1)
  return c


def main() -> None:
  import absl.flags
  absl.flags.FLAGS.mark_as_parsed()  # grain reads absl flags (STACK.md trap 3)
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--factor", type=int, default=100, help="train split size / eval set size (tokens)")
  p.add_argument("--seq_len", type=int, default=512)
  p.add_argument("--eval_sequences", type=int, default=256)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--format", default="array_record")
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--rows", type=int, default=12, help="table rows")
  args = p.parse_args()
  sys.path.insert(0, REPO)
  from scaling.lm.data import pipeline
  eval_tokens = args.eval_sequences * (args.seq_len + 1)
  with tempfile.TemporaryDirectory() as d:
    glob = write_text(os.path.join(d, "text"), int(eval_tokens * (args.factor + 1) * 1.02))
    root = os.path.join(d, "prepared")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scaling.lm.data.prepare", f"--glob={glob}", "--documents=line",
                    f"--eval_fraction={1 / (args.factor + 1)}", f"--out={root}", f"--format={args.format}",
                    f"--workers={args.workers}", "--shard_tokens=4194304"], cwd=REPO, check=True,
                   env={**os.environ, "PYTHONPATH": REPO}, stderr=subprocess.DEVNULL)
    prep_s = time.perf_counter() - t0
    c = config("prepared", args, root=root)
    start = rss_mib()
    pipeline.eval_background(c)  # the eval set, held as the trainer holds it
    it = pipeline.make_train_iterator(c)
    from scaling.lm.data import sources
    src = sources.make_source(c.data, c.seed)
    train_tokens, W = src.manifest["splits"]["train"]["tokens"], src.n_windows["train"]
    steps = W // args.batch
    print(f"prepared {train_tokens:,} train tokens ({train_tokens / eval_tokens:.0f}x the eval set "
          f"of {args.eval_sequences} x {args.seq_len + 1} tokens) in {prep_s:.1f} s; one pass = {steps} batches "
          f"of {args.batch}")
    print(f"{'batches':>8} {'tokens read':>14} {'x eval set':>10} {'RSS MiB':>9} {'change MiB':>10}")
    every = max(steps // args.rows, 1)
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
      next(it)
      if i % every == 0 or i == steps:
        read = i * args.batch * (args.seq_len + 1)
        print(f"{i:>8} {read:>14,} {read / eval_tokens:>10.1f} {rss_mib():>9.1f} {rss_mib() - start:>+10.1f}")
    dt = time.perf_counter() - t0
    it.close()
    print(f"streamed {steps * args.batch * (args.seq_len + 1) / dt:,.0f} tokens/s (with task injection)")
    before = rss_mib()
    next(pipeline.make_train_iterator(config("local_text", args, glob=glob)))
    text_mib = sum(os.path.getsize(os.path.join(d, "text", f)) for f in os.listdir(os.path.join(d, "text"))) / 2**20
    print(f"contrast: data.source=local_text on the same files: RSS {rss_mib():.1f} MiB ({rss_mib() - before:+.1f} "
          f"MiB after one batch: it holds the {text_mib:.1f} MiB corpus in memory)")


if __name__ == "__main__":
  main()
