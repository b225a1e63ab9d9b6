"""The sweep directory and its `manifest.json`: every run, its overrides and its state.

```
<sweep_dir>/
  manifest.json       this module's file (schema below), rewritten atomically after every change
  sweep_config.json   the parsed sweep config (name, entrypoint, base, overrides, axes, seeds, backend)
  sweep_config.py     a copy of the sweep config file as it was at the last launch
  runs/<run id>/      one run dir per run (scaling/core/rundir.py contract)
  logs/<run id>.log   stdout+stderr of every attempt, appended (process i>0 of a multi-process run: .p<i>.log)
  slurm/              rendered sbatch scripts (slurm backend)
  .lock               held (flock) by the launcher working on this sweep dir
```

manifest.json (schema 1):
```
{"schema": 1, "sweep": str, "config": "file.py[:arg]", "entrypoint": str, "base": "file.py[:arg]",
 "created": ISO, "updated": ISO, "backend": str (last used),
 "runs": [{"id": str, "workdir": "runs/<id>" (relative to the sweep dir), "overrides": {dotted key: value},
           "varying": {axis key: value}, "status": "pending" | "running" | "done" | "failed",
           "reason": str | null, "step": int | null, "total_steps": int | null, "attempts": int,
           "jobs": [{"backend": str, "id": str, "attempt": int, "started": ISO, "ended": ISO | null,
                     "exit_code": int | null (negative: killed by that signal),
                     "status_before": the run's status.json `updated` when the attempt started,
                     ...backend fields: local host/pids; slurm array_job_id/task/script/state/restarts;
                     tpu name}]}],
 "removed_runs": [run records of earlier launches whose runs the config no longer produces]}
```
pending: never started (or no attempt left a trace); running: a live process or job (for SLURM also a queued
one: jobs[-1].state says which), or a run dir whose lock is held (a trainer this launcher lost track of:
reason "running elsewhere (...)"); done / failed as the run's status.json says; missing: the run dir it wrote is
gone (rerun by the next launch). The disk is checked on every refresh (launch/reconcile.py): a run dir with an
unreadable status.json / config.json or damaged metrics is failed with a reason starting "damaged:", which
`--retry_failed` repairs (scaling/core/repair.py) before rerunning.

Status comes from the run's own status.json whenever this attempt wrote it (the trainer is the authority); the manifest
adds what the run dir cannot know: a run that never started, was killed without a word (SIGKILL, a lost node:
reason "interrupted: ..."), or failed before writing status.json (reason "exit N: <last error line>"). A reason
starting with "interrupted" means resumable: the next launch reruns it and the trainer resumes; so does exit
code 130 (a stop request), whatever status.json says.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
from collections.abc import Callable
from typing import Any

from launch import reconcile
from launch.configfile import SweepError, find_file, split_spec
from scaling.core import rundir

SCHEMA = 1
MANIFEST = "manifest.json"
STATUSES = ("pending", "running", "done", "failed", "missing")


def now() -> str:
  return rundir.now_iso()


def atomic_write_json(path: str, obj: Any) -> None:
  rundir.atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


def read_manifest(sweep_dir: str, *, error: type[Exception] = SweepError, require_schema: bool = True,
                  fix: str = "move it away to rebuild it from the run dirs") -> dict | None:
  """manifest.json of a sweep dir, or None when there is none; the one reader for the launcher and analysis.

  Raises `error` (one line ending in `fix`) when the file is unreadable, not a manifest, or (require_schema)
  of another schema version. analysis/load.py passes its own error class and fix and tolerates other schemas."""
  path = os.path.join(sweep_dir, MANIFEST)
  try:
    with open(path) as f:
      m = json.load(f)
  except FileNotFoundError:
    return None
  except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
    raise error(f"{path}: not valid JSON ({e}) — {fix}") from None
  if not isinstance(m, dict) or not isinstance(m.get("runs"), list) or not all(isinstance(r, dict)
                                                                             for r in m["runs"]):
    raise error(f"{path}: no 'runs' list of records; this is not a launch/sweep.py manifest — {fix}")
  if require_schema and m.get("schema") != SCHEMA:
    raise error(f"{path}: schema {m.get('schema')!r}, this launcher writes {SCHEMA} — {fix}")
  if require_schema:
    bad = [r.get("id", "?") for r in m["runs"] if r.get("status") not in STATUSES or not isinstance(
        r.get("jobs"), list) or not isinstance(r.get("attempts"), int) or "workdir" not in r]
    if bad:
      raise error(f"{path}: run {bad[0]!r} has a malformed record — {fix}")
  return m


def is_resumable(rec: dict) -> bool:
  return rec["status"] == "failed" and (rec.get("reason") or "").startswith("interrupted")


def new_record(run) -> dict:
  return {"id": run.id, "workdir": f"runs/{run.id}", "overrides": run.overrides, "varying": run.varying,
          "status": "pending", "reason": None, "step": None, "total_steps": None, "attempts": 0, "jobs": []}


class SweepLock:
  """One launcher per sweep dir at a time (flock: released by the kernel when the process dies)."""

  def __init__(self, sweep_dir: str):
    self.path = os.path.join(sweep_dir, ".lock")
    self.fd = None

  def __enter__(self):
    self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(self.fd, 200, 0).decode(errors="replace").strip()
      os.close(self.fd)
      raise SweepError(f"another launcher ({holder or 'unknown pid'}) is working on "
                       f"{os.path.dirname(self.path)}; wait for it or stop it first") from None
    os.ftruncate(self.fd, 0)
    os.pwrite(self.fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
    return self

  def __exit__(self, *exc):
    fcntl.flock(self.fd, fcntl.LOCK_UN)
    os.close(self.fd)


class SweepState:
  """The manifest in memory plus the paths of one sweep dir."""

  def __init__(self, sweep_dir: str, manifest: dict):
    self.dir = os.path.abspath(sweep_dir)
    self.m = manifest
    self.by_id = {r["id"]: r for r in manifest["runs"]}

  # ---- construction -------------------------------------------------------------------------------------
  @classmethod
  def plan(cls, sweep_dir: str, sweep, runs, existing: dict | None = None) -> SweepState:
    """Merges the expanded runs with an existing manifest (kept: attempts, jobs, reasons). Writes nothing."""
    if existing is not None and existing.get("sweep") != sweep.name:
      raise SweepError(f"{sweep_dir} holds sweep {existing.get('sweep')!r}, not {sweep.name!r}; "
                       "use another --sweep_dir")
    old = {r["id"]: r for r in (existing or {}).get("runs", [])}
    old.update({r["id"]: r for r in (existing or {}).get("removed_runs", [])})
    records = []
    for run in runs:
      rec = old.pop(run.id, None) or new_record(run)
      rec["overrides"], rec["varying"] = run.overrides, run.varying
      records.append(rec)
    m = {"schema": SCHEMA, "sweep": sweep.name, "config": sweep.spec, "entrypoint": sweep.entrypoint,
         "base": sweep.base, "created": (existing or {}).get("created") or now(), "updated": now(),
         "backend": (existing or {}).get("backend"), "runs": records, "removed_runs": list(old.values())}
    return cls(sweep_dir, m)

  def save(self) -> None:
    self.m["updated"] = now()
    atomic_write_json(os.path.join(self.dir, MANIFEST), self.m)

  def initialise_dir(self, sweep) -> None:
    for sub in ("runs", "logs"):
      os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
    parsed = {"name": sweep.name, "entrypoint": sweep.entrypoint, "base": sweep.base,
              "overrides": sweep.overrides, "axes": [dict(g) for g in sweep.groups], "seeds": sweep.seeds,
              "derived": getattr(sweep.derived, "__qualname__", None), "backend": sweep.backend,
              "config": sweep.spec, "companions": list(sweep.companions)}
    atomic_write_json(os.path.join(self.dir, "sweep_config.json"), parsed)
    src = find_file(split_spec(sweep.spec)[0])
    shutil.copyfile(src, os.path.join(self.dir, "sweep_config.py.tmp"))
    os.replace(os.path.join(self.dir, "sweep_config.py.tmp"), os.path.join(self.dir, "sweep_config.py"))

  # ---- paths --------------------------------------------------------------------------------------------
  @property
  def runs(self) -> list[dict]:
    return self.m["runs"]

  def workdir(self, rec: dict) -> str:
    return os.path.join(self.dir, rec["workdir"])

  def log_path(self, rec: dict, process: int = 0) -> str:
    suffix = "" if process == 0 else f".p{process}"
    return os.path.join(self.dir, "logs", f"{rec['id']}{suffix}.log")

  # ---- state --------------------------------------------------------------------------------------------
  def _read_status(self, rec: dict) -> dict | None:
    return rundir.RunDir(self.workdir(rec)).read_status()

  def start_attempt(self, rec: dict, job: dict) -> dict:
    try:
      before = self._read_status(rec)
    except rundir.RunDirError:
      before = None
    rec["attempts"] += 1
    # status.json's timestamp at launch: a different one later means this attempt wrote it (no clock compare,
    # so clock skew between this machine and a compute node cannot fool it).
    job = {"backend": job.pop("backend"), "id": job.pop("id"), "attempt": rec["attempts"], "started": now(),
           "ended": None, "exit_code": None, **job, "status_before": (before or {}).get("updated")}
    rec["jobs"].append(job)
    rec["status"], rec["reason"] = "running", None
    return job

  @staticmethod
  def _fresh(st: dict | None, job: dict | None) -> bool:
    """Was status.json written by this attempt (or is there no attempt to compare with)?"""
    if st is None:
      return False
    return job is None or "status_before" not in job or st.get("updated") != job["status_before"]

  def _status_quietly(self, rec: dict) -> dict | None:
    try:
      return self._read_status(rec)
    except rundir.RunDirError:
      return None

  def refresh(self, rec: dict, alive: Callable[[dict], bool | None]) -> None:
    """Updates status/reason/step from the run dir. alive(rec): is its last job still running (None: unknown)?"""
    job = rec["jobs"][-1] if rec["jobs"] else None
    live = alive(rec) if job else False
    wd = self.workdir(rec)
    holder = rundir.RunDir(wd).lock_holder() if os.path.isdir(wd) else None
    if live or holder is not None:
      rec["status"] = "running"
      rec["reason"] = None if live or holder is None else (
          f"running elsewhere ({reconcile.holder_text(holder)} holds the run dir lock)")
      st = self._status_quietly(rec)
      if st is not None and st["state"] == "running" and (holder is not None or self._fresh(st, job)):
        rec["step"], rec["total_steps"] = st.get("step"), st.get("total_steps")
      return
    existed = rec["status"] in ("done", "missing") or rec.get("step") is not None
    finding = reconcile.inspect(wd, existed)
    if finding is not None:
      if finding.kind == "missing" and live is None:
        return  # another machine may be about to write it
      rec["status"] = "missing" if finding.kind == "missing" else "failed"
      rec["reason"] = finding.reason
      return
    st = self._read_status(rec)
    if not self._fresh(st, job):
      # Nothing from this attempt in the run dir: keep what the launcher recorded (pending, or the exit code).
      if rec["status"] == "running" and live is False:
        rec["status"] = "failed"
        rec["reason"] = "interrupted: stopped before the run wrote its status; rerun to start it again"
      elif rec["status"] == "missing":
        rec["status"], rec["reason"] = "pending", None
      return
    rec["step"], rec["total_steps"] = st.get("step"), st.get("total_steps")
    if st["state"] == "running":
      if live is None:
        rec["status"], rec["reason"] = "running", None
      elif not (rec["status"] == "failed" and (rec.get("reason") or "").startswith("interrupted")):
        # (an interrupted reason recorded at exit, e.g. the signal that killed it, says more than this one)
        rec["status"] = "failed"
        rec["reason"] = (f"interrupted: stopped at step {st.get('step')} of {st.get('total_steps')} with no live "
                         "process or job; rerun to resume from its last checkpoint")
      return
    rec["status"], rec["reason"] = st["state"], st.get("reason")

  def finish(self, rec: dict, job: dict, exit_code: int | None, detail: str = "") -> None:
    """Records the end of an attempt: exit code (negative: killed by that signal) + the run dir's word."""
    job["ended"], job["exit_code"] = now(), exit_code
    if rec["status"] == "failed" and (rec.get("reason") or "").startswith("interrupted"):
      rec["status"] = "running"  # this attempt's own outcome is decided below
    self.refresh(rec, alive=lambda r: False)
    if exit_code is None or rec["status"] in ("done", "running", "missing") or reconcile.is_damaged(rec):
      return  # (running: another process holds the run dir; damaged: that reason says what to repair)
    try:
      fresh = self._fresh(self._read_status(rec), job)
    except rundir.RunDirError:
      fresh = False
    if exit_code < 0:
      try:
        sig = signal.Signals(-exit_code).name
      except ValueError:
        sig = f"signal {-exit_code}"
      at = f" at step {rec['step']}" if fresh and rec.get("step") is not None else ""
      rec["status"] = "failed"
      rec["reason"] = f"interrupted: killed by {sig}{at}; rerun to resume from its last checkpoint"
    elif exit_code == 130 and fresh and not is_resumable(rec):
      rec["status"] = "failed"
      rec["reason"] = f"interrupted: exit 130 ({rec.get('reason') or 'stop request'}); rerun to resume"
    elif not fresh:
      if exit_code == 0:
        # An entrypoint that writes no status.json (or one this machine cannot see): the exit code is all we have.
        rec["status"], rec["reason"] = "done", "exit 0 (no status.json from this attempt)"
      elif exit_code == 130:
        rec["status"], rec["reason"] = "failed", "interrupted: exit 130 (no status.json from this attempt); rerun"
      else:
        rec["status"], rec["reason"] = "failed", f"exit {exit_code}{': ' + detail if detail else ''}"

  def counts(self) -> dict[str, int]:
    out = {s: 0 for s in STATUSES}
    for r in self.runs:
      out[r["status"]] += 1
    return out


def last_error_line(log_path: str, limit: int = 300) -> str:
  """The most telling line at the end of a log: the last 'error:'/Error line, else the last line."""
  try:
    with open(log_path, "rb") as f:
      f.seek(0, os.SEEK_END)
      f.seek(max(0, f.tell() - 20000))
      lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
  except OSError:
    return ""
  lines = [ln for ln in lines if not ln.startswith("====")]
  for ln in reversed(lines):
    if ln.startswith("error:") or "Error" in ln.split(":")[0]:
      return ln[:limit]
  return lines[-1][:limit] if lines else ""
