"""TPU backend: the rendered gcloud commands, exactly (no cloud access here)."""

import shlex

import ml_collections
import pytest

from launch import expand
from launch import manifest as manifest_lib
from launch import sweep as sweep_cli
from launch.backends import tpu
from launch.configfile import SweepError

SETTINGS = {"names": ["v5e-a", "v5e-b"], "zone": "us-west4-a", "project": "my-proj", "repo_dir": "~/scaling",
            "sweep_dir": "/mnt/gcs/sweeps/t", "env": {"XLA_FLAGS": "--xla_dump_to=/tmp/x y"}}


def _setup(settings=None, axes=None):
  c = ml_collections.ConfigDict()
  c.name = "t"
  c.base = "configs/lm.py:size=1M"
  c.overrides = ml_collections.ConfigDict({"train.schedule": "wsd", "model.dtype": "bfloat16"},
                                          allow_dotted_keys=True)
  c.axes = axes or [{"data.source": ["synthetic"], "seed": [3]}]
  s = expand.parse(c, "t.py")
  runs = expand.expand(s)
  state = manifest_lib.SweepState.plan("/local/sweeps/t", s, runs)
  return s, runs, state, tpu.TpuBackend(settings or SETTINGS, "/local/sweeps/t", None)


def test_run_command_exact():
  s, (run,), state, b = _setup()
  assert run.id == "source-synthetic_seed-3_" + run.id.rsplit("_", 1)[1]
  argv = b.run_argv(s, run, state, "v5e-a")
  wd = f"/mnt/gcs/sweeps/t/runs/{run.id}"
  remote = ("cd ~/scaling && source .venv/bin/activate && PYTHONUNBUFFERED=1 "
            "XLA_FLAGS='--xla_dump_to=/tmp/x y' python -m scaling.train --config=configs/lm.py:size=1M "
            f"--workdir={wd} --config.data.source=synthetic --config.model.dtype=bfloat16 --config.seed=3 "
            "--config.train.schedule=wsd --config.distributed.mode=on --noprogress")
  assert argv == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "v5e-a", "--zone=us-west4-a", "--project=my-proj",
                  "--worker=all", f"--command={remote}"]
  # What --dry_run prints is a shell line that splits back into exactly this argv.
  line = shlex.join(argv)
  assert shlex.split(line) == argv
  assert line == ("gcloud compute tpus tpu-vm ssh v5e-a --zone=us-west4-a --project=my-proj --worker=all "
                  "'--command=cd ~/scaling && source .venv/bin/activate && PYTHONUNBUFFERED=1 "
                  "XLA_FLAGS='\"'\"'--xla_dump_to=/tmp/x y'\"'\"' python -m scaling.train "
                  f"--config=configs/lm.py:size=1M --workdir={wd} --config.data.source=synthetic "
                  "--config.model.dtype=bfloat16 --config.seed=3 --config.train.schedule=wsd "
                  "--config.distributed.mode=on --noprogress'")


def test_values_with_spaces_and_quotes_survive_two_shells():
  s, (run,), state, b = _setup(axes=[{"model.attention_impl": ["it's a b"]}])
  remote = b.remote_command(s, run, "/w")
  # The remote shell splits the command back into the trainer's argv.
  trainer = shlex.split(remote.split(" && ")[-1])
  assert "--config.model.attention_impl=it's a b" in trainer


def test_queued_resources_and_stop_commands():
  settings = dict(SETTINGS, queued_resources=True, accelerator_type="v5litepod-16",
                  runtime_version="v2-alpha-tpuv5-lite", spot=True, bootstrap=["git clone R scaling", "make"])
  s, runs, state, b = _setup(settings)
  assert b.create_argvs("v5e-a") == [
      ["gcloud", "compute", "tpus", "queued-resources", "create", "v5e-a", "--node-id=v5e-a", "--zone=us-west4-a",
       "--project=my-proj", "--accelerator-type=v5litepod-16", "--runtime-version=v2-alpha-tpuv5-lite", "--spot"],
      ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "v5e-a", "--zone=us-west4-a", "--project=my-proj",
       "--worker=all", "--command=git clone R scaling && make"]]
  assert b.describe_argv("v5e-a") == ["gcloud", "compute", "tpus", "queued-resources", "describe", "v5e-a",
                                      "--zone=us-west4-a", "--project=my-proj", "--format=value(state.state)"]
  assert b.delete_argv("v5e-a") == ["gcloud", "compute", "tpus", "queued-resources", "delete", "v5e-a",
                                    "--zone=us-west4-a", "--project=my-proj", "--force", "--quiet"]
  assert b.stop_argv("v5e-a", "/w/runs/x")[-1] == "--command=pkill -TERM -f -- --workdir=/w/runs/x || true"
  text = b.describe(s, runs, state)
  assert text.splitlines()[1] == shlex.join(b.create_argvs("v5e-a")[0])
  assert text.splitlines()[-1] == shlex.join(b.delete_argv("v5e-a"))


def test_round_robin_and_settings_errors():
  s, runs, state, b = _setup(axes=[{"seed": [0, 1, 2]}])
  assert [n for n, _ in b.assignment(runs)] == ["v5e-a", "v5e-b", "v5e-a"]
  with pytest.raises(SweepError, match="queued_resources needs accelerator_type"):
    tpu.TpuBackend({"names": ["a"], "queued_resources": True}, "/x", None)
  with pytest.raises(SweepError, match="names is empty"):
    tpu.TpuBackend({}, "/x", None).validate(s, runs)
  with pytest.raises(SweepError, match="unknown backend.tpu setting 'zones' \\(did you mean: zone"):
    tpu.TpuBackend({"zones": "x"}, "/x", None)


def test_dry_run_prints_the_commands_and_writes_nothing(tmp_path, capsys):
  cfg = tmp_path / "tpu_sweep.py"
  cfg.write_text("import ml_collections\n"
                 "def get_config():\n"
                 "  c = ml_collections.ConfigDict()\n"
                 "  c.name = 'tp'\n  c.base = 'configs/lm.py:size=20M'\n  c.seeds = [0, 1]\n"
                 "  c.backend = {'tpu': {'names': ['v4-a'], 'zone': 'us-central2-b', 'project': 'p'}}\n"
                 "  return c\n")
  sweep_dir = tmp_path / "sd"
  assert sweep_cli.main([f"--config={cfg}", f"--sweep_dir={sweep_dir}", "--backend=tpu", "--dry_run"]) == 0
  out = capsys.readouterr().out
  assert "20M" in out and "tpu" in out
  ssh = [ln for ln in out.splitlines() if ln.startswith("gcloud compute tpus tpu-vm ssh v4-a")]
  assert len(ssh) == 2 and all("--worker=all" in ln and "--config.distributed.mode=on" in ln for ln in ssh)
  assert not sweep_dir.exists()
