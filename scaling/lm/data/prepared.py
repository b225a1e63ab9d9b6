"""`data.source="prepared"`: fixed-length windows streamed from a corpus prepared once by prepare.py.

A split's stream of T tokens (documents, each ending in EOD, see shards.py) holds W = (T − 1) // seq_len windows:
window w is tokens [w·seq_len, w·seq_len + seq_len + 1), so consecutive windows share one token and every token is
a target exactly once per pass. Row i of a split is window shuffle(i), where `shuffle` is Grain's seeded global
index shuffle (`MapDataset.range(W).shuffle`), reshuffled each epoch (i // W), so the order is a pure function of
(seed, split, i): any batch can be rebuilt, resume is exact, and each process reads only its own rows (the
pipeline's per-host slice). Reads touch only the records a row needs; nothing loads the corpus.

The corpus carries its tokenizer: the config's `data.tokenizer` must be the same file (by sha256), and
`data.vocab_size` must hold the tokenizer's ids. Cheap checks (manifest, shard sizes) run when the source is
built; `data.prepared.verify="full"` also hashes every shard.
"""

from __future__ import annotations

import os

import numpy as np

from scaling.core import hashrng
from scaling.core.errors import SourceError
from scaling.lm.data import shards, tokenizers
from scaling.lm.data.splits import SPLITS, check_split
from scaling.lm.data.vocab import Vocabulary

VERIFY = ("size", "full")
_SPLIT_OF = {"train": "train", "eval": "eval", "entropy": "eval"}
_MAX_WINDOWS = 1 << 32  # Grain's index shuffle works on 32-bit indices
_HASHED: set[str] = set()  # corpora whose shards this process has re-hashed (verify="full" hashes once)


class PreparedCorpus:

  def __init__(self, root: str, seq_len: int, seed: int, tokenizer: str, verify: str = "size"):
    if not root:
      raise SourceError("data.source='prepared' needs data.prepared.dir (a directory written by "
                        f"{shards.PREPARE} --out=DIR)")
    if verify not in VERIFY:
      raise SourceError(f"data.prepared.verify={verify!r} is not one of {VERIFY}")
    self.root = os.path.abspath(os.path.expanduser(root))
    self.manifest = m = shards.read_manifest(root)
    tok = m["tokenizer"]
    if tokenizers.sha256_of(tokenizer) != tok["sha256"]:
      raise SourceError(f"data.prepared.dir={root!r} was prepared with tokenizer {tok['path']!r} (sha256 "
                        f"{tok['sha256'][:12]}), not data.tokenizer={tokenizer!r}; set data.tokenizer to that file "
                        "or prepare the corpus again with this tokenizer")
    self.seq_len, self.seed = int(seq_len), int(seed)
    self.n_windows = {}
    for split in shards.SPLIT_NAMES:
      t = m["splits"][split]["tokens"]
      self.n_windows[split] = (t - 1) // self.seq_len if t > 1 else 0
      if self.n_windows[split] < 1:
        raise SourceError(f"data.prepared.dir={root!r}: its {split} split holds {t} tokens, too few for one "
                          f"window of data.seq_len + 1 = {self.seq_len + 1}; lower data.seq_len or add text")
      if self.n_windows[split] >= _MAX_WINDOWS:
        raise SourceError(f"data.prepared.dir={root!r}: {self.n_windows[split]:,} {split} windows exceed the 2^32 "
                          "that the global shuffle indexes; raise data.seq_len or split the corpus")
    full = verify == "full" and self.root not in _HASHED
    shards.check_shards(self.root, m, full=full)
    if full:
      _HASHED.add(self.root)
    self.vocab = Vocabulary(int(tok["vocab_size"]), int(tok["pad_id"]), int(tok["eod_id"]),
                            np.setdiff1d(np.arange(tok["vocab_size"]), tok["special_ids"]),
                            pool_fix="use a tokenizer with a larger vocabulary")
    self._readers = {s: shards.SplitReader(self.root, m, s) for s in shards.SPLIT_NAMES}
    self._order = {}

  def token_counts(self) -> np.ndarray:
    """Occurrences of every id in the train split (written by prepare)."""
    return np.load(os.path.join(self.root, shards.TOKEN_COUNTS))

  def windows(self, split: str):
    """Grain MapDataset: row index -> window index (seeded global shuffle, reshuffled every epoch)."""
    check_split(split)
    if split not in self._order:
      import grain  # noqa: PLC0415 - keeps `import scaling.lm.data.sources` light
      seed = hashrng.key(self.seed, SPLITS[split], "prepared") % (1 << 31)
      self._order[split] = grain.MapDataset.range(self.n_windows[_SPLIT_OF[split]]).shuffle(seed=int(seed))
    return self._order[split]

  def __getstate__(self):
    return {**self.__dict__, "_order": {}}

  def sequences(self, index, split: str = "train") -> np.ndarray:
    """Rows for global row indices `index`: (len(index), seq_len + 1) int32 windows."""
    idx = np.asarray(index, np.int64).reshape(-1)
    order = self.windows(split)
    starts = np.array([order[int(i)] for i in idx], np.int64) * self.seq_len
    return self.read(_SPLIT_OF[split], starts)

  def sequence(self, index: int, split: str = "train") -> np.ndarray:
    return self.sequences([index], split)[0]

  def read(self, split: str, starts: np.ndarray) -> np.ndarray:
    """The seq_len + 1 tokens from each stream offset in `starts`, fetching each needed record once."""
    reader, L1 = self._readers[split], self.seq_len + 1
    c = reader.record_tokens
    first, last = starts // c, (starts + L1 - 1) // c
    keys = np.unique(np.concatenate([np.arange(a, b + 1) for a, b in zip(first, last)])).tolist()
    got = dict(zip(keys, reader.records(keys)))
    out = np.empty((len(starts), L1), np.int32)
    for row, (o, a, b) in enumerate(zip(starts.tolist(), first.tolist(), last.tolist())):
      buf = got[a] if a == b else np.concatenate([got[k] for k in range(a, b + 1)])
      out[row] = buf[o - a * c:o - a * c + L1]
    return out
