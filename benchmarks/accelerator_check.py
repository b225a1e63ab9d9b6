"""The accelerator path, checked: throughput and MFU, sharded == single-device, checkpoint round trip, 2 processes.

  python benchmarks/accelerator_check.py                       # GPU/TPU: 20M and 300M in bf16
  python benchmarks/accelerator_check.py --cpu_devices=4       # CPU, tiny sizes (50K, 200K), 4 fake devices

Sections (each prints its figures; the correctness checks also print PASS or FAIL, and the exit code is 1 when one
fails):
  throughput  a few train steps per size in the compute dtype: tokens/s, model FLOP/s and MFU against the measured
              dense-matmul peak of the same dtype (and against --peak_tflops per device when given, e.g. 989 for
              an H100/H200 in bf16), with the memory plan's estimate next to XLA's compiled memory analysis
  fsdp        one train step with parameters sharded over all devices (sharding.preset=fsdp) vs the same step on
              one device, from the same initial state and batch: the losses agree within the dtype's tolerance
  checkpoint  save and restore of the sharded train state (orbax, scaling/core/checkpoint.py): every leaf equal
  processes   with more than one device: `python -m scaling.train` as 2 processes (jax.distributed) vs 1 process
              on the same devices: equal train losses (CPU: 2 fake devices per process; GPU: half the devices each)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = {"float32": 1e-5, "bfloat16": 2e-2}  # relative, on a loss of a few nats


def _config(size: str, dtype: str, batch: int, seq_len: int, vocab: int, remat: str, **extra):
  from configs import lm
  from scaling.lm import config as configlib
  c = lm.get_config(f"size={size}")
  c.data.vocab_size, c.data.seq_len, c.data.prefetch_threads = vocab, seq_len, 1
  c.train.update(dict(batch_size=batch, steps=100, learning_rate=1e-3, warmup_steps=1))
  c.model.dtype, c.model.remat = dtype, remat
  c.mesh.data = -1
  for key, value in extra.items():
    section, name = key.split("__")
    c[section][name] = value
  return configlib.resolve(c)


def _batches(setup, config, n: int):
  from scaling.lm.data import pipeline
  it = pipeline.make_train_iterator(config)
  return [setup.place_batch(next(it)) for _ in range(n)]


def throughput(args, dtype: str) -> None:
  import jax
  import train_throughput

  from scaling.lm import config as configlib
  from scaling.lm import memory
  from scaling.lm import model as transformer
  from scaling.lm import step as step_lib
  peak = train_throughput.matmul_peak(dtype, 2048 if args.cpu else 8192)
  n = len(jax.devices())
  print(f"[throughput] {jax.devices()[0].device_kind} x{n}, {dtype}; measured matmul peak "
        f"{peak / 1e12:.2f} TFLOP/s per device")
  for size in args.sizes.split(","):
    c = _config(size, dtype, args.batch, args.seq_len, args.vocab, args.remat)
    setup = step_lib.build(c)
    state, batches = setup.init(), _batches(setup, c, 2)
    shapes = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=v.sharding) for k, v in batches[0].items()}
    ma = setup.train_step.lower(setup.abstract_state, shapes).compile().memory_analysis()
    xla = ma.argument_size_in_bytes + ma.temp_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes
    state, m = setup.train_step(state, batches[0])
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for i in range(args.steps):
      state, m = setup.train_step(state, batches[i % 2])
      if i % 16 == 15:
        jax.block_until_ready(m)  # CPU fake-device collectives need a sync at least every 16 steps (STACK.md)
    jax.block_until_ready(m)
    dt = time.perf_counter() - t0
    fpt = transformer.flops_per_token(configlib.model_config(c), c.data.seq_len)
    tok_s = args.steps * c.train.batch_size * c.data.seq_len / dt
    spec = f" MFU(spec {args.peak_tflops:g} TFLOP/s)={tok_s * fpt / (args.peak_tflops * 1e12 * n):.1%}" \
        if args.peak_tflops else ""
    plan = memory.plan(c, n)
    print(f"  {size:>5} batch={c.train.batch_size}x{c.data.seq_len} tokens/s={tok_s:,.0f} "
          f"model TFLOP/s={tok_s * fpt / 1e12:.3f} MFU={tok_s * fpt / (peak * n):.1%}{spec} "
          f"loss={float(m['loss']):.3f} memory/device: estimate {plan.total / 2**20:,.0f} MiB, "
          f"XLA {xla / 2**20:,.0f} MiB (remat={c.model.remat})")


def fsdp_vs_single(args, dtype: str) -> bool:
  import jax
  import numpy as np

  from scaling.lm import step as step_lib
  devices = jax.devices()
  size = args.sizes.split(",")[0]
  batch = args.batch - args.batch % len(devices) or len(devices)
  losses = {}
  for name, devs, preset in (("single", devices[:1], "dp"), ("fsdp", devices, "fsdp")):
    c = _config(size, dtype, batch, args.seq_len, args.vocab, args.remat, sharding__preset=preset,
                mesh__data=1, mesh__fsdp=-1)
    setup = step_lib.build(c, devs)
    state = setup.init()
    _, metrics = setup.train_step(state, _batches(setup, c, 1)[0])
    losses[name] = float(jax.device_get(metrics["loss"]))
  rel = abs(losses["fsdp"] - losses["single"]) / abs(losses["single"])
  ok = bool(np.isfinite(rel) and rel <= TOLERANCE[dtype])
  print(f"[fsdp] {size} {dtype}: loss on 1 device {losses['single']:.6f}, fsdp over {len(devices)} devices "
        f"{losses['fsdp']:.6f}, relative difference {rel:.2e} (tolerance {TOLERANCE[dtype]:g}): "
        f"{'PASS' if ok else 'FAIL'}")
  return ok


def checkpoint_round_trip(args, dtype: str) -> bool:
  import jax
  import numpy as np

  from scaling.core import checkpoint as ckpt_lib
  from scaling.lm import step as step_lib
  c = _config(args.sizes.split(",")[0], dtype, args.batch, args.seq_len, args.vocab, args.remat,
              sharding__preset="fsdp", mesh__data=1, mesh__fsdp=-1)
  setup = step_lib.build(c)
  state, _ = setup.train_step(setup.init(), _batches(setup, c, 1)[0])
  with tempfile.TemporaryDirectory() as d:
    ck = ckpt_lib.Checkpointer(d, every=1, keep=1, async_save=True)
    t0 = time.perf_counter()
    ck.save(1, state, {"next_index": 1})
    ck.wait()
    saved = time.perf_counter() - t0
    step, restored, data_state = ck.restore_latest(setup.abstract_state)
    ck.close()
  a, b = jax.device_get(jax.tree.leaves(state)), jax.device_get(jax.tree.leaves(restored))
  ok = step == 1 and data_state == {"next_index": 1} and all(np.array_equal(x, y) for x, y in zip(a, b))
  print(f"[checkpoint] {len(a)} leaves saved in {saved:.2f} s and restored over {len(jax.devices())} devices: "
        f"{'PASS' if ok else 'FAIL'}")
  return ok


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def two_processes(args, platform: str, n_devices: int) -> bool:
  if n_devices < 2:
    print("[processes] skipped: one device only")
    return True
  if platform == "tpu":
    print("[processes] skipped on TPU: one process per host (launch/backends/tpu.py runs multi-host jobs)")
    return True
  flags = [f"--config=configs/lm.py:size={args.sizes.split(',')[0]}", f"--config.data.vocab_size={args.vocab}",
           f"--config.data.seq_len={args.seq_len}", "--config.data.eval_sequences=16",
           "--config.data.prefetch_threads=1", f"--config.train.batch_size={args.batch}", "--config.train.steps=10",
           "--config.train.learning_rate=1e-3", "--config.train.warmup_steps=1", "--config.train.log_every=2",
           "--config.train.eval_every=0", "--config.checkpoint.every=10", "--config.mesh.data=-1",
           f"--config.model.dtype={args.dtype or 'float32'}", "--noprogress"]
  env = {**os.environ, "PYTHONPATH": REPO}
  with tempfile.TemporaryDirectory() as d:
    one = subprocess.run([sys.executable, "-m", "scaling.train", *flags, f"--workdir={d}/one"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    port, procs = _free_port(), []
    for i in range(2):
      e = dict(env)
      extra = [f"--config.distributed.coordinator_address=localhost:{port}", "--config.distributed.num_processes=2",
               f"--config.distributed.process_id={i}"]
      if platform == "cpu":
        e.pop("XLA_FLAGS", None)
        extra.append(f"--config.distributed.local_device_count={n_devices // 2}")
      else:
        half = n_devices // 2
        e["CUDA_VISIBLE_DEVICES"] = ",".join(str(j) for j in range(i * half, (i + 1) * half))
      procs.append(subprocess.Popen([sys.executable, "-m", "scaling.train", *flags, *extra, f"--workdir={d}/two"],
                                    cwd=REPO, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    errs = [p.communicate(timeout=600)[1] for p in procs]
    if one.returncode or any(p.returncode for p in procs):
      print(f"[processes] FAIL: a run exited non-zero: {(one.stderr + ''.join(errs)).strip().splitlines()[-1:]}")
      return False
    read = lambda p: [json.loads(x).get("train/loss") for x in open(p) if "train/loss" in x]  # noqa: E731
    a, b = read(f"{d}/one/metrics.jsonl"), read(f"{d}/two/metrics.jsonl")
  ok = len(a) == len(b) > 0 and all(abs(x - y) <= TOLERANCE[args.dtype or "float32"] * abs(x) for x, y in zip(a, b))
  print(f"[processes] 2 processes x {n_devices // 2} devices vs 1 process: train losses {b} vs {a}: "
        f"{'PASS' if ok else 'FAIL'}")
  return ok


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--cpu_devices", type=int, default=0, help="run on CPU with this many fake devices")
  p.add_argument("--sizes", default=None, help="default 20M,300M on accelerators, 50K,200K on CPU")
  p.add_argument("--dtype", default=None, help="default bfloat16 on accelerators, float32 on CPU")
  p.add_argument("--batch", type=int, default=None)
  p.add_argument("--seq_len", type=int, default=None)
  p.add_argument("--vocab", type=int, default=None)
  p.add_argument("--remat", default="full")
  p.add_argument("--steps", type=int, default=None)
  p.add_argument("--peak_tflops", type=float, default=0.0, help="the accelerator's spec peak, for a second MFU")
  args = p.parse_args()
  if args.cpu_devices:
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["XLA_FLAGS"] = (f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count="
                               f"{args.cpu_devices}").strip()
  sys.path.insert(0, REPO)
  import jax
  platform, n = jax.devices()[0].platform, len(jax.devices())
  args.cpu = platform == "cpu"
  defaults = dict(sizes="50K,200K", dtype="float32", batch=8, seq_len=64, vocab=512, steps=10) if args.cpu else \
      dict(sizes="20M,300M", dtype="bfloat16", batch=16, seq_len=1024, vocab=32768, steps=20)
  for k, v in defaults.items():
    if getattr(args, k) is None:
      setattr(args, k, v)
  throughput(args, args.dtype)
  ok = []
  if n > 1:
    ok.append(fsdp_vs_single(args, args.dtype))
  else:
    print("[fsdp] skipped: one device only")
  ok += [checkpoint_round_trip(args, args.dtype), two_processes(args, platform, n)]
  print(f"accelerator check: {sum(ok)}/{len(ok)} checks passed on {n} {platform} device(s)")
  return 0 if all(ok) else 1


if __name__ == "__main__":
  sys.exit(main())
