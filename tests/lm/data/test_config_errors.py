"""Bad data configs fail before training with one line that names the key."""

import os

import jax
import pytest
from ml_collections import config_dict

from scaling.lm import config as configlib
from scaling.lm import train
from tests import helpers
from tests.lm.data.common import data_config


def _unknown_task(c):
  c.data.tasks.sort = config_dict.ConfigDict({"frequency": 1.0, "schedule": "random", "period": 1})


def _set(**kv):
  return lambda c: helpers.set_keys(c, {key.replace("__", "."): value for key, value in kv.items()})


CASES = [
    (_unknown_task, "data.tasks.sort: unknown task; registered tasks: add, cmp"),
    (_set(data__tasks__cmp__frequency=-1.0), "data.tasks.cmp.frequency=-1.0 must be a finite number >= 0"),
    (_set(data__tasks__cmp__frequency=20.0), "need up to 20 rows in one batch but the batch has 16"),
    (_set(data__tasks__cmp__frequency=2.0, data__tasks__cmp__schedule="burst", data__tasks__cmp__period=10),
     "need up to 20 rows"),
    (_set(data__tasks__cmp__schedule="withhold", data__tasks__cmp__period=50), "nothing to withhold"),
    (_set(data__tasks__cmp__frequency=0.1, data__tasks__cmp__schedule="withhold", data__tasks__cmp__period=15),
     "must be a whole number"),
    (_set(data__tasks__cmp__frequency=1.0, data__tasks__cmp__period=5), "only applies to burst/withhold"),
    (_set(data__tasks__cmp__frequency=1.0, data__tasks__cmp__schedule="sometimes"), "schedule 'sometimes'"),
    (_set(data__tasks__cmp__freq=1.0), "data.tasks.cmp has unknown key(s) ['freq']"),
    (_set(data__vocab_size=128, data__tasks__add__frequency=1.0), "data.tasks.add: task 'add' needs 200 content"),
    (_set(data__seq_len=3, data__tasks__cmp__frequency=1.0), "data.seq_len=3 is shorter than a task instance"),
    (_set(data__source="webtext"), "data.source='webtext' is not one of"),
    (_set(data__source="local_text", data__vocab_size=512, data__local_text__glob="/nonexistent/*.txt"),
     "matches no files"),
    (_set(data__source="local_text", data__local_text__glob="/etc/hostname"), "set data.vocab_size >= 258"),
    (_set(data__source="tfds", data__vocab_size=512, data__tfds__name="no_such_corpus",
          data__tfds__data_dir="/nonexistent"), "is not readable from data.tfds.data_dir"),
    (_set(data__synthetic__regimes__copy=-1.0), "data.synthetic.regimes"),
    (_set(data__task_eval_limit=-5), "data.task_eval_limit=-5 must be an integer >= 0"),
]


@pytest.mark.parametrize("mutate,message", CASES, ids=[m[:40] for _, m in CASES])
def test_bad_data_config_is_one_clear_line(mutate, message):
  c = data_config(16)
  mutate(c)
  with pytest.raises(configlib.ConfigError) as e:
    configlib.validate(configlib.resolve(c), n_devices=1)
  assert message in str(e.value)
  assert "\n" not in str(e.value)


def test_trainer_refuses_before_touching_the_workdir(tmp_path):
  c = data_config(16, cmp=(0.0, "withhold", 100))
  workdir = str(tmp_path / "run")
  with pytest.raises(configlib.ConfigError, match="nothing to withhold"):
    train.train(c, workdir, devices=jax.devices()[:1], progress=False)
  assert not os.path.exists(workdir)


def test_cli_reports_a_bad_mixture_in_one_line_and_exits_2(tmp_path):
  workdir = str(tmp_path / "run")
  proc = helpers.run_train([*helpers.TINY_FLAGS, "--config.data.tasks.cmp.frequency=-3", f"--workdir={workdir}"],
                           timeout=180)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: data.tasks.cmp.frequency=-3.0 must be a finite number >= 0 (instances per batch; 0.1 = one every 10 "
      "batches)")
  assert not os.path.exists(workdir)
