"""Helpers for launcher tests: tiny sweep configs written to a temp dir and run through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests import helpers

SWEEP = os.path.join(helpers.REPO, "launch", "sweep.py")

# tests/helpers.py TINY_FLAGS as sweep overrides: a 50K model that trains a step in milliseconds.
TINY = {
    "data.vocab_size": 128, "data.seq_len": 32, "data.eval_sequences": 32, "data.prefetch_threads": 1,
    "train.batch_size": 8, "train.learning_rate": 3e-3, "train.warmup_steps": 2, "train.log_every": 5,
    "train.eval_every": 10, "train.steps": 20, "checkpoint.every": 10, "checkpoint.async_save": False,
}

TEMPLATE = '''import ml_collections


def get_config(arg=""):
  c = ml_collections.ConfigDict()
  c.name = {name!r}
  c.entrypoint = "scaling.train"
  c.base = {base!r}
  c.overrides = ml_collections.ConfigDict({overrides!r}, allow_dotted_keys=True)
  c.axes = {axes!r}
  c.seeds = {seeds!r}
  c.backend = {backend!r}
  return c
'''


def write_sweep(tmp_path, name="t", base="configs/lm.py:size=50K", overrides=None, axes=(), seeds=None,
                backend=None) -> str:
  """A sweep config file; `overrides` are added to (or, with value None, removed from) TINY."""
  ov = dict(TINY)
  for k, v in (overrides or {}).items():
    if v is None:
      ov.pop(k, None)
    else:
      ov[k] = v
  for group in axes:  # an axis key may not also be a common override
    for k in group:
      ov.pop(k, None)
  path = os.path.join(str(tmp_path), f"sweep_{name}.py")
  with open(path, "w") as f:
    f.write(TEMPLATE.format(name=name, base=base, overrides=ov, axes=list(axes), seeds=seeds,
                            backend=backend or {}))
  return path


def env(**extra) -> dict:
  e = helpers.env(n_devices=1, **extra)
  return e


def run_sweep(config: str, sweep_dir: str, *flags, timeout: int = 300, env_extra=None):
  return subprocess.run([sys.executable, SWEEP, f"--config={config}", f"--sweep_dir={sweep_dir}", "--noprogress",
                         *flags], cwd=helpers.REPO, env=env(**(env_extra or {})), capture_output=True, text=True,
                        timeout=timeout)


def popen_sweep(config: str, sweep_dir: str, *flags):
  return subprocess.Popen([sys.executable, SWEEP, f"--config={config}", f"--sweep_dir={sweep_dir}", "--noprogress",
                           *flags], cwd=helpers.REPO, env=env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def manifest(sweep_dir: str) -> dict:
  with open(os.path.join(sweep_dir, "manifest.json")) as f:
    return json.load(f)
