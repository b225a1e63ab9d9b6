"""The run directory: the one contract between training and analysis.

Every run (transformer or toy) writes the same folder; `analysis/` reads nothing else.

```
<workdir>/
  config.json     written once at start (rewritten identically on resume):
                    {"schema": 1, "experiment": "lm" | "toy" | ...,
                     "summary": {...flat facts analysis needs, see SUMMARY_KEYS...},
                     "config": {...the fully resolved ml_collections config...},
                     "versions": {"jax": ..., "flax": ..., ...}, "git_sha": str | null}
  metrics.jsonl   one JSON object per logged step, strictly increasing "step". Deterministic values only,
                  so an interrupted-and-resumed run writes a byte-identical file to an unbroken one.
                    required: "step" (int, optimizer steps done), "tokens" (int, training tokens seen so far)
                    keys are "<group>/<name>" or "<group>/<task>/<metric>":
                      train/loss, train/lr, train/grad_norm          scalars of the training batch
                      eval/background/loss                            held-out background loss (nats/token)
                      eval/<task>/{loss,loss_bits,accuracy,n}         per-task held-out evaluation
                      data/<task>/count                               realized instances seen so far
                      toy/<task>/{loss_norm,signal,signal_norm}       toy per-task metrics
                      toy/{delta_F,grad_F_norm,cos_rF}                toy global metrics
                      interference/<task>/{cos_g_gr,...}              gradient-interference metrics
                      probe/<task>/<metric>                           representation probes
                      retention/<task>/{loss_before,gain,decay,...}   loss around injections (burst/withhold)
                      (the last three: scaling/mechanisms/settings.py, at the steps documented there)
  perf.jsonl      wall-clock figures (step, seconds, tokens_per_s, ...) kept apart because they are not
                  reproducible.
  status.json     {"state": "running" | "done" | "failed", "step": int, "total_steps": int,
                   "reason": str | null, "updated": ISO time}
  checkpoints/    orbax CheckpointManager folder (train state + data-iterator state)
```

A sweep is a folder of run dirs plus `manifest.json` (written by `launch/sweep.py`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import subprocess
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from scaling.core.errors import RunDirError

SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
PERF_FILE = "perf.jsonl"
STATUS_FILE = "status.json"
CHECKPOINT_DIR = "checkpoints"

STATES = ("running", "done", "failed")

# Flat facts about a run that analysis needs without understanding every config layout. Keys that do not
# apply to an experiment are left out (e.g. toy runs have no vocab).
SUMMARY_KEYS = {
    "size": "ladder name (e.g. '1M') or a free label",
    "n_params": "total trainable parameters",
    "n_params_non_embedding": "parameters outside token embedding / unembedding (the scaling-law N)",
    "width": "toy encoder width N",
    "seed": "the run's seed",
    "total_steps": "planned optimizer steps",
    "batch_size": "global sequences (or toy samples) per step",
    "seq_len": "tokens per sequence (1 for the toy)",
    "tokens_per_step": "batch_size * seq_len",
    "flops_per_token": "training FLOPs per token (6N + attention, see scaling.lm.model.flops_per_token)",
    "tasks": "{task: {frequency_per_batch, frequency_per_token, schedule, ...}} for injected tasks",
}




def now_iso() -> str:
  return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def atomic_write_text(path: str, text: str) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _json_default(x):
  # numpy / jax scalars and arrays end up here.
  if hasattr(x, "tolist"):
    return x.tolist()
  if dataclasses.is_dataclass(x):
    return dataclasses.asdict(x)
  raise TypeError(f"not JSON serializable: {type(x).__name__}")


def dumps(obj: Any) -> str:
  """Canonical JSON: sorted keys, NaN/Inf kept as JSON's NaN/Infinity extension (Python reads it back)."""
  return json.dumps(obj, sort_keys=True, default=_json_default)


def git_sha(path: str | None = None) -> str | None:
  try:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path or os.path.dirname(__file__),
                         capture_output=True, text=True, timeout=5)
    return out.stdout.strip() or None if out.returncode == 0 else None
  except (OSError, subprocess.SubprocessError):
    return None


def package_versions() -> dict[str, str]:
  out = {}
  for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy"):
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      pass
  return out


class RunDir:
  """Writer/reader for one run directory. All writes are atomic or append-only."""

  def __init__(self, path: str):
    self.path = os.path.abspath(path)

  def file(self, name: str) -> str:
    return os.path.join(self.path, name)

  @property
  def checkpoint_dir(self) -> str:
    return self.file(CHECKPOINT_DIR)

  # ---- config -------------------------------------------------------------------------------------------
  def write_config(self, experiment: str, config: dict, summary: dict) -> None:
    unknown = set(summary) - set(SUMMARY_KEYS)
    if unknown:
      raise RunDirError(f"summary has keys {sorted(unknown)} not in rundir.SUMMARY_KEYS; add them there first")
    os.makedirs(self.path, exist_ok=True)
    payload = {"schema": SCHEMA_VERSION, "experiment": experiment, "summary": summary, "config": config,
               "versions": package_versions(), "git_sha": git_sha()}
    atomic_write_text(self.file(CONFIG_FILE), json.dumps(payload, indent=2, sort_keys=True,
                                                          default=_json_default) + "\n")

  def read_config(self) -> dict:
    path = self.file(CONFIG_FILE)
    if not os.path.exists(path):
      raise RunDirError(f"{path}: missing; this folder is not a run dir (did training start?)")
    try:
      with open(path) as f:
        cfg = json.load(f)
    except json.JSONDecodeError as e:
      raise RunDirError(f"{path}: not valid JSON ({e}); rerun the run to rewrite it") from e
    for key in ("schema", "experiment", "summary", "config"):
      if key not in cfg:
        raise RunDirError(f"{path}: missing key {key!r}; written by an incompatible version, rerun the run")
    if cfg["schema"] != SCHEMA_VERSION:
      raise RunDirError(f"{path}: schema {cfg['schema']} but this code reads {SCHEMA_VERSION}")
    return cfg

  # ---- status -------------------------------------------------------------------------------------------
  def write_status(self, state: str, step: int, total_steps: int, reason: str | None = None, **extra) -> None:
    if state not in STATES:
      raise ValueError(f"state must be one of {STATES}, got {state!r}")
    os.makedirs(self.path, exist_ok=True)
    payload = {"state": state, "step": int(step), "total_steps": int(total_steps), "reason": reason,
               "updated": now_iso(), **extra}
    atomic_write_text(self.file(STATUS_FILE), dumps(payload) + "\n")

  def read_status(self) -> dict | None:
    path = self.file(STATUS_FILE)
    if not os.path.exists(path):
      return None
    try:
      with open(path) as f:
        status = json.load(f)
    except json.JSONDecodeError as e:
      raise RunDirError(f"{path}: not valid JSON ({e}); delete it and rerun the run") from e
    if status.get("state") not in STATES:
      raise RunDirError(f"{path}: state {status.get('state')!r} is not one of {STATES}")
    return status

  # ---- metrics ------------------------------------------------------------------------------------------
  def append_metrics(self, records: Iterable[dict], name: str = METRICS_FILE) -> None:
    lines = []
    for rec in records:
      if "step" not in rec:
        raise ValueError("every metrics record needs a 'step'")
      lines.append(dumps(rec) + "\n")
    if not lines:
      return
    os.makedirs(self.path, exist_ok=True)
    with open(self.file(name), "a") as f:
      f.writelines(lines)
      f.flush()

  def truncate_metrics(self, last_step: int, name: str = METRICS_FILE) -> int:
    """Drops records with step > last_step and any torn last line (a kill mid-write). Returns lines kept.

    Used on resume: the steps after the restored checkpoint are recomputed, bit-identically, so they are
    rewritten rather than duplicated.
    """
    path = self.file(name)
    if not os.path.exists(path):
      return 0
    kept = []
    with open(path) as f:
      for line in f:
        if not line.endswith("\n"):
          break  # torn write
        try:
          rec = json.loads(line)
        except json.JSONDecodeError:
          break
        if rec.get("step", math.inf) > last_step:
          break
        kept.append(line)
    atomic_write_text(path, "".join(kept))
    return len(kept)

  def read_metrics(self, name: str = METRICS_FILE, strict: bool = True) -> list[dict]:
    """Parses metrics.jsonl. strict: a malformed line is an error; else a torn last line is ignored."""
    path = self.file(name)
    if not os.path.exists(path):
      return []
    out = []
    with open(path) as f:
      lines = f.readlines()
    for i, line in enumerate(lines):
      try:
        rec = json.loads(line)
      except json.JSONDecodeError as e:
        if not strict and i == len(lines) - 1:
          break
        raise RunDirError(f"{path}:{i + 1}: not valid JSON ({e}); the run was probably killed mid-write, "
                          "resume it to repair the file") from e
      if not isinstance(rec, dict) or "step" not in rec:
        raise RunDirError(f"{path}:{i + 1}: record without 'step'")
      if out and rec["step"] <= out[-1]["step"]:
        raise RunDirError(f"{path}:{i + 1}: step {rec['step']} does not increase (previous {out[-1]['step']})")
      out.append(rec)
    return out


def is_run_dir(path: str) -> bool:
  return os.path.isfile(os.path.join(path, CONFIG_FILE))


def split_metric_key(key: str) -> tuple[str, str | None, str] | None:
  """'eval/cmp/accuracy' -> ('eval', 'cmp', 'accuracy'); 'train/loss' -> ('train', None, 'loss')."""
  parts = key.split("/")
  if len(parts) == 2:
    return parts[0], None, parts[1]
  if len(parts) == 3:
    return parts[0], parts[1], parts[2]
  return None
