"""The run-directory contract: writes, reads, truncation on resume, and loud failures on malformed files."""

import json

import pytest

from scaling.core import rundir


def test_roundtrip_and_schema(tmp_path):
  run = rundir.RunDir(str(tmp_path / "r"))
  run.write_config("lm", {"a": {"b": 1}}, {"size": "1M", "n_params": 10})
  meta = run.read_config()
  assert meta["schema"] == rundir.SCHEMA_VERSION and meta["experiment"] == "lm"
  assert meta["summary"] == {"size": "1M", "n_params": 10} and meta["config"] == {"a": {"b": 1}}
  assert "jax" in meta["versions"]
  run.append_metrics([{"step": 0, "tokens": 0, "eval/background/loss": 3.0}, {"step": 5, "tokens": 40}])
  assert [r["step"] for r in run.read_metrics()] == [0, 5]
  run.write_status("done", 5, 5)
  assert run.read_status()["state"] == "done"
  assert rundir.is_run_dir(run.path) and not rundir.is_run_dir(str(tmp_path))


def test_summary_keys_are_checked(tmp_path):
  with pytest.raises(rundir.RunDirError, match="not in rundir.SUMMARY_KEYS"):
    rundir.RunDir(str(tmp_path)).write_config("lm", {}, {"sizee": "1M"})


def test_truncate_drops_later_steps_and_torn_lines(tmp_path):
  run = rundir.RunDir(str(tmp_path))
  run.append_metrics([{"step": s, "tokens": s} for s in (0, 10, 20, 30)])
  with open(run.file(rundir.METRICS_FILE), "a") as f:
    f.write('{"step": 40, "tok')  # killed mid-write
  assert run.truncate_metrics(20) == 3
  assert [r["step"] for r in run.read_metrics()] == [0, 10, 20]
  assert run.truncate_metrics(-1) == 0 and run.read_metrics() == []


def test_malformed_files_fail_with_clear_messages(tmp_path):
  run = rundir.RunDir(str(tmp_path))
  with pytest.raises(rundir.RunDirError, match="missing; this folder is not a run dir"):
    run.read_config()
  (tmp_path / rundir.CONFIG_FILE).write_text("{not json")
  with pytest.raises(rundir.RunDirError, match="not valid JSON"):
    run.read_config()
  (tmp_path / rundir.CONFIG_FILE).write_text(json.dumps({"schema": 99, "experiment": "lm", "summary": {},
                                                         "config": {}}))
  with pytest.raises(rundir.RunDirError, match="schema 99"):
    run.read_config()
  (tmp_path / rundir.METRICS_FILE).write_text('{"step": 5}\n{"step": 3}\n')
  with pytest.raises(rundir.RunDirError, match="does not increase"):
    run.read_metrics()
  (tmp_path / rundir.METRICS_FILE).write_text('{"step": 5}\n{"ste')
  with pytest.raises(rundir.RunDirError, match=":2: not valid JSON"):
    run.read_metrics()
  assert [r["step"] for r in run.read_metrics(strict=False)] == [5]
  (tmp_path / rundir.STATUS_FILE).write_text('{"state": "paused"}')
  with pytest.raises(rundir.RunDirError, match="is not one of"):
    run.read_status()


def test_split_metric_key():
  assert rundir.split_metric_key("eval/cmp/accuracy") == ("eval", "cmp", "accuracy")
  assert rundir.split_metric_key("train/loss") == ("train", None, "loss")
  assert rundir.split_metric_key("step") is None
