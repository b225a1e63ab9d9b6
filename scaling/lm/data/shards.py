"""The on-disk layout of a prepared corpus: fixed-width records of token ids in shard files, and the manifest.

A split's documents, each followed by the tokenizer's EOD id, form one token stream. The stream is cut into
records of `record_tokens` ids (the last may be shorter) and the records into shard files of `shard_records`
records, so global token t lies in record t // record_tokens, and that record in shard record // shard_records:
reading any window is arithmetic, with no index to load. Two shard formats:
  array_record  one ArrayRecord file per shard (group_size 1), a record = the ids as little-endian bytes; read
                through Grain's `ArrayRecordDataSource`
  numpy         one .npy array (records, record_tokens) per shard (the last record padded with PAD); read with
                positioned reads, never memory-mapped, so resident memory does not grow with the bytes read

DIR/manifest.json records the format, token dtype, record width, the tokenizer (kind, path, sha256, vocabulary
size, EOD/PAD ids, special ids) and per split its token and document counts and shard list (file, records,
tokens, documents, bytes, sha256, and a `.docs.npy` file of the stream offsets of every document's EOD: the
document boundaries). DIR/token_counts.npy holds how often each id occurs in the train split.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from scaling.core.errors import SourceError

FORMATS = ("array_record", "numpy")
EXTENSIONS = {"array_record": ".array_record", "numpy": ".npy"}
MANIFEST = "manifest.json"
TOKEN_COUNTS = "token_counts.npy"
VERSION = 1
SPLIT_NAMES = ("train", "eval")
PREPARE = "python -m scaling.lm.data.prepare"


def token_dtype(vocab_size: int) -> np.dtype:
  return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def file_sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      h.update(block)
  return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------
class SplitWriter:
  """Appends documents to one split's stream and writes it as shards (see the module docstring)."""

  def __init__(self, root: str, split: str, fmt: str, dtype: np.dtype, record_tokens: int, shard_records: int,
               pad_id: int):
    self.root, self.split, self.fmt, self.dtype = root, split, fmt, np.dtype(dtype)
    self.record_tokens, self.shard_records, self.pad_id = int(record_tokens), int(shard_records), int(pad_id)
    os.makedirs(os.path.join(root, split), exist_ok=True)
    self.shards: list[dict] = []
    self.tokens = self.documents = 0
    self._pending: list[np.ndarray] = []  # ids not yet in a full record
    self._pending_len = 0
    self._records: list[np.ndarray] = []  # full records of the open shard
    self._doc_ends: list[np.ndarray] = []  # stream offsets of the open shard's EODs
    self._shard_start = 0  # stream offset of the open shard's first token

  def add(self, ids: np.ndarray, doc_ends: np.ndarray) -> None:
    """`ids`: a piece of the stream; `doc_ends`: positions within it of the EODs that end documents."""
    self._doc_ends.append(self.tokens + np.asarray(doc_ends, np.int64))
    self.tokens += len(ids)
    self.documents += len(doc_ends)
    self._pending.append(np.asarray(ids, self.dtype))
    self._pending_len += len(ids)
    if self._pending_len >= self.record_tokens:
      flat = np.concatenate(self._pending)
      n_full = len(flat) // self.record_tokens
      for r in range(n_full):
        self._records.append(flat[r * self.record_tokens:(r + 1) * self.record_tokens])
        if len(self._records) == self.shard_records:
          self._flush()
      rest = flat[n_full * self.record_tokens:]
      self._pending, self._pending_len = [rest], len(rest)

  def close(self) -> dict:
    """Writes what is left; returns the split's manifest entry."""
    if self._pending_len:
      self._records.append(np.concatenate(self._pending))
    self._pending, self._pending_len = [], 0
    if self._records:
      self._flush()
    return {"tokens": self.tokens, "documents": self.documents,
            "records": sum(s["records"] for s in self.shards), "shards": self.shards}

  def _flush(self) -> None:
    n = len(self.shards)
    rel = os.path.join(self.split, f"shard-{n:05d}{EXTENSIONS[self.fmt]}")
    path = os.path.join(self.root, rel)
    tokens = sum(len(r) for r in self._records)
    if self.fmt == "numpy":
      block = np.full((len(self._records), self.record_tokens), self.pad_id, self.dtype)
      for i, r in enumerate(self._records):
        block[i, :len(r)] = r
      np.save(path, block)
    else:
      from array_record.python import array_record_module  # noqa: PLC0415 - only this format needs it
      w = array_record_module.ArrayRecordWriter(path, "group_size:1")
      for r in self._records:
        w.write(r.tobytes())
      w.close()
    end = self._shard_start + tokens
    ends = np.concatenate(self._doc_ends) if self._doc_ends else np.zeros(0, np.int64)
    mine, later = ends[ends < end], ends[ends >= end]
    docs_rel = rel[:-len(EXTENSIONS[self.fmt])] + ".docs.npy"
    np.save(os.path.join(self.root, docs_rel), mine)
    self.shards.append({"file": rel, "records": len(self._records), "tokens": tokens, "documents": len(mine),
                        "bytes": os.path.getsize(path), "sha256": file_sha256(path), "doc_ends": docs_rel})
    self._records, self._doc_ends, self._shard_start = [], [later], end


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------
def read_manifest(root: str, key: str = "data.prepared.dir") -> dict:
  path = os.path.join(os.path.expanduser(root), MANIFEST)
  if not os.path.isfile(path):
    raise SourceError(f"{key}={root!r} holds no {MANIFEST}; prepare the corpus there first ({PREPARE} ... "
                      f"--out={root})")
  try:
    with open(path) as f:
      m = json.load(f)
  except (OSError, ValueError) as e:
    raise SourceError(f"{key}={root!r}: {MANIFEST} is unreadable ({str(e)[:120]}); prepare it again") from None
  if not isinstance(m, dict) or m.get("version") != VERSION or m.get("format") not in FORMATS:
    raise SourceError(f"{key}={root!r}: {MANIFEST} is not a version-{VERSION} prepared corpus; prepare it again "
                      f"with this code ({PREPARE})")
  return m


def check_shards(root: str, manifest: dict, full: bool = False, key: str = "data.prepared.dir") -> None:
  """Every shard file exists with its recorded size (and, when `full`, its recorded sha256)."""
  for split in SPLIT_NAMES:
    for s in manifest["splits"][split]["shards"]:
      path = os.path.join(root, s["file"])
      size = os.path.getsize(path) if os.path.isfile(path) else None
      bad = ("is missing" if size is None else f"has {size} bytes, not {s['bytes']}" if size != s["bytes"] else
             "does not match its sha256" if full and file_sha256(path) != s["sha256"] else "")
      if bad:
        raise SourceError(f"{key}={root!r}: shard {s['file']} {bad} (corrupt or incomplete); prepare the corpus "
                          f"again ({PREPARE})")


class SplitReader:
  """Random access to one split's records: `records(keys)` -> list of id arrays. Opens files lazily (pickles
  cheaply into Grain worker processes)."""

  def __init__(self, root: str, manifest: dict, split: str):
    self.root, self.fmt = root, manifest["format"]
    self.dtype = np.dtype(manifest["dtype"])
    self.record_tokens = int(manifest["record_tokens"])
    self.shards = manifest["splits"][split]["shards"]
    self.shard_records = int(manifest["shard_records"])
    self._source = None
    self._offsets: dict[int, int] = {}

  def __getstate__(self):
    return {**self.__dict__, "_source": None}

  def records(self, keys: list[int]) -> list[np.ndarray]:
    try:
      if self.fmt == "numpy":
        return [self._numpy_record(k) for k in keys]
      if self._source is None:
        import grain  # noqa: PLC0415 - keeps prepare's worker processes light
        self._source = grain.sources.ArrayRecordDataSource(
            [f"{os.path.join(self.root, s['file'])}[0:{s['records']}]" for s in self.shards])
      return [np.frombuffer(b, self.dtype) for b in self._source.__getitems__(keys)]
    except (OSError, RuntimeError, ValueError) as e:
      shard = self.shards[min(keys) // self.shard_records]["file"] if keys else "?"
      raise SourceError(f"prepared corpus {self.root!r}: reading shard {shard} failed ({str(e)[:160]}); check it "
                        f"with {PREPARE} --verify={self.root} and prepare again if corrupt") from None

  def _numpy_record(self, key: int) -> np.ndarray:
    shard, row = divmod(int(key), self.shard_records)
    path = os.path.join(self.root, self.shards[shard]["file"])
    if shard not in self._offsets:
      with open(path, "rb") as f:
        fmt = np.lib.format
        header = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) else fmt.read_array_header_2_0
        shape, _, _ = header(f)
        self._offsets[shard] = f.tell()
      if shape[1] != self.record_tokens:
        raise ValueError(f"{path} has records of {shape[1]} ids, the manifest says {self.record_tokens}")
    width = self.record_tokens * self.dtype.itemsize
    fd = os.open(path, os.O_RDONLY)
    try:
      data = os.pread(fd, width, self._offsets[shard] + row * width)
    finally:
      os.close(fd)
    if len(data) != width:
      raise OSError(f"{path} is truncated at record {row}")
    return np.frombuffer(data, self.dtype)
