"""Background corpora: random-access sources of fixed-length token sequences.

A source maps a global sequence index to a `(seq_len + 1,)` int32 array (inputs are [:-1], targets [1:]) and is a
pure function of (config, seed, split, index): any batch can be rebuilt from its index, which is what makes resume
exact. Token ids 0 and 1 are reserved for every source: PAD and EOD (end of document); injected tasks may
reserve more ids at the top of the vocabulary (scaling/data/tasks).

Registered sources (config `data.source`):
  synthetic   a hidden Markov-chain language with Zipfian statistics, infinite, no files (the default)
"""

from __future__ import annotations

from typing import Callable

import numpy as np

PAD, EOD = 0, 1
N_RESERVED = 2

# Stream ids so that different uses of one seed never share random numbers.
PURPOSE_LANGUAGE, PURPOSE_TRAIN, PURPOSE_EVAL = 11, 12, 13
SPLITS = {"train": PURPOSE_TRAIN, "eval": PURPOSE_EVAL}


def zipf_weights(n: int, exponent: float) -> np.ndarray:
  w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
  return w / w.sum()


class SyntheticLanguage:
  """A seeded Markov chain over the content tokens [N_RESERVED, vocab_size) with Zipfian statistics.

  Each token has `successors` possible next tokens (drawn once from the seed) with Zipf weights; with
  probability `noise` the next token is drawn from a global Zipfian unigram instead. Memorising the transition
  table takes capacity (vocab × successors entries), so small models plateau above the entropy rate, which
  `entropy_rate()` gives exactly: the Bayes loss of the source.
  """

  def __init__(self, vocab_size: int, seq_len: int, seed: int, successors: int = 8,
               zipf_exponent: float = 1.1, noise: float = 0.1):
    n = vocab_size - N_RESERVED
    if n < 2:
      raise ValueError(f"data.vocab_size={vocab_size} leaves no content tokens; use at least {N_RESERVED + 2}")
    if not 1 <= successors <= n:
      raise ValueError(f"data.synthetic.successors={successors} must be in [1, {n}]")
    if not 0 <= noise <= 1:
      raise ValueError(f"data.synthetic.noise={noise} must be in [0, 1]")
    self.vocab_size, self.seq_len, self.seed = vocab_size, seq_len, seed
    self.noise = noise
    rng = np.random.default_rng([seed, PURPOSE_LANGUAGE])
    self.n_content = n
    # The unigram ranks content tokens by a seeded permutation so the frequent tokens are not simply 2, 3, ...
    self.unigram_ids = (rng.permutation(n) + N_RESERVED).astype(np.int32)
    self.unigram_cdf = np.cumsum(zipf_weights(n, zipf_exponent))
    self.succ_ids = np.stack([rng.choice(n, size=successors, replace=False) for _ in range(n)]).astype(np.int32)
    self.succ_ids += N_RESERVED
    self.succ_cdf = np.cumsum(zipf_weights(successors, zipf_exponent))

  def __len__(self) -> int:
    return np.iinfo(np.int64).max  # infinite

  def sequence(self, index: int, split: str = "train") -> np.ndarray:
    rng = np.random.default_rng([self.seed, SPLITS[split], int(index)])
    length = self.seq_len + 1
    u_pick, u_noise = rng.random(length), rng.random(length)
    uni = self.unigram_ids[np.minimum(np.searchsorted(self.unigram_cdf, rng.random(length)), self.n_content - 1)]
    succ_rank = np.minimum(np.searchsorted(self.succ_cdf, u_pick), self.succ_ids.shape[1] - 1)
    out = np.empty(length, np.int32)
    out[0] = uni[0]
    for t in range(1, length):  # sequential by nature; ~1 µs per token
      out[t] = uni[t] if u_noise[t] < self.noise else self.succ_ids[out[t - 1] - N_RESERVED, succ_rank[t]]
    return out

  def transition_matrix(self) -> np.ndarray:
    """(n_content, n_content) next-token probabilities over content tokens."""
    n = self.n_content
    uni = np.zeros(n)
    uni[self.unigram_ids - N_RESERVED] = np.diff(self.unigram_cdf, prepend=0.0)
    succ_p = np.diff(self.succ_cdf, prepend=0.0)
    t = np.tile(self.noise * uni, (n, 1))
    rows = np.repeat(np.arange(n), self.succ_ids.shape[1])
    np.add.at(t, (rows, (self.succ_ids - N_RESERVED).ravel()), (1 - self.noise) * np.tile(succ_p, n))
    return t

  def entropy_rate(self) -> float:
    """Bayes loss in nats/token: conditional entropy of the next token under the stationary distribution."""
    t = self.transition_matrix()
    pi = np.full(t.shape[0], 1.0 / t.shape[0])
    for _ in range(10_000):
      nxt = pi @ t
      if np.abs(nxt - pi).max() < 1e-13:
        break
      pi = nxt
    with np.errstate(divide="ignore", invalid="ignore"):
      row_h = -np.sum(np.where(t > 0, t * np.log(t), 0.0), axis=1)
    return float(pi @ row_h)


def make_source(data_cfg, seed: int) -> SyntheticLanguage:
  name = data_cfg.source
  if name not in SOURCES:
    raise ValueError(f"data.source={name!r} is not one of {tuple(SOURCES)}")
  return SOURCES[name](data_cfg, seed)


def _synthetic(data_cfg, seed: int) -> SyntheticLanguage:
  s = data_cfg.synthetic
  return SyntheticLanguage(data_cfg.vocab_size, data_cfg.seq_len, seed, successors=s.successors,
                           zipf_exponent=s.zipf_exponent, noise=s.noise)


SOURCES: dict[str, Callable] = {"synthetic": _synthetic}
