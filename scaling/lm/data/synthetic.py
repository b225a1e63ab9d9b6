"""The built-in background corpus: a seeded artificial language with four difficulty levels (no files).

Rows are pure functions of (vocab_size, seq_len, seed, the `data.synthetic` settings, split, index), emitted over
the content ids [N_RESERVED, vocab_size): never PAD or EOD. The class docstring describes the regimes and the exact
Bayes loss that analysis uses as the irreducible term E.
"""

from __future__ import annotations

import numpy as np

from scaling.core import hashrng
from scaling.core.errors import SourceError
from scaling.lm.data.splits import PURPOSE_LANGUAGE, SPLITS, check_split
from scaling.lm.data.vocab import N_RESERVED


def zipf_weights(n: int, exponent: float) -> np.ndarray:
  w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
  return w / w.sum()


def _xlogx(p: np.ndarray) -> np.ndarray:
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)


REGIMES = ("unigram", "markov1", "markov2", "copy")
DEFAULT_REGIMES = {"unigram": 0.1, "markov1": 0.4, "markov2": 0.3, "copy": 0.2}  # configs/lm.py reads this
UNIGRAM, MARKOV1, MARKOV2, COPY = range(4)
_MAX_CONTEXT_TABLE = 4096


class SyntheticLanguage:
  """A seeded language over the content ids [2, vocab_size) whose rows mix four difficulty levels.

  Every row (document) draws one regime, with config weights `data.synthetic.regimes`:
    unigram  i.i.d. tokens from a Zipfian unigram: a bias vector learns it
    markov1  a sparse first-order chain: each token has `successors` possible next tokens with Zipf weights
             (vocab × successors transitions to memorise: a small model learns the frequent ones)
    markov2  a sparse second-order chain: the successor set depends on the previous TWO tokens (vocab² contexts,
             each with its own hashed successor set): far more facts than a small model can hold, so capacity
             keeps paying; a model that learns only first-order statistics stays well above its entropy
    copy     a markov1 motif of a hidden period m in [copy_min_period, copy_max_period], then repeated: each
             token copies the one m back (in-context induction, needs attention circuits)
  With probability `noise` (markov rows and copy motifs) or `copy_noise` (copy repeats) a token is replaced by a
  unigram draw, so every transition has full support and the loss is finite for any model.

  `entropy_rate()` is the Bayes loss given the row's hidden regime and period: the exact conditional entropy of
  each target given its generating state, averaged over a fixed sample of rows (a Rao-Blackwellised Monte Carlo
  estimate, standard error ~1e-3 nats). It is a lower bound on any model's expected loss; the loss of the Bayes
  predictor that must infer the regime exceeds it by at most H(regime, period) / seq_len (`entropy_bounds`).
  Generation is vectorised over rows (one numpy step per position): ~30K rows of 129 tokens per second on one
  busy core at batch 112 (benchmarks/data_throughput.py measures the whole pipeline).
  """

  def __init__(self, vocab_size: int, seq_len: int, seed: int, successors: int = 8, zipf_exponent: float = 1.1,
               noise: float = 0.1, regimes: dict[str, float] | None = None, copy_min_period: int = 8,
               copy_max_period: int = 32, copy_noise: float = 0.05):
    n = vocab_size - N_RESERVED
    regimes = dict(regimes if regimes is not None else DEFAULT_REGIMES)
    if n < 2:
      raise SourceError(f"data.vocab_size={vocab_size} leaves no content tokens; use at least {N_RESERVED + 2}")
    if not 1 <= successors <= n:
      raise SourceError(f"data.synthetic.successors={successors} must be in [1, {n}] for vocab {vocab_size}")
    if not (zipf_exponent >= 0 and np.isfinite(zipf_exponent)):
      raise SourceError(f"data.synthetic.zipf_exponent={zipf_exponent} must be a finite number >= 0")
    for name, p in (("noise", noise), ("copy_noise", copy_noise)):
      if not 0 <= p <= 1:
        raise SourceError(f"data.synthetic.{name}={p} must be in [0, 1]")
    unknown = set(regimes) - set(REGIMES)
    if unknown:
      raise SourceError(f"data.synthetic.regimes has unknown regime(s) {sorted(unknown)}; known: {REGIMES}")
    w = np.array([float(regimes.get(r, 0.0)) for r in REGIMES])
    if not (np.all(np.isfinite(w)) and np.all(w >= 0) and w.sum() > 0):
      raise SourceError(f"data.synthetic.regimes={regimes} must be weights >= 0 with a positive sum")
    if w[COPY] > 0 and not 1 <= copy_min_period <= copy_max_period:
      raise SourceError(f"data.synthetic.copy_min_period={copy_min_period} and copy_max_period="
                        f"{copy_max_period} must satisfy 1 <= min <= max")
    self.vocab_size, self.seq_len, self.seed = vocab_size, seq_len, seed
    self.n_content, self.k = n, successors
    self.noise, self.copy_noise = float(noise), float(copy_noise)
    self.period_range = (int(copy_min_period), int(copy_max_period))
    self.regime_weights = w / w.sum()
    self.regime_cdf = np.cumsum(self.regime_weights)
    base = hashrng.key(seed, PURPOSE_LANGUAGE)
    # Tokens are ranked by a seeded permutation, so the frequent tokens are not simply 2, 3, ...
    self.unigram_rank_ids = hashrng.permutation(hashrng.key(base, "unigram"), n)
    self.unigram_cdf = np.cumsum(zipf_weights(n, zipf_exponent))
    self.unigram_p = np.zeros(n)
    self.unigram_p[self.unigram_rank_ids] = zipf_weights(n, zipf_exponent)
    self.succ_p = zipf_weights(successors, zipf_exponent)
    self.succ_cdf = np.cumsum(self.succ_p)
    # Successor sets: context c -> perm[(hash(c) + offsets) % n], distinct by construction (distinct offsets).
    self._chain_keys, self._chain_perm, self._chain_off = {}, {}, {}
    for order in (1, 2):
      k = hashrng.key(base, f"chain{order}")
      self._chain_keys[order] = k
      self._chain_perm[order] = hashrng.permutation(hashrng.key(k, "perm"), n)
      self._chain_off[order] = np.sort(hashrng.permutation(hashrng.key(k, "offsets"), n)[:successors])
    self.succ1 = self._successors(1, np.arange(n))  # (n, k) table
    # Second-order contexts: a table of hashes when it is small (n <= 4096: <= 32 MiB), else hashed per step.
    self._ctx2 = None
    if n <= _MAX_CONTEXT_TABLE:
      self._ctx2 = (hashrng.bits(self._chain_keys[2], np.arange(n * n)) % np.uint64(n)).astype(
          np.int16 if n < 2**15 else np.int32).reshape(n, n)
    self._split_keys = {s: {name: hashrng.key(base, p, name) for name in ("regime", "period", "uni", "rank",
                                                                           "noise")}
                        for s, p in SPLITS.items()}
    self._h_unigram = float(-_xlogx(self.unigram_p).sum())
    self._h1 = self._chain_entropy(self.succ1)
    q = self.copy_noise * self.unigram_p
    self._h_copy = (-_xlogx(q).sum() + _xlogx(q) - _xlogx(1 - self.copy_noise + q))
    self._entropy = None

  def __len__(self) -> int:
    return np.iinfo(np.int64).max  # infinite

  # ---- structure ------------------------------------------------------------------------------------------------
  def _successors(self, order: int, context: np.ndarray, ranks: np.ndarray | None = None) -> np.ndarray:
    """Content ids of the successors of `context` (content-id context, or a*n+b for order 2): (..., k) or
    (...,) when `ranks` picks one per context."""
    n = self.n_content
    if order == 2 and self._ctx2 is not None:
      h = self._ctx2.reshape(-1)[context].astype(np.int64)
    else:
      h = (hashrng.bits(self._chain_keys[order], context) % np.uint64(n)).astype(np.int64)
    if ranks is None:
      return self._chain_perm[order][(h[..., None] + self._chain_off[order]) % n]
    return self._chain_perm[order][(h + self._chain_off[order][ranks]) % n]

  def _chain_entropy(self, succ: np.ndarray) -> np.ndarray:
    """Entropy of noise·unigram + (1−noise)·Zipf-over-successors, per context row of `succ` (..., k)."""
    eta = self.noise
    u = eta * self.unigram_p[succ]
    q = u + (1 - eta) * self.succ_p
    return -_xlogx(eta * self.unigram_p).sum() + np.sum(_xlogx(u) - _xlogx(q), axis=-1)

  # ---- generation ---------------------------------------------------------------------------------------------
  def _latents(self, idx: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    keys = self._split_keys[split]
    regime = np.minimum(np.searchsorted(self.regime_cdf, hashrng.uniform(keys["regime"], idx), side="right"), 3)
    lo, hi = self.period_range
    period = lo + hashrng.integers(keys["period"], hi - lo + 1, idx)
    return regime, period

  def _generate(self, idx: np.ndarray, split: str):
    """Time-major content ids (L1, N) plus the latents (regime, period)."""
    check_split(split)
    keys = self._split_keys[split]
    n, k, L1, N = self.n_content, self.k, self.seq_len + 1, len(idx)
    regime, period = self._latents(idx, split)
    pos = np.arange(L1)[:, None]
    uni = self.unigram_rank_ids[np.minimum(
        np.searchsorted(self.unigram_cdf, hashrng.uniform(keys["uni"], idx, pos)), n - 1)]
    rank = np.minimum(np.searchsorted(self.succ_cdf, hashrng.uniform(keys["rank"], idx, pos)), k - 1)
    is_m2 = regime == MARKOV2
    in_repeat = (regime == COPY) & (pos >= period)
    rate = np.where(in_repeat, self.copy_noise, self.noise)
    rate[:, regime == UNIGRAM] = 2.0  # always "noise": pure unigram rows
    # Which candidate each position takes: 0 first-order step, 1 second-order, 2 copy, 3 unigram draw.
    mode = np.zeros((L1, N), np.int8)
    mode[2:, is_m2] = 1
    mode[in_repeat] = 2
    mode[hashrng.uniform(keys["noise"], idx, pos) < rate] = 3
    rows = np.arange(N)
    back = np.maximum(pos - period, 0) * N + rows  # flat index of the token one period back
    off2 = self._chain_off[2][rank]
    perm2 = np.concatenate([self._chain_perm[2]] * 2)  # indexed by hash + offset < 2n: no modulo per step
    ctx2, succ1 = self._ctx2, self.succ1
    any_m2, any_copy, p_min = bool(is_m2.any()), bool(in_repeat.any()), self.period_range[0]
    out = np.empty((L1, N), np.int64)
    flat = out.reshape(-1)
    out[0] = uni[0]
    # Sequential by nature: one vectorised step per position, kept to a few numpy calls (their fixed cost is
    # what bounds throughput at these array sizes).
    for t in range(1, L1):
      prev = out[t - 1]
      c1 = succ1[prev, rank[t]]
      c2 = cp = c1
      if any_m2 and t >= 2:
        h = ctx2[out[t - 2], prev] if ctx2 is not None else self._successors_hash(out[t - 2] * n + prev)
        c2 = perm2[h + off2[t]]
      if any_copy and t >= p_min:
        cp = flat[back[t]]
      mode[t].choose((c1, c2, cp, uni[t]), out=out[t])
    return out, regime, period

  def _successors_hash(self, context: np.ndarray) -> np.ndarray:
    return (hashrng.bits(self._chain_keys[2], context) % np.uint64(self.n_content)).astype(np.int64)

  def sequences(self, index, split: str = "train") -> np.ndarray:
    """Rows for global sequence indices `index`: (len(index), seq_len + 1) int32."""
    idx = np.asarray(index, np.int64).reshape(-1)
    out, _, _ = self._generate(idx, split)
    return (out.T + N_RESERVED).astype(np.int32)

  def sequence(self, index: int, split: str = "train") -> np.ndarray:
    return self.sequences([index], split)[0]

  # ---- Bayes loss -----------------------------------------------------------------------------------------------
  def conditional_entropies(self, index, split: str = "entropy", with_nll: bool = False):
    """(N, seq_len) entropy of each target given its generating state, and the rows' regimes (N,).

    with_nll: also the negative log-likelihood of the realised targets under that state (its mean must match the
    entropy's: the check that generation and the entropy formulas describe the same distribution).
    """
    idx = np.asarray(index, np.int64).reshape(-1)
    out, regime, period = self._generate(idx, split)
    n, L1, N = self.n_content, out.shape[0], len(idx)
    prev, target = out[:-1], out[1:]
    succ = self.succ1[prev]  # (L, N, k) successor sets of the chain steps
    if np.any(regime == MARKOV2):
      succ[1:] = np.where((regime == MARKOV2)[:, None], self._successors(2, out[:-2] * n + out[1:-1]), succ[1:])
    h = self._chain_entropy(succ)
    eta, u = self.noise, self.unigram_p
    p = eta * u[target] + (1 - eta) * np.sum(self.succ_p * (succ == target[..., None]), axis=-1)
    t = np.arange(1, L1)[:, None]
    src = out[np.maximum(t - period, 0), np.arange(N)]
    rep = (regime == COPY) & (t >= period)
    h = np.where(rep, self._h_copy[src], h)
    p = np.where(rep, self.copy_noise * u[target] + (1 - self.copy_noise) * (src == target), p)
    uni = regime == UNIGRAM
    h[:, uni] = self._h_unigram
    p[:, uni] = u[target[:, uni]]
    return (h.T, regime, -np.log(p).T) if with_nll else (h.T, regime)

  def _entropy_sample(self, rows: int = 4096):
    if self._entropy is None:
      # Stratified by regime (weights known exactly), which removes the between-regime variance.
      h, regime = self.conditional_entropies(np.arange(rows))
      per_row = h.mean(axis=1)
      mean = var = 0.0
      by_regime = {}
      for r, name in enumerate(REGIMES):
        w, x = self.regime_weights[r], per_row[regime == r]
        if w == 0:
          continue
        if len(x) == 0:  # a regime too rare to be sampled: draw rows of it specifically
          x = self._regime_rows(r, rows // 4)
        by_regime[name] = float(x.mean())
        mean += w * x.mean()
        var += w**2 * x.var() / len(x)
      self._entropy = (float(mean), float(np.sqrt(var)), by_regime)
    return self._entropy

  def _regime_rows(self, r: int, count: int) -> np.ndarray:
    idx = np.arange(1 << 20, 1 << 21)
    idx = idx[self._latents(idx, "entropy")[0] == r][:count]
    h, _ = self.conditional_entropies(idx)
    return h.mean(axis=1)

  def entropy_rate(self) -> float:
    """Bayes loss in nats/token given each row's hidden regime (lower bound; see the class docstring)."""
    return self._entropy_sample()[0]

  def entropy_by_regime(self) -> dict[str, float]:
    return dict(self._entropy_sample()[2])

  def entropy_bounds(self) -> tuple[float, float, float]:
    """(lower, upper, standard error): lower = entropy_rate(); upper adds H(regime, period) / seq_len."""
    lower, se, _ = self._entropy_sample()
    w = self.regime_weights
    h_latent = float(-_xlogx(w).sum()) + w[COPY] * np.log(self.period_range[1] - self.period_range[0] + 1)
    return lower, lower + h_latent / self.seq_len, se
