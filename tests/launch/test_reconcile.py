"""The launcher checks the manifest against the disk: missing and damaged run dirs, held locks, orphans, repairs."""

import json
import os
import shutil
import signal
import time

import numpy as np

from launch import expand
from launch import manifest as manifest_lib
from launch import sweep as sweep_cli
from launch.configfile import load
from scaling.core import rundir
from tests.badinput import harness
from tests.launch import sweeputil
from tests.lm.test_resume import _final_params


def _planned(tmp_path, steps=(20,)):
  """A sweep config, its sweep dir and a saved manifest (nothing trained)."""
  cfg = sweeputil.write_sweep(tmp_path, name="rec", axes=[{"train.steps": list(steps)}])
  sweep = expand.parse(load(cfg), cfg)
  sd = str(tmp_path / "sweep")
  state = manifest_lib.SweepState.plan(sd, sweep, expand.expand(sweep), None)
  os.makedirs(sd)
  state.initialise_dir(sweep)
  state.save()
  return cfg, sd, state


def _finished(state, rec, steps=20):
  """Writes a finished run dir for rec and records its attempt as a launcher would."""
  run = rundir.RunDir(state.workdir(rec))
  run.write_config("lm", {"train": {"steps": steps}}, {"total_steps": steps})
  run.append_metrics([{"step": s, "tokens": s} for s in range(0, steps + 1, 5)])
  job = state.start_attempt(rec, {"backend": "local", "id": "h:1", "host": "elsewhere", "pids": []})
  run.write_status("done", steps, steps)
  state.finish(rec, job, 0)
  state.save()
  return run


def _cli(capsys, *argv):
  code = sweep_cli.main(list(argv))
  out, err = capsys.readouterr()
  return code, out, err


def test_defect_deleted_run_dir_stays_done(tmp_path, capsys):
  cfg, sd, state = _planned(tmp_path)
  (rec,) = state.runs
  run = _finished(state, rec)
  assert rec["status"] == "done"
  shutil.rmtree(run.path)
  code, out, _ = _cli(capsys, f"--config={cfg}", f"--sweep_dir={sd}", "--list")
  assert code == 0 and "missing" in out and "1 missing" in out
  code, out, _ = _cli(capsys, f"--config={cfg}", f"--sweep_dir={sd}", "--dry_run")
  assert "a launch now would start 1 run(s)" in out


def test_defect_finished_run_with_corrupt_metrics_stays_done(tmp_path, capsys):
  cfg, sd, state = _planned(tmp_path)
  (rec,) = state.runs
  run = _finished(state, rec)
  with open(run.file(rundir.METRICS_FILE)) as f:
    lines = f.read().splitlines(keepends=True)
  with open(run.file(rundir.METRICS_FILE), "w") as f:
    f.write("".join([*lines[:2], "{torn\n", *lines[2:]]))
  before = harness.snapshot(sd)
  code, out, _ = _cli(capsys, f"--config={cfg}", f"--sweep_dir={sd}", "--list")
  assert "failed" in out and "damaged: metrics.jsonl line 3: not valid JSON" in out
  code, out, _ = _cli(capsys, f"--config={cfg}", f"--sweep_dir={sd}", "--dry_run", "--retry_failed")
  assert "retry plan: rerun 0, repair then rerun 1, leave 0" in out
  assert "metrics.jsonl: line 3: not valid JSON -> cut there (keeps steps <= 5)" in out
  assert harness.snapshot(sd) == before  # --list and --dry_run change nothing


def test_garbage_status_is_damaged_and_a_finished_run_with_a_torn_tail_too(tmp_path, capsys):
  cfg, sd, state = _planned(tmp_path, steps=(20, 30))
  a, b = state.runs
  _finished(state, a)
  run_b = _finished(state, b, steps=30)
  with open(state.workdir(a) + "/status.json", "w") as f:
    f.write("{garbage")
  with open(run_b.file(rundir.METRICS_FILE), "a") as f:
    f.write('{"step": 35, "to')
  _, out, _ = _cli(capsys, f"--config={cfg}", f"--sweep_dir={sd}", "--list")
  assert "damaged: status.json not valid JSON" in out and "damaged: metrics.jsonl line 8: not valid JSON" in out


def test_a_held_lock_counts_as_running_elsewhere(tmp_path, capsys):
  cfg, sd, state = _planned(tmp_path)
  (rec,) = state.runs
  with harness.lock_held_elsewhere(state.workdir(rec)) as pid:
    code, out, _ = _cli(capsys, f"--config={cfg}", f"--sweep_dir={sd}", "--list")
    assert f"running elsewhere (pid {pid} on elsewhere holds the run dir lock)" in out
    _, out, _ = _cli(capsys, f"--config={cfg}", f"--sweep_dir={sd}", "--dry_run")
    assert "would start 0 run(s) (1 already running)" in out


def test_exit_130_is_resumable_whatever_status_json_says(tmp_path):
  _, _, state = _planned(tmp_path)
  (rec,) = state.runs
  job = state.start_attempt(rec, {"backend": "local", "id": "h:1"})
  rundir.RunDir(state.workdir(rec)).write_status("failed", 0, 20, reason="Interrupted: SIGTERM")
  state.finish(rec, job, 130)
  assert manifest_lib.is_resumable(rec) and "Interrupted: SIGTERM" in rec["reason"]


def test_one_manifest_reader_for_launch_and_analysis(tmp_path):
  from analysis import load as analysis_load
  (tmp_path / "manifest.json").write_text(json.dumps({"schema": 7, "runs": [{"id": "x"}]}))
  assert analysis_load._read_manifest(str(tmp_path))["runs"] == [{"id": "x"}]  # analysis tolerates the schema
  try:
    manifest_lib.read_manifest(str(tmp_path))
  except manifest_lib.SweepError as e:
    assert "schema 7" in str(e)
  else:
    raise AssertionError("the launcher must refuse another schema")


# ---- end to end ---------------------------------------------------------------------------------------------
def test_defect_garbage_status_json_cannot_be_repaired_with_retry_failed(tmp_path):
  """A garbage status.json and a finished run's torn metrics: --retry_failed prints its plan, repairs both and
  the trainer resumes them; the recomputed metrics equal the originals byte for byte."""
  cfg = sweeputil.write_sweep(tmp_path, name="fix", axes=[{"train.steps": [20, 30]}])
  sd = str(tmp_path / "sweep")
  first = sweeputil.run_sweep(cfg, sd, "--no_report")
  assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
  a, b = sweeputil.manifest(sd)["runs"]
  metrics_b = os.path.join(sd, b["workdir"], rundir.METRICS_FILE)
  with open(metrics_b, "rb") as f:
    original = f.read()
  with open(os.path.join(sd, a["workdir"], rundir.STATUS_FILE), "w") as f:
    f.write("{garbage")
  lines = original.decode().splitlines(keepends=True)
  with open(metrics_b, "w") as f:
    f.write("".join([*lines[:3], lines[3][:10] + "\n", *lines[4:]]))
  plain = sweeputil.run_sweep(cfg, sd, "--no_report")
  assert plain.returncode == 1 and "2 failed (left alone; --retry_failed repairs and reruns them)" in plain.stdout
  fixed = sweeputil.run_sweep(cfg, sd, "--retry_failed", "--no_report")
  assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-2000:]
  assert "retry plan: rerun 0, repair then rerun 2, leave 0" in fixed.stdout
  assert "status.json: unreadable" in fixed.stdout and "cut there" in fixed.stdout
  assert [r["status"] for r in sweeputil.manifest(sd)["runs"]] == ["done", "done"]
  with open(metrics_b, "rb") as f:
    assert f.read() == original


def test_defect_relaunch_starts_a_second_trainer_beside_the_orphan(tmp_path):
  """The launcher is SIGKILLed while its run trains, and (worst case) its manifest never recorded the attempt.
  The relaunch finds the run dir locked, starts nothing, waits for the orphan; exactly one writer, metrics
  strictly increasing, final parameters equal an unbroken run's."""
  steps = 600
  overrides = {"checkpoint.every": 100, "train.eval_every": 200}
  cfg = sweeputil.write_sweep(tmp_path, name="orph", axes=[{"train.steps": [steps]}], overrides=overrides)
  sd = str(tmp_path / "sweep")
  launcher = sweeputil.popen_sweep(cfg, sd, "--no_report")
  deadline = time.time() + 240
  rec = None
  while time.time() < deadline:
    try:
      rec = sweeputil.manifest(sd)["runs"][0]
      if rundir.RunDir(os.path.join(sd, rec["workdir"])).read_status()["step"] >= 20:
        break
    except (OSError, ValueError, KeyError, IndexError, TypeError, rundir.RunDirError):
      pass
    time.sleep(0.05)
  os.kill(launcher.pid, signal.SIGKILL)
  launcher.communicate()
  m = sweeputil.manifest(sd)
  m["runs"][0].update(status="pending", attempts=0, jobs=[], step=None, total_steps=None, reason=None)
  with open(os.path.join(sd, "manifest.json"), "w") as f:
    json.dump(m, f)
  relaunch = sweeputil.run_sweep(cfg, sd, "--no_report")
  assert relaunch.returncode == 0, relaunch.stdout[-3000:] + relaunch.stderr[-2000:]
  assert f"waiting for {rec['id']}: running elsewhere" in relaunch.stdout
  with open(os.path.join(sd, "logs", f"{rec['id']}.log")) as f:
    assert f.read().count("==== attempt") == 1  # no second trainer was ever started
  workdir = os.path.join(sd, rec["workdir"])
  got = [r["step"] for r in sweeputil.helpers.read_jsonl(os.path.join(workdir, rundir.METRICS_FILE))]
  assert got == sorted(set(got)) and got[-1] == steps
  ref = sweeputil.run_sweep(cfg, str(tmp_path / "ref"), "--no_report")
  assert ref.returncode == 0
  ref_dir = os.path.join(str(tmp_path / "ref"), rec["workdir"])
  with open(os.path.join(ref_dir, rundir.METRICS_FILE), "rb") as x, open(os.path.join(workdir, "metrics.jsonl"),
                                                                          "rb") as y:
    assert x.read() == y.read()
  for x, y in zip(_final_params(ref_dir, steps), _final_params(workdir, steps), strict=True):
    np.testing.assert_array_equal(x, y)
  assert sweeputil.manifest(sd)["runs"][0]["status"] == "done"
