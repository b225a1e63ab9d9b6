"""Training on prepared corpora through the command line: local text and a TFDS builder defined here give the same
shards, and a run on them with an injected task of real vocabulary tokens resumes bit-identically after SIGKILL."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from scaling.core import rundir
from scaling.lm.data import prepare, shards
from tests import helpers
from tests.lm.data import corpus

WORDS = corpus.words(900, seed=5)
DOCS = corpus.lines(1500, WORDS, seed=6)
SPLITS: dict[str, list[str]] = {}  # filled before the builder runs: the local corpus's train / eval documents


class ScalingPreparedText(tfds.core.GeneratorBasedBuilder):
  """The local corpus's documents, in order (no shuffling), as a TFDS text dataset."""

  VERSION = tfds.core.Version("1.0.0")
  code_path = None  # see tests/lm/data/test_tfds.py

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
                                 disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {name: self._generate_examples(docs) for name, docs in SPLITS.items()}

  def _generate_examples(self, docs):
    for i, d in enumerate(docs):
      yield i, {"text": d}


def _args(workdir, root, tok):
  return [*helpers.tiny_flags(), "--config.data.source=prepared", f"--config.data.prepared.dir={root}",
          f"--config.data.tokenizer={tok}", "--config.data.vocab_size=512", "--config.data.eval_sequences=16",
          "--config.data.tasks.cmp.frequency=1.0", "--config.data.task_symbols=rare",
          "--config.data.task_eval_limit=200", "--config.data.task_train_probe=0", "--config.train.steps=200",
          "--config.train.eval_every=100", "--config.train.log_every=10", "--config.checkpoint.every=50",
          f"--workdir={workdir}"]


def _params(workdir, step):
  state = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))
  return jax.tree.leaves(state["params"])


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
  d = tmp_path_factory.mktemp("corpora")
  tok = corpus.train_sentencepiece(str(d / "sp"), DOCS, 500)
  glob = corpus.write_files(str(d / "text"), DOCS, n_files=1)
  local = str(d / "local")
  common = [f"--tokenizer={tok}", "--record_tokens=128", "--shard_tokens=4096"]
  assert prepare.main([f"--glob={glob}", "--documents=line", "--eval_fraction=0.1", f"--out={local}",
                       "--workers=1", *common]) == 0
  n_train = shards.read_manifest(local)["splits"]["train"]["documents"]
  SPLITS.update(train=DOCS[:n_train], validation=DOCS[n_train:])
  ScalingPreparedText(data_dir=str(d / "tfds"), file_format="array_record").download_and_prepare()
  via_tfds = str(d / "via_tfds")
  assert prepare.main(["--source=tfds", "--tfds_name=scaling_prepared_text", f"--tfds_data_dir={d / 'tfds'}",
                       f"--out={via_tfds}", "--workers=2", "--chunk_docs=200", *common]) == 0
  return {"tokenizer": tok, "local": local, "tfds": via_tfds}


def test_tfds_and_local_text_prepare_the_same_shards(corpora):
  a, b = (shards.read_manifest(corpora[k]) for k in ("local", "tfds"))
  for split in shards.SPLIT_NAMES:
    assert [s["sha256"] for s in a["splits"][split]["shards"]] == [s["sha256"] for s in b["splits"][split]["shards"]]
    assert a["splits"][split]["documents"] == b["splits"][split]["documents"] > 0
  assert a["source"]["source"] == "local_text" and b["source"]["source"] == "tfds"
  np.testing.assert_array_equal(*(np.load(os.path.join(corpora[k], shards.TOKEN_COUNTS)) for k in ("local", "tfds")))


def test_sigkill_and_resume_on_a_prepared_corpus_is_bit_identical(corpora, tmp_path):
  """Unbroken on the local-text corpus == killed and resumed on the TFDS one (the same shards, checked above)."""
  ref, killed = str(tmp_path / "ref"), str(tmp_path / "killed")
  env = helpers.env()
  run = lambda root, workdir: subprocess.Popen(  # noqa: E731
      [sys.executable, "-m", "scaling.train", *_args(workdir, root, corpora["tokenizer"])], cwd=helpers.REPO, env=env,
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  ref_proc, proc = run(corpora["local"], ref), run(corpora["tfds"], killed)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None and not os.path.isdir(os.path.join(killed, "checkpoints", "50")):
    time.sleep(0.01)
  assert proc.poll() is None, "the run finished before it could be killed; make it longer"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  status = rundir.RunDir(killed).read_status()
  assert status["state"] == "running" and status["step"] < 200
  resumed = helpers.run_train(_args(killed, corpora["tfds"], corpora["tokenizer"]))
  _, ref_err = ref_proc.communicate(timeout=240)
  assert ref_proc.returncode == 0, ref_err[-3000:]
  assert resumed.returncode == 0 and "resumed from step" in resumed.stderr, resumed.stderr[-3000:]
  with open(os.path.join(ref, "metrics.jsonl"), "rb") as x, open(os.path.join(killed, "metrics.jsonl"), "rb") as y:
    reference = x.read()
    assert reference == y.read()
  records = helpers.read_jsonl(os.path.join(ref, "metrics.jsonl"))
  assert records[-1]["step"] == 200 and records[-1]["data/cmp/count"] > 150
  assert records[-1]["eval/cmp/n"] == 200 and np.isfinite(records[-1]["eval/cmp/loss"])
  assert records[-1]["eval/background/loss"] < records[0]["eval/background/loss"]  # it learns the corpus
  for x, y in zip(_params(ref, 200), _params(killed, 200), strict=True):
    np.testing.assert_array_equal(x, y)
