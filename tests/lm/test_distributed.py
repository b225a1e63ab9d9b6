"""Two processes on localhost (jax.distributed, gloo CPU collectives) == one process with the same devices."""

import os
import socket
import subprocess
import sys

import numpy as np

from tests import helpers

STEPS = 20


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _args(workdir):
  return [*helpers.tiny_flags("200K"), f"--config.train.steps={STEPS}", "--config.train.log_every=2",
          "--config.train.eval_every=10", "--config.checkpoint.every=10", "--config.mesh.data=-1",
          f"--workdir={workdir}"]


def test_two_processes_match_one_process(tmp_path):
  single = str(tmp_path / "single")
  one = subprocess.run([sys.executable, "-m", "scaling.train", *_args(single)], cwd=helpers.REPO,
                       env=helpers.env(n_devices=4), capture_output=True, text=True, timeout=300)
  assert one.returncode == 0, one.stderr[-3000:]

  multi = str(tmp_path / "multi")
  port = _free_port()
  env = helpers.env(n_devices=1)
  env.pop("XLA_FLAGS")  # devices per process come from distributed.local_device_count
  procs = [subprocess.Popen(
      [sys.executable, "-m", "scaling.train", *_args(multi),
       f"--config.distributed.coordinator_address=localhost:{port}", "--config.distributed.num_processes=2",
       f"--config.distributed.process_id={i}", "--config.distributed.local_device_count=2"],
      cwd=helpers.REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]

  a = helpers.read_jsonl(os.path.join(single, "metrics.jsonl"))
  b = helpers.read_jsonl(os.path.join(multi, "metrics.jsonl"))
  assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) == STEPS // 2 + 1
  for key in ("train/loss", "train/grad_norm", "eval/background/loss"):
    xs = [r[key] for r in a if key in r]
    ys = [r[key] for r in b if key in r]
    assert len(xs) == len(ys) > 0
    np.testing.assert_allclose(ys, xs, rtol=2e-5, err_msg=key)
  # The multi-process run really was two processes with 2 devices each.
  meta = helpers.read_jsonl(os.path.join(multi, "perf.jsonl"))
  assert meta  # written by process 0 only
  assert "process 0 of 2" in outs[0][1] and "process 1 of 2" in outs[1][1]
