"""Background sources: the synthetic language (structure, determinism, Bayes loss) and local text files."""

import pickle

import numpy as np
import pytest

from scaling.lm.data import sources, synthetic
from scaling.lm.data import text as text_sources

REGIMES = {"unigram": 0.1, "markov1": 0.4, "markov2": 0.3, "copy": 0.2}


def _lang(vocab=256, seq_len=64, seed=0, **kw):
  return synthetic.SyntheticLanguage(vocab, seq_len, seed, regimes=kw.pop("regimes", REGIMES), **kw)


def test_synthetic_rows_are_pure_functions_of_seed_split_and_index():
  lang = _lang()
  rows = lang.sequences(np.arange(10, 20))
  assert rows.shape == (10, 65) and rows.dtype == np.int32
  assert rows.min() >= sources.N_RESERVED and rows.max() < 256  # never PAD/EOD, never past the vocabulary
  np.testing.assert_array_equal(_lang().sequences([13]), rows[3:4])  # a fresh object, one row alone
  np.testing.assert_array_equal(lang.sequence(19), rows[9])
  assert not np.array_equal(lang.sequences(np.arange(10, 20), "eval"), rows)
  assert not np.array_equal(_lang(seed=1).sequences(np.arange(10, 20)), rows)


def test_synthetic_regimes_have_their_structure_and_weights():
  lang = _lang(seq_len=64, noise=0.1, copy_noise=0.05)
  idx = np.arange(4000)
  regime, period = lang._latents(idx, "train")
  freq = np.bincount(regime, minlength=4) / len(idx)
  np.testing.assert_allclose(freq, list(REGIMES.values()), atol=0.03)
  rows = lang.sequences(idx) - sources.N_RESERVED
  n = lang.n_content
  # markov1 / markov2: a chain step lands in the context's successor set unless it was a noise draw.
  for r, ctx in ((synthetic.MARKOV1, lambda x, t: lang.succ1[x[:, t - 1]]),
                 (synthetic.MARKOV2, lambda x, t: lang._successors(2, x[:, t - 2] * n + x[:, t - 1]))):
    x = rows[regime == r]
    hit = np.mean([np.any(ctx(x, t) == x[:, t, None], axis=1).mean() for t in range(2, 64)])
    assert hit > 0.9 - 0.02  # 1 − noise, plus noise draws that land in the set by chance
  # markov2 is genuinely second order: its next token is usually NOT a first-order successor, and the best
  # first-order predictor (plug-in estimate, biased low) stays far above the second-order entropy.
  x = rows[regime == synthetic.MARKOV2]
  first = np.mean([np.any(lang.succ1[x[:, t - 1]] == x[:, t, None], axis=1).mean() for t in range(2, 64)])
  assert first < 0.2
  cnt = np.bincount((x[:, 1:-1] * n + x[:, 2:]).ravel(), minlength=n * n).reshape(n, n).astype(float)
  p = cnt / np.maximum(cnt.sum(1, keepdims=True), 1)
  h_first_order = -(cnt * np.log(np.where(cnt > 0, p, 1))).sum() / cnt.sum()
  assert h_first_order > lang.entropy_by_regime()["markov2"] + 1.0
  # copy: after one period, a token repeats the one a period back (unless replaced by noise).
  x, p = rows[regime == synthetic.COPY], period[regime == synthetic.COPY]
  rep = [(x[i, p[i]:] == x[i, :-p[i]]).mean() for i in range(len(x)) if p[i] < 60]
  assert np.mean(rep) > 0.94


@pytest.mark.parametrize("vocab", [64, 1024])
def test_entropy_rate_is_the_mean_nll_of_the_generating_distribution(vocab):
  # If generation and the entropy formulas disagreed, the realised NLL under the true conditionals would not
  # average to the analytic conditional entropy.
  lang = _lang(vocab=vocab, seq_len=48)
  h, regime, nll = lang.conditional_entropies(np.arange(3000), with_nll=True)
  assert np.isfinite(nll).all()
  se = nll.std() / np.sqrt(nll.size) * 4  # positions within a row are correlated: be generous, not loose
  assert abs(nll.mean() - h.mean()) < 4 * se
  for r in range(4):
    assert abs(nll[regime == r].mean() - h[regime == r].mean()) < 0.05
  lower, upper, err = lang.entropy_bounds()
  assert lower == lang.entropy_rate() and lower < upper and err < 0.01
  assert abs(lower - h.mean()) < 0.05
  by = lang.entropy_by_regime()
  assert by["copy"] < by["markov1"] < by["unigram"] <= np.log(vocab - 2)  # the levels differ in difficulty


def test_bad_synthetic_parameters_are_one_line_errors():
  for kw, key in ((dict(successors=0), "successors"), (dict(noise=1.5), "noise"),
                  (dict(regimes={"trigram": 1.0}), "regimes"), (dict(regimes={"copy": 0.0}), "regimes"),
                  (dict(copy_min_period=9, copy_max_period=3), "copy_min_period")):
    with pytest.raises(sources.SourceError, match=key) as e:
      _lang(**kw)
    assert "\n" not in str(e.value)


def _write_corpus(tmp_path):
  texts = {"a.txt": "The quick brown fox jumps over the lazy dog. " * 20, "b.txt": "Ünïcode bytes ✓ " * 30}
  for name, text in texts.items():
    (tmp_path / name).write_text(text, encoding="utf-8")
  (tmp_path / "skip.md").write_text("not matched")
  return texts


def test_local_text_rows_are_byte_windows_of_the_files(tmp_path):
  texts = _write_corpus(tmp_path)
  src = text_sources.LocalText(str(tmp_path / "*.txt"), seq_len=32, seed=0, eval_fraction=0.1)
  stream = b"".join(t.encode() + b"\x00" for t in texts.values())  # \x00 stands for EOD below
  n_eval = int(round((len(stream)) * 0.1))
  train_part, eval_part = stream[:-n_eval], stream[-n_eval:]
  for split, part in (("train", train_part), ("eval", eval_part)):
    rows = src.sequences(np.arange(50), split)
    assert rows.shape == (50, 33) and rows.min() >= 1 and rows.max() < sources.BYTE_VOCAB
    for row in rows:
      raw = bytes(0 if i == sources.EOD else i - sources.N_RESERVED for i in row)
      assert raw in part  # a window of its own split only
  fresh = text_sources.LocalText(str(tmp_path / "*.txt"), seq_len=32, seed=0, eval_fraction=0.1)
  np.testing.assert_array_equal(fresh.sequences([7, 3]), src.sequences(np.arange(8))[[7, 3]])
  other_seed = text_sources.LocalText(str(tmp_path / "*.txt"), 32, 1, 0.1)
  assert not np.array_equal(other_seed.sequences([7]), fresh.sequences([7]))
  pickled = pickle.loads(pickle.dumps(src))  # what Grain workers get: the paths, reloaded there
  np.testing.assert_array_equal(pickled.sequences(np.arange(5)), src.sequences(np.arange(5)))


def test_local_text_errors(tmp_path):
  with pytest.raises(sources.SourceError, match="matches no files"):
    text_sources.LocalText(str(tmp_path / "*.txt"), 32, 0)
  (tmp_path / "tiny.txt").write_text("abc")
  with pytest.raises(sources.SourceError, match="too few"):
    text_sources.LocalText(str(tmp_path / "*.txt"), 32, 0).sequences([0])


def test_local_text_keeps_real_zero_bytes_apart_from_eod(tmp_path):
  (tmp_path / "a.txt").write_bytes(b"\x00ab" * 20)
  (tmp_path / "b.txt").write_bytes(b"xyz" * 20)
  src = text_sources.LocalText(str(tmp_path / "*.txt"), seq_len=30, seed=0, eval_fraction=0.3)
  stream = np.r_[np.frombuffer(b"\x00ab" * 20, np.uint8) + 2, 1, np.frombuffer(b"xyz" * 20, np.uint8) + 2, 1]
  cut = len(stream) - int(round(len(stream) * 0.3))
  for split, part in (("train", stream[:cut]), ("eval", stream[cut:])):
    for row in src.sequences(np.arange(40), split):
      starts = [o for o in range(len(part) - 30) if np.array_equal(part[o:o + 31], row)]
      assert starts, row  # a window of the stream: byte 0 is id 2, the end of each file is EOD (1)


def test_local_text_refuses_a_corpus_too_large_for_memory(tmp_path, monkeypatch):
  (tmp_path / "a.txt").write_text("x" * 1000)
  monkeypatch.setattr(text_sources, "MAX_IN_MEMORY_BYTES", 999)
  with pytest.raises(sources.SourceError, match="python -m scaling.lm.data.prepare") as e:
    text_sources.LocalText(str(tmp_path / "*.txt"), 32, 0)
  assert "\n" not in str(e.value)
