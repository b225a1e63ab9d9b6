"""SLURM backend: one sbatch job array per group of runs with equal resources; tracked with squeue.

Each array task runs one run through `srun`, so a multi-node run (nodes > 1 or ntasks_per_node > 1) becomes
several tasks that jax.distributed joins by SLURM auto-detection (the trainer's distributed.mode=auto). Jobs are
requeue-safe: `--requeue` lets SLURM restart a task after a node failure or preemption, and the trainer resumes
from its workdir. Before the time limit SLURM sends SIGTERM (`--signal=TERM@signal_grace_s`); the trainer saves a
checkpoint and exits 130, and the task requeues itself (up to max_requeues times) to continue.

State tracking: squeue while a task is queued or running; after it leaves the queue, `scontrol show job` (finished
jobs stay visible for MinJobAge, 300 s by default) or `sacct` when accounting is enabled give the final state and
exit code, and the run's own status.json gives the outcome. A run whose run dir lock is held is not submitted (its
trainer already runs); a requeued task that meets a live predecessor exits 2 at once (the trainer's lock) and
the run stays "running elsewhere" until the predecessor ends. The launcher can stop waiting at any time (Ctrl-C,
--no_wait): the jobs keep running, and rerunning the command re-attaches without submitting anything twice.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

from tqdm.auto import tqdm

from launch import manifest as manifest_lib
from launch.backends.common import merge_settings, run_argv
from launch.configfile import REPO, SweepError

RESOURCE_KEYS = ("partition", "account", "qos", "time", "nodes", "ntasks_per_node", "cpus_per_task", "mem",
                 "gpus_per_node", "gres", "constraint", "sbatch_args")
DEFAULTS = {
    "partition": "", "account": "", "qos": "",
    "time": "",  # time limit, e.g. "04:00:00"; empty: the partition's default
    "nodes": 1, "ntasks_per_node": 1, "cpus_per_task": 1,
    "mem": "",  # e.g. "32G"; empty: the cluster's default
    "gpus_per_node": 0, "gres": "", "constraint": "",
    "sbatch_args": [],  # extra sbatch options, e.g. ["--exclusive"]
    "per_run": [],  # [{"match": {"model.size": "1B"}, "nodes": 4, "time": "2-00:00:00"}, ...]; later wins
    "setup": [],  # shell lines before each run, e.g. ["module load cuda", "source .venv/bin/activate"]
    "env": {},
    "python": "",  # interpreter on the compute nodes; default: the launcher's (needs a shared filesystem)
    "repo_dir": "",  # repository path on the compute nodes; default: this checkout
    "max_parallel": 0,  # array throttle (--array=...%N); 0: none
    "max_requeues": 3,
    "signal_grace_s": 120,
    "job_name": "",  # default: sweep-<name>
    "poll_s": 10.0,
    "flops_per_s": 0.0, "startup_s": 0.0,  # --dry_run estimates
}
MAX_ARRAY = 1000  # SLURM's default MaxArraySize is 1001
ACTIVE_STATES = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED",
                 "REQUEUE_HOLD", "REQUEUE_FED", "STAGE_OUT", "SIGNALING")


def _run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
  return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _matches(match: dict, overrides: dict) -> bool:
  return all(overrides.get(k) == v for k, v in match.items())


class SlurmBackend:
  name = "slurm"

  def __init__(self, settings: dict, sweep_dir: str, max_parallel: int | None):
    self.s = merge_settings("slurm", DEFAULTS, settings)
    for i, rule in enumerate(self.s["per_run"]):
      if not isinstance(rule, dict) or not isinstance(rule.get("match"), dict):
        raise SweepError(f"backend.slurm.per_run[{i}] must be a dict with a 'match' dict of config keys")
      bad = [k for k in rule if k != "match" and k not in RESOURCE_KEYS]
      if bad:
        raise SweepError(f"backend.slurm.per_run[{i}]: {bad[0]!r} is not a resource; use {', '.join(RESOURCE_KEYS)}")
    self.sweep_dir = sweep_dir
    self.max_parallel = max_parallel if max_parallel is not None else self.s["max_parallel"]
    if not isinstance(self.max_parallel, int) or self.max_parallel < 0:
      raise SweepError(f"max_parallel={self.max_parallel!r} must be a non-negative integer (0: no array throttle)")
    self._queue_cache: tuple[float, dict] | None = None

  def validate(self, sweep, runs) -> None:
    keys = {k for rule in self.s["per_run"] for k in rule["match"]}
    known = set().union(*(r.overrides for r in runs)) if runs else set()
    unknown = sorted(keys - known)
    if unknown:
      raise SweepError(f"backend.slurm.per_run matches on {unknown[0]!r}, which no run of the sweep sets")

  # ---- rendering ----------------------------------------------------------------------------------------
  def resources(self, run) -> dict:
    res = {k: self.s[k] for k in RESOURCE_KEYS}
    for rule in self.s["per_run"]:
      if _matches(rule["match"], run.overrides):
        res.update({k: v for k, v in rule.items() if k != "match"})
    return res

  def groups(self, runs) -> list[tuple[dict, list]]:
    """Runs with equal resources share an array; arrays are cut at SLURM's maximum size."""
    out: dict[str, tuple[dict, list]] = {}
    for run in runs:
      res = self.resources(run)
      out.setdefault(repr(sorted(res.items())), (res, []))[1].append(run)
    chunks = []
    for res, members in out.values():
      chunks += [(res, members[i:i + MAX_ARRAY]) for i in range(0, len(members), MAX_ARRAY)]
    return chunks

  def render_script(self, sweep, runs, res: dict, state) -> str:
    """The sbatch script of one array: task i runs runs[i]."""
    sd = state.dir
    repo = self.s["repo_dir"] or REPO
    ntasks = int(res["nodes"]) * int(res["ntasks_per_node"])
    array = f"0-{len(runs) - 1}" + (f"%{self.max_parallel}" if self.max_parallel else "")
    opts = [f"--job-name={self.s['job_name'] or 'sweep-' + sweep.name}", f"--array={array}",
            f"--output={sd}/slurm/%A_%a.out", "--open-mode=append", "--requeue",
            f"--signal=TERM@{int(self.s['signal_grace_s'])}", f"--nodes={res['nodes']}",
            f"--ntasks-per-node={res['ntasks_per_node']}", f"--cpus-per-task={res['cpus_per_task']}"]
    for key, opt in (("partition", "partition"), ("account", "account"), ("qos", "qos"), ("time", "time"),
                     ("mem", "mem"), ("gres", "gres"), ("constraint", "constraint")):
      if res[key]:
        opts.append(f"--{opt}={res[key]}")
    if res["gpus_per_node"]:
      opts.append(f"--gpus-per-node={res['gpus_per_node']}")
    opts += list(res["sbatch_args"])
    lines = ["#!/bin/bash",
             f"# sweep {sweep.name}: {len(runs)} run(s) as one job array; rendered by launch/backends/slurm.py.",
             f"# Task i runs one run; {ntasks} task(s) per run"
             + (" joined by jax.distributed (SLURM auto-detection)." if ntasks > 1 else "."),
             *(f"#SBATCH {o}" for o in opts),
             "set -uo pipefail",
             f"cd {shlex.quote(repo)}",
             "export PYTHONUNBUFFERED=1",
             f"export PYTHONPATH={shlex.quote(repo)}${{PYTHONPATH:+:$PYTHONPATH}}",
             *(f"export {k}={shlex.quote(str(v))}" for k, v in self.s["env"].items()),
             *self.s["setup"],
             'case "$SLURM_ARRAY_TASK_ID" in']
    for i, run in enumerate(runs):
      rec = state.by_id[run.id]
      argv = run_argv(sweep, run, state.workdir(rec), self.s["python"] or sys.executable)
      lines.append(f"  {i}) RUN_ID={shlex.quote(run.id)}; CMD=({shlex.join(argv)}) ;;")
    lines += ['  *) echo "no run for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;', "esac",
              f'exec >>{shlex.quote(sd)}/logs/"$RUN_ID".log 2>&1',
              'echo "==== slurm job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} (id $SLURM_JOB_ID, restart '
              '${SLURM_RESTART_COUNT:-0}) on $(hostname) at $(date -Is)"',
              'echo "==== ${CMD[*]}"',
              f'srun --kill-on-bad-exit=1 --cpus-per-task={res["cpus_per_task"]} "${{CMD[@]}}"',
              "rc=$?",
              "# 130: the trainer saved a checkpoint after SIGTERM (time limit coming): continue in a new allocation.",
              f'if [[ $rc -eq 130 && ${{SLURM_RESTART_COUNT:-0}} -lt {int(self.s["max_requeues"])} ]]; then',
              '  echo "==== interrupted (exit 130): requeueing $SLURM_JOB_ID to resume"',
              '  scontrol requeue "$SLURM_JOB_ID" && exit 0',
              "fi",
              "exit $rc", ""]
    return "\n".join(lines)

  def describe(self, sweep, runs, state) -> str:
    out = []
    for k, (res, members) in enumerate(self.groups(runs)):
      path = os.path.join(state.dir, "slurm", f"{sweep.name}-<time>-{k}.sbatch")
      out.append(f"# sbatch --parsable {path}\n" + self.render_script(sweep, members, res, state))
    return "\n".join(out) if out else "nothing to submit"

  # ---- queue --------------------------------------------------------------------------------------------
  def _queue(self, max_age: float = 2.0) -> dict[str, str] | None:
    """{job id: 'STATE reason'} for this user's jobs; None when squeue is unavailable."""
    if self._queue_cache and time.monotonic() - self._queue_cache[0] < max_age:
      return self._queue_cache[1]
    if not shutil.which("squeue"):
      return None
    try:
      p = _run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T|%r"], timeout=30)
    except (OSError, subprocess.TimeoutExpired):
      return None
    if p.returncode != 0:
      return None
    q = {}
    for line in p.stdout.splitlines():
      parts = line.strip().split("|")
      if len(parts) == 3:
        q[parts[0]] = f"{parts[1]} {parts[2]}".strip()
    self._queue_cache = (time.monotonic(), q)
    return q

  def alive(self, rec: dict) -> bool | None:
    job = rec["jobs"][-1] if rec["jobs"] else None
    if not job or job.get("backend") != "slurm" or job.get("ended"):
      return False
    q = self._queue()
    if q is None:
      return None
    return job["id"] in q

  @staticmethod
  def _unfinished(state) -> list[dict]:
    """Runs whose last SLURM job has no recorded end (queued, running, or ended while nobody watched)."""
    return [r for r in state.runs if r["jobs"] and r["jobs"][-1].get("backend") == "slurm"
            and not r["jobs"][-1].get("ended")]

  def has_live_jobs(self, state) -> bool:
    return bool(self._unfinished(state))

  @staticmethod
  def final_state(job_id: str) -> tuple[str | None, int | None, int]:
    """(JobState, exit code (negative: signal), restarts) of a job that left the queue; Nones if unknown."""
    try:
      p = _run(["scontrol", "show", "job", "-o", job_id], timeout=30)
      if p.returncode == 0 and "JobState=" in p.stdout:
        # An array task that was split off is shown under its own id; pick the line of this task.
        line = next((ln for ln in p.stdout.splitlines() if "JobState=" in ln), "")
        state = re.search(r"JobState=(\S+)", line).group(1)
        code, sig = re.search(r"ExitCode=(\d+):(\d+)", line).groups()
        restarts = int((re.search(r"Restarts=(\d+)", line) or [0, 0])[1])
        return state, (-int(sig) if int(sig) else int(code)), restarts
      p = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode"], timeout=30)
      if p.returncode == 0 and p.stdout.strip():
        state, exit_code = p.stdout.strip().splitlines()[-1].split("|")
        code, sig = exit_code.split(":")
        return state.split()[0], (-int(sig) if int(sig) else int(code)), 0
    except (OSError, subprocess.TimeoutExpired, AttributeError, ValueError):
      pass
    return None, None, 0

  # ---- running ------------------------------------------------------------------------------------------
  def submit(self, sweep, runs, state) -> list[str]:
    if not shutil.which("sbatch"):
      raise SweepError("--backend=slurm needs sbatch on PATH (for a one-node test cluster: "
                       "bash launch/slurm_local.sh start)")
    os.makedirs(os.path.join(state.dir, "slurm"), exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    arrays = []
    for k, (res, members) in enumerate(self.groups(runs)):
      path = os.path.join(state.dir, "slurm", f"{sweep.name}-{stamp}-{k}.sbatch")
      with open(path, "w") as f:
        f.write(self.render_script(sweep, members, res, state))
      p = _run(["sbatch", "--parsable", path], timeout=120)
      if p.returncode != 0:
        raise SweepError(f"sbatch {path} failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}"
                         + (f" ({len(arrays)} array(s) were submitted before it)" if arrays else ""))
      array_id = p.stdout.strip().split(";")[0]
      arrays.append(array_id)
      for i, run in enumerate(members):
        state.start_attempt(state.by_id[run.id], {
            "backend": "slurm", "id": f"{array_id}_{i}", "array_job_id": array_id, "task": i,
            "script": os.path.relpath(path, state.dir), "state": "PENDING"})
      state.save()
      print(f"submitted array {array_id}: {len(members)} run(s) ({path})", flush=True)
    return arrays

  def run(self, sweep, runs, state, progress: bool = True, wait: bool = True) -> str:
    held = [r for r in runs if manifest_lib.rundir.RunDir(state.workdir(state.by_id[r.id])).lock_holder()]
    for r in held:  # its trainer already runs (e.g. a job this launcher lost track of): never a second writer
      state.refresh(state.by_id[r.id], self.alive)
      print(f"not submitted: {r.id}: {state.by_id[r.id].get('reason') or 'running'}", flush=True)
    runs = [r for r in runs if r not in held]
    if runs:
      self.submit(sweep, runs, state)
    if not wait:
      return "submitted"
    return self.monitor(state, progress)

  def monitor(self, state, progress: bool = True) -> str:
    live = self._unfinished(state)
    bar = tqdm(total=len(live), desc="slurm", unit="run", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)
    try:
      failures = 0
      while live:
        q = self._queue(max_age=0)
        if q is None:
          # A busy controller can time out now and then; only a persistent failure ends the wait.
          failures += 1
          if failures >= 10:
            raise SweepError("squeue failed 10 times in a row; the jobs keep running: rerun the command to "
                             "re-attach once SLURM answers")
          time.sleep(float(self.s["poll_s"]))
          continue
        failures = 0
        changed = False
        for rec in list(live):
          job = rec["jobs"][-1]
          if job["id"] in q:
            new = q[job["id"]]
            if job.get("state") != new:
              job["state"], changed = new, True
            continue
          slurm_state, code, restarts = self.final_state(job["id"])
          job["state"], job["restarts"] = slurm_state or "GONE", restarts
          state.finish(rec, job, code, manifest_lib.last_error_line(state.log_path(rec)))
          if rec["status"] == "failed" and slurm_state and slurm_state != "COMPLETED":
            if (rec["reason"] or "").startswith("interrupted"):
              at = f" at step {rec['step']}" if rec.get("step") is not None else ""
              rec["reason"] = (f"interrupted: slurm job {job['id']} ended {slurm_state}{at}; rerun to resume "
                               "from its last checkpoint")
            elif (rec["reason"] or "").startswith("exit"):
              rec["reason"] = f"slurm {slurm_state}, {rec['reason']}"
          live.remove(rec)
          changed = True
          bar.update(1)
          word = rec["status"] if rec["status"] == "done" else rec["status"].upper()
          tqdm.write(f"{word:7s} {rec['id']} (slurm {job['id']})" + (f": {rec['reason']}" if rec["reason"] else ""),
                     file=sys.stdout)
        if changed:
          state.save()
        if live:
          states = [r["jobs"][-1].get("state", "?").split()[0] for r in live]
          bar.set_postfix_str(" ".join(f"{s.lower()} {states.count(s)}" for s in sorted(set(states))),
                              refresh=False)
          time.sleep(float(self.s["poll_s"]))
    except KeyboardInterrupt:
      ids = sorted({r["jobs"][-1]["id"].split("_")[0] for r in live})
      print(f"\nstopped following; the jobs keep running in SLURM (scancel {' '.join(ids)} to stop them); "
            "rerun the same command to re-attach", file=sys.stderr)
      return "interrupted"
    finally:
      bar.close()
    return "complete"
