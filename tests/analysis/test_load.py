"""analysis.load: discovery, the manifest cross-check, loud gaps, the tidy table and its views."""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from analysis import load
from scaling.core import rundir
from tests.analysis import synth


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
  root = tmp_path_factory.mktemp("sweeps")
  synth.lm_sweep(str(root / "lm"), sizes=synth.SIZES[:3], freqs=[1.0])
  synth.toy_sweep(str(root / "toy"), widths=[4, 8, 16], betas=[1.0, 1.5], gaps=(4,))
  return root


def test_lm_sweep_counts_and_gaps(sweeps):
  L = load.load(str(sweeps / "lm"))
  n_good = 3 * 2  # sizes × seeds
  assert L.report.n_run_dirs == n_good + 1 + 2  # + failed + two burst runs
  assert L.runs["usable"].sum() == n_good + 2
  assert [r for r, _ in L.report.missing] == ["lm/never"]
  assert "never started" in L.report.missing[0][1]
  (run, why), = L.report.failed
  assert run == "lm/runs/failed" and "non-finite loss at step 61" in why and "manifest" in why
  assert L.report.excluded == [] and L.report.malformed == []
  assert set(load.COLUMNS) <= set(L.df.columns)
  # the failed run's metrics stay in the table (status failed) but final() leaves them out
  assert (L.df["status"] == "failed").any()
  assert not load.final(L.df)["run"].astype(str).str.contains("failed").any()


def test_key_split_and_task_columns(sweeps):
  L = load.load(str(sweeps / "lm"))
  d = L.df
  tr = d[(d["group"] == "eval") & (d["task"] == "cmp") & (d["split"] == "train") & (d["metric"] == "loss")]
  te = d[(d["group"] == "eval") & (d["task"] == "cmp") & (d["split"] == "test") & (d["metric"] == "loss")]
  assert len(tr) == len(te) > 0
  assert set(te["frequency_per_batch"]) == {1.0} and set(te["schedule"].astype(str)) == {"random", "burst"}
  r = te.iloc[-1]
  assert r["flops"] == pytest.approx(r["tokens"] * 6.0 * r["n_params_non_embedding"])
  bg = load.metric(d, "eval/background/loss")
  assert len(bg) and bg["task"].eq("background").all() and bg["frequency_per_batch"].isna().all()
  train = load.metric(d, "train/loss")
  assert len(train) and train["task"].isna().all()


def test_final_takes_the_last_value_of_each_key(tmp_path):
  run = rundir.RunDir(str(tmp_path / "s" / "r"))
  run.write_config("lm", {}, {"n_params_non_embedding": 10, "seed": 0})
  run.append_metrics([{"step": 0, "tokens": 0, "eval/background/loss": 5.0, "train/loss": 6.0},
                      {"step": 10, "tokens": 10, "train/loss": 4.0},
                      {"step": 20, "tokens": 20, "eval/background/loss": 3.0},
                      {"step": 30, "tokens": 30, "train/loss": 2.0}])
  run.write_status("done", 30, 30)
  fin = load.final(load.load(str(tmp_path / "s")).df)
  assert load.metric(fin, "eval/background/loss")["value"].tolist() == [3.0]
  assert load.metric(fin, "train/loss")[["step", "value"]].values.tolist() == [[30, 2.0]]


def test_per_task_view(sweeps):
  L = load.load(str(sweeps / "lm"))
  acc = load.per_task(L.df, "accuracy")
  assert set(acc["task"].astype(str)) == {"cmp", "add"} and (acc["split"] == "test").all()
  assert acc.groupby(["run", "task"], observed=True).size().max() == 1


def test_toy_members_and_their_retention(sweeps):
  L = load.load(str(sweeps / "toy"))
  toy = L.runs
  assert len(toy) == 3 * 2 + 2 and toy["usable"].all() and (toy["status"] == "done").all()
  assert set(toy["beta"]) == {1.0, 1.5} and set(toy["width"]) == {4.0, 8.0, 16.0}
  d = L.df[(L.df["group"] == "toy") & (L.df["metric"] == "loss_norm")]
  assert set(d["task"].astype(str)) == {f"t{k:02d}" for k in range(1, synth.TOY_K + 1)}
  pi = synth.toy_spec(1.0).pi
  t1 = d[(d["task"] == "t01") & (d["beta"] == 1.0)]
  assert t1["frequency_per_token"].iloc[0] == pytest.approx(pi[0])
  # retention from retention.jsonl (β = 1), retention.npz (β = 1.5) and toy/retention metric lists (withhold)
  keys = {r: a["toy/retention"] for r, a in L.arrays.items() if "toy/retention" in a}
  assert len(keys) == len(toy)
  assert any("beta=1.5" in r for r in keys) and any("beta=1.0" in r and "withhold" not in r for r in keys)
  for series in keys.values():
    assert np.asarray(series[-1][1]).shape == (synth.TOY_K, synth.TOY_R)
  jsonl = next(v for r, v in keys.items() if "beta=1.0" in r and "withhold" not in r)
  assert [s for s, _ in jsonl] == [0, 500, 1000]
  inj = L.runs[L.runs["inject_task"].notna()]
  assert set(inj["inject_period"]) == {4.0} and set(inj["inject_task"]) == {float(synth.TOY_K)}
  t = L.df[(L.df["task"] == f"t{synth.TOY_K:02d}") & L.df["inject_task"].notna()]
  assert set(t["schedule"].astype(str)) == {"withhold"} and set(t["period"]) == {4.0}


def test_a_member_without_status_inherits_its_invocations(tmp_path):
  synth.toy_sweep(str(tmp_path / "toy"), widths=[4], betas=[1.0], gaps=())
  member = tmp_path / "toy" / "runs" / "toy-w4" / "beta=1.0_seed=0"
  os.remove(member / "status.json")
  L = load.load(str(tmp_path / "toy"))
  assert L.runs["status"].tolist() == ["done"] and not L.report.unfinished
  rundir.RunDir(str(tmp_path / "toy" / "runs" / "toy-w4")).write_status("failed", 3, 10, reason="OOM")
  L = load.load(str(tmp_path / "toy"))
  assert L.report.failed == [("toy/runs/toy-w4/beta=1.0_seed=0", "OOM")]


def test_unusable_runs_are_excluded_with_a_reason(tmp_path):
  sweep = tmp_path / "s"
  good = rundir.RunDir(str(sweep / "good"))
  good.write_config("lm", {}, {"n_params_non_embedding": 10, "seed": 0})
  good.append_metrics([{"step": 1, "tokens": 1, "eval/background/loss": 3.0}])
  good.write_status("done", 1, 1)
  empty = rundir.RunDir(str(sweep / "empty"))
  empty.write_config("lm", {}, {"n_params_non_embedding": 20, "seed": 0})
  empty.write_status("done", 1, 1)
  nan = rundir.RunDir(str(sweep / "nan"))
  nan.write_config("lm", {}, {"n_params_non_embedding": 30, "seed": 0})
  nan.append_metrics([{"step": 1, "tokens": 1, "eval/background/loss": 3.0},
                      {"step": 2, "tokens": 2, "eval/cmp/loss": float("nan")}])
  nan.write_status("done", 2, 2)
  bad = sweep / "bad"
  bad.mkdir()
  (bad / "config.json").write_text("{not json")
  running = rundir.RunDir(str(sweep / "running"))
  running.write_config("lm", {}, {"n_params_non_embedding": 40, "seed": 0})
  running.append_metrics([{"step": 1, "tokens": 1, "eval/background/loss": 3.0}])
  running.write_status("running", 1, 10)
  L = load.load(str(sweep))
  excluded = dict(L.report.excluded)
  assert excluded["s/empty"].startswith("no metrics")
  assert "non-finite eval/cmp/loss" in excluded["s/nan"] and "step 2" in excluded["s/nan"]
  assert [r for r, _ in L.report.malformed] == ["s/bad"] and "not valid JSON" in L.report.malformed[0][1]
  assert dict(L.report.unfinished)["s/running"].startswith("running, step 1/10")
  assert set(L.df["run"].astype(str)) == {"good", "running"}
  assert list(L.runs.loc[L.runs["usable"], "run"]) == ["good"]
  lines = L.report.problems()
  assert all("\n" not in ln for ln in lines) and len(lines) == 4


@pytest.mark.parametrize("setup,needle", [
    ("empty", "no run dirs"),
    ("only_empty_runs", "no usable runs"),
    ("missing", "no such directory"),
    ("bad_manifest", "manifest.json: not valid JSON"),
])
def test_nothing_usable_is_one_clear_error(tmp_path, setup, needle):
  sweep = tmp_path / "s"
  if setup != "missing":
    sweep.mkdir()
  if setup == "only_empty_runs":
    r = rundir.RunDir(str(sweep / "r"))
    r.write_config("lm", {}, {"seed": 0})
    r.write_status("done", 0, 0)
  if setup == "bad_manifest":
    (sweep / "manifest.json").write_text("{")
  with pytest.raises(load.LoadError, match=needle) as e:
    load.load(str(sweep))
  assert "\n" not in str(e.value)


def test_manifest_only_sweep_lists_every_run_as_missing(tmp_path):
  sweep = tmp_path / "s"
  sweep.mkdir()
  (sweep / "manifest.json").write_text(json.dumps({"schema": 1, "runs": [
      {"id": "a", "workdir": "runs/a", "status": "pending"},
      {"id": "b", "workdir": "runs/b", "status": "failed", "reason": "exit 1: boom"}]}))
  with pytest.raises(load.LoadError, match="no usable runs") as e:
    load.load(str(sweep))
  assert "boom" in str(e.value)


def test_write_csv_and_parquet(sweeps, tmp_path):
  L = load.load([str(sweeps / "lm"), str(sweeps / "toy")])
  paths = L.write(str(tmp_path / "out"))
  names = {os.path.basename(p) for p in paths}
  assert {"runs.csv", "runs_index.csv"} <= names
  back = pd.read_csv(tmp_path / "out" / "runs.csv")
  assert list(back.columns) == list(L.df.columns) and len(back) == len(L.df)
  assert set(back["sweep"]) == {"lm", "toy"}
  if "runs.parquet" in names:
    assert len(pd.read_parquet(tmp_path / "out" / "runs.parquet")) == len(L.df)
  assert not math.isnan(back["value"].sum())
