"""Sweep expansion: product/zip/seeds, stable ids, derived per-size settings, flags, bad configs, run selection."""

import json
import os

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from launch import expand, plan
from launch import manifest as manifest_lib
from launch import sweep as sweep_cli
from scaling.core import rundir
from scaling.lm import ladder
from tests.launch import sweeputil


def _sweep(axes=(), seeds=None, overrides=None, base="configs/lm.py", **extra):
  c = ml_collections.ConfigDict()
  c.name = "unit"
  c.base = base
  c.overrides = ml_collections.ConfigDict(overrides or {}, allow_dotted_keys=True)
  c.axes = list(axes)
  if seeds is not None:
    c.seeds = seeds
  for k, v in extra.items():
    c[k] = v
  return expand.parse(c, "unit.py")


def test_product_zip_and_seeds_in_order():
  s = _sweep(axes=[{"model.size": ["50K", "200K"]},
                   {"train.steps": [10, 20, 30], "train.warmup_steps": [1, 2, 3]}], seeds=[0, 1])
  runs = expand.expand(s)
  assert len(runs) == 2 * 3 * 2
  assert [r.varying for r in runs[:3]] == [
      {"model.size": "50K", "train.steps": 10, "train.warmup_steps": 1, "seed": 0},
      {"model.size": "50K", "train.steps": 10, "train.warmup_steps": 1, "seed": 1},
      {"model.size": "50K", "train.steps": 20, "train.warmup_steps": 2, "seed": 0}]
  assert runs[-1].varying == {"model.size": "200K", "train.steps": 30, "train.warmup_steps": 3, "seed": 1}
  # Zipped keys move together; the applied config carries every override.
  assert all(r.config.train.warmup_steps * 10 == r.config.train.steps for r in runs)
  assert len({r.id for r in runs}) == len(runs)


def test_ids_are_stable_readable_and_follow_the_definition():
  a = expand.expand(_sweep(axes=[{"model.size": ["1M"]}], seeds=[0],
                           overrides={"train.steps": 7, "train.warmup_steps": 1}))
  # Golden value: changes only when the id scheme changes (then update it and say so in the change log).
  assert a[0].id == "size-1M_seed-0_" + expand.run_hash("scaling.train", "configs/lm.py",
                                                        {"model.size": "1M", "seed": 0, "train.steps": 7,
                                                         "train.warmup_steps": 1})
  assert a[0].id == "size-1M_seed-0_0d2cc3aa"
  # Dict order does not matter; every part of the definition does; backend settings do not.
  b = expand.expand(_sweep(axes=[{"model.size": ["1M"]}], seeds=[0],
                           overrides={"train.warmup_steps": 1, "train.steps": 7},
                           backend={"slurm": {"partition": "gpu"}}))
  assert b[0].id == a[0].id
  c = expand.expand(_sweep(axes=[{"model.size": ["1M"]}], seeds=[0], overrides={"train.steps": 8,
                                                                              "train.warmup_steps": 1}))
  d = expand.expand(_sweep(axes=[{"model.size": ["1M"]}], seeds=[0], base="configs/lm.py:size=1M",
                           overrides={"train.steps": 7, "train.warmup_steps": 1}))
  assert len({a[0].id, c[0].id, d[0].id}) == 3
  assert c[0].id.startswith("size-1M_seed-0_")


def test_short_names_disambiguate():
  assert expand.short_names(["model.size", "data.tasks.cmp.frequency", "data.tasks.add.frequency", "seed"]) == {
      "model.size": "size", "data.tasks.cmp.frequency": "cmp.frequency",
      "data.tasks.add.frequency": "add.frequency", "seed": "seed"}


def test_flags_parse_back_to_the_same_config():
  s = _sweep(axes=[{"train.learning_rate": [1e-05], "checkpoint.async_save": [False], "model.size": ["200K"]}],
             overrides={"train.steps": 12, "model.rope_theta": 5e5, "train.schedule": "wsd"})
  (run,) = expand.expand(s)
  argv = ["x", "--config=configs/lm.py", *run.flags()]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=False, sys_argv=argv)
  cwd = os.getcwd()
  os.chdir(sweeputil.helpers.REPO)
  try:
    fv(argv)
  finally:
    os.chdir(cwd)
  assert fv.config.to_dict() == run.config.to_dict()


def test_derived_settings_per_size_come_from_run_settings():
  s = _sweep(axes=[{"model.size": ["50K", "200K", "1M"]}], overrides={"data.seq_len": 64})
  runs = expand.expand(s)
  rows = plan.rows_for(s, runs)
  from scaling.lm import config as configlib
  for run, row in zip(runs, rows):
    n = configlib.summary(configlib.resolve(run.config))["n_params_non_embedding"]
    rs = ladder.run_settings(n, 64)
    assert (row.cols["steps"], row.cols["batch"], row.cols["lr"]) == (str(rs.steps), str(rs.batch_size),
                                                                     f"{rs.learning_rate:.3g}")
    assert row.flops > 0 and row.cols["size"] == run.varying["model.size"]
  assert len({r.cols["steps"] for r in rows}) == 3  # really per size
  # A sweep's `derived` function adds per-run overrides; explicit values win over derived ones.
  s2 = _sweep(axes=[{"model.size": ["50K", "1M"]}], overrides={"train.warmup_steps": 3},
              derived=lambda o: {"train.steps": 100 if o["model.size"] == "50K" else 200, "train.warmup_steps": 9})
  r2 = expand.expand(s2)
  assert [r.overrides["train.steps"] for r in r2] == [100, 200]
  assert [r.overrides["train.warmup_steps"] for r in r2] == [3, 3]


def test_estimate_says_where_throughput_comes_from(tmp_path):
  s = _sweep(axes=[{"model.size": ["50K"]}])
  rows = plan.rows_for(s, expand.expand(s))
  footer = plan.estimate(rows, "local", {}, str(tmp_path), None)
  assert "assumed" in footer and rows[0].est_s > 0
  footer = plan.estimate(rows, "slurm", {"flops_per_s": 1e15}, str(tmp_path), None)
  assert "from the sweep config" in footer


BAD = [
    ({"axes": [{"train.stepz": [1]}]}, [], "unknown config key 'train.stepz' in configs/lm.py:size=50K (did you "
                                           "mean: train.steps"),
    ({"axes": [{"train.steps": []}]}, [], "axis 'train.steps' (axes[0]) is empty"),
    ({"axes": [{"train.steps": [10, 20], "seed": [0]}]}, [], "axes[0] zips keys of unequal lengths: "
                                                             "train.steps (2), seed (1)"),
    ({}, ["--backend=k8s"], "unknown backend 'k8s'; choose one of local, slurm, tpu"),
    ({"backend": {"k8s": {}}}, [], "unknown backend 'k8s' in backend settings"),
    ({"backend": {"slurm": {"partitoin": "gpu"}}}, ["--backend=slurm"],
     "unknown backend.slurm setting 'partitoin' (did you mean: partition?)"),
    ({"axes": [{"train.steps": ["ten"]}]}, [], "cannot set train.steps='ten'"),
    ({"overrides": {"train.warmup_steps": 50}}, [], "train.warmup_steps=50 exceeds train.steps=20"),
    ({"axes": [{"model.size": ["50K", "50K"]}]}, [], "have the same overrides"),
]


@pytest.mark.parametrize("change,flags_,message", BAD, ids=[b[2][:30] for b in BAD])
def test_bad_sweep_configs_give_one_error_line_and_touch_nothing(tmp_path, capsys, change, flags_, message):
  cfg = sweeputil.write_sweep(tmp_path, overrides=change.get("overrides"), axes=change.get("axes", ()),
                              backend=change.get("backend"))
  sweep_dir = tmp_path / "sweep"
  rc = sweep_cli.main([f"--config={cfg}", f"--sweep_dir={sweep_dir}", *flags_])
  out, err = capsys.readouterr()
  assert rc == 2
  assert out == ""
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), err
  assert message in lines[0]
  assert not sweep_dir.exists()


def test_bad_config_leaves_an_existing_sweep_dir_untouched(tmp_path, capsys):
  sweep_dir = tmp_path / "sweep"
  sweep_dir.mkdir()
  (sweep_dir / "manifest.json").write_text('{"keep": "me"}')
  cfg = sweeputil.write_sweep(tmp_path, axes=[{"train.steps": [1, 2], "seed": [0]}])
  assert sweep_cli.main([f"--config={cfg}", f"--sweep_dir={sweep_dir}"]) == 2
  assert (sweep_dir / "manifest.json").read_text() == '{"keep": "me"}'
  assert sorted(os.listdir(sweep_dir)) == ["manifest.json"]
  capsys.readouterr()


def test_unknown_top_level_key_and_dotted_overrides_hint(tmp_path, capsys):
  path = tmp_path / "typo.py"
  path.write_text("import ml_collections\ndef get_config():\n  c = ml_collections.ConfigDict()\n"
                  "  c.name = 'x'\n  c.base = 'configs/lm.py'\n  c.axis = [{'seed': [0]}]\n  return c\n")
  assert sweep_cli.main([f"--config={path}", f"--sweep_dir={tmp_path / 's'}"]) == 2
  assert "unknown sweep setting 'axis' (did you mean: axes?)" in capsys.readouterr().err
  path.write_text("import ml_collections\ndef get_config():\n  c = ml_collections.ConfigDict()\n"
                  "  c.name = 'x'\n  c.base = 'configs/lm.py'\n  c.overrides = {'train.steps': 3}\n  return c\n")
  assert sweep_cli.main([f"--config={path}", f"--sweep_dir={tmp_path / 's'}"]) == 2
  assert "allow_dotted_keys=True" in capsys.readouterr().err


def _state(tmp_path, records):
  m = {"schema": 1, "sweep": "x", "runs": records, "removed_runs": []}
  return manifest_lib.SweepState(str(tmp_path), m)


def _rec(rid, status, reason=None):
  return {"id": rid, "workdir": f"runs/{rid}", "overrides": {}, "varying": {}, "status": status, "reason": reason,
          "step": None, "total_steps": None, "attempts": 0 if status == "pending" else 1, "jobs": []}


def test_select_default_only_missing_retry_failed(tmp_path):
  st = _state(tmp_path, [_rec("new", "pending"), _rec("ok", "done"), _rec("nan", "failed", "non-finite loss"),
                         _rec("cut", "failed", "interrupted: killed by SIGKILL at step 10; rerun"),
                         _rec("busy", "running")])
  pick = lambda **kw: [r["id"] for r in sweep_cli.select(st, **kw)[0]]  # noqa: E731
  assert pick(only_missing=False, retry_failed=False) == ["new", "cut"]
  assert pick(only_missing=True, retry_failed=False) == ["new"]
  assert pick(only_missing=False, retry_failed=True) == ["new", "nan", "cut"]


def _status(tmp_path, rid, state, step, reason=None):
  d = tmp_path / "runs" / rid
  d.mkdir(parents=True, exist_ok=True)
  (d / rundir.STATUS_FILE).write_text(json.dumps({"state": state, "step": step, "total_steps": 20,
                                                  "reason": reason, "updated": rundir.now_iso()}))


def test_refresh_and_finish_tell_interrupted_from_failed(tmp_path):
  recs = [_rec(r, "running") for r in ("killed", "stale", "noconfig", "oldfail", "gone")]
  st = _state(tmp_path, recs)
  k, s, n, o, g = recs
  # An earlier attempt's status.json, present before this attempt started.
  _status(tmp_path, "oldfail", "failed", 3, reason="non-finite training loss at step 3")
  for rec in recs:
    st.start_attempt(rec, {"backend": "local", "id": "h:1"})
  _status(tmp_path, "killed", "running", 10)
  st.finish(k, k["jobs"][-1], -9)
  assert (k["status"], k["reason"]) == ("failed", "interrupted: killed by SIGKILL at step 10; rerun to resume "
                                                  "from its last checkpoint")
  assert manifest_lib.is_resumable(k)
  st.refresh(k, alive=lambda r: False)  # a later look keeps the better reason
  assert k["reason"].startswith("interrupted: killed by SIGKILL")
  _status(tmp_path, "stale", "running", 5)
  st.refresh(s, alive=lambda r: True)
  assert (s["status"], s["step"]) == ("running", 5)
  st.refresh(s, alive=lambda r: False)
  assert s["status"] == "failed" and s["reason"].startswith("interrupted: stopped at step 5 of 20")
  st.finish(n, n["jobs"][-1], 2, "error: bad flag")
  assert (n["status"], n["reason"]) == ("failed", "exit 2: error: bad flag")
  assert not manifest_lib.is_resumable(n)
  # The earlier attempt's status.json does not explain this attempt's exit code, now or later.
  st.finish(o, o["jobs"][-1], 2, "error: different config")
  assert o["reason"] == "exit 2: error: different config"
  st.refresh(o, alive=lambda r: False)
  assert o["reason"] == "exit 2: error: different config"
  _status(tmp_path, "gone", "done", 20)
  st.finish(g, g["jobs"][-1], 0)
  assert (g["status"], g["reason"], g["step"]) == ("done", None, 20)


def test_report_hook_says_what_happened(tmp_path, capsys, monkeypatch):
  (tmp_path / "logs").mkdir()
  st = _state(tmp_path, [])
  monkeypatch.setattr(sweep_cli, "REPORT_MODULE", "analysis.no_such_report")
  sweep_cli.run_report([st])
  assert capsys.readouterr().out == "report: skipped (analysis.no_such_report is not available in this checkout)\n"
  monkeypatch.setattr(sweep_cli, "REPORT_MODULE", "tests.launch.fake_report")
  sweep_cli.run_report([st])
  out = capsys.readouterr().out
  assert "report: done" in out and f"wrote {tmp_path}/report.md" in out
  (tmp_path / "FAIL").write_text("")
  sweep_cli.run_report([st])
  out = capsys.readouterr().out
  assert f"report: FAILED (exit 3): ValueError: boom; see {tmp_path}/logs/report.log" in out
