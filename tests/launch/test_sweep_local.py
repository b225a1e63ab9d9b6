"""Local backend, end to end through `python launch/sweep.py`: idempotent reruns and multi-process runs."""

import json
import os
import signal
import time

from tests.launch import sweeputil

NAN = "non-finite training loss"


def _without_volatile(m: dict) -> dict:
  """The manifest minus times and pids (what a rerun may legitimately change)."""
  out = json.loads(json.dumps(m))
  for key in ("created", "updated"):
    out.pop(key)
  for rec in out["runs"]:
    for job in rec["jobs"]:
      for key in ("started", "ended", "pids", "id", "status_before"):
        job.pop(key)
  return out


def test_rerun_redoes_only_the_killed_and_the_failed_run(tmp_path):
  # Four tiny runs: one long enough to be killed mid-way, one that diverges on purpose, two plain ones.
  cfg = sweeputil.write_sweep(tmp_path, name="idem", axes=[
      {"train.steps": [300, 20, 20, 20], "train.learning_rate": [3e-3, 1e9, 3e-3, 1e-3]}])
  sd = str(tmp_path / "sweep")
  proc = sweeputil.popen_sweep(cfg, sd, "--max_parallel=2")
  long_dir = None
  deadline = time.time() + 240
  killed_at = None
  while time.time() < deadline and proc.poll() is None:
    try:
      long = [r for r in sweeputil.manifest(sd)["runs"] if r["overrides"]["train.steps"] == 300][0]
      long_dir = os.path.join(sd, long["workdir"])
      with open(os.path.join(long_dir, "status.json")) as f:
        st = json.load(f)
    except (OSError, ValueError, KeyError, IndexError):
      time.sleep(0.05)
      continue
    if st["state"] == "running" and 10 <= st["step"] < 300:
      os.kill(long["jobs"][-1]["pids"][0], signal.SIGKILL)
      killed_at = st["step"]
      break
    time.sleep(0.05)
  out, err = proc.communicate(timeout=240)
  assert killed_at is not None, f"the long run never got going: {out}\n{err[-3000:]}"
  assert proc.returncode == 1, err[-3000:]

  m1 = sweeputil.manifest(sd)
  diverged = [r for r in m1["runs"] if r["overrides"]["train.learning_rate"] == 1e9][0]
  killed = [r for r in m1["runs"] if r["overrides"]["train.steps"] == 300][0]
  assert killed["status"] == "failed" and killed["reason"].startswith("interrupted: killed by SIGKILL at step ")
  assert diverged["status"] == "failed" and diverged["reason"].startswith(NAN)
  assert sorted(r["status"] for r in m1["runs"]) == ["done", "done", "failed", "failed"]
  assert all(r["attempts"] == 1 for r in m1["runs"])

  # Plain rerun: resumes the interrupted run only; the diverged one keeps its reason.
  r2 = sweeputil.run_sweep(cfg, sd, "--max_parallel=2")
  assert r2.returncode == 1, r2.stderr[-3000:]
  assert "starting 1;" in r2.stdout and "1 failed (left alone; --retry_failed repairs and reruns them)" in r2.stdout
  m2 = sweeputil.manifest(sd)
  attempts = {r["id"]: r["attempts"] for r in m2["runs"]}
  assert attempts[killed["id"]] == 2 and attempts[diverged["id"]] == 1
  assert sum(attempts.values()) == 5
  with open(os.path.join(sd, "logs", f"{killed['id']}.log")) as f:
    assert "resumed from step" in f.read()

  # --retry_failed reruns exactly the failed one; the rest are untouched.
  r3 = sweeputil.run_sweep(cfg, sd, "--retry_failed", "--max_parallel=2")
  assert r3.returncode == 1, r3.stderr[-3000:]
  assert "starting 1;" in r3.stdout
  m3 = sweeputil.manifest(sd)
  expected = _without_volatile(m2)
  for rec in expected["runs"]:
    if rec["id"] == diverged["id"]:
      rec["attempts"] = 2
      rec["jobs"].append({"backend": "local", "attempt": 2, "exit_code": 1, "host": rec["jobs"][0]["host"]})
  assert _without_volatile(m3) == expected
  final = {r["id"]: r for r in m3["runs"]}
  assert final[killed["id"]]["status"] == "done" and final[killed["id"]]["step"] == 300
  assert final[diverged["id"]]["status"] == "failed" and final[diverged["id"]]["reason"].startswith(NAN)
  assert [j["exit_code"] for j in final[killed["id"]]["jobs"]] == [-9, 0]

  # Nothing left to do: a rerun starts nothing and says why.
  r4 = sweeputil.run_sweep(cfg, sd, "--no_report")
  assert "starting 0; 3 done, 1 failed" in r4.stdout and r4.returncode == 1
  assert _without_volatile(sweeputil.manifest(sd)) == _without_volatile(m3)
  listing = sweeputil.run_sweep(cfg, sd, "--list")
  assert listing.returncode == 0 and listing.stdout.count(" done ") == 3


def test_two_process_run_through_jax_distributed(tmp_path):
  cfg = sweeputil.write_sweep(tmp_path, name="mp", base="configs/lm.py:size=50K",
                              overrides={"mesh.data": -1},
                              backend={"local": {"processes": 2, "local_device_count": 1}})
  sd = str(tmp_path / "sweep")
  env_extra = {"XLA_FLAGS": "--xla_cpu_collective_call_terminate_timeout_seconds=120"}
  r = sweeputil.run_sweep(cfg, sd, "--no_report", env_extra=env_extra)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  (rec,) = sweeputil.manifest(sd)["runs"]
  assert rec["status"] == "done" and rec["step"] == 20
  assert len(rec["jobs"][0]["pids"]) == 2
  logs = [os.path.join(sd, "logs", f"{rec['id']}{s}.log") for s in ("", ".p1")]
  texts = [open(p).read() for p in logs]
  assert "process 0 of 2, 1 local / 2 global devices" in texts[0]
  assert "process 1 of 2, 1 local / 2 global devices" in texts[1]
  assert "--config.distributed.coordinator_address=127.0.0.1:" in texts[1]
  with open(os.path.join(sd, rec["workdir"], "config.json")) as f:
    assert json.load(f)["config"]["distributed"]["num_processes"] == 2


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(tmp_path):
  cfg = sweeputil.write_sweep(tmp_path, name="ctrlc", axes=[{"train.steps": [200, 20]}])
  sd = str(tmp_path / "sweep")
  proc = sweeputil.popen_sweep(cfg, sd, "--max_parallel=1")
  deadline = time.time() + 240
  sent = False
  while time.time() < deadline and proc.poll() is None and not sent:
    time.sleep(0.1)
    try:
      long = [r for r in sweeputil.manifest(sd)["runs"] if r["overrides"]["train.steps"] == 200][0]
      with open(os.path.join(sd, long["workdir"], "status.json")) as f:
        st = json.load(f)
    except (OSError, ValueError, IndexError):
      continue
    if st["state"] == "running" and 10 <= st["step"] < 200:
      proc.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal delivers to the launcher
      sent = True
  out, err = proc.communicate(timeout=240)
  assert sent, out + err[-3000:]
  assert proc.returncode == 130, out + err[-3000:]
  assert "interrupted: rerun the same command to resume" in out
  runs = {r["overrides"]["train.steps"]: r for r in sweeputil.manifest(sd)["runs"]}
  assert runs[200]["status"] == "failed" and runs[200]["reason"].startswith("interrupted by SIGTERM at step ")
  assert runs[200]["jobs"][0]["exit_code"] == 130
  assert (runs[20]["status"], runs[20]["attempts"]) == ("pending", 0)  # never started: stopped before its turn

  r = sweeputil.run_sweep(cfg, sd, "--no_report")
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert "starting 2" in r.stdout
  runs = {r["overrides"]["train.steps"]: r for r in sweeputil.manifest(sd)["runs"]}
  assert [(x["status"], x["attempts"]) for x in (runs[200], runs[20])] == [("done", 2), ("done", 1)]
  with open(os.path.join(sd, "logs", f"{runs[200]['id']}.log")) as f:
    assert "resumed from step" in f.read()


TOY_COMPANION = '''import ml_collections


def get_config(arg=""):
  c = ml_collections.ConfigDict()
  c.name = "toypart"
  c.entrypoint = "scaling.toy_train"
  c.base = "configs/toy.py"
  c.overrides = {"toy": {"K": 4, "r": 4, "betas": (1.0,), "seeds": (0,)},
                 "train": {"steps": 40, "warmup_steps": 2, "steps_per_call": 10, "log_every": 10,
                           "eval_every": 20, "retention_every": 20}, "checkpoint": {"every": 40}}
  c.axes = [{"toy.width": [2, 4]}]
  return c
'''


def test_companion_sweep_runs_into_its_own_dir_and_shares_the_report(tmp_path):
  """A sweep config's `companions` (another entrypoint) run after it, each as its own sweep in
  <sweep_dir>/<name>/, validated before anything starts, and reported together."""
  companion = tmp_path / "toypart.py"
  companion.write_text(TOY_COMPANION)
  cfg = sweeputil.write_sweep(tmp_path, name="withtoy", axes=[{"train.steps": [20]}])
  with open(cfg, "a") as f:
    f.write(f"\n\n_lm = get_config\n\n\ndef get_config(arg=''):\n  c = _lm(arg)\n"
            f"  c.companions = [{str(companion)!r}]\n  return c\n")
  sd = tmp_path / "sweep"
  dry = sweeputil.run_sweep(cfg, str(sd), "--dry_run")
  assert dry.returncode == 0 and f"companion {companion}" in dry.stdout and not sd.exists()
  r = sweeputil.run_sweep(cfg, str(sd))
  assert r.returncode == 0, r.stderr[-3000:]
  assert [x["status"] for x in sweeputil.manifest(str(sd))["runs"]] == ["done"]
  assert [x["status"] for x in sweeputil.manifest(str(sd / "toypart"))["runs"]] == ["done", "done"]
  assert f"--sweep_dir {sd} --sweep_dir {sd / 'toypart'}" in r.stdout and "report: done" in r.stdout
  text = (sd / "report.md").read_text()
  assert "LM: 1 runs" in text and "toy: 2 member runs, widths [2, 4]" in text
  assert "not in manifest.json" not in text  # the companion's run dirs are not the main sweep's
  # A rerun has nothing to do in either part.
  again = sweeputil.run_sweep(cfg, str(sd), "--no_report")
  assert again.returncode == 0 and again.stdout.count("starting 0; 1 done") == 1
  assert "starting 0; 2 done" in again.stdout


def test_a_bad_companion_stops_the_launch_before_anything_runs(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text(TOY_COMPANION.replace('"toy.width": [2, 4]', '"toy.no_such_key": [2, 4]'))
  cfg = sweeputil.write_sweep(tmp_path, name="withbad", axes=[{"train.steps": [20]}])
  with open(cfg, "a") as f:
    f.write(f"\n\n_lm = get_config\n\n\ndef get_config(arg=''):\n  c = _lm(arg)\n"
            f"  c.companions = [{str(bad)!r}]\n  return c\n")
  sd = tmp_path / "sweep"
  r = sweeputil.run_sweep(cfg, str(sd))
  assert r.returncode == 2 and "no_such_key" in r.stderr and r.stderr.count("\n") == 1
  assert not sd.exists()
