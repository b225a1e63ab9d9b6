"""Generated text corpora and tokenizers trained on them inside the tests (nothing is downloaded)."""

from __future__ import annotations

import os

import numpy as np

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pe", "do", "ga", "zu", "fi", "xo", "qua", "ben"]


def words(n: int, seed: int = 0) -> list[str]:
  """`n` distinct made-up words of 1-3 syllables."""
  rng = np.random.default_rng(seed)
  out, seen = [], set()
  while len(out) < n:
    w = "".join(rng.choice(SYLLABLES, rng.integers(1, 4)))
    if w not in seen:
      seen.add(w)
      out.append(w)
  return out


def lines(n_lines: int, vocab: list[str], seed: int = 0, exponent: float = 1.1) -> list[str]:
  """Sentences of Zipf-distributed words (frequent and rare words, as in natural text)."""
  rng = np.random.default_rng(seed)
  p = 1.0 / np.arange(1, len(vocab) + 1) ** exponent
  p /= p.sum()
  return [" ".join(rng.choice(vocab, rng.integers(4, 16), p=p)) + "." for _ in range(n_lines)]


def write_files(directory: str, texts: list[str], n_files: int = 3) -> str:
  """Splits `texts` (one document per line) over `n_files` files; returns their glob."""
  os.makedirs(directory, exist_ok=True)
  for f in range(n_files):
    with open(os.path.join(directory, f"part-{f}.txt"), "w", encoding="utf-8") as fh:
      fh.write("\n".join(texts[f::n_files]) + "\n")
  return os.path.join(directory, "*.txt")


def train_sentencepiece(path_prefix: str, texts: list[str], vocab_size: int = 400) -> str:
  import sentencepiece as spm
  spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_prefix=path_prefix, vocab_size=vocab_size,
                                 model_type="bpe", num_threads=1, minloglevel=2, pad_id=3,
                                 character_coverage=1.0)
  return path_prefix + ".model"


def train_huggingface(path: str, texts: list[str], vocab_size: int = 400) -> str:
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|padding|>"],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
  tok.train_from_iterator(texts, trainer)
  tok.save(path)
  return path
