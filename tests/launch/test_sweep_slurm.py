"""SLURM backend: the rendered sbatch script, and a real 2-run sweep through sbatch/squeue on a local cluster.

The real test starts a one-node cluster with launch/slurm_local.sh (installing Debian's slurm-wlm when sbatch is
absent) and skips, printing why, only when the script reports that this OS cannot run SLURM (exit 3).
"""

import os
import subprocess
import warnings

import ml_collections
import pytest

from launch import expand
from launch import manifest as manifest_lib
from launch.backends import slurm
from launch.configfile import SweepError
from tests import helpers
from tests.launch import sweeputil

SCRIPT = os.path.join(helpers.REPO, "launch", "slurm_local.sh")


def _setup(settings):
  c = ml_collections.ConfigDict()
  c.name = "sl"
  c.base = "configs/lm.py"
  c.axes = [{"model.size": ["50K", "1M"]}]
  c.seeds = [0, 1]
  s = expand.parse(c, "sl.py")
  runs = expand.expand(s)
  state = manifest_lib.SweepState.plan("/scratch/sw", s, runs)
  return s, runs, state, slurm.SlurmBackend(settings, "/scratch/sw", None)


def test_script_groups_runs_by_resources_and_renders_multinode():
  s, runs, state, b = _setup({"partition": "gpu", "time": "04:00:00", "gpus_per_node": 8, "max_parallel": 3,
                              "setup": ["module load cuda"], "env": {"A": "x y"}, "python": "/opt/py/bin/python",
                              "per_run": [{"match": {"model.size": "1M"}, "nodes": 2, "time": "1-00:00:00"}]})
  groups = b.groups(runs)
  assert [[r.varying["model.size"] for r in members] for _, members in groups] == [["50K", "50K"], ["1M", "1M"]]
  small = b.render_script(s, groups[0][1], groups[0][0], state).splitlines()
  big = b.render_script(s, groups[1][1], groups[1][0], state).splitlines()
  assert [ln for ln in small if ln.startswith("#SBATCH")] == [
      "#SBATCH --job-name=sweep-sl", "#SBATCH --array=0-1%3", "#SBATCH --output=/scratch/sw/slurm/%A_%a.out",
      "#SBATCH --open-mode=append", "#SBATCH --requeue", "#SBATCH --signal=TERM@120", "#SBATCH --nodes=1",
      "#SBATCH --ntasks-per-node=1", "#SBATCH --cpus-per-task=1", "#SBATCH --partition=gpu",
      "#SBATCH --time=04:00:00", "#SBATCH --gpus-per-node=8"]
  assert "#SBATCH --nodes=2" in big and "#SBATCH --time=1-00:00:00" in big
  assert "# Task i runs one run; 2 task(s) per run joined by jax.distributed (SLURM auto-detection)." in big
  assert "export A='x y'" in small and "module load cuda" in small
  run0 = groups[0][1][0]
  assert (f"  0) RUN_ID={run0.id}; CMD=(/opt/py/bin/python -m scaling.train --config=configs/lm.py "
          f"--workdir=/scratch/sw/runs/{run0.id} --config.model.size=50K --config.seed=0 --noprogress) ;;") in small
  assert 'srun --kill-on-bad-exit=1 --cpus-per-task=1 "${CMD[@]}"' in small
  assert 'if [[ $rc -eq 130 && ${SLURM_RESTART_COUNT:-0} -lt 3 ]]; then' in small


def test_bad_slurm_settings():
  with pytest.raises(SweepError, match="per_run\\[0\\]: 'gpu' is not a resource"):
    slurm.SlurmBackend({"per_run": [{"match": {"model.size": "1M"}, "gpu": 1}]}, "/x", None)
  s, runs, state, b = _setup({"per_run": [{"match": {"model.sise": "1M"}, "nodes": 2}]})
  with pytest.raises(SweepError, match="matches on 'model.sise', which no run of the sweep sets"):
    b.validate(s, runs)


@pytest.fixture(scope="module")
def slurm_cluster():
  """A running one-node cluster; started (and afterwards stopped) here if it was not up already."""
  was_up = subprocess.run(["bash", SCRIPT, "status"], capture_output=True, text=True).returncode == 0
  if not was_up:
    p = subprocess.run(["bash", SCRIPT, "start"], capture_output=True, text=True, timeout=600)
    if p.returncode == 3:
      reason = f"SLURM cannot run on this OS: {p.stderr.strip().splitlines()[-1]}"
      warnings.warn(reason, stacklevel=2)  # shown in pytest's warnings summary even without -rs
      pytest.skip(reason)
    assert p.returncode == 0, f"launch/slurm_local.sh start failed:\n{p.stdout}\n{p.stderr}"
  yield
  if not was_up:
    subprocess.run(["bash", SCRIPT, "stop"], capture_output=True, text=True, timeout=120)


def test_two_run_sweep_through_slurm(tmp_path, slurm_cluster):
  cfg = sweeputil.write_sweep(tmp_path, name="slurm2", seeds=[0, 1],
                              backend={"slurm": {"poll_s": 1.0, "time": "00:15:00"}})
  sd = str(tmp_path / "sweep")
  # Submit and return; then a second launch re-attaches to the same jobs (submitting nothing) and waits.
  r = sweeputil.run_sweep(cfg, sd, "--backend=slurm", "--no_wait")
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  assert "submitted array " in r.stdout and "starting 2" in r.stdout
  r = sweeputil.run_sweep(cfg, sd, "--backend=slurm", "--no_report", timeout=600)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  assert "submitted" not in r.stdout and "starting 0" in r.stdout
  m = sweeputil.manifest(sd)
  assert m["backend"] == "slurm"
  array = m["runs"][0]["jobs"][0]["array_job_id"]
  for task, rec in enumerate(m["runs"]):
    assert (rec["status"], rec["step"], rec["attempts"]) == ("done", 20, 1)
    (job,) = rec["jobs"]
    assert (job["id"], job["state"], job["exit_code"]) == (f"{array}_{task}", "COMPLETED", 0)
    with open(os.path.join(sd, "logs", f"{rec['id']}.log")) as f:
      assert f"==== slurm job {array}_{task}" in f.read()
  # Nothing left: a rerun submits nothing.
  r = sweeputil.run_sweep(cfg, sd, "--backend=slurm", "--no_report")
  assert r.returncode == 0 and "starting 0; 2 done" in r.stdout and "submitted" not in r.stdout
