"""configs/sweeps/finetune.py: init_from and the keys shared with the pretrained run are derived per size from a
pretraining sweep's manifest; a missing manifest or size is one clear line."""

import json
import os

import ml_collections
import pytest

from launch import expand
from launch import manifest as manifest_lib
from launch.configfile import SweepError, load
from scaling.core import rundir

SPEC = "configs/sweeps/finetune.py"


def _write_sweep(sweep_dir: str, c, spec: str):
  """A pretraining sweep dir as launch/sweep.py leaves it before training (manifest + each run's config.json)."""
  runs = expand.expand(expand.parse(c, spec))
  records = [manifest_lib.new_record(r) for r in runs]
  os.makedirs(sweep_dir)
  with open(os.path.join(sweep_dir, "manifest.json"), "w") as f:
    json.dump({"schema": manifest_lib.SCHEMA, "sweep": "pre", "runs": records}, f)
  paths = []
  for run, rec in zip(runs, records, strict=True):
    paths.append(os.path.join(sweep_dir, rec["workdir"]))
    rundir.RunDir(paths[-1]).write_config("lm", run.config.to_dict(), {})
  return runs, paths


def _pretraining_sweep(sweep_dir: str, sizes=("20K", "200K"), frequencies=(32.0, 16.0)) -> dict[str, str]:
  """A small pretraining sweep (seed 3, seq_len 16); size -> run dir at frequency 32."""
  c = ml_collections.ConfigDict()
  c.name = "pre"
  c.base = "configs/lm.py"
  c.overrides = {"data": {"vocab_size": 256, "seq_len": 16}, "seed": 3}
  c.axes = [{"model.size": list(sizes)}, {"data.tasks.cmp.frequency": list(frequencies)}]
  runs, paths = _write_sweep(sweep_dir, c, "pre.py")
  return {r.varying["model.size"]: p for r, p in zip(runs, paths, strict=True)
          if r.varying["data.tasks.cmp.frequency"] == 32.0}


def _runs(arg: str):
  return expand.expand(expand.parse(load(f"{SPEC}:{arg}"), SPEC))


def test_init_from_and_shared_keys_follow_the_size(tmp_path):
  pre = _pretraining_sweep(str(tmp_path / "pre"))
  runs = _runs(f"small,pretrained={tmp_path / 'pre'},pick=frequency=32.0")
  assert len(runs) == 2 * 4  # 2 sizes x (frozen, full, lora, dora) x 1 seed
  assert {r.overrides["finetune.method"] for r in runs} == {"frozen", "full", "lora", "dora"}
  for r in runs:
    assert r.overrides["finetune.init_from"] == pre[r.overrides["model.size"]]
    assert (r.overrides["seed"], r.overrides["data.vocab_size"], r.overrides["data.seq_len"]) == (3, 256, 16)
    assert r.overrides["finetune.shots"] == "0,1,3"  # 16 tokens hold 3 shots (4 per instance, then the query)
    assert r.config.finetune.init_from == pre[r.overrides["model.size"]]


def test_the_full_table(tmp_path):
  """3 sizes x (frozen + 3 full learning rates + lora and dora at 2 ranks x 3 rates) x 2 fine-tune seeds."""
  pre = _pretraining_sweep(str(tmp_path / "pre"), sizes=("20K", "50K", "200K"), frequencies=(16.0, 32.0))
  runs = _runs(f"pretrained={tmp_path / 'pre'},pick=frequency=32.0")
  assert len(runs) == 3 * (1 + 3 + 2 * 2 * 3) * 2 == 96
  assert len({r.id for r in runs}) == 96
  assert {r.overrides["finetune.init_from"] for r in runs} == set(pre.values())
  frozen = [r for r in runs if r.overrides["finetune.method"] == "frozen"]
  assert len(frozen) == 3 * 2  # once per size and seed


def test_missing_manifest_or_size_is_one_clear_line(tmp_path):
  with pytest.raises(SweepError, match="run the pretraining sweep first"):
    _runs(f"small,pretrained={tmp_path / 'nope'}")
  _pretraining_sweep(str(tmp_path / "pre"), sizes=("20K",))
  with pytest.raises(SweepError, match=r"no pretraining run of model.size=200K .*sizes there: 20K"):
    _runs(f"small,pretrained={tmp_path / 'pre'},pick=frequency=32.0")
  with pytest.raises(SweepError, match="match pick=''"):
    _runs(f"small,pretrained={tmp_path / 'pre'},pick=")


def test_the_defaults_fit_the_demo_sweep(tmp_path):
  """The README's order (demo, then this sweep with no presets) must work: the default sizes and pick name runs the
  demo has, and the k-shot evals fit its sequence length."""
  from scaling.lm import finetune_config  # noqa: PLC0415

  _write_sweep(str(tmp_path / "demo"), load("configs/sweeps/demo.py"), "configs/sweeps/demo.py")
  for arg in ("", "small,"):
    runs = _runs(f"{arg}pretrained={tmp_path / 'demo'}")
    for r in runs:
      pre = rundir.RunDir(r.overrides["finetune.init_from"]).read_config()["config"]
      assert (pre["model"]["size"], pre["seed"]) == (r.overrides["model.size"], 0)
      assert pre["data"]["tasks"]["cmp"]["frequency"] == 32.0
      finetune_config.validate(finetune_config.resolve(r.config), n_devices=1)  # shots fit data.seq_len
