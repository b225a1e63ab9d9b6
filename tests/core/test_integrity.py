"""Resume integrity: metrics.jsonl against the checkpoints, the repair command, and train.steps changes."""

import json
import os

import pytest

from scaling.core import repair, resume, rundir
from scaling.core.errors import ConfigError, MetricsError
from tests.badinput import harness


def _run(tmp_path, steps=range(0, 61, 5), ckpts=(20, 40, 60), state="done", name="r"):
  """A finished-looking run dir: records every 5 steps, empty checkpoint step folders."""
  run = rundir.RunDir(str(tmp_path / name))
  run.write_config("lm", {"train": {"steps": 60}}, {"total_steps": 60})
  run.append_metrics([{"step": s, "tokens": 8 * s} for s in steps])
  run.append_metrics([{"step": s, "seconds": 0.1} for s in steps], name=rundir.PERF_FILE)
  for s in ckpts:
    os.makedirs(os.path.join(run.checkpoint_dir, str(s), "state"))
  run.write_status(state, 60, 60)
  return run


def _lines(run, name=rundir.METRICS_FILE):
  with open(run.file(name)) as f:
    return f.read().splitlines(keepends=True)


def _set_lines(run, lines, name=rundir.METRICS_FILE):
  with open(run.file(name), "w") as f:
    f.write("".join(lines))


def test_torn_last_line_is_repaired_and_later_records_dropped(tmp_path):
  run = _run(tmp_path)
  _set_lines(run, [*_lines(run), '{"step": 65, "tok'])
  out = run.resume_metrics(40)
  assert (out.kept, out.dropped, out.dropped_torn_line) == (9, 4, True)
  assert [r["step"] for r in run.read_metrics()] == list(range(0, 41, 5))


@pytest.mark.parametrize("damage,needle", [
    (lambda ls: [*ls[:3], ls[3][:7] + "\n", *ls[4:]], "line 4: not valid JSON"),
    (lambda ls: [*ls[:3], '{"tokens": 1}\n', *ls[3:]], "line 4: record without an integer 'step'"),
    (lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], "line 3: step 5 does not increase"),
])
def test_defect_damage_before_the_end_is_refused_and_nothing_touched(tmp_path, damage, needle):
  run = _run(tmp_path)
  _set_lines(run, damage(_lines(run)))
  before = harness.snapshot(run.path)
  with pytest.raises(MetricsError, match=needle) as e:
    run.resume_metrics(40)
  assert f"python -m scaling.core.repair --workdir {run.path}" in str(e.value)
  assert harness.snapshot(run.path) == before


def test_defect_deleted_metrics_with_a_checkpoint_is_refused(tmp_path):
  run = _run(tmp_path)
  os.remove(run.file(rundir.METRICS_FILE))
  with pytest.raises(MetricsError, match="missing although the run has a checkpoint at step 40"):
    run.resume_metrics(40)
  run.resume_metrics(None)  # no checkpoint: a fresh start, nothing to lose


def test_records_missing_up_to_the_checkpoint_and_beyond_the_run_are_refused(tmp_path):
  run = _run(tmp_path)
  _set_lines(run, [ln for ln in _lines(run) if json.loads(ln)["step"] != 25])
  with pytest.raises(MetricsError, match=r"no records for step\(s\) 25"):
    run.resume_metrics(40, expected_steps=range(0, 41, 5))
  run2 = _run(tmp_path, name="r2", steps=range(0, 91, 5))
  with pytest.raises(MetricsError, match="records up to step 90 but the run has 60 steps"):
    run2.resume_metrics(40, total_steps=60)


def test_perf_file_is_only_trimmed(tmp_path):
  run = _run(tmp_path)
  lines = _lines(run, rundir.PERF_FILE)
  _set_lines(run, [*lines[:2], "junk\n", *lines[2:]], rundir.PERF_FILE)
  assert run.resume_metrics(40, name=rundir.PERF_FILE).kept == 2


def test_repair_cuts_metrics_sets_checkpoints_aside_and_keeps_a_backup(tmp_path, capsys):
  run = _run(tmp_path)
  original = _lines(run)
  _set_lines(run, [*original[:6], "garbage\n", *original[7:]])  # steps 0..25 survive
  damaged = harness.snapshot(run.path)
  assert repair.main(["--workdir", run.path, "--dry_run"]) == 0
  assert harness.snapshot(run.path) == damaged
  assert repair.main(["--workdir", run.path]) == 0
  out = capsys.readouterr().out
  assert "line 7: not valid JSON -> cut there (keeps steps <= 25)" in out and "resume from step 20" in out
  assert sorted(os.listdir(run.checkpoint_dir)) == ["20"]
  assert [r["step"] for r in run.read_metrics()] == [0, 5, 10, 15, 20, 25]
  (backup,) = [d for d in os.listdir(run.path) if d.startswith(".repair-")]
  b = os.path.join(run.path, backup)
  assert sorted(os.listdir(os.path.join(b, "checkpoints"))) == ["40", "60"]
  with open(os.path.join(b, rundir.METRICS_FILE)) as f:
    assert f.read().splitlines(keepends=True)[7:] == original[7:]  # the original, kept whole
  status = run.read_status()
  assert status["state"] == "failed" and status["reason"].startswith("interrupted: repaired") and status["step"] == 20
  run.resume_metrics(20)  # and the trainer can resume


def test_repair_sets_unreadable_status_and_config_aside(tmp_path, capsys):
  run = _run(tmp_path)
  with open(run.file(rundir.STATUS_FILE), "w") as f:
    f.write("{garbage")
  with open(run.file(rundir.CONFIG_FILE), "w") as f:
    f.write('{"schema": 1')
  assert repair.main(["--workdir", run.path]) == 0
  assert not os.path.exists(run.file(rundir.CONFIG_FILE))
  assert run.read_status()["reason"].startswith("interrupted: repaired") and run.read_status()["step"] == 60
  assert sorted(os.listdir(run.checkpoint_dir)) == ["20", "40", "60"]
  assert "status.json: unreadable" in capsys.readouterr().out


def test_repair_of_a_toy_member_works_on_its_program_dir(tmp_path, capsys):
  program = rundir.RunDir(str(tmp_path / "w"))
  program.write_status("done", 60, 60, members=["a", "b"])
  os.makedirs(os.path.join(program.checkpoint_dir, "40"))
  os.makedirs(os.path.join(program.checkpoint_dir, "60"))
  for m in ("a", "b"):
    member = rundir.RunDir(os.path.join(program.path, m))
    member.write_config("toy", {}, {})
    member.append_metrics([{"step": s} for s in range(0, 61, 10)])
    member.write_status("done", 60, 60)
  with open(os.path.join(program.path, "b", rundir.METRICS_FILE), "a") as f:
    f.write('{"step": 70}\n{"step": 65}\n')
  assert repair.main(["--workdir", os.path.join(program.path, "b")]) == 0
  assert sorted(os.listdir(program.checkpoint_dir)) == ["40", "60"]  # both members still cover step 60
  assert program.read_status()["state"] == "failed"
  assert "b/metrics.jsonl: line 9: step 65 does not increase" in capsys.readouterr().out


def test_repair_refuses_a_run_in_use(tmp_path, capsys):
  run = _run(tmp_path)
  with harness.lock_held_elsewhere(run.path):
    assert repair.main(["--workdir", run.path]) == 2
  assert "is in use by pid" in capsys.readouterr().err


TRAIN = {"steps": 60, "schedule": "cosine", "learning_rate": 1e-3, "warmup_steps": 5, "min_lr_ratio": 0.1,
         "decay_fraction": 0.2}


def _cfg(**train):
  return {"train": {**TRAIN, **train}, "checkpoint": {"every": 10}, "model": {"d": 4}}


def test_steps_change_refused_when_the_schedule_depends_on_it():
  with pytest.raises(ConfigError, match="the cosine learning-rate schedule depends on train.steps.*--extend"):
    resume.check_config_change(_cfg(), _cfg(steps=70), resumable=(), step=60)
  with pytest.raises(ConfigError, match="the wsd learning-rate schedule"):
    resume.check_config_change(_cfg(schedule="wsd"), _cfg(schedule="wsd", steps=70), resumable=(), step=55)


def test_steps_change_allowed_where_the_trained_steps_saw_the_same_schedule():
  for old, new, step in ((_cfg(schedule="constant"), _cfg(schedule="constant", steps=90), 60),
                         (_cfg(schedule="wsd"), _cfg(schedule="wsd", steps=90), 30)):
    change = resume.check_config_change(old, new, resumable=(), step=step)
    assert change.history_entry["changes"] == {"train.steps": [60, 90]}
    assert change.history_entry["schedule_unchanged_on_trained_steps"]


def test_extend_records_the_change_in_config_history(tmp_path):
  change = resume.check_config_change(_cfg(), _cfg(steps=70), resumable=(), step=60, extend=True)
  assert change.history_entry["how"] == "--extend" and not change.history_entry["schedule_unchanged_on_trained_steps"]
  run = rundir.RunDir(str(tmp_path / "r"))
  run.write_config("lm", _cfg(), {})
  run.write_config("lm", _cfg(steps=70), {}, history_entry=change.history_entry)
  run.write_config("lm", _cfg(steps=70), {})  # a later plain resume keeps the history
  (entry,) = run.read_config()["history"]
  assert entry["step"] == 60 and entry["changes"] == {"train.steps": [60, 70]} and "time" in entry


def test_other_changes_and_shortening_are_refused():
  assert resume.check_config_change(_cfg(), _cfg(), resumable=(), step=60).history_entry is None
  ok = resume.check_config_change({**_cfg(), "checkpoint": {"every": 5}}, _cfg(), resumable=("checkpoint.",), step=0)
  assert ok.changed == ["checkpoint.every"]
  with pytest.raises(ConfigError, match=r"different config \(model.d: 4 -> 8\)"):
    resume.check_config_change(_cfg(), {**_cfg(), "model": {"d": 8}}, resumable=(), step=60)
  with pytest.raises(ConfigError, match="already reached step 60"):
    resume.check_config_change(_cfg(), _cfg(steps=50), resumable=(), step=60, extend=True)
