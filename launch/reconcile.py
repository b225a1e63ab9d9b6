"""The manifest checked against the disk: what a run dir really holds, whatever manifest.json remembers.

`inspect(workdir, finished)` looks at one run dir (and, for a toy program dir, its member run dirs):
  held      its lock is held (scaling/core/runlock.py): a trainer is writing it, maybe one this launcher lost
            track of (launcher killed, another machine) -> the run counts as running, nothing is started beside it
  missing   no run dir where one existed (deleted, moved) -> the run is rerun
  damaged   status.json or config.json unreadable, metrics.jsonl torn in the middle or out of order, or (for a
            run that says done) torn at the end or missing -> failed with the reason; `--retry_failed` repairs
            it with scaling/core/repair.py (printing the plan first), then reruns it, and the trainer resumes
Clean metrics files are remembered by (size, mtime) for the life of the process, so refreshing a sweep many
times re-reads only what changed.
"""

from __future__ import annotations

import dataclasses
import os

from scaling.core import repair, rundir

DAMAGED = "damaged: "
_clean: dict[str, tuple[int, int]] = {}  # metrics path -> (size, mtime_ns) last seen clean


@dataclasses.dataclass(frozen=True)
class Finding:
  kind: str  # "held" | "missing" | "damaged" | "not_a_dir"
  reason: str
  holder: dict | None = None


def holder_text(info: dict | None) -> str:
  if not info:
    return "another process"
  return f"pid {info.get('pid', '?')} on {info.get('host', '?')}"


def _metrics_problem(path: str, finished: bool) -> str | None:
  try:
    st = os.stat(path)
  except FileNotFoundError:
    return "metrics.jsonl is missing" if finished else None
  sig = (st.st_size, st.st_mtime_ns)
  if _clean.get(path) == sig:
    return None
  scan = rundir.scan_metrics(path)
  if scan.problem and (finished or not scan.torn_tail):
    return f"{os.path.basename(path)} {scan.problem}"
  if not scan.problem:
    _clean[path] = sig
  return None


def _check_dir(d: str, where: str) -> Finding | None:
  run = rundir.RunDir(d)
  status = None
  for name, read in ((rundir.STATUS_FILE, run.read_status), (rundir.CONFIG_FILE, run.read_config)):
    if os.path.exists(run.file(name)):
      try:
        out = read()
      except rundir.RunDirError as e:
        what = str(e).split(" — ")[0].split(": ", 1)[-1]
        return Finding("damaged", f"{DAMAGED}{where}{name} {what}; --retry_failed repairs it")
      status = out if name == rundir.STATUS_FILE else status
  if os.path.isfile(run.file(rundir.CONFIG_FILE)):
    problem = _metrics_problem(run.file(rundir.METRICS_FILE), finished=(status or {}).get("state") == "done")
    if problem:
      return Finding("damaged", f"{DAMAGED}{where}{problem}; --retry_failed repairs it")
  return None


def inspect(workdir: str, existed: bool) -> Finding | None:
  """None when the run dir is consistent (or absent and never expected). existed: the run wrote its run dir
  before, so its absence now means it was removed. A run whose status.json says done must have a clean
  metrics.jsonl (a torn last line is only normal while a run can still resume)."""
  if not os.path.exists(workdir):
    if existed:
      return Finding("missing", f"missing: its run dir {workdir} is gone; the next launch reruns it")
    return None
  if not os.path.isdir(workdir):
    return Finding("not_a_dir", f"{DAMAGED}{workdir} is not a directory; move it away to rerun the run")
  info = rundir.RunDir(workdir).lock_holder()
  if info is not None:
    return Finding("held", f"running elsewhere ({holder_text(info)} holds the run dir lock)", info)
  for d in [workdir, *(m for m in repair.run_dirs(workdir) if m != workdir)]:
    rel = os.path.relpath(d, workdir)
    finding = _check_dir(d, "" if rel == "." else f"{rel}/")
    if finding is not None:
      return finding
  return None


def is_damaged(rec: dict) -> bool:
  return rec["status"] == "failed" and (rec.get("reason") or "").startswith(DAMAGED)


def retry_plan(state, todo: list[dict], left: list[dict]) -> tuple[list[str], list]:
  """The --retry_failed plan: lines to print first, and the repair plans to apply (scaling/core/repair.py)."""
  rerun = [r for r in todo if not is_damaged(r)]
  fix, lines, plans = [r for r in todo if is_damaged(r)], [], []
  lines.append(f"retry plan: rerun {len(rerun)}, repair then rerun {len(fix)}, leave {len(left)}")
  for r in rerun:
    lines.append(f"  rerun   {r['id']}" + (f" ({r['reason']})" if r.get("reason") else f" ({r['status']})"))
  for r in fix:
    plan = repair.plan_repair(state.workdir(r))
    plans.append(plan)
    lines.append(f"  repair  {r['id']}: {r['reason'][len(DAMAGED):]}")
    lines += [f"            {ln}" for ln in plan.lines]
  for r in left:
    lines.append(f"  leave   {r['id']}: {r.get('reason') or r['status']}")
  return lines, plans
