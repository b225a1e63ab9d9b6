"""The fine-tuning trainer (scaling/lm/finetune.py) on a tiny pretrained run: what each method trains, the exact
trainable count of --dry_run, forgetting records, SIGKILL-and-restart, and teaching a task the model never saw."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import finetune as ft_configs
from scaling.core import checkpoint as ckpt_lib
from scaling.core import rundir
from scaling.lm import finetune, trainable
from scaling.lm import train as lm_train
from tests import helpers
from tests.badinput import harness

PRE = {"data.vocab_size": 256, "data.seq_len": 32, "data.eval_sequences": 16, "data.prefetch_threads": 1,
       "data.task_eval_limit": 200, "data.task_train_probe": 50, "train.batch_size": 8, "train.steps": 30,
       "train.learning_rate": 3e-3, "train.warmup_steps": 2, "train.log_every": 5, "train.eval_every": 0,
       "checkpoint.every": 15, "checkpoint.async_save": False, "mesh.data": 1, "data.tasks.add.frequency": 2.0}
# The same as flags, for the command line (target cmp: a task the pretrained run never saw).
FT_FLAGS = ["--config.data.vocab_size=256", "--config.data.seq_len=32", "--config.data.eval_sequences=16",
            "--config.data.prefetch_threads=1", "--config.data.task_eval_limit=200",
            "--config.data.task_train_probe=50", "--config.train.batch_size=8", "--config.data.tasks.cmp.frequency=8",
            "--config.train.log_every=5", "--config.train.eval_every=0", "--config.checkpoint.async_save=false",
            "--config.mesh.data=1", "--config.finetune.shots=0,1", "--noprogress"]


def ft_config(method: str, init_from: str, steps: int = 6, **keys):
  c = ft_configs.get_config(f"method={method},size=50K,target=cmp,steps={steps},rank=4")
  values = {k: v for k, v in PRE.items() if not k.startswith(("train.steps", "train.learning", "train.warmup",
                                                              "data.tasks"))}
  values.update({"data.tasks.cmp.frequency": 8.0, "finetune.init_from": init_from, "finetune.shots": "0,1",
                 "checkpoint.every": 3, **keys})
  return helpers.set_keys(c, values)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
  """A 30-step 50K run on background text with T_ADD injected (T_CMP never seen); checkpoints at 15 and 30."""
  path = str(tmp_path_factory.mktemp("ft") / "pre")
  cfg = helpers.set_keys(helpers.tiny_config(), PRE)
  assert lm_train.train(cfg, path, devices=jax.devices()[:1], progress=False)["state"] == "done"
  return path


def _state(workdir: str, step: int) -> dict:
  return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))


def _data(workdir: str, step: int) -> dict:
  with open(os.path.join(workdir, "checkpoints", str(step), "data", "metadata")) as f:
    return json.load(f)


def _size(path: str) -> int:
  return sum(os.path.getsize(os.path.join(r, n)) for r, _, names in os.walk(path) for n in names)


def _leaves_equal(a, b) -> bool:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


@pytest.mark.parametrize("method", ["full", "lora", "dora", "frozen"])
def test_each_method_trains_only_its_parameters(pretrained, tmp_path, method):
  cfg = ft_config(method, pretrained)
  workdir = str(tmp_path / method)
  untouched = harness.snapshot(pretrained)
  result = finetune.train(cfg, workdir, devices=jax.devices()[:1], progress=False)
  assert result["state"] == "done" and result["step"] == 6
  base = _state(pretrained, 30)["params"]
  state = _state(workdir, 6)
  n_trained = trainable.count(state["params"])
  dry = finetune.dry_run(ft_config(method, pretrained, **{"memory.plan_devices": 1}))
  printed = re.search(r"trainable .* params=([\d,]+) ", dry)
  assert int(printed.group(1).replace(",", "")) == n_trained  # --dry_run's count is the trained tree's
  if method == "full":
    assert state["frozen"] == {} and n_trained == trainable.count(base)
    changed = [not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(base), jax.tree.leaves(state["params"]))]
    assert all(changed)
  else:  # the frozen base stays in the pretrained run; the checkpoint says which of its steps it is
    assert "frozen" not in state and _data(workdir, 6)["frozen_from"]["step"] == 30
  if method in ("lora", "dora"):
    assert 0 < n_trained < trainable.count(base)
    lora_b = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(state["params"])[0]
              if path[-1].key == "lora_b"]
    assert len(lora_b) == 7 and all(np.any(b != 0) for b in lora_b)  # every target's B left its zero init
  records = rundir.RunDir(workdir).read_metrics()
  before, after = records[0], records[-1]
  assert before["step"] == 0 and after["step"] == 6
  assert {"forget/target_delta_accuracy", "forget/background_delta_loss", "forget/other_delta_accuracy",
          "forget/cmp_1shot/delta_accuracy"} <= set(after)
  assert after["forget/target_delta_accuracy"] == after["eval/cmp/accuracy"] - before["eval/cmp/accuracy"]
  assert after["eval/add/n"] == before["eval/add/n"] == 200  # the same fixed held-out set on both sides
  if method == "frozen":
    assert state["params"] == {} and n_trained == 0
    assert all(after[k] == before[k] for k in before if k.startswith("eval/"))
  else:
    assert after["eval/background/loss"] != before["eval/background/loss"]
  assert harness.snapshot(pretrained) == untouched  # the pretrained run dir is only read


def _run_finetune(args, **popen):
  return subprocess.run([sys.executable, "-m", "scaling.finetune", *args], cwd=helpers.REPO, env=helpers.env(),
                        capture_output=True, text=True, timeout=300, **popen)


def test_sigkill_and_restart_is_bit_identical(pretrained, tmp_path):
  """SIGKILL mid-fine-tune, rerun the command: metrics.jsonl and the final state (adapters, optimizer, frozen base)
  equal an unbroken run's. All three runs are subprocesses (one environment, as in tests/lm/test_resume.py)."""
  steps, every = 100, 25
  ref, killed = str(tmp_path / "ref"), str(tmp_path / "killed")
  args = [f"--config=configs/finetune.py:method=lora,size=50K,target=cmp,steps={steps},rank=4", *FT_FLAGS,
          f"--config.checkpoint.every={every}", "--config.train.log_every=10", f"--init_from={pretrained}"]
  done = _run_finetune([*args, f"--workdir={ref}"])
  assert done.returncode == 0, done.stderr[-3000:]
  proc = subprocess.Popen([sys.executable, "-m", "scaling.finetune", *args, f"--workdir={killed}"],
                          cwd=helpers.REPO, env=helpers.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None and not os.path.isdir(
      os.path.join(killed, "checkpoints", str(every))):
    time.sleep(0.005)
  assert proc.poll() is None, "the fine-tune finished before it could be killed; make it longer"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  status = rundir.RunDir(killed).read_status()
  assert status["state"] == "running" and status["step"] < steps  # really killed mid-run
  resumed = _run_finetune([*args, f"--workdir={killed}"])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resumed from step" in resumed.stderr
  with open(os.path.join(ref, "metrics.jsonl"), "rb") as a, open(os.path.join(killed, "metrics.jsonl"), "rb") as b:
    assert a.read() == b.read()
  assert _leaves_equal(_state(ref, steps), _state(killed, steps))
  # The command line and the API build the same config: an in-process call on the same run dir accepts it as its own.
  cfg = ft_config("lora", pretrained, steps=steps, **{"checkpoint.every": every, "train.log_every": 10})
  assert finetune.train(cfg, killed, devices=jax.devices()[:1], progress=False)["state"] == "done"


def test_teaches_a_task_the_pretrained_model_never_saw(pretrained, tmp_path):
  """Full fine-tuning on T_CMP, which pretraining never injected: its held-out test accuracy (pairs never trained
  on) rises from the pretrained model's (about 0: it does not answer with either symbol) to above 1/2, the accuracy
  of answering one of the two symbols at random (chance for a model that knows the format but not the order)."""
  keys = {"train.learning_rate": 3e-3, "checkpoint.every": 300, "train.batch_size": 32,
          "data.tasks.cmp.frequency": 32.0}
  assert finetune.train(ft_config("full", pretrained, steps=300, **keys), str(tmp_path / "w"),
                        devices=jax.devices()[:1], progress=False)["state"] == "done"
  records = rundir.RunDir(str(tmp_path / "w")).read_metrics()
  before, after = records[0], records[-1]
  n = after["eval/cmp/n"]
  assert before["eval/cmp/accuracy"] < 0.1
  # 3 binomial standard errors above 1/2 on the n held-out pairs.
  assert after["eval/cmp/accuracy"] > 0.5 + 3 * np.sqrt(0.25 / n), after["eval/cmp/accuracy"]
  assert after["forget/target_delta_accuracy"] == after["eval/cmp/accuracy"] - before["eval/cmp/accuracy"]


def test_restore_subtree_reads_params_onto_any_mesh(pretrained):
  """Params only (no optimizer state), onto a 2-device fsdp sharding although a 1-device run wrote them."""
  params = _state(pretrained, 30)["params"]
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("fsdp",))
  spec = lambda a: jax.sharding.PartitionSpec("fsdp") if a.shape[0] % 2 == 0 else jax.sharding.PartitionSpec()
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype,
                                                         sharding=jax.sharding.NamedSharding(mesh, spec(a))), params)
  step, restored = ckpt_lib.restore_subtree(os.path.join(pretrained, "checkpoints"), abstract)
  assert step == 30 and _leaves_equal(restored, params)
  assert {len(x.sharding.device_set) for x in jax.tree.leaves(restored)} <= {1, 2}


def test_fsdp_fine_tune_of_a_one_device_run_matches_one_device(pretrained, tmp_path):
  """A 1-device pretrained run fine-tuned on a 4-device fsdp mesh: the base arrives sharded and bit-exact, and the
  losses match a 1-device fine-tune (to float32 reduction-order error)."""
  small = {"train.log_every": 1, "data.task_eval_limit": 16, "data.task_train_probe": 8, "finetune.shots": "0",
           "data.eval_sequences": 8}
  one = ft_config("dora", pretrained, steps=4, **small)
  four = ft_config("dora", pretrained, steps=4, **small, **{"mesh.data": 1, "mesh.fsdp": 4, "sharding.preset": "fsdp",
                                                            "finetune.save_frozen": True})  # to read the base back
  finetune.train(one, str(tmp_path / "one"), devices=jax.devices()[:1], progress=False)
  finetune.train(four, str(tmp_path / "four"), devices=jax.devices()[:4], progress=False)
  assert _leaves_equal(_state(str(tmp_path / "four"), 4)["frozen"], _state(pretrained, 30)["params"])
  a, b = (rundir.RunDir(str(tmp_path / w)).read_metrics() for w in ("one", "four"))
  assert [r["step"] for r in a] == [r["step"] for r in b]
  for ra, rb in zip(a, b, strict=True):
    for k in ra:
      if k.startswith(("train/loss", "eval/")) and k.endswith(("loss", "accuracy")):
        np.testing.assert_allclose(rb[k], ra[k], rtol=2e-4, atol=2e-5, err_msg=k)


def test_the_memory_check_counts_optimizer_state_of_the_trainable_tree_only(pretrained, tmp_path):
  """A device memory between the LoRA plan and the full fine-tune plan: LoRA runs, full is refused (one line,
  before any compute and with nothing written)."""
  from scaling.core.errors import ConfigError  # noqa: PLC0415
  from scaling.lm import config as configlib  # noqa: PLC0415
  from scaling.lm import finetune_config, memory  # noqa: PLC0415

  def plan(method):
    c = finetune_config.resolve(ft_config(method, pretrained))
    return memory.plan(configlib.resolve(finetune_config.lm_view(c)), 1, 0.0,
                       finetune.trainer(c).param_split)

  lora, full = plan("lora"), plan("full")
  assert lora.total < full.total
  gib = (lora.total + full.total) / 2 / memory.HEADROOM / memory.GIB
  lora_dir = str(tmp_path / "lora")
  result = finetune.train(ft_config("lora", pretrained, **{"memory.device_gib": gib}), lora_dir,
                          devices=jax.devices()[:1], progress=False)
  assert result["state"] == "done"
  full_dir = str(tmp_path / "full")
  with pytest.raises(ConfigError, match="GiB"):
    finetune.train(ft_config("full", pretrained, **{"memory.device_gib": gib}), full_dir,
                   devices=jax.devices()[:1], progress=False)
  assert not os.path.exists(full_dir) or not os.listdir(full_dir)


def test_save_frozen_keeps_the_base_in_the_checkpoint_and_resume_reads_it_back_otherwise(pretrained, tmp_path):
  """finetune.save_frozen=True: a self-contained checkpoint holding the base bit for bit. Default: a checkpoint
  without it, several times smaller, whose resume reads the base back from the recorded step of --init_from (and
  says so in one line when that step is gone)."""
  base = _state(pretrained, 30)["params"]
  kept = str(tmp_path / "kept")
  finetune.train(ft_config("lora", pretrained, **{"finetune.save_frozen": True}), kept,
                 devices=jax.devices()[:1], progress=False)
  assert _leaves_equal(_state(kept, 6)["frozen"], base)
  lean = str(tmp_path / "lean")
  stopped = finetune.train(ft_config("lora", pretrained), lean, devices=jax.devices()[:1], progress=False,
                           stop_after=3)
  assert stopped["step"] == 3 and "frozen" not in _state(lean, 3)
  assert 3 * _size(os.path.join(lean, "checkpoints", "3")) < _size(os.path.join(kept, "checkpoints", "6"))
  # The resume reads the base back from step 30 of the pretrained run and ends where the unbroken run did.
  assert finetune.train(ft_config("lora", pretrained), lean, devices=jax.devices()[:1], progress=False)["step"] == 6
  assert _leaves_equal(_state(lean, 6)["params"], _state(kept, 6)["params"])
  assert _leaves_equal(_state(lean, 6)["opt_state"], _state(kept, 6)["opt_state"])


def test_resume_without_the_recorded_base_step_is_one_line_and_touches_nothing(pretrained, tmp_path):
  import shutil  # noqa: PLC0415

  from scaling.core.errors import ConfigError  # noqa: PLC0415

  pre = str(tmp_path / "pre")
  shutil.copytree(pretrained, pre)
  ft = str(tmp_path / "ft")
  assert finetune.train(ft_config("lora", pre), ft, devices=jax.devices()[:1], progress=False,
                        stop_after=3)["step"] == 3
  shutil.rmtree(os.path.join(pre, "checkpoints", "30"))  # e.g. pruned by the pretraining run's checkpoint.keep
  before = harness.snapshot(ft)
  with pytest.raises(ConfigError, match=r"frozen base was step 30 of .* no longer holds step 30 .*save_frozen"):
    finetune.train(ft_config("lora", pre), ft, devices=jax.devices()[:1], progress=False)
  assert harness.snapshot(ft) == before
