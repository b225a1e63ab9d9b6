"""Cloud TPU VM backend: each run is one `gcloud compute tpus tpu-vm ssh NAME --worker=all --command=...`.

The same command runs on every worker (host) of the slice; the trainer's jax.distributed joins them (TPU
auto-detection; the backend passes --config.distributed.mode=on so a multi-host slice never falls back to
independent single-host runs). One run at a time per TPU VM; several VMs (`names`) run several runs at once.
With `queued_resources: True` each VM is created (queued-resources create, waited for until ACTIVE, bootstrapped)
before its first run and deleted after its last.

The sweep dir must be visible at the same path on the workers (`sweep_dir`, e.g. a gcsfuse or Filestore mount)
for checkpoints to be shared across hosts and for status.json to reach this machine; without that the
launcher falls back to the ssh exit code (0 done, 130 interrupted, else failed). See launch/README.md.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

from tqdm.auto import tqdm

from launch import manifest as manifest_lib
from launch.backends.common import merge_settings
from launch.configfile import SweepError

DEFAULTS = {
    "names": [],  # TPU VM names; one run at a time on each
    "zone": "", "project": "",
    "repo_dir": "~/scaling",  # this repository's checkout on every worker
    "setup": ["source .venv/bin/activate"],  # run (joined by &&) before the trainer on every worker
    "sweep_dir": "",  # the sweep dir as the workers see it; default: the same path as here
    "python": "python",
    "env": {},
    "distributed_mode": "on",  # --config.distributed.mode for every run ("" to leave the config's)
    "ssh_flags": [],  # e.g. ["--internal-ip"] or ["--tunnel-through-iap"]
    "queued_resources": False,  # create the VMs before the sweep and delete them after
    "accelerator_type": "", "runtime_version": "", "spot": False,
    "bootstrap": [],  # once per created VM on every worker, e.g. git clone + pip install
    "max_parallel": 0,  # 0: one per VM name
    "gcloud": "gcloud",
    "poll_s": 5.0,
    "flops_per_s": 0.0, "startup_s": 0.0,  # --dry_run estimates
}


def quote_path(path: str) -> str:
  """shlex.quote that keeps a leading ~/ expandable by the remote shell."""
  if path == "~":
    return path
  if path.startswith("~/"):
    return "~/" + shlex.quote(path[2:])
  return shlex.quote(path)


class TpuBackend:
  name = "tpu"

  def __init__(self, settings: dict, sweep_dir: str, max_parallel: int | None):
    self.s = merge_settings("tpu", DEFAULTS, settings)
    if isinstance(self.s["names"], str):
      self.s["names"] = [self.s["names"]]
    self.sweep_dir = sweep_dir
    mp = max_parallel if max_parallel is not None else self.s["max_parallel"]
    self.max_parallel = min(mp or len(self.s["names"]) or 1, max(len(self.s["names"]), 1))
    if self.s["queued_resources"] and not (self.s["accelerator_type"] and self.s["runtime_version"]):
      raise SweepError("backend.tpu.queued_resources needs accelerator_type and runtime_version "
                       "(e.g. 'v5litepod-16' and 'v2-alpha-tpuv5-lite')")

  def validate(self, sweep, runs) -> None:
    if not self.s["names"]:
      raise SweepError("backend.tpu.names is empty; name the TPU VM(s) to run on, e.g. "
                       "c.backend = {'tpu': {'names': ['my-v5e-16'], 'zone': 'us-west4-a', 'project': 'my-proj'}}")

  # ---- rendering ----------------------------------------------------------------------------------------
  def _where(self) -> list[str]:
    out = []
    if self.s["zone"]:
      out.append(f"--zone={self.s['zone']}")
    if self.s["project"]:
      out.append(f"--project={self.s['project']}")
    return out

  def remote_workdir(self, state, rec) -> str:
    base = self.s["sweep_dir"] or state.dir
    return f"{base.rstrip('/')}/{rec['workdir']}"

  def remote_command(self, sweep, run, workdir: str) -> str:
    """The shell command each worker runs (quoted for a POSIX shell)."""
    argv = [self.s["python"], "-m", sweep.entrypoint, f"--config={sweep.base}", f"--workdir={workdir}",
            *run.flags()]
    if self.s["distributed_mode"]:
      argv.append(f"--config.distributed.mode={self.s['distributed_mode']}")
    argv.append("--noprogress")
    env = {"PYTHONUNBUFFERED": "1", **{k: str(v) for k, v in self.s["env"].items()}}
    steps = [f"cd {quote_path(self.s['repo_dir'])}", *self.s["setup"],
             " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(argv)])]
    return " && ".join(steps)

  def ssh_argv(self, name: str, command: str) -> list[str]:
    return [self.s["gcloud"], "compute", "tpus", "tpu-vm", "ssh", name, *self._where(), "--worker=all",
            *self.s["ssh_flags"], f"--command={command}"]

  def run_argv(self, sweep, run, state, name: str) -> list[str]:
    rec = state.by_id[run.id]
    return self.ssh_argv(name, self.remote_command(sweep, run, self.remote_workdir(state, rec)))

  def stop_argv(self, name: str, workdir: str) -> list[str]:
    # SIGTERM lets the trainer save a checkpoint; the unique --workdir names exactly this run's processes.
    return self.ssh_argv(name, f"pkill -TERM -f -- {shlex.quote('--workdir=' + workdir)} || true")

  def create_argvs(self, name: str) -> list[list[str]]:
    g = self.s["gcloud"]
    create = [g, "compute", "tpus", "queued-resources", "create", name, f"--node-id={name}", *self._where(),
              f"--accelerator-type={self.s['accelerator_type']}", f"--runtime-version={self.s['runtime_version']}"]
    if self.s["spot"]:
      create.append("--spot")
    out = [create]
    if self.s["bootstrap"]:
      out.append(self.ssh_argv(name, " && ".join(self.s["bootstrap"])))
    return out

  def describe_argv(self, name: str) -> list[str]:
    return [self.s["gcloud"], "compute", "tpus", "queued-resources", "describe", name, *self._where(),
            "--format=value(state.state)"]

  def delete_argv(self, name: str) -> list[str]:
    return [self.s["gcloud"], "compute", "tpus", "queued-resources", "delete", name, *self._where(), "--force",
            "--quiet"]

  def assignment(self, runs) -> list[tuple[str, object]]:
    """Dry-run view of which VM runs what (the real launch hands runs to whichever VM is free first)."""
    names = self.s["names"][:self.max_parallel]
    return [(names[i % len(names)], run) for i, run in enumerate(runs)]

  def describe(self, sweep, runs, state) -> str:
    lines = [f"backend tpu: {self.max_parallel} TPU VM(s) ({', '.join(self.s['names'])}), one run at a time each"]
    used = list(dict.fromkeys(name for name, _ in self.assignment(runs)))
    if self.s["queued_resources"]:
      for name in used:
        lines += [shlex.join(a) for a in self.create_argvs(name)[:1]]
        lines.append(f"# wait until ACTIVE: {shlex.join(self.describe_argv(name))}")
        lines += [shlex.join(a) for a in self.create_argvs(name)[1:]]
    for name, run in self.assignment(runs):
      lines.append(shlex.join(self.run_argv(sweep, run, state, name)))
    if self.s["queued_resources"]:
      lines += [shlex.join(self.delete_argv(name)) for name in used]
    return "\n".join(lines)

  def alive(self, rec: dict) -> bool | None:
    # Runs are children of the launcher (gcloud ssh); with no launcher attached they are gone or unknowable.
    return False

  # ---- running ------------------------------------------------------------------------------------------
  def _check(self, argv: list[str], what: str, timeout: float = 1800) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
      raise SweepError(f"{what} failed (exit {p.returncode}): {(p.stderr.strip().splitlines() or ['?'])[-1]}")
    return p.stdout.strip()

  def create(self, name: str) -> None:
    print(f"tpu: creating {name} ({self.s['accelerator_type']})", flush=True)
    create, *bootstrap = self.create_argvs(name)
    self._check(create, f"queued-resources create {name}")
    while (state := self._check(self.describe_argv(name), f"describe {name}")) != "ACTIVE":
      if state in ("FAILED", "SUSPENDED"):
        raise SweepError(f"queued resource {name} is {state}")
      time.sleep(30)
    for argv in bootstrap:
      self._check(argv, f"bootstrap on {name}", timeout=3600)

  def run(self, sweep, runs, state, progress: bool = True) -> str:
    queue = list(runs)
    free = list(self.s["names"][:self.max_parallel])
    created: list[str] = []
    active: dict[str, tuple] = {}  # name -> (rec, job, proc, log, workdir)
    stops = {"n": 0}

    def on_signal(signum, _frame):
      stops["n"] += 1
      print("\nstopping: asking each run to checkpoint and exit (Ctrl-C again to drop the ssh sessions)"
            if stops["n"] == 1 else "\ndropping the ssh sessions", file=sys.stderr, flush=True)
      for name, (_, _, proc, _, workdir) in active.items():
        if stops["n"] == 1:
          subprocess.run(self.stop_argv(name, workdir), capture_output=True, timeout=120)
        elif proc.poll() is None:
          os.killpg(proc.pid, signal.SIGTERM)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    bar = tqdm(total=len(runs), desc=f"sweep {sweep.name} (tpu)", unit="run", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    try:
      while queue or active:
        while queue and free and not stops["n"]:
          name, run = free.pop(0), queue.pop(0)
          if self.s["queued_resources"] and name not in created:
            self.create(name)
            created.append(name)
          rec = state.by_id[run.id]
          argv = self.run_argv(sweep, run, state, name)
          log = open(state.log_path(rec), "a")
          log.write(f"==== attempt {rec['attempts'] + 1} on TPU {name} at {manifest_lib.now()}\n"
                    f"==== {shlex.join(argv)}\n")
          log.flush()
          proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
          job = state.start_attempt(rec, {"backend": "tpu", "id": f"{name}:{proc.pid}", "tpu": name})
          state.save()
          active[name] = (rec, job, proc, log, self.remote_workdir(state, rec))
        for name, (rec, job, proc, log, _) in list(active.items()):
          code = proc.poll()
          if code is None:
            continue
          log.close()
          del active[name]
          free.append(name)
          state.finish(rec, job, code, manifest_lib.last_error_line(state.log_path(rec)))
          state.save()
          bar.update(1)
          word = rec["status"] if rec["status"] == "done" else rec["status"].upper()
          tqdm.write(f"{word:7s} {rec['id']} (TPU {name})" + (f": {rec['reason']}" if rec["reason"] else ""),
                     file=sys.stdout)
        if stops["n"] and not active:
          break
        time.sleep(float(self.s["poll_s"]))
    finally:
      bar.close()
      for s, h in old.items():
        signal.signal(s, h)
      for name in created:
        print(f"tpu: deleting {name}", flush=True)
        subprocess.run(self.delete_argv(name), capture_output=True, timeout=1800)
    return "interrupted" if stops["n"] else "complete"
