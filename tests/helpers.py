"""Shared test utilities: tiny configs and subprocess runners."""

from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(size: str = "50K", **train):
  """A 50K-parameter model on the synthetic language that trains a step in milliseconds."""
  from configs import lm
  c = lm.get_config(f"size={size}")
  c.data.vocab_size = 128
  c.data.seq_len = 32
  c.data.eval_sequences = 32
  c.data.prefetch_threads = 1
  c.train.batch_size = 8
  c.train.steps = 20
  c.train.learning_rate = 3e-3
  c.train.warmup_steps = 2
  c.train.log_every = 5
  c.train.eval_every = 10
  c.checkpoint.every = 10
  c.checkpoint.async_save = False
  c.mesh.data = 1
  for k, v in train.items():
    c.train[k] = v
  return c


def set_keys(config, values: dict):
  """Sets dotted keys ("train.steps": 10) on a ConfigDict in place; returns it."""
  for key, value in values.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def tiny_flags(size: str = "50K") -> list[str]:
  """Command-line twin of tiny_config() for subprocess runs of `python -m scaling.train`."""
  return [f"--config=configs/lm.py:size={size}", *TINY_FLAGS[1:]]


TINY_FLAGS = [
    "--config=configs/lm.py:size=50K", "--config.data.vocab_size=128", "--config.data.seq_len=32",
    "--config.data.eval_sequences=32", "--config.data.prefetch_threads=1", "--config.train.batch_size=8",
    "--config.train.learning_rate=3e-3", "--config.train.warmup_steps=2", "--config.train.log_every=5",
    "--noprogress",
]


def env(n_devices: int = 1, **extra) -> dict:
  e = dict(os.environ)
  e["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={n_devices} "
                    "--xla_cpu_collective_call_terminate_timeout_seconds=120")
  e["JAX_PLATFORMS"] = "cpu"
  e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
  e.update(extra)
  return e


def run_train(args, n_devices: int = 1, timeout: int = 300, **popen) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "scaling.train", *args], cwd=REPO, env=env(n_devices),
                        capture_output=True, text=True, timeout=timeout, **popen)


def read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f]
