"""Prepared corpora: tokenize once into shards, stream windows through Grain, bad input in one line."""

import hashlib
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from scaling.lm import config as configlib
from scaling.lm import train as train_command
from scaling.lm.data import mixture, pipeline, prepare, prepared, shards, sources, tokenizers
from tests import helpers
from tests.lm.data import corpus

WORDS = corpus.words(1200, seed=1)
DOCS = corpus.lines(1200, WORDS[:700], seed=2)  # the tokenizer also knows words the corpus never uses
L = 16


def _prepare(out, glob, tokenizer="byte", *extra):
  rc = prepare.main([f"--glob={glob}", f"--tokenizer={tokenizer}", f"--out={out}", "--documents=line",
                     "--eval_fraction=0.1", "--record_tokens=64", "--shard_tokens=2048", "--workers=1", *extra])
  assert rc == 0
  return str(out)


@pytest.fixture(scope="module")
def sp(tmp_path_factory):
  d = tmp_path_factory.mktemp("prep")
  glob = corpus.write_files(str(d / "text"), DOCS)
  tok = corpus.train_sentencepiece(str(d / "sp"), corpus.lines(3000, WORDS, seed=4), 500)
  return {"glob": glob, "tokenizer": tok, "dir": _prepare(d / "out", glob, tok), "root": d}


def _stream(root, split="train"):
  m = shards.read_manifest(root)
  reader = shards.SplitReader(root, m, split)
  return np.concatenate(reader.records(list(range(m["splits"][split]["records"]))))[:m["splits"][split]["tokens"]]


def _checksums(*roots):
  out = {}
  for root in roots:
    for d, _, names in os.walk(root):
      for n in names:
        with open(os.path.join(d, n), "rb") as f:
          out[os.path.join(d, n)] = hashlib.sha256(f.read()).hexdigest()
  return out


def _config(root, tokenizer, **data):
  c = helpers.tiny_config()
  c.data.update(dict(source="prepared", tokenizer=tokenizer, vocab_size=512, seq_len=L, eval_sequences=16))
  c.data.prepared.dir = root
  c.data.update(data)
  return c


def test_the_stream_is_the_tokenized_documents_with_their_eod(sp):
  tok = tokenizers.load(sp["tokenizer"])
  m = shards.read_manifest(sp["dir"])
  files = sorted(os.listdir(os.path.dirname(sp["glob"])))
  docs = [line for f in files for line in open(os.path.join(os.path.dirname(sp["glob"]), f)).read().splitlines()]
  expected = np.concatenate([np.append(ids, tok.eod_id) for ids in tok.encode(docs)])
  train, ev = _stream(sp["dir"]), _stream(sp["dir"], "eval")
  np.testing.assert_array_equal(np.concatenate([train, ev]), expected)  # train, then the held-out tail
  assert m["splits"]["train"]["documents"] + m["splits"]["eval"]["documents"] == len(docs)
  assert 0.05 < len(ev) / len(expected) < 0.15  # --eval_fraction=0.1 of the bytes, cut at a line end
  assert m["tokenizer"]["sha256"] == tok.sha256 and m["tokenizer"]["eod_id"] == tok.eod_id
  assert len(m["splits"]["train"]["shards"]) > 1  # really sharded (2048-token shards)
  ends = np.concatenate([np.load(os.path.join(sp["dir"], s["doc_ends"])) for s in m["splits"]["train"]["shards"]])
  assert len(ends) == m["splits"]["train"]["documents"] and (train[ends] == tok.eod_id).all()
  assert (train == tok.eod_id).sum() == len(ends)  # document boundaries = the EODs, and only those
  np.testing.assert_array_equal(np.load(os.path.join(sp["dir"], shards.TOKEN_COUNTS)),
                                np.bincount(train, minlength=tok.vocab_size))


def test_rows_are_shuffled_windows_a_pure_function_of_seed_and_index(sp):
  src = prepared.PreparedCorpus(sp["dir"], L, 0, sp["tokenizer"])
  train, W = _stream(sp["dir"]), src.n_windows["train"]
  assert W == (len(train) - 1) // L
  rows = src.sequences(np.arange(2 * W))
  order = [src.windows("train")[i] for i in range(2 * W)]
  for r, w in zip(rows, order):
    np.testing.assert_array_equal(r, train[w * L:w * L + L + 1])
  assert sorted(order[:W]) == list(range(W)) == sorted(order[W:])  # each epoch visits every window once
  assert order[:W] != order[W:] and order[:W] != list(range(W))  # reshuffled per epoch, not in storage order
  np.testing.assert_array_equal(prepared.PreparedCorpus(sp["dir"], L, 0, sp["tokenizer"]).sequences([7, 3]),
                                rows[[7, 3]])
  np.testing.assert_array_equal(pickle.loads(pickle.dumps(src)).sequences([5, 9]), rows[[5, 9]])
  assert not np.array_equal(prepared.PreparedCorpus(sp["dir"], L, 1, sp["tokenizer"]).sequences(np.arange(20)),
                            rows[:20])


def test_output_does_not_depend_on_worker_count_and_formats_read_alike(sp, tmp_path):
  two = _prepare(tmp_path / "two", sp["glob"], sp["tokenizer"], "--workers=2", "--chunk_bytes=4000")
  one = _prepare(tmp_path / "one", sp["glob"], sp["tokenizer"], "--chunk_bytes=4000")
  digests = lambda root: [s["sha256"] for s in shards.read_manifest(root)["splits"]["train"]["shards"]]  # noqa: E731
  assert digests(one) == digests(two)
  np.testing.assert_array_equal(_stream(one), _stream(sp["dir"]))  # other job boundaries, same stream
  npy = _prepare(tmp_path / "npy", sp["glob"], sp["tokenizer"], "--format=numpy")
  a, b = (prepared.PreparedCorpus(r, L, 0, sp["tokenizer"]) for r in (sp["dir"], npy))
  np.testing.assert_array_equal(a.sequences(np.arange(300)), b.sequences(np.arange(300)))
  np.testing.assert_array_equal(a.sequences(np.arange(16), "eval"), b.sequences(np.arange(16), "eval"))


def test_pipeline_hosts_read_their_slice_and_resume_exactly(sp):
  c = configlib.resolve(_config(sp["dir"], sp["tokenizer"], task_symbols="rare"))
  c.data.tasks.cmp.frequency = 2.0
  whole = [next(it) for it in [pipeline.make_train_iterator(c)] for _ in range(6)]
  halves = [pipeline.make_train_iterator(c, p, 2) for p in (0, 1)]
  for batch in whole:
    parts = [next(h) for h in halves]
    for k in batch:
      np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), batch[k])
  it = pipeline.make_train_iterator(c)
  it.set_state({"next_index": 4})
  for want in whole[4:]:
    got = next(it)
    for k in want:
      np.testing.assert_array_equal(got[k], want[k])


def test_task_symbols_are_real_vocabulary_tokens(sp, tmp_path):
  tok = tokenizers.load(sp["tokenizer"])
  counts = np.load(os.path.join(sp["dir"], shards.TOKEN_COUNTS))
  for mode in ("random", "rare"):
    c = configlib.resolve(_config(sp["dir"], sp["tokenizer"], task_symbols=mode))
    c.data.tasks.cmp.frequency = 2.0
    mix = mixture.Mixture.from_config(c)
    sym = mix.task("cmp").symbols
    assert not np.isin(sym, tok.special_ids).any() and sym.max() < tok.vocab_size
    it = pipeline.make_train_iterator(c)
    inputs, ids = zip(*[(b["inputs"], b["task_ids"]) for b in (next(it) for _ in range(4))])
    inst = np.concatenate(inputs)[np.concatenate(ids) == mix.names.index("cmp")]
    assert len(inst) and (inst[:, 3] == tok.eod_id).all()  # the tokenizer's own EOD
    assert np.isin(inst[:, :3], sym).all()
    if mode == "rare":  # the 200 least frequent occurring ids (both tasks' blocks): all rarer than the rest
      pool = sources.vocabulary(c.data, c.seed).pool
      others = np.setdiff1d(np.flatnonzero(counts > 0), np.r_[pool, tok.special_ids])
      assert len(pool) == 200 and (counts[pool] > 0).all() and counts[pool].max() <= counts[others].min()
  # absent: a byte-level corpus of lowercase text leaves most byte ids unused; the task takes only those.
  byte_dir = _prepare(tmp_path / "bytes", sp["glob"])
  c = configlib.resolve(_config(byte_dir, "byte", task_symbols="absent", vocab_size=258))
  c.data.tasks.cmp.frequency = 1.0
  sym = mixture.Mixture.from_config(c).task("cmp").symbols
  assert (np.load(os.path.join(byte_dir, shards.TOKEN_COUNTS))[sym] == 0).all()


def _fails_in_one_line(capsys, argv, message):
  rc = train_command.main(["scaling.train", *argv])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2, err
  assert err[-1].startswith("error: ") and message in err[-1], err[-1]


def test_bad_prepared_input_is_one_line_exit_2_and_damages_nothing(sp, tmp_path, capsys):
  root, tok = sp["dir"], sp["tokenizer"]
  corrupt = tmp_path / "corrupt"
  os.system(f"cp -r {root} {corrupt}")
  shard = os.path.join(corrupt, shards.read_manifest(root)["splits"]["train"]["shards"][1]["file"])
  with open(shard, "r+b") as f:
    f.truncate(os.path.getsize(shard) - 100)
  other = corpus.train_huggingface(str(tmp_path / "other.json"), DOCS, 300)
  before = _checksums(sp["root"], tmp_path)
  base = [*helpers.TINY_FLAGS, "--config.data.source=prepared", f"--config.data.seq_len={L}",
          "--config.data.eval_sequences=16"]
  cases = [
      ([f"--config.data.prepared.dir={root}", f"--config.data.tokenizer={tmp_path}/nope.model",
        "--config.data.vocab_size=512"], "tokenizer file"),
      ([f"--config.data.prepared.dir={root}", f"--config.data.tokenizer={tok}", "--config.data.vocab_size=300"],
       "data.vocab_size=300 is smaller than the 500 ids"),
      ([f"--config.data.prepared.dir={corrupt}", f"--config.data.tokenizer={tok}", "--config.data.vocab_size=512"],
       "(corrupt or incomplete)"),
      ([f"--config.data.prepared.dir={root}", f"--config.data.tokenizer={other}", "--config.data.vocab_size=512"],
       "was prepared with tokenizer"),
      ([f"--config.data.prepared.dir={tmp_path}", f"--config.data.tokenizer={tok}", "--config.data.vocab_size=512"],
       "holds no manifest.json"),
  ]
  for i, (flags, message) in enumerate(cases):
    workdir = tmp_path / f"run{i}"
    _fails_in_one_line(capsys, [*base, *flags, f"--workdir={workdir}"], message)
    assert not workdir.exists()
  # The command line itself, once, in a subprocess: exit 2 and the same single line.
  proc = helpers.run_train([*base, *cases[3][0], f"--workdir={tmp_path / 'cli'}"], timeout=180)
  assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: data.prepared.dir=")
  assert _checksums(sp["root"], tmp_path) == before  # nothing on disk changed


def test_a_tokenizer_needs_a_prepared_corpus(sp):
  c = helpers.tiny_config()
  c.data.tokenizer = sp["tokenizer"]
  with pytest.raises(configlib.ConfigError, match="applies to prepared corpora; data.source='synthetic'"):
    configlib.validate(configlib.resolve(c), n_devices=1)


def test_prepare_command_refuses_bad_input_without_writing(sp, tmp_path):
  existing = tmp_path / "existing"
  existing.mkdir()
  (existing / "keep.txt").write_text("mine")
  before = _checksums(tmp_path, sp["root"])
  cases = [([f"--tokenizer={tmp_path}/missing.model", f"--out={tmp_path}/a"], "does not exist"),
           ([f"--out={existing}"], "already exists"),
           ([f"--out={tmp_path}/b", "--glob=/nonexistent/*.txt"], "matches no files"),
           ([f"--out={tmp_path}/c", "--source=tfds", "--tfds_name=no_such", f"--tfds_data_dir={tmp_path}"],
            "is not readable")]
  for flags, message in cases:
    argv = [f"--glob={sp['glob']}", *flags]
    proc = subprocess.run([sys.executable, "-m", "scaling.lm.data.prepare", *argv], cwd=helpers.REPO,
                          env=helpers.env(), capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr[-1000:]
  assert _checksums(tmp_path, sp["root"]) == before
  assert sorted(os.listdir(tmp_path)) == ["existing"]
  # --verify re-hashes every shard: a flipped byte that keeps the size is caught too (so is verify="full").
  assert prepare.main([f"--verify={sp['dir']}"]) == 0
  flipped = tmp_path / "flipped"
  os.system(f"cp -r {sp['dir']} {flipped}")
  shard = os.path.join(flipped, shards.read_manifest(sp["dir"])["splits"]["eval"]["shards"][0]["file"])
  data = bytearray(open(shard, "rb").read())
  data[len(data) // 2] ^= 0xFF
  open(shard, "wb").write(bytes(data))
  assert prepare.main([f"--verify={flipped}"]) == 2
  with pytest.raises(sources.SourceError, match="does not match its sha256"):
    prepared.PreparedCorpus(str(flipped), L, 0, sp["tokenizer"], verify="full")
  prepared.PreparedCorpus(str(flipped), L, 0, sp["tokenizer"])  # the default check (sizes) is cheap and passes
