"""Issue 15's defects, one regression test each, named after the defect (`pytest -k defect`).

Each failed on the code before the fix (checked against a251a52). Command-line defects reuse the battery's rows
(cases.py) and add what the issue asked about the message; the stop-signal and full-disk defects need a real
process (a signal during imports, a file-size limit), so they run `python -m ...` in a subprocess.
"""

import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest

from scaling.core import rundir
from tests import helpers
from tests.badinput import cases, harness

BY_ID = {c.id: c for c in cases.CASES}


def _line(case_id: str, tmp_path, request) -> str:
  case = BY_ID[case_id]
  lm_run = request.getfixturevalue("lm_run") if case.uses_run else None
  result, found = harness.run_case(case, str(tmp_path), lm_run)
  assert not found, "\n".join(found)
  return result.err_lines[0]


@pytest.mark.parametrize("case_id", [
    "train-config-missing-file", "train-config-syntax-error", "train-config-without-get_config",
    "train-workdir-is-a-file", "train-workdir-read-only", "train-garbage-status-json",
    "train-bogus-state-status-json", "train-coordinator-without-process-keys", "toy-betas-not-numbers",
])
def test_defect_traceback_instead_of_one_line(case_id, tmp_path, request):
  _line(case_id, tmp_path, request)


def test_defect_truncated_config_json_advice_repeats_the_traceback(tmp_path, request):
  line = _line("train-truncated-config-json", tmp_path, request)
  assert "rerun the run" not in line and "python -m scaling.core.repair --workdir" in line


def test_defect_unclear_stepz_message(tmp_path, request):
  line = _line("train-override-typo-nearest-key", tmp_path, request)
  assert line == "error: --config.train.stepz: no setting 'stepz' in config.train — did you mean --config.train.steps?"


def test_defect_unclear_foo_message(tmp_path, request):
  line = _line("train-override-unknown-top-level", tmp_path, request)
  assert line.startswith("error: --config.foo: no setting 'foo' in the config — the config has: checkpoint, data")


def test_defect_foreign_checkpoint_renamed_and_retrained(tmp_path, request):
  _line("train-foreign-checkpoint", tmp_path, request)
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["10", "20"]


@pytest.mark.parametrize("case_id", ["train-torn-middle-metrics-line", "train-metrics-deleted-beside-checkpoints"])
def test_defect_resume_loses_metrics_silently(case_id, tmp_path, request):
  """Exit 2 with the repair command and nothing changed (the one-line part waits for the loop: see cases.py)."""
  case = BY_ID[case_id]
  result, found = harness.run_case(case, str(tmp_path), request.getfixturevalue("lm_run"))
  assert result.code == 2 and "scaling.core.repair --workdir" in result.err_lines[-1]
  assert not [f for f in found if "changed" in f or "new files" in f], found


def test_defect_steps_change_on_a_finished_run_taken_as_resumable(tmp_path, request):
  run = str(tmp_path / "run")
  harness.run_case(cases.Case("copy", "train", (), "", uses_run=True), str(tmp_path), request.getfixturevalue("lm_run"))
  before = harness.snapshot(run)
  result = harness.run_main("train", [*cases.LM, "--config.train.steps=30", f"--workdir={run}"])
  assert result.code == 2 and "--extend" in result.err and before == harness.snapshot(run)


# ---- real processes -----------------------------------------------------------------------------------------
def _catches_sigterm(pid: int) -> bool:
  with open(f"/proc/{pid}/status") as f:
    mask = next(int(ln.split()[1], 16) for ln in f if ln.startswith("SigCgt:"))
  return bool(mask & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize("module,argv", [
    ("scaling.train", [*cases.LM]), ("scaling.toy_train", [*cases.TOY]),
    ("launch.sweep", ["--config=configs/sweeps/demo.py", "--dry_run"]),
])
def test_defect_sigterm_during_start_up_exits_minus_15(module, argv, tmp_path):
  """SIGTERM while the command is still importing (jax, the trainer): exit 130 and one line, nothing written."""
  workdir = str(tmp_path / "w")
  args = [*argv, f"--workdir={workdir}"] if module != "launch.sweep" else argv
  proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=helpers.REPO, env=helpers.env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 60  # a loaded machine can take long to start python
  while time.time() < deadline and proc.poll() is None and not _catches_sigterm(proc.pid):
    time.sleep(0.005)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, (proc.returncode, err[-2000:])
  lines = [ln for ln in err.splitlines() if ln.strip()]
  assert len(lines) == 1 and lines[0].startswith("stopped by SIGTERM"), err[-2000:]
  assert not os.path.exists(os.path.join(workdir, rundir.STATUS_FILE))


# Sets RLIMIT_FSIZE in the child itself, then execs the trainer (no preexec_fn: this process runs jax threads).
_LIMITED = ("import os, resource, sys\nn = int(sys.argv[1])\nresource.setrlimit(resource.RLIMIT_FSIZE, (n, n))\n"
            "os.execv(sys.executable, [sys.executable, '-m', 'scaling.train', *sys.argv[2:]])\n")


def _train(workdir: str, fsize: int | None = None) -> subprocess.CompletedProcess:
  env = helpers.env(1, SCALING_JAX_CACHE="off", JAX_COMPILATION_CACHE_DIR="")
  limit = str(fsize if fsize is not None else resource.RLIM_INFINITY)
  return subprocess.run([sys.executable, "-c", _LIMITED, limit, *cases.LM, f"--workdir={workdir}"], cwd=helpers.REPO,
                        env=env, capture_output=True, text=True, timeout=300)


def test_defect_full_disk_prints_hundreds_of_lines(tmp_path):
  """A file-size limit (RLIMIT_FSIZE: EFBIG, like ENOSPC, with no privileges) hits the first checkpoint: one line,
  exit 1; with the limit lifted the same command resumes and ends equal to an unbroken run."""
  full, ref = str(tmp_path / "full"), str(tmp_path / "ref")
  p = _train(full, fsize=20_000)
  lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
  assert p.returncode == 1 and len(lines) == 1, p.stderr[-3000:]
  assert lines[0].startswith("error: disk full: File too large") and "rerun the same command" in lines[0]
  again = _train(full)
  assert again.returncode == 0, again.stderr[-3000:]
  assert _train(ref).returncode == 0
  with open(os.path.join(ref, "metrics.jsonl"), "rb") as a, open(os.path.join(full, "metrics.jsonl"), "rb") as b:
    assert a.read() == b.read()
  assert json.load(open(os.path.join(full, "status.json")))["state"] == "done"
