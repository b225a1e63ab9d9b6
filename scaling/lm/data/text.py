"""Byte-level text corpora for small-corpus convenience: local files (`local_text`) and TFDS datasets (`tfds`).

Byte b -> id b + 2 (ids 2..257 are content, 0/1 stay PAD/EOD), so `data.vocab_size` must be at least 258. Both read
the corpus directly at training time; `local_text` holds it in memory (one byte per byte, at most
MAX_IN_MEMORY_BYTES). For large corpora or a subword tokenizer, prepare the corpus once
(`python -m scaling.lm.data.prepare`, prepare.py) and train with `data.source="prepared"`.
"""

from __future__ import annotations

import glob as globlib
import os

import numpy as np

from scaling.core import hashrng
from scaling.core.errors import SourceError
from scaling.lm.data.splits import SPLITS, check_split
from scaling.lm.data.vocab import EOD, N_RESERVED

MAX_IN_MEMORY_BYTES = 4 << 30
PREPARE_HINT = "prepare it once (python -m scaling.lm.data.prepare) and use data.source='prepared'"


def bytes_to_ids(data) -> np.ndarray:
  """Byte-level tokenizer: byte b -> id b + 2 (uint16 keeps big corpora at 2 bytes per byte)."""
  if isinstance(data, str):
    data = data.encode("utf-8")
  elif isinstance(data, np.ndarray):
    data = data.item() if data.dtype == object or data.ndim == 0 else data.tobytes()
    if isinstance(data, str):
      data = data.encode("utf-8")
  return np.frombuffer(bytes(data), np.uint8).astype(np.uint16) + N_RESERVED


class LocalText:
  """Text files matched by a glob, read as bytes, joined with EOD into one stream held in memory (uint8).

  The last `eval_fraction` of the stream (at least one row) is the eval split, the rest is train; row i of a split
  is the window of seq_len + 1 tokens at a seeded random offset (a pure function of (seed, split, i)), so the
  stream is sampled uniformly and endlessly. Files load lazily, so the source pickles cheaply into Grain workers.
  """

  def __init__(self, pattern: str, seq_len: int, seed: int, eval_fraction: float = 0.01):
    self.paths = matching_files(pattern)
    if not self.paths:
      raise SourceError(f"data.local_text.glob={pattern!r} matches no files; give a glob of text files")
    if not 0 < eval_fraction < 1:
      raise SourceError(f"data.local_text.eval_fraction={eval_fraction} must be in (0, 1)")
    total = sum(os.path.getsize(p) for p in self.paths)
    if total > MAX_IN_MEMORY_BYTES:
      raise SourceError(f"data.local_text.glob={pattern!r} matches {total / 2**30:.1f} GiB, more than local_text "
                        f"holds in memory ({MAX_IN_MEMORY_BYTES / 2**30:.0f} GiB); {PREPARE_HINT}")
    self.pattern, self.seq_len, self.seed, self.eval_fraction = pattern, seq_len, seed, eval_fraction
    self._keys = {s: hashrng.key(seed, p, "local_text") for s, p in SPLITS.items()}
    self._regions = None

  def __getstate__(self):
    return {**self.__dict__, "_regions": None}

  def _load(self) -> dict[str, np.ndarray]:
    if self._regions is None:
      stream = np.concatenate([np.fromfile(p, np.uint8) for p in self.paths] + [np.zeros(0, np.uint8)])
      eod = np.cumsum([os.path.getsize(p) + 1 for p in self.paths]) - 1  # stream positions of the EODs
      # Bytes stay uint8 (one byte per byte in memory); the EOD after each file is a position, not a byte.
      stream = np.insert(stream, eod - np.arange(len(eod)), 0)
      L1 = self.seq_len + 1
      n_eval = max(int(round(len(stream) * self.eval_fraction)), L1)
      if len(stream) - n_eval < L1:
        raise SourceError(f"data.local_text.glob={self.pattern!r} holds {len(stream)} bytes, too few for a "
                          f"train and an eval window of {L1}; add text or lower data.seq_len")
      cut = len(stream) - n_eval
      tail = (stream[cut:], eod[eod >= cut] - cut)
      self._regions = {"train": (stream[:cut], eod[eod < cut]), "eval": tail, "entropy": tail}
    return self._regions

  def sequences(self, index, split: str = "train") -> np.ndarray:
    check_split(split)
    idx = np.asarray(index, np.int64).reshape(-1)
    region, eod = self._load()[split]
    L1 = self.seq_len + 1
    off = hashrng.integers(self._keys[split], len(region) - L1 + 1, idx)
    out = region[off[:, None] + np.arange(L1)].astype(np.int32) + N_RESERVED
    lo, hi = np.searchsorted(eod, off), np.searchsorted(eod, off + L1)
    rows = np.repeat(np.arange(len(idx)), hi - lo)
    hits = eod[np.arange(len(rows)) - np.repeat(np.cumsum(hi - lo) - (hi - lo), hi - lo) + np.repeat(lo, hi - lo)]
    out[rows, hits - off[rows]] = EOD
    return out

  def sequence(self, index: int, split: str = "train") -> np.ndarray:
    return self.sequences([index], split)[0]


def matching_files(pattern: str) -> list[str]:
  return sorted(p for p in globlib.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(p))


class TfdsText:
  """A TFDS text dataset through `tfds.data_source` (random access into array_record files; never downloads).

  Row i of a split starts in record r = hash(seed, split, i) mod n_records. A record longer than a row gives a
  window at a seeded offset; a shorter one is followed by EOD and the next records (storage order) until the row
  is full, i.e. documents are packed. `split` / `eval_split` accept TFDS slicing, e.g. "train[:99%]".
  """

  def __init__(self, name: str, split: str, eval_split: str, feature: str, data_dir: str, seq_len: int,
               seed: int):
    if not name:
      raise SourceError("data.source='tfds' needs data.tfds.name (a TFDS dataset already prepared in "
                        "data.tfds.data_dir)")
    self.name, self.feature, self.data_dir = name, feature, data_dir or None
    self.split_names = {"train": split, "eval": eval_split, "entropy": eval_split}
    self.seq_len, self.seed = seq_len, seed
    self._keys = {s: (hashrng.key(seed, p, "tfds_record"), hashrng.key(seed, p, "tfds_offset"))
                  for s, p in SPLITS.items()}
    self._sources: dict[str, object] = {}

  def __getstate__(self):
    return {**self.__dict__, "_sources": {}}  # reopened in each Grain worker

  def data_source(self, split: str):
    if split not in self._sources:
      import tensorflow_datasets as tfds  # noqa: PLC0415 - only this source needs it
      try:
        ds = tfds.data_source(self.name, split=self.split_names[split], data_dir=self.data_dir, download=False)
      except Exception as e:  # noqa: BLE001 - tfds raises many types; all mean "not readable here"
        msg = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise SourceError(f"data.tfds.name={self.name!r} split={self.split_names[split]!r} is not readable from "
                          f"data.tfds.data_dir={self.data_dir!r} ({msg}); prepare it there first "
                          "(array_record format)") from None
      if len(ds) == 0:
        raise SourceError(f"data.tfds.name={self.name!r} split={self.split_names[split]!r} is empty")
      self._sources[split] = ds
    return self._sources[split]

  def _doc(self, record) -> np.ndarray:
    if self.feature not in record:
      raise SourceError(f"data.tfds.feature={self.feature!r} is not a feature of {self.name!r}; it has "
                        f"{sorted(record)}")
    return bytes_to_ids(record[self.feature])

  def sequences(self, index, split: str = "train") -> np.ndarray:
    check_split(split)
    idx = np.asarray(index, np.int64).reshape(-1)
    ds = self.data_source(split)
    n, L1 = len(ds), self.seq_len + 1
    k_rec, k_off = self._keys[split]
    first = hashrng.integers(k_rec, n, idx)
    u_off = hashrng.uniform(k_off, idx)
    out = np.empty((len(idx), L1), np.int32)
    for row, (r, rec, u) in enumerate(zip(first, read_records(ds, first.tolist()), u_off)):
      doc = self._doc(rec)
      if len(doc) >= L1:
        off = int(u * (len(doc) - L1 + 1))
        out[row] = doc[off:off + L1]
        continue
      parts, have, j, ahead = [doc, [EOD]], len(doc) + 1, int(r), 4
      while have < L1:  # every record adds at least its EOD, so this ends
        # The next records in storage order, fetched `ahead` at a time (doubling): one read call per batch.
        for nxt in map(self._doc, read_records(ds, [(j + 1 + t) % n for t in range(ahead)])):
          parts += [nxt, [EOD]]
          have += len(nxt) + 1
          if have >= L1:
            break
        j, ahead = j + ahead, 2 * ahead
      out[row] = np.concatenate(parts)[:L1]
    return out

  def sequence(self, index: int, split: str = "train") -> np.ndarray:
    return self.sequences([index], split)[0]


def read_records(ds, keys: list[int]) -> list:
  """Records `keys` of a random-access data source, in one batched read when it supports that."""
  getitems = getattr(ds, "__getitems__", None)
  return list(getitems(keys)) if getitems else [ds[int(k)] for k in keys]
