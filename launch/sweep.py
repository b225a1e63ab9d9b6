"""Run a sweep: `python launch/sweep.py --config=configs/sweeps/demo.py [--sweep_dir=DIR] [--backend=local]`.

Expands the sweep config (launch/expand.py) into runs with stable ids, validates every run before anything
starts, and runs what is missing on the chosen backend. Re-running the same command never redoes a finished
run: it resumes interrupted ones, starts new ones, and leaves failed ones (with their reason) alone unless
--retry_failed. At the end it builds the analysis report when `analysis.report` exists.

  --dry_run       print the run table (size, N, tokens, FLOPs, estimated time) and the exact commands; write nothing
  --list          print every run's status from the manifest and run dirs; change nothing
  --only_missing  start only runs that never started (leave interrupted ones for later)
  --retry_failed  also rerun failed runs (their run dirs are kept, so the trainer resumes from a checkpoint)
  --max_parallel  runs at a time (local) / array task limit (slurm) / TPU VMs used (tpu)
  --backend       local (default) | slurm | tpu; settings come from the sweep config's backend.<name>
  --no_wait       slurm: submit and return; rerun the command (or --list) to follow up
  --no_report     skip the analysis report

Exit codes: 0 every run done (or nothing asked); 1 some run failed or is unfinished; 2 bad config or flags (one
`error:` line, nothing touched); 130 interrupted (state saved; rerun to resume).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import subprocess
import sys

if __package__ in (None, ""):  # run as `python launch/sweep.py`: make the repository importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launch import expand as expand_lib
from launch import manifest as manifest_lib
from launch import (
  plan,  # noqa: E402
  reconcile,
)
from launch.backends import common as backend_common
from launch.backends import registry as backends
from launch.configfile import REPO, SweepError, load  # noqa: E402
from scaling.core import cli
from scaling.core.errors import ConfigError, RunDirError


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line, exit 2 (argparse prints the whole usage otherwise)
    print(f"error: {message} (see --help)", file=sys.stderr)
    sys.exit(2)


def parse_args(argv):
  p = _Parser(prog="launch/sweep.py", description=__doc__.split("\n\n")[0],
              epilog=__doc__.strip().split("\n\n")[-1], formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", required=True, help="sweep config file[:arg], e.g. configs/sweeps/demo.py")
  p.add_argument("--sweep_dir", default=None, help="default: sweeps/<name> in the repository")
  p.add_argument("--backend", default="local", help="local (default) | slurm | tpu")
  p.add_argument("--dry_run", action="store_true", help="print the run table and commands; write nothing")
  p.add_argument("--list", action="store_true", help="print every run's status; change nothing")
  p.add_argument("--only_missing", action="store_true", help="start only runs that never started")
  p.add_argument("--retry_failed", action="store_true", help="also rerun failed runs")
  p.add_argument("--max_parallel", type=int, default=None,
                 help="runs at a time (local) / array throttle (slurm) / TPU VMs used (tpu)")
  p.add_argument("--no_wait", action="store_true", help="slurm: submit and return")
  p.add_argument("--no_report", action="store_true", help="skip the analysis report")
  p.add_argument("--noprogress", action="store_true", help="no progress bar")
  return p.parse_args(argv)


def select(state, only_missing: bool, retry_failed: bool) -> tuple[list[dict], list[str]]:
  """Records to start now, and one note per kind of run left alone."""
  todo, left = [], {"done": 0, "running": 0, "failed": 0, "interrupted": 0}
  for rec in state.runs:
    status = rec["status"]
    resumable = manifest_lib.is_resumable(rec)
    if status in ("pending", "missing") or (status == "failed" and (retry_failed or (resumable and
                                                                                       not only_missing))):
      todo.append(rec)
    elif status == "failed":
      left["interrupted" if resumable else "failed"] += 1
    else:
      left[status] += 1
  notes = []
  if left["done"]:
    notes.append(f"{left['done']} done")
  if left["running"]:
    notes.append(f"{left['running']} already running")
  if left["failed"]:
    notes.append(f"{left['failed']} failed (left alone; --retry_failed repairs and reruns them)")
  if left["interrupted"]:
    notes.append(f"{left['interrupted']} interrupted (left for later: --only_missing)")
  return todo, notes


def status_table(state) -> str:
  keys = []
  for rec in state.runs:
    keys += [k for k in rec["varying"] if k not in keys]
  names = expand_lib.short_names(keys)
  body = []
  for rec in state.runs:
    step = f"{rec['step']}/{rec['total_steps']}" if rec.get("total_steps") else ""
    reason = rec.get("reason") or ""
    if rec["status"] == "running" and rec["jobs"] and rec["jobs"][-1].get("state"):
      reason = f"{rec['jobs'][-1]['backend']}: {rec['jobs'][-1]['state']}"  # e.g. slurm: PENDING Priority
    body.append([rec["id"], *(str(rec["varying"].get(k, "")) for k in keys), rec["status"], step,
                 str(rec["attempts"]), reason])
  return plan.table(["run", *(names[k] for k in keys), "status", "step", "tries", "reason"], body)


REPORT_MODULE = "analysis.report"  # its CLI: python -m analysis.report --sweep_dir DIR


def run_report(states) -> None:
  """Builds the analysis report of the sweep (and its companions: one report over all of them, written to the
  first) if the analysis package has one; never changes the sweep's exit status."""
  try:
    found = importlib.util.find_spec(REPORT_MODULE) is not None
  except (ImportError, ValueError):
    found = False
  if not found:
    print(f"report: skipped ({REPORT_MODULE} is not available in this checkout)")
    return
  log_path = os.path.join(states[0].dir, "logs", "report.log")
  cmd = [sys.executable, "-m", REPORT_MODULE, *(x for st in states for x in ("--sweep_dir", st.dir))]
  print(f"report: {' '.join(cmd[1:])}", flush=True)
  try:
    proc = subprocess.run(cmd, cwd=REPO, env=backend_common.child_env(), capture_output=True, text=True, timeout=3600)
    out, code = proc.stdout + proc.stderr, proc.returncode
  except (OSError, subprocess.TimeoutExpired) as e:
    out, code = f"{type(e).__name__}: {e}\n", -1
  with open(log_path, "w") as f:
    f.write(out)
  if code == 0:
    tail = [ln for ln in proc.stdout.splitlines() if ln.strip()][-3:]
    print("report: done" + "".join(f"\n  {ln}" for ln in tail) + f"\n  (output in {log_path})")
  else:
    print(f"report: FAILED (exit {code}): {manifest_lib.last_error_line(log_path)}; see {log_path}")


def retry_plan(state, todo: list[dict], apply: bool) -> list[dict]:
  """--retry_failed: prints what is rerun, repaired and left (and why); applies the repairs when `apply`.
  Returns the records to start (a run whose repair is impossible, e.g. its run dir is a file, is left)."""
  left = [r for r in state.runs if r["status"] == "running"]
  start = []
  for rec in todo:
    if reconcile.is_damaged(rec) and not os.path.isdir(state.workdir(rec)):
      left.append(rec)
    else:
      start.append(rec)
  lines, plans = reconcile.retry_plan(state, start, left)
  print("\n".join(lines), flush=True)
  if apply:
    for plan in plans:
      plan.apply()
  return start


def main(argv=None) -> int:
  def body() -> int:
    try:
      return _main(parse_args(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # `--dry_run | head`: the reader left; not an error of ours
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
      return 0

  return cli.guarded(body, bad_input=(ConfigError, RunDirError), then="resume the sweep")


@dataclasses.dataclass
class _Part:
  """One sweep of a launch (the sweep config's own, or one of its companions), expanded and validated."""

  sweep: expand_lib.Sweep
  runs: list
  dir: str
  backend: object
  rows: list


def _prepare(args, spec: str, parent: str | None = None) -> _Part:
  sweep = expand_lib.parse(load(spec), spec)
  runs = expand_lib.expand(sweep)
  if parent is not None:
    sweep_dir = os.path.join(parent, sweep.name)
  else:
    sweep_dir = os.path.abspath(args.sweep_dir or os.path.join(REPO, "sweeps", sweep.name))
  if os.path.exists(sweep_dir) and not os.path.isdir(sweep_dir):
    raise SweepError(f"--sweep_dir {sweep_dir} exists and is not a directory")
  backend = backends.make(args.backend, sweep.backend.get(args.backend, {}), sweep_dir, args.max_parallel)
  backend.validate(sweep, runs)
  rows = plan.rows_for(sweep, runs)  # also validates every transformer run's resolved config
  return _Part(sweep, runs, sweep_dir, backend, rows)


def _main(args) -> int:
  if args.backend not in backends.NAMES:
    raise SweepError(f"unknown backend {args.backend!r}; choose one of {', '.join(backends.NAMES)}")
  if args.dry_run and args.list:
    raise SweepError("--dry_run and --list do not combine; pick one")
  parts = [_prepare(args, args.config)]
  for spec in parts[0].sweep.companions:  # every part is validated before anything starts
    part = _prepare(args, spec, parent=parts[0].dir)
    if part.sweep.companions:
      raise SweepError(f"{spec}: a companion sweep of {args.config} cannot list companions of its own")
    if any(p.dir == part.dir for p in parts):
      raise SweepError(f"{spec}: two companions of {args.config} share the name {part.sweep.name!r}")
    parts.append(part)
  if args.dry_run or args.list:
    for i, part in enumerate(parts):
      if i:
        print(f"\ncompanion {part.sweep.spec}:")
      (_dry_run if args.dry_run else _list)(args, part)
    return 0
  states, codes = [], []
  for i, part in enumerate(parts):
    if i:
      print(f"\ncompanion {part.sweep.spec}:", flush=True)
    code, state, outcome = _launch(args, part)
    states.append(state)
    codes.append(code)
    if outcome == "interrupted":
      print("interrupted: rerun the same command to resume")
      return 130
    if outcome == "submitted":
      print("submitted; follow with --list, rerun the same command to wait for the jobs")
      return 0
  if not args.no_report and any(st.counts()["done"] for st in states):
    run_report(states)
  return max(codes)


def _dry_run(args, part: _Part) -> None:
  sweep, runs, backend = part.sweep, part.runs, part.backend
  existing = manifest_lib.read_manifest(part.dir)
  state = _state(part, existing)
  footer = plan.estimate(part.rows, args.backend, backend.s, part.dir, existing)
  statuses = {r["id"]: r["status"] for r in state.runs} if existing else None
  print(f"sweep {sweep.name}: {len(runs)} runs of {sweep.entrypoint} on {sweep.base} -> {part.dir}")
  print(plan.render(part.rows, statuses, footer, backend.max_parallel))
  todo, notes = select(state, args.only_missing, args.retry_failed)
  by_id = {r.id: r for r in runs}
  if args.retry_failed:
    todo = retry_plan(state, todo, apply=False)
  print(f"\na launch now would start {len(todo)} run(s)" + (f" ({', '.join(notes)})" if notes else "") + ":")
  if todo:
    print(backend.describe(sweep, [by_id[r["id"]] for r in todo], state))


def _list(args, part: _Part) -> None:
  existing = manifest_lib.read_manifest(part.dir)
  state = _state(part, existing)
  print(f"sweep {part.sweep.name} in {part.dir}" + ("" if existing else " (not launched yet)"))
  print(status_table(state))
  print(", ".join(f"{n} {s}" for s, n in state.counts().items() if n))


def _state(part: _Part, existing):
  state = manifest_lib.SweepState.plan(part.dir, part.sweep, part.runs, existing)
  for rec in state.runs:
    state.refresh(rec, _alive_checker(rec, part.backend, part.dir))
  return state


def _launch(args, part: _Part):
  """Runs what is missing of one part; returns (exit code, its SweepState, the backend's outcome)."""
  sweep, runs, backend, sweep_dir = part.sweep, part.runs, part.backend, part.dir
  os.makedirs(sweep_dir, exist_ok=True)
  with manifest_lib.SweepLock(sweep_dir):
    # Read under the lock: another launcher may have finished in between.
    state = _state(part, manifest_lib.read_manifest(sweep_dir))
    state.initialise_dir(sweep)
    state.m["backend"] = args.backend
    if state.m["removed_runs"]:
      print(f"note: {len(state.m['removed_runs'])} run(s) of earlier launches are no longer in the config; "
            "kept under removed_runs in the manifest, their run dirs untouched")
    todo, notes = select(state, args.only_missing, args.retry_failed)
    if args.retry_failed:
      todo = retry_plan(state, todo, apply=True)
    state.save()
    print(f"sweep {sweep.name}: {len(runs)} runs -> {sweep_dir}; starting {len(todo)}"
          + (f"; {', '.join(notes)}" if notes else ""), flush=True)
    by_id = {r.id: r for r in runs}
    outcome = "complete"
    if todo or getattr(backend, "has_live_jobs", lambda s: False)(state):
      outcome = backend.run(sweep, [by_id[r["id"]] for r in todo], state, progress=not args.noprogress,
                            **({"wait": not args.no_wait} if args.backend == "slurm" else {}))
    for rec in state.runs:
      state.refresh(rec, _alive_checker(rec, backend, sweep_dir))
    state.save()
  print(status_table(state))
  counts = state.counts()
  print(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f"  (manifest: {state.dir}/manifest.json)")
  return (0 if counts["done"] == len(state.runs) else 1), state, outcome


_OTHER_BACKENDS: dict = {}


def _alive_checker(rec, backend, sweep_dir):
  """Liveness by the backend that ran the run's last attempt (a sweep may switch backends)."""
  job = rec["jobs"][-1] if rec["jobs"] else None
  if job is None:
    return lambda r: False
  name = job.get("backend")
  if name == backend.name:
    return backend.alive
  if name not in _OTHER_BACKENDS:
    try:
      _OTHER_BACKENDS[name] = backends.make(name, {}, sweep_dir)
    except SweepError:
      _OTHER_BACKENDS[name] = None
  other = _OTHER_BACKENDS[name]
  return other.alive if other is not None else (lambda r: None)


if __name__ == "__main__":
  sys.exit(main())
