"""Train-step throughput of this project against peers of the same shapes, in one run of interleaved rounds.

  python benchmarks/train_throughput.py                                  # CPU: 1M and 10M, float32
  python benchmarks/train_throughput.py --nanodo_path=/path/to/nanodo   # also nanodo's model (JAX)
  python benchmarks/train_throughput.py --sizes=20M,300M --dtype=bfloat16   # an accelerator

Each system (benchmarks/throughput_systems.py: this project's `train_step` and K-step `train_steps`, a plain
PyTorch decoder eager and under `torch.compile`, nanodo's model, and a square matmul for the machine's peak)
runs in its own worker process, built and warmed one at a time. This project's workers start as its trainer
does, keeping freed host memory (scaling/core/hostmem.py; --malloc=default turns it off, --malloc=all gives it
to the peers too); the peers run with the C library's defaults, as their own trainers do. `scaling_mmap` is
this project's step without the setting, to show what it gains; `scaling_remat_dots` / `scaling_remat_full` the
step with rematerialisation (--systems picks them). Then every round gives each worker in turn
(A B C D A B C D ...) `--steps` synchronised train steps, so a busy neighbour on a shared machine slows all
systems alike. Reported per system: median tokens/s with min–max over rounds, MFU (tokens/s x the system's
own training FLOPs per token / the best matmul FLOP/s measured over all rounds; PaLM convention
6·N_matmul + 12·layers·L·d),
and the paired per-round ratio of this project's tokens/s to each peer's. Columns whose dependency is missing
(torch: `pip install -e .[bench]`; nanodo: --nanodo_path or $NANODO_PATH, a checkout of
github.com/google-deepmind/nanodo) are skipped with a note. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = "@@throughput "
LABELS = {"scaling": "scaling train_step", "scaling_k": "scaling train_steps",
          "scaling_remat_dots": "scaling train_step, remat=dots", "scaling_remat_full": "scaling train_step, remat=full",
          "torch_eager": "PyTorch eager",
          "torch_compile": "PyTorch torch.compile", "nanodo": "nanodo (JAX)", "peak": "matmul peak"}


def label(name: str, args) -> str:
  base = name.removesuffix("_mmap")
  out = LABELS.get(base, base) + (f" (K={args.steps_per_call})" if base == "scaling_k" else "")
  return out + (", glibc malloc" if name.endswith("_mmap") else "")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--sizes", default=None, help="ladder sizes (default 1M,10M on CPU, 20M,300M elsewhere)")
  p.add_argument("--systems", default="scaling,scaling_k,torch_eager,torch_compile,nanodo")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--seq_len", type=int, default=128)
  p.add_argument("--vocab", type=int, default=512)
  p.add_argument("--dtype", default=None, help="compute dtype (default float32 on CPU, bfloat16 elsewhere)")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--steps", type=int, default=6, help="train steps per system per round")
  p.add_argument("--steps_per_call", type=int, default=3, help="K of the scaling_k system")
  p.add_argument("--scan_layers", default="auto", help="model.scan_layers for this project's model")
  p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores, as XLA uses)")
  p.add_argument("--peak_n", type=int, default=None, help="matmul size for the peak (2048 CPU, 8192 else)")
  p.add_argument("--nanodo_path", default=os.environ.get("NANODO_PATH", ""))
  p.add_argument("--pause", type=float, default=0.2, help="seconds between systems (thread pools go idle)")
  p.add_argument("--malloc", default="retain", choices=("retain", "default", "all"),
                 help="retain: this project's workers keep freed host memory (scaling/core/hostmem.py); "
                      "all: every worker does; default: none does")
  p.add_argument("--worker", default="", help=argparse.SUPPRESS)
  p.add_argument("--size", default="", help=argparse.SUPPRESS)
  return p.parse_args(argv)


def worker_main(args) -> None:
  """Builds one system, then answers 'run N' lines on stdin with the seconds N steps took."""
  sys.path.insert(0, REPO)
  from scaling.core import hostmem  # noqa: PLC0415 - must run before JAX or torch start their threads
  ours = args.worker.startswith("scaling") and args.worker != "scaling_mmap"
  if args.worker != "scaling_mmap" and (args.malloc == "all" or (args.malloc == "retain" and ours)):
    hostmem.retain_freed_memory()
  from benchmarks import throughput_systems  # noqa: PLC0415 - worker-only (keeps the parent free of JAX/torch)
  system = throughput_systems.build(args.worker.removesuffix("_mmap"), args)
  print(TAG + json.dumps({"flops_per_token": system.flops_per_token, "compile_s": system.compile_s}), flush=True)
  for line in sys.stdin:
    cmd = line.split()
    if not cmd or cmd[0] == "quit":
      break
    print(TAG + json.dumps({"seconds": system.run(int(cmd[1]))}), flush=True)


class Worker:
  """A system in its own process, driven over stdin/stdout."""

  def __init__(self, name: str, size: str, args, forward: list[str]):
    self.name = name
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), f"--worker={name}", f"--size={size}",
                                  *forward], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    self.info = self._read()

  def _read(self) -> dict:
    for line in self.proc.stdout:
      if line.startswith(TAG):
        return json.loads(line[len(TAG):])
    raise RuntimeError(f"{self.name} worker exited (code {self.proc.wait()}); its stderr is above")

  def run(self, steps: int) -> float:
    self.proc.stdin.write(f"run {steps}\n")
    self.proc.stdin.flush()
    return self._read()["seconds"]

  def close(self) -> None:
    if self.proc.poll() is None:
      self.proc.stdin.write("quit\n")
      self.proc.stdin.close()
      self.proc.wait(timeout=60)


def skipped_reason(name: str, args) -> str:
  if name == "scaling_mmap":
    return ""
  if name not in LABELS:
    return f"unknown system (choose from {', '.join(LABELS)}, scaling_mmap)"
  if name.startswith("torch") and importlib.util.find_spec("torch") is None:
    return "torch is not installed (pip install -e .[bench])"
  if name == "nanodo":
    if not args.nanodo_path:
      return "no --nanodo_path / $NANODO_PATH (a checkout of github.com/google-deepmind/nanodo)"
    if not os.path.isfile(os.path.join(args.nanodo_path, "nanodo", "model.py")):
      return f"--nanodo_path={args.nanodo_path} holds no nanodo/model.py"
  if name == "scaling_k" and args.steps_per_call <= 1:
    return "--steps_per_call <= 1"
  return ""


def _fmt(values, scale=1.0, spec=",.0f", suffix="") -> str:
  vs = [v * scale for v in values]
  return f"{statistics.median(vs):{spec}}{suffix} [{min(vs):{spec}}–{max(vs):{spec}}]"


def measure_size(size: str, args, forward: list[str]) -> None:
  names = [n for n in args.systems.split(",") if n] + ["peak"]
  workers, notes = [], []
  for name in names:
    reason = skipped_reason(name, args)
    if reason:
      notes.append(f"{label(name, args)}: skipped ({reason})")
      continue
    print(f"[{size}] building {label(name, args)} ...", file=sys.stderr, flush=True)
    try:
      workers.append(Worker(name, size, args, forward))
    except RuntimeError as e:
      notes.append(f"{label(name, args)}: skipped ({e})")
  tokens = args.batch * args.seq_len
  rates = {w.name: [] for w in workers}
  load = [os.getloadavg()[0]]
  try:
    for r in range(args.rounds):
      for w in workers:
        rates[w.name].append(w.run(args.steps) if w.name == "peak" else tokens * args.steps / w.run(args.steps))
        time.sleep(args.pause)
      print(f"[{size}] round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
  finally:
    for w in workers:
      w.close()
  load.append(os.getloadavg()[0])
  peak = [args.steps * 2 * args.peak_n**3 / s for s in rates.pop("peak", [])]
  print(f"\n== {size}: batch {args.batch} x seq {args.seq_len}, vocab {args.vocab}, {args.dtype}, "
        f"{args.rounds} rounds x {args.steps} steps (load average {load[0]:.1f} -> {load[1]:.1f})")
  if peak:
    print(f"   matmul peak ({args.peak_n}^3, {args.dtype}): best {max(peak) / 1e9:,.1f} GFLOP/s, per round "
          f"{_fmt(peak, 1e-9, ',.1f')}; MFU is against the best")
  print(f"   {'system':<36} {'compile s':>9}  {'tokens/s median [min–max]':<28} {'MFU median [min–max]':<22}")
  for w in workers:
    if w.name == "peak":
      continue
    mfu = [t * w.info["flops_per_token"] / max(peak) for t in rates[w.name]] if peak else []
    print(f"   {label(w.name, args):<36} {w.info['compile_s']:>9.1f}  {_fmt(rates[w.name]):<28} "
          f"{_fmt(mfu, 100, '.0f', '%') if mfu else '-':<22}")
  peers = [n for n in rates if not n.startswith("scaling")]
  for ours in (n for n in rates if n.startswith("scaling") and n != "scaling_mmap"):
    variants = ("scaling_mmap", "scaling_remat_dots", "scaling_remat_full")
    for name in peers + ([n for n in variants if n in rates] if ours == "scaling" else []):
      ratio = [a / b for a, b in zip(rates[ours], rates[name], strict=True)]
      print(f"   ratio {label(ours, args)} / {label(name, args)}: {_fmt(ratio, 1, '.2f', 'x')}")
  for note in notes:
    print(f"   note: {note}")


def main() -> None:
  args = parse_args()
  if args.worker:
    if args.dtype is None or args.peak_n is None:
      raise SystemExit("error: workers need --dtype and --peak_n — run the benchmark without --worker")
    worker_main(args)
    return
  import jax  # noqa: PLC0415 - the parent needs JAX only to name the platform
  platform = jax.devices()[0].platform
  args.dtype = args.dtype or ("float32" if platform == "cpu" else "bfloat16")
  args.peak_n = args.peak_n or (2048 if platform == "cpu" else 8192)
  sizes = args.sizes or ("1M,10M" if platform == "cpu" else "20M,300M")
  forward = [f"--{k}={v}" for k, v in vars(args).items()
             if k not in ("worker", "size", "sizes", "systems") and v is not None]
  print(f"device: {jax.devices()[0].device_kind} ({platform}), {os.cpu_count()} cores; jax {jax.__version__}")
  for size in sizes.split(","):
    measure_size(size, args, forward)


if __name__ == "__main__":
  main()
