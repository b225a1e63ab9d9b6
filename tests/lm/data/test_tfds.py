"""A TFDS text dataset built here (array_record, no download, no TensorFlow) feeds the trainer via data.source=tfds."""

import pickle

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from scaling.core import rundir
from scaling.lm import config as configlib
from scaling.lm import train
from scaling.lm.data import mixture, pipeline, sources, text
from tests import helpers

NAME = "scaling_tiny_text"
TRAIN_DOCS = [f"train document {i}: " + "abcdefghij"[i % 10] * (i % 23) for i in range(80)]
VALID_DOCS = [f"held-out text {i} " * (1 + i % 5) for i in range(12)]


class ScalingTinyText(tfds.core.GeneratorBasedBuilder):
  """Short and long documents, so rows both pack several documents and cut windows out of one."""

  VERSION = tfds.core.Version("1.0.0")
  # tfds looks for a checksums file next to the builder's package, which for a test module needs the
  # importlib_resources backport; this builder downloads nothing, so it has no code path to search.
  code_path = None

  def _info(self):
    # Must return DatasetInfo itself for a builder defined in a test (README, Known traps 4).
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"text": tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(TRAIN_DOCS), "validation": self._generate_examples(VALID_DOCS)}

  def _generate_examples(self, docs):
    for i, d in enumerate(docs):
      yield i, {"text": d}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("tfds"))
  ScalingTinyText(data_dir=d, file_format="array_record").download_and_prepare()
  return d


def _joined(data_dir, split):
  """Records in storage order joined with EOD (as a 0 byte), twice, so packed rows that wrap are substrings."""
  ds = tfds.data_source(NAME, split=split, data_dir=data_dir, download=False)
  one = b"".join(ds[j]["text"] + b"\x00" for j in range(len(ds)))
  return one + one


def _raw(row):
  return bytes(0 if i == sources.EOD else i - sources.N_RESERVED for i in row)


def test_tfds_rows_pack_documents_of_their_own_split(data_dir):
  src = text.TfdsText(NAME, "train", "validation", "text", data_dir, seq_len=40, seed=0)
  train_text, valid_text = _joined(data_dir, "train"), _joined(data_dir, "validation")
  rows = src.sequences(np.arange(60))
  assert rows.shape == (60, 41) and rows.min() >= 1 and rows.max() < sources.BYTE_VOCAB
  assert all(_raw(r) in train_text for r in rows)
  assert any(sources.EOD in r for r in rows)  # some rows pack several documents
  assert all(_raw(r) in valid_text for r in src.sequences(np.arange(30), "eval"))
  again = pickle.loads(pickle.dumps(src))  # what a Grain worker gets; it reopens the files
  np.testing.assert_array_equal(again.sequences([5, 17]), rows[[5, 17]])
  assert not np.array_equal(text.TfdsText(NAME, "train", "validation", "text", data_dir, 40, 1).sequences(
      np.arange(60)), rows)


def test_tfds_errors_are_one_line(data_dir):
  with pytest.raises(sources.SourceError, match="not readable") as e:
    text.TfdsText("no_such_dataset", "train", "validation", "text", data_dir, 40, 0).sequences([0])
  assert "\n" not in str(e.value)
  with pytest.raises(sources.SourceError, match="not a feature"):
    text.TfdsText(NAME, "train", "validation", "body", data_dir, 40, 0).sequences([0])


def test_trainer_runs_on_a_tfds_corpus_with_an_injected_task(data_dir, tmp_path):
  c = helpers.tiny_config(steps=10, eval_every=10)
  c.data.source = "tfds"
  c.data.tfds.name, c.data.tfds.data_dir = NAME, data_dir
  c.data.vocab_size = sources.BYTE_VOCAB
  c.data.tasks.cmp.frequency = 1.0
  c.data.task_train_probe = 64
  workdir = str(tmp_path / "run")
  # The training stream is the corpus: background rows are byte windows of the TFDS records.
  batch = next(pipeline.make_train_iterator(configlib.resolve(c)))
  train_text = _joined(data_dir, "train")
  for r in np.flatnonzero(batch["task_ids"] < 0):
    assert _raw(np.append(batch["inputs"][r], batch["targets"][r, -1])) in train_text

  result = train.train(c, workdir, devices=jax.devices()[:1], progress=False)
  assert result["state"] == "done"
  run = rundir.RunDir(workdir)
  records = run.read_metrics()
  assert [r["step"] for r in records] == [0, 5, 10]
  last = records[-1]
  assert last["eval/cmp/n"] == 5000 and last["eval/cmp_train/n"] == 64  # the whole test split, LABEL only
  assert 0 <= last["eval/cmp/accuracy"] <= 1 and np.isfinite(last["eval/cmp/loss"])
  assert last["eval/cmp/loss_bits"] == pytest.approx(last["eval/cmp/loss"] / np.log(2))
  assert last["eval/background/loss"] < records[0]["eval/background/loss"]
  mix = mixture.Mixture.from_config(configlib.resolve(c))
  assert [r["data/cmp/count"] for r in records[1:]] == [sum(mix.counts(i)[0] for i in range(s)) for s in (5, 10)]
  summary = run.read_config()["summary"]["tasks"]
  assert summary["cmp"]["frequency_per_batch"] == 1.0 and summary["cmp"]["schedule"] == "random"
  assert summary["cmp"]["frequency_per_token"] == pytest.approx(4 / (8 * 32))
  assert summary["add"]["frequency_per_batch"] == 0.0
