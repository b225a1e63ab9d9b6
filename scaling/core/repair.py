"""`python -m scaling.core.repair --workdir W [--dry_run]`: make a damaged run dir resumable again, keeping a backup.

What it repairs (in W, and in the member run dirs of a toy program dir W/<member>/):
  status.json / config.json that cannot be read   set aside (the trainer writes them again from its flags; the
                                                  resumed run's config is then not compared with the old one)
  metrics.jsonl (and retention.jsonl) with a torn or unreadable line in the middle, or steps out of order
                                                  cut to the good part before the first bad line
  a missing metrics.jsonl beside checkpoints      treated as an empty file
  checkpoints past what every metrics file covers set aside, so the resumed run restarts from a checkpoint whose
                                                  records are all on disk and recomputes the rest (bit-identically)
Everything it removes from its place goes to W/.repair-<time>/ (same relative paths); nothing is deleted. When it
changed anything it writes status.json "failed" with a reason starting "interrupted: repaired", which the sweep
launcher reads as resumable. Given a member dir, it repairs its program dir (the checkpoints live there).
Exit codes: 0 repaired (or nothing to repair); 2 bad --workdir, or the run dir is in use (its lock is held).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence

from scaling.core import rundir
from scaling.core.errors import ConfigError, RunDirError

_STEP_DIR = re.compile(r"^\d+$")


def checkpoint_steps(root: str) -> list[int]:
  """Committed orbax step dirs under root/checkpoints (no orbax import: names only)."""
  d = os.path.join(root, rundir.CHECKPOINT_DIR)
  try:
    names = os.listdir(d)
  except OSError:
    return []
  return sorted(int(n) for n in names if _STEP_DIR.match(n) and os.path.isdir(os.path.join(d, n)))


def program_root(workdir: str) -> str:
  """The dir holding the checkpoints: workdir itself, or its parent for a toy member run dir."""
  w = os.path.abspath(workdir)
  parent = os.path.dirname(w)
  if not os.path.isdir(os.path.join(w, rundir.CHECKPOINT_DIR)) and os.path.isdir(
      os.path.join(parent, rundir.CHECKPOINT_DIR)) and os.path.isfile(os.path.join(parent, rundir.STATUS_FILE)):
    return parent
  return w


def run_dirs(root: str) -> list[str]:
  """root (when it holds run files) and its member run dirs (sub-folders with config.json or metrics.jsonl)."""
  out = []
  has = lambda d: any(os.path.isfile(os.path.join(d, f)) for f in (rundir.CONFIG_FILE, rundir.METRICS_FILE))
  if has(root):
    out.append(root)
  for name in sorted(os.listdir(root)):
    sub = os.path.join(root, name)
    if not name.startswith(".") and name != rundir.CHECKPOINT_DIR and os.path.isdir(sub) and has(sub):
      out.append(sub)
  return out


@dataclasses.dataclass
class Plan:
  """What repair would do: `lines` to print, `actions` to run (each moves things into the backup dir)."""

  root: str
  lines: list[str] = dataclasses.field(default_factory=list)
  actions: list[Callable[[str], None]] = dataclasses.field(default_factory=list)
  resume_step: int | None = None
  total_steps: int = 0

  def add(self, line: str, action: Callable[[str], None]) -> None:
    self.lines.append(line)
    self.actions.append(action)

  def apply(self) -> str | None:
    """Runs the actions under the run dir's lock; returns the backup dir (None when there was nothing to do)."""
    if not self.actions:
      return None
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    backup = os.path.join(self.root, f".repair-{stamp}")
    with rundir.RunDir(self.root).lock():
      os.makedirs(backup)
      for act in self.actions:
        act(backup)
      reason = (f"interrupted: repaired by scaling.core.repair ({'; '.join(self.lines)[:300]}); rerun to resume"
                + (f" from step {self.resume_step}" if self.resume_step else " from step 0"))
      for d in {self.root, *run_dirs(self.root)}:
        rundir.RunDir(d).write_status("failed", self.resume_step or 0, self.total_steps, reason=reason)
    return backup


def _move(root: str, path: str) -> Callable[[str], None]:
  def act(backup: str) -> None:
    dst = os.path.join(backup, os.path.relpath(path, root))
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.move(path, dst)
  return act


def _cut(root: str, scan: rundir.MetricsScan) -> Callable[[str], None]:
  def act(backup: str) -> None:
    dst = os.path.join(backup, os.path.relpath(scan.path, root))
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(scan.path, dst)
    rundir.atomic_write_text(scan.path, "".join(scan.lines))
  return act


def _total_steps(dirs: list[str]) -> int:
  for d in dirs:
    run = rundir.RunDir(d)
    for read in (lambda r=run: (r.read_status() or {}).get("total_steps"),
                 lambda r=run: r.read_config()["summary"].get("total_steps")):
      try:
        value = read()
      except (RunDirError, KeyError, TypeError):
        continue
      if isinstance(value, int):
        return value
  return 0


def _plan_files(plan: Plan, dirs: list[str]) -> tuple[bool, int | None]:
  """Adds the status/config/metrics actions; returns (some metrics file was cut or is missing, cover step)."""
  root, cut, cover = plan.root, False, None
  steps = checkpoint_steps(root)
  for d in dirs:
    run, rel = rundir.RunDir(d), os.path.relpath(d, root)
    for name, read in ((rundir.STATUS_FILE, run.read_status), (rundir.CONFIG_FILE, run.read_config)):
      if os.path.exists(run.file(name)):
        try:
          read()
        except RunDirError as e:
          plan.add(f"{os.path.normpath(os.path.join(rel, name))}: unreadable ({str(e).split(' — ')[0].split(': ', 1)[-1][:120]})"
                   " -> set aside", _move(root, run.file(name)))
    for name in (*rundir.STRICT_FILES, rundir.PERF_FILE):
      scan = rundir.scan_metrics(run.file(name))
      if name == rundir.METRICS_FILE and not scan.exists and steps and os.path.isfile(run.file(rundir.CONFIG_FILE)):
        plan.lines.append(f"{os.path.normpath(os.path.join(rel, name))}: missing -> the checkpoints it would need are set aside")
        cut, cover = True, -1
        continue
      if scan.problem:
        keep = f"steps <= {scan.last_step}" if scan.steps else "no records"
        plan.add(f"{os.path.normpath(os.path.join(rel, name))}: {scan.problem} -> cut there (keeps {keep})", _cut(root, scan))
        if name != rundir.PERF_FILE:
          cut = True
      if name in rundir.STRICT_FILES and scan.exists:
        last = scan.last_step if scan.last_step is not None else -1
        cover = last if cover is None else min(cover, last)
  return cut, cover


def plan_repair(workdir: str) -> Plan:
  """What `repair` would do to workdir (touches nothing)."""
  w = os.path.abspath(workdir)
  if not os.path.isdir(w):
    raise ConfigError(f"--workdir {w}: no such directory — pass the run dir the trainer wrote")
  root = program_root(w)
  plan = Plan(root)
  dirs = run_dirs(root) or [root]
  plan.total_steps = _total_steps(dirs)
  cut, cover = _plan_files(plan, dirs)
  steps = checkpoint_steps(root)
  if cut:
    limit = -1 if cover is None else cover
    for s in (s for s in steps if s > limit):
      plan.add(f"checkpoints/{s}: past the last step the metrics cover ({max(limit, 0)}) -> set aside",
               _move(root, os.path.join(root, rundir.CHECKPOINT_DIR, str(s))))
    kept = [s for s in steps if s <= limit]
    plan.resume_step = kept[-1] if kept else None
  elif steps:
    plan.resume_step = steps[-1]
  return plan


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m scaling.core.repair", description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", required=True, help="the run dir (a toy member dir repairs its program dir)")
  p.add_argument("--dry_run", action="store_true", help="print the plan, change nothing")
  p.error = lambda message: p.exit(2, f"error: {message} — see --help\n")
  a = p.parse_args(argv)
  try:
    holder = rundir.RunDir(program_root(a.workdir)).lock_holder()
    if holder:
      raise ConfigError(f"{a.workdir} is in use by pid {holder.get('pid')} on {holder.get('host')} — stop that run "
                        "before repairing it")
    plan = plan_repair(a.workdir)
    if not plan.actions and not plan.lines:
      print(f"nothing to repair in {plan.root}")
      return 0
    print(f"repair plan for {plan.root}:")
    for line in plan.lines:
      print(f"  {line}")
    if a.dry_run:
      print("(dry run: nothing changed)")
      return 0
    backup = plan.apply()
    step = plan.resume_step
    print(f"done; originals kept in {backup}. Rerun the training command to resume "
          + (f"from step {step}" if step else "from step 0"))
  except (ConfigError, RunDirError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
