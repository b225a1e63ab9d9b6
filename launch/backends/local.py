"""Local backend: runs as parallel subprocesses of the launcher, one overall progress bar, one log per run.

Each run is started in its own session, so a Ctrl-C in the terminal reaches only the launcher, which then sends
exactly one SIGTERM to every running run (the trainer saves a checkpoint, writes status "interrupted ...", and
exits 130) and waits for them; a second Ctrl-C kills them at once (they resume from their last periodic
checkpoint). Either way the manifest marks them resumable and the next launch continues them.

A run whose run dir lock is held (scaling/core/runlock.py) is never started: its trainer is already running,
e.g. an orphan of a launcher that was SIGKILLed. Such runs are adopted instead: they count against
max_parallel, the launcher waits for them to end (a Ctrl-C stops them too when they run on this machine), and
their outcome is read from the run dir.

`processes: N` launches each run as N processes on this machine joined by jax.distributed (explicit coordinator
on a free port; `local_device_count: k` gives each process k fake CPU devices) -- a stand-in for multi-host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

from tqdm.auto import tqdm

from launch import manifest as manifest_lib
from launch.backends.common import child_env, merge_settings, run_argv
from launch.configfile import REPO, SweepError

DEFAULTS = {
    "max_parallel": 0,  # 0: usable CPUs // (cpus_per_run * processes), at least 1
    "cpus_per_run": 1,
    "processes": 1,  # >1: multi-process run on localhost through jax.distributed
    "local_device_count": 0,  # fake CPU devices per process (sets distributed.local_device_count)
    "env": {},  # extra environment variables for the runs
    "python": "",  # interpreter; default: the launcher's
    "flops_per_s": 0.0,  # throughput for --dry_run estimates (0: see launch/plan.py)
    "startup_s": 0.0,
    "poll_s": 0.5,
}


ADOPTED_END = -10**6  # _reap's word for "an adopted run ended" (its exit code is unknown)


def usable_cpus() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _alive_pid(pid: int, marker: str) -> bool:
  """True when pid runs and its command line mentions `marker` (guards against pid reuse)."""
  try:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
      return marker.encode() in f.read()
  except OSError:
    return False


@dataclasses.dataclass
class Active:
  rec: dict
  job: dict
  procs: list[subprocess.Popen]
  logs: list
  started: float
  stop_sent: float | None = None
  adopted: bool = False  # not started by this launcher: its trainer already held the run dir lock


class LocalBackend:
  name = "local"

  def __init__(self, settings: dict, sweep_dir: str, max_parallel: int | None):
    self.s = merge_settings("local", DEFAULTS, settings)
    for key in ("processes", "cpus_per_run"):
      if not isinstance(self.s[key], int) or self.s[key] < 1:
        raise SweepError(f"backend.local.{key}={self.s[key]!r} must be a positive integer")
    self.sweep_dir = sweep_dir
    mp = max_parallel if max_parallel is not None else self.s["max_parallel"]
    if not isinstance(mp, int) or mp < 0:
      raise SweepError(f"max_parallel={mp!r} must be a non-negative integer (0: sized to the machine)")
    self.max_parallel = mp or max(1, usable_cpus() // (self.s["cpus_per_run"] * self.s["processes"]))
    self.host = socket.gethostname()

  # ---- planning -----------------------------------------------------------------------------------------
  def validate(self, sweep, runs) -> None:
    if self.s["python"] and not shutil.which(self.s["python"]):
      raise SweepError(f"backend.local.python={self.s['python']!r} is not an executable")
    if self.s["processes"] > 1 or self.s["local_device_count"]:
      for key in ("distributed.coordinator_address", "distributed.num_processes", "distributed.process_id",
                  "distributed.local_device_count"):
        node = runs[0].config if runs else None
        for part in key.split("."):
          if node is None or not hasattr(node, "keys") or part not in node:
            raise SweepError(f"backend.local.processes/local_device_count need {key} in {sweep.base}")
          node = node[part]

  def argvs(self, sweep, run, workdir: str, port: int | None = None) -> list[list[str]]:
    base = run_argv(sweep, run, workdir, self.s["python"] or None)
    n, k = self.s["processes"], self.s["local_device_count"]
    extra_all = [f"--config.distributed.local_device_count={k}"] if k else []
    if n == 1:
      return [base + extra_all]
    addr = f"127.0.0.1:{port if port is not None else '<port>'}"
    return [base + extra_all + [f"--config.distributed.coordinator_address={addr}",
                                f"--config.distributed.num_processes={n}",
                                f"--config.distributed.process_id={i}"] for i in range(n)]

  def describe(self, sweep, runs, state) -> str:
    lines = [f"backend local: {self.max_parallel} run(s) at a time, {self.s['processes']} process(es) per run; "
             f"commands (cwd {REPO}):"]
    for run in runs:
      rec = state.by_id[run.id]
      for argv in self.argvs(sweep, run, state.workdir(rec)):
        lines.append("  " + shlex.join(argv))
    return "\n".join(lines)

  def alive(self, rec: dict) -> bool | None:
    job = rec["jobs"][-1] if rec["jobs"] else None
    if not job or job.get("backend") != "local" or job.get("ended"):
      return False
    if job.get("host") != self.host:
      return None  # started on another machine: cannot tell from here
    return any(_alive_pid(p, rec["id"]) for p in job.get("pids", []))

  # ---- running ------------------------------------------------------------------------------------------
  def _busy(self, state, rec: dict) -> bool:
    """A trainer runs this run now: its run dir lock is held, or its last job's process is alive here."""
    return manifest_lib.rundir.RunDir(state.workdir(rec)).lock_holder() is not None or bool(self.alive(rec))

  def has_live_jobs(self, state) -> bool:
    return any(r["status"] == "running" and self._busy(state, r) for r in state.runs)

  def _adopt(self, state, rec: dict) -> Active:
    state.refresh(rec, self.alive)
    job = rec["jobs"][-1] if rec["jobs"] else None
    tqdm.write(f"waiting for {rec['id']}: {rec.get('reason') or 'already running'}", file=sys.stdout)
    return Active(rec, job, [], [], time.monotonic(), adopted=True)

  def _start(self, sweep, run, state) -> Active:
    rec = state.by_id[run.id]
    workdir = state.workdir(rec)
    if self._busy(state, rec):  # checked again just before starting: never a second writer beside a live one
      return self._adopt(state, rec)
    port = free_port() if self.s["processes"] > 1 else None
    argvs = self.argvs(sweep, run, workdir, port)
    env = child_env(self.s["env"])
    procs, logs = [], []
    for i, argv in enumerate(argvs):
      log = open(state.log_path(rec, i), "a")
      log.write(f"==== attempt {rec['attempts'] + 1} on {self.host} at {manifest_lib.now()}\n"
                f"==== {shlex.join(argv)}\n")
      log.flush()
      procs.append(subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True))
      logs.append(log)
    job = state.start_attempt(rec, {"backend": "local", "id": f"{self.host}:{procs[0].pid}", "host": self.host,
                                    "pids": [p.pid for p in procs]})
    state.save()
    return Active(rec, job, procs, logs, time.monotonic())

  def _signal(self, a: Active, sig: int) -> None:
    if a.adopted:  # started by an earlier launcher on this machine: its session leaders' pids
      for pid in (a.job or {}).get("pids", []) if self.alive(a.rec) else []:
        with contextlib.suppress(ProcessLookupError, PermissionError):
          os.killpg(pid, sig)
    for p in a.procs:
      if p.poll() is None:
        try:
          os.killpg(p.pid, sig)
        except ProcessLookupError:
          pass

  def _reap(self, a: Active, state) -> int | None:
    """Exit code once every process ended; stops the others when one fails (they would hang in collectives).
    An adopted run has no exit code to give: ADOPTED_END once its lock is free and its processes are gone."""
    if a.adopted:
      return None if self._busy(state, a.rec) else ADOPTED_END
    codes = [p.poll() for p in a.procs]
    bad = [c for c in codes if c not in (None, 0)]
    if bad and any(c is None for c in codes):
      if a.stop_sent is None:
        self._signal(a, signal.SIGTERM)
        a.stop_sent = time.monotonic()
      elif time.monotonic() - a.stop_sent > 30:
        self._signal(a, signal.SIGKILL)
      return None
    if any(c is None for c in codes):
      return None
    lead = codes[0]
    return lead if lead != 0 else next((c for c in codes if c != 0), 0)

  def run(self, sweep, runs, state, progress: bool = True) -> str:
    """Runs `runs` to completion. Returns 'complete' or 'interrupted'."""
    queue = list(runs)
    active: dict[str, Active] = {}
    stops = {"n": 0}

    def on_signal(signum, _frame):
      stops["n"] += 1
      sig = signal.SIGTERM if stops["n"] == 1 else signal.SIGKILL
      for a in active.values():
        self._signal(a, sig)
      msg = ("stopping: each run saves a checkpoint and exits (Ctrl-C again to kill them now)"
             if stops["n"] == 1 else "killing the runs; they resume from their last checkpoint")
      print(f"\n{msg}", file=sys.stderr, flush=True)

    for rec in state.runs:
      if rec["status"] == "running" and self._busy(state, rec):
        active[rec["id"]] = self._adopt(state, rec)
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    bar = tqdm(total=len(runs) + len(active), desc=f"sweep {sweep.name}", unit="run", disable=not progress,
               file=sys.stderr, dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)
    last_post = 0.0
    try:
      while queue or active:
        while queue and len(active) < self.max_parallel and not stops["n"]:
          run = queue.pop(0)
          active[run.id] = self._start(sweep, run, state)
        for rid, a in list(active.items()):
          code = self._reap(a, state)
          if code is None:
            continue
          for log in a.logs:
            log.close()
          del active[rid]
          if code == ADOPTED_END and a.job is None:
            state.refresh(a.rec, alive=lambda r: False)
          elif code == ADOPTED_END:
            state.finish(a.rec, a.job, None)
          else:
            state.finish(a.rec, a.job, code, manifest_lib.last_error_line(state.log_path(a.rec)))
          state.save()
          bar.update(1)
          took = time.monotonic() - a.started
          word = a.rec["status"] if a.rec["status"] == "done" else a.rec["status"].upper()
          tqdm.write(f"{word:7s} {rid} ({took:.0f}s)" + (f": {a.rec['reason']}" if a.rec["reason"] else ""),
                     file=sys.stdout)
        if stops["n"] and all(a.adopted and not self.alive(a.rec) for a in active.values()):
          break  # (an adopted run on another machine cannot be stopped from here: stop waiting for it)
        if time.monotonic() - last_post > 2.0 and active:
          last_post = time.monotonic()
          bar.set_postfix_str(self._postfix(state, active, len(queue)), refresh=False)
        time.sleep(self.s["poll_s"])
    finally:
      bar.close()
      for s, h in old.items():
        signal.signal(s, h)
    return "interrupted" if stops["n"] else "complete"

  def _postfix(self, state, active: dict, queued: int) -> str:
    done = total = 0
    for a in active.values():
      try:
        st = manifest_lib.rundir.RunDir(state.workdir(a.rec)).read_status() or {}
      except manifest_lib.rundir.RunDirError:
        st = {}
      if st.get("state") == "running":
        done += st.get("step") or 0
        total += st.get("total_steps") or 0
    steps = f" steps {done}/{total}" if total else ""
    return f"running {len(active)} queued {queued}{steps}"
