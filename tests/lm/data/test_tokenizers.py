"""Tokenizers from local files: bytes, SentencePiece and Hugging Face, trained here on generated text."""

import numpy as np
import pytest

from scaling.lm.data import tokenizers, vocab
from tests.lm.data import corpus

TEXTS = corpus.lines(1500, corpus.words(800), seed=3)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp("tok")
  return {"sentencepiece": corpus.train_sentencepiece(str(d / "sp"), TEXTS, 500),
          "huggingface": corpus.train_huggingface(str(d / "tokenizer.json"), TEXTS, 500)}


def test_byte_tokenizer_is_the_built_in_layout():
  tok = tokenizers.load("byte")
  assert (tok.vocab_size, tok.eod_id, tok.pad_id) == (vocab.BYTE_VOCAB, vocab.EOD, vocab.PAD)
  np.testing.assert_array_equal(tok.encode(["aé"])[0], np.frombuffer("aé".encode(), np.uint8) + vocab.N_RESERVED)
  np.testing.assert_array_equal(tok.encode([b"\x00\xff"])[0], [2, 257])
  pool = tok.vocabulary().pool
  np.testing.assert_array_equal(pool, np.arange(2, 258))  # every byte, never PAD/EOD


@pytest.mark.parametrize("kind", ["sentencepiece", "huggingface"])
def test_subword_tokenizers_map_reserved_ids_to_their_own(files, kind):
  tok = tokenizers.load(files[kind])
  assert tok.kind == kind and tok.vocab_size == 500
  ids = tok.encode(TEXTS[:50])
  flat = np.concatenate(ids)
  assert flat.min() >= 0 and flat.max() < tok.vocab_size
  assert np.mean([len(i) for i in ids]) < 0.5 * np.mean([len(t.encode()) for t in TEXTS[:50]])  # subwords, not bytes
  assert not np.isin(flat, tok.special_ids).any()  # no special token is added to the text
  if kind == "sentencepiece":  # trained with unk 0, bos 1, eos 2, pad 3
    assert (tok.eod_id, tok.pad_id) == (2, 3) and set(tok.special_ids.tolist()) == {0, 1, 2, 3}
    decoded = tok._sp.decode([int(i) for i in ids[0]])
  else:  # special tokens given to the trainer in this order
    assert (tok.eod_id, tok.pad_id) == (0, 1) and set(tok.special_ids.tolist()) == {0, 1}
    decoded = tok._tok.decode([int(i) for i in ids[0]])
  assert decoded == TEXTS[0]
  pool = tok.vocabulary().pool
  assert len(pool) == 500 - len(tok.special_ids) and not np.isin(pool, tok.special_ids).any()
  assert tok.sha256 == tokenizers.file_sha256(files[kind]) == tokenizers.sha256_of(files[kind])
  assert tok.sha256 != tokenizers.ByteTokenizer.sha256


def test_named_end_of_document_token(files):
  tok = tokenizers.load(files["huggingface"], eod_token="<|padding|>", pad_token="<|endoftext|>")
  assert (tok.eod_id, tok.pad_id) == (1, 0)
  with pytest.raises(tokenizers.SourceError, match="is not a token"):
    tokenizers.load(files["huggingface"], eod_token="<nope>")


def test_bad_tokenizer_files_are_one_line_errors(tmp_path, files):
  cases = [(str(tmp_path / "missing.model"), "does not exist"), (str(tmp_path / "gone.json"), "does not exist"),
           (str(tmp_path / "vocab.txt"), "cannot tell its kind")]
  (tmp_path / "junk.model").write_bytes(b"not a model")
  (tmp_path / "junk.json").write_text("{}")
  cases += [(str(tmp_path / "junk.model"), "not a readable SentencePiece"),
            (str(tmp_path / "junk.json"), "not a readable Hugging Face")]
  for spec, message in cases:
    with pytest.raises(tokenizers.SourceError, match=message) as e:
      tokenizers.load(spec)
    assert "\n" not in str(e.value)


def test_task_symbol_pools_rare_and_absent():
  base = vocab.Vocabulary.contiguous(12)  # content ids 2..11
  counts = np.array([0, 0, 5, 0, 1, 9, 0, 2, 7, 3, 0, 4])
  absent = base.with_pool("absent", counts, 3, 0, "x")
  np.testing.assert_array_equal(absent.pool, [3, 6, 10])
  rare = base.with_pool("rare", counts, 3, 0, "x")
  np.testing.assert_array_equal(rare.pool, [4, 7, 9])  # counts 1, 2, 3: the least frequent that occur
  with pytest.raises(vocab.SourceError, match="only 7 do"):
    base.with_pool("rare", counts, 8, 0, "x")
  assert base.with_pool("random", None, 3, 0, "x") is base
