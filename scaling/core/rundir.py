"""The run directory: the one contract between training and analysis.

Every run (transformer or toy) writes the same folder; `analysis/` reads nothing else.

```
<workdir>/
  config.json     written once at start (rewritten identically on resume):
                    {"schema": 1, "experiment": "lm" | "toy" | ...,
                     "summary": {...flat facts analysis needs, see SUMMARY_KEYS...},
                     "config": {...the fully resolved ml_collections config...},
                     "versions": {"jax": ..., "flax": ..., ...}, "git_sha": str | null,
                     "history": [{"time", "step", "changes": {key: [old, new]}, "how"}]  (optional: settings
                                 changed on resume, e.g. `--extend` of train.steps; absent when never changed)}
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
  .lock           held (flock) by the one process writing this run dir (scaling/core/runlock.py)
```

A sweep is a folder of run dirs plus `manifest.json` (written by `launch/sweep.py`).

Integrity on resume (`RunDir.resume_metrics`): a torn *last* line of metrics.jsonl (a kill mid-write) is dropped
and the records after the restored checkpoint are rewritten by the resumed run; anything else -- a torn or
unreadable line in the middle, steps out of order, a missing file or missing records up to the checkpoint --
stops with one line naming `python -m scaling.core.repair --workdir W` (scaling/core/repair.py), which cuts the
file to its good part, keeps a backup, and sets aside the checkpoints the file no longer covers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import subprocess
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from scaling.core import runlock
from scaling.core.errors import MetricsError, RunDirError

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
# Files whose every record must survive a resume (deterministic); perf.jsonl is wall-clock and only trimmed.
STRICT_FILES = (METRICS_FILE, "retention.jsonl")


def repair_command(path: str) -> str:
  return f"python -m scaling.core.repair --workdir {path}"


def now_iso() -> str:
  return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def atomic_write_text(path: str, text: str) -> None:
  """Writes a sibling temp file and renames it over path: readers see the old or the new file, never a part.
  On failure (a full disk, a stop signal) the temp file is removed and path is left as it was."""
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with open(tmp, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


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


@dataclasses.dataclass
class MetricsScan:
  """What a JSONL metrics file holds: its good prefix and the first problem after it (scan_metrics)."""

  path: str
  exists: bool
  lines: list[str]  # the good prefix, each line with its "\n"
  steps: list[int]  # their steps, strictly increasing
  problem: str | None = None  # "line N: ..." for the first bad line, None when the whole file is good
  torn_tail: bool = False  # the only problem is an unfinished last line (a kill mid-write)

  @property
  def last_step(self) -> int | None:
    return self.steps[-1] if self.steps else None


def scan_metrics(path: str) -> MetricsScan:
  """Reads a JSONL file of {"step": int, ...} records up to the first torn, unreadable or out-of-order line."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except FileNotFoundError:
    return MetricsScan(path, False, [], [])
  lines = raw.decode("utf-8", errors="replace").splitlines(keepends=True)
  scan = MetricsScan(path, True, [], [])
  for i, line in enumerate(lines):
    last = i == len(lines) - 1
    try:
      rec = json.loads(line)
    except json.JSONDecodeError:
      rec = None
    if not line.endswith("\n") or rec is None:
      what = "unfinished line" if rec is not None else "not valid JSON"
      scan.problem = f"line {i + 1}: {what}" + (" (unfinished)" if rec is None and not line.endswith("\n") else "")
      scan.torn_tail = last
      return scan
    step = rec.get("step") if isinstance(rec, dict) else None
    if not isinstance(step, int) or isinstance(step, bool):
      scan.problem = f"line {i + 1}: record without an integer 'step'"
      return scan
    if scan.steps and step <= scan.steps[-1]:
      scan.problem = f"line {i + 1}: step {step} does not increase (previous {scan.steps[-1]})"
      return scan
    scan.lines.append(line)
    scan.steps.append(step)
  return scan


@dataclasses.dataclass(frozen=True)
class MetricsResume:
  """What resume_metrics did: records kept (<= the checkpoint), records dropped (recomputed next), torn line."""

  kept: int
  dropped: int
  dropped_torn_line: bool


class RunDir:
  """Writer/reader for one run directory. All writes are atomic or append-only."""

  def __init__(self, path: str):
    self.path = os.path.abspath(path)

  def file(self, name: str) -> str:
    return os.path.join(self.path, name)

  @property
  def checkpoint_dir(self) -> str:
    return self.file(CHECKPOINT_DIR)

  # ---- lock ---------------------------------------------------------------------------------------------
  def lock(self, slot: int = 0, wait_s: float = 2.0):
    """Context manager holding this run dir's exclusive lock (scaling/core/runlock.py); creates the dir.

    Raises RunDirLocked (a ConfigError: exit 2) naming the holder's host and pid, or ConfigError when the path
    is a file or not writable. Re-entrant within a process. slot: the process index of a multi-process run."""
    return runlock.hold(self.path, slot, wait_s)

  def lock_holder(self, slot: int = 0) -> dict | None:
    """{"host", "pid", "started"} of the live process holding the lock, else None. Creates nothing."""
    return runlock.holder(self.path, slot)

  # ---- config -------------------------------------------------------------------------------------------
  def write_config(self, experiment: str, config: dict, summary: dict, history_entry: dict | None = None) -> None:
    """history_entry: a change made on resume ({"step", "changes": {key: [old, new]}, "how"}), appended to the
    "history" already in config.json (kept across rewrites)."""
    unknown = set(summary) - set(SUMMARY_KEYS)
    if unknown:
      raise RunDirError(f"summary has keys {sorted(unknown)} not in rundir.SUMMARY_KEYS; add them there first")
    os.makedirs(self.path, exist_ok=True)
    history = self._history()
    if history_entry is not None:
      history.append({"time": now_iso(), **history_entry})
    payload = {"schema": SCHEMA_VERSION, "experiment": experiment, "summary": summary, "config": config,
               "versions": package_versions(), "git_sha": git_sha()}
    if history:
      payload["history"] = history
    atomic_write_text(self.file(CONFIG_FILE), json.dumps(payload, indent=2, sort_keys=True,
                                                          default=_json_default) + "\n")

  def _history(self) -> list:
    try:
      with open(self.file(CONFIG_FILE)) as f:
        old = json.load(f)
    except (OSError, ValueError):
      return []
    return list(old.get("history") or []) if isinstance(old, dict) else []

  def read_config(self) -> dict:
    path = self.file(CONFIG_FILE)
    if not os.path.exists(path):
      raise RunDirError(f"{path}: missing; this folder is not a run dir (did training start?)")
    fix = f"run `{repair_command(self.path)}` to set it aside (the trainer writes it again from its flags)"
    try:
      with open(path) as f:
        cfg = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise RunDirError(f"{path}: not valid JSON ({e}) — {fix}") from None
    if not isinstance(cfg, dict):
      raise RunDirError(f"{path}: not a JSON object — {fix}")
    for key in ("schema", "experiment", "summary", "config"):
      if key not in cfg:
        raise RunDirError(f"{path}: missing key {key!r}; written by an incompatible version — {fix}")
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
    fix = f"run `{repair_command(self.path)}` to set it aside (the trainer writes a new one)"
    try:
      with open(path) as f:
        status = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise RunDirError(f"{path}: not valid JSON ({e}) — {fix}") from None
    if not isinstance(status, dict) or status.get("state") not in STATES:
      got = status.get("state") if isinstance(status, dict) else type(status).__name__
      raise RunDirError(f"{path}: state {got!r} is not one of {STATES} — {fix}")
    for key in ("step", "total_steps"):
      if not isinstance(status.get(key), int) or isinstance(status.get(key), bool):
        raise RunDirError(f"{path}: {key!r} is {status.get(key)!r}, not an integer — {fix}")
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

  def resume_metrics(self, step: int | None, *, name: str = METRICS_FILE, expected_steps: Iterable[int] | None = None,
                     total_steps: int | None = None, strict: bool | None = None) -> MetricsResume:
    """Makes `name` end at the restored checkpoint `step` (None: no checkpoint, start from scratch).

    Records after `step` are dropped (the resumed run rewrites them identically), and so is a torn last line.
    strict (default: for STRICT_FILES) raises MetricsError, touching nothing, when the file cannot be resumed
    without losing or inventing records: a bad line before the end, steps out of order, a missing file while a
    checkpoint exists, a record missing for one of `expected_steps` (the steps <= `step` at which the loop
    writes a record; when None, only a missing file is caught), or records beyond `total_steps`. The message
    names the repair command. Not strict (perf.jsonl): cut at the first bad line, no error."""
    strict = name in STRICT_FILES if strict is None else strict
    path = self.file(name)
    scan = scan_metrics(path)
    if not scan.exists:
      if strict and step and name == METRICS_FILE and (expected_steps is None or any(s <= step for s in
                                                                                       expected_steps)):
        raise MetricsError(f"{path}: missing although the run has a checkpoint at step {step}; resuming would "
                           f"leave steps <= {step} without records — run `{repair_command(self.path)}` (sets the "
                           "checkpoints aside, so the run restarts from step 0), then rerun")
      return MetricsResume(0, 0, False)
    if strict and scan.problem and not scan.torn_tail:
      raise MetricsError(f"{path}: {scan.problem}; resuming would lose the records after it — run "
                         f"`{repair_command(self.path)}` (cuts the file there, keeps a backup), then rerun")
    limit = -1 if step is None else step
    kept = sum(1 for s in scan.steps if s <= limit)
    if strict and step is not None:
      self._check_coverage(path, scan.steps[:kept], step, expected_steps)
      if total_steps is not None and scan.last_step is not None and scan.last_step > total_steps:
        raise MetricsError(f"{path}: records up to step {scan.last_step} but the run has {total_steps} steps — "
                           f"the file belongs to another run; run `{repair_command(self.path)}` or use a new "
                           "--workdir")
    if kept != len(scan.lines) or scan.problem:
      atomic_write_text(path, "".join(scan.lines[:kept]))
    return MetricsResume(kept, len(scan.lines) - kept, bool(scan.problem))

  def _check_coverage(self, path: str, steps: list[int], step: int, expected_steps) -> None:
    if expected_steps is None:
      return
    have = set(steps)
    missing = sorted(s for s in set(expected_steps) if s <= step and s not in have)
    if missing:
      shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
      raise MetricsError(f"{path}: no records for step(s) {shown} although the checkpoint is at step {step} — run "
                         f"`{repair_command(self.path)}` (keeps a backup, sets aside the checkpoints past the "
                         "last covered step), then rerun")

  def truncate_metrics(self, last_step: int, name: str = METRICS_FILE) -> int:
    """resume_metrics(last_step or None when < 0) for the loops written before it; returns lines kept."""
    return self.resume_metrics(last_step if last_step >= 0 else None, name=name).kept

  def read_metrics(self, name: str = METRICS_FILE, strict: bool = True) -> list[dict]:
    """Parses metrics.jsonl. strict: a malformed line is an error; else a torn last line is ignored."""
    path = self.file(name)
    scan = scan_metrics(path)
    if scan.problem and (strict or not scan.torn_tail):
      raise RunDirError(f"{path}:{scan.problem.removeprefix('line ')} — run `{repair_command(self.path)}` "
                        "(keeps a backup), then resume the run to recompute what it cut")
    return [json.loads(line) for line in scan.lines]


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
