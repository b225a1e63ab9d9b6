"""Tokenizers read from local files (nothing is downloaded): bytes (the default), SentencePiece, Hugging Face.

`load(spec)` takes
  "byte"                  byte b -> id b + 2, PAD = 0, EOD = 1 (vocab.py); needs no file
  path/to/model.model     a SentencePiece model (the `sentencepiece` package; pip install -e ".[tokenizers]")
  path/to/tokenizer.json  a Hugging Face `tokenizers` file (the `tokenizers` package, same extra)
and returns a `Tokenizer`: `encode(texts)` (a list of str or bytes -> a list of int arrays, no special tokens
added), the vocabulary size, the tokenizer's own end-of-document and pad ids (PAD falls back to EOD when the
tokenizer has no pad token: padded positions always carry weight 0), its special ids (never task symbols), and
`sha256`, the digest of the file (a prepared corpus records it, so a corpus is never read with another tokenizer).
EOD is the tokenizer's end-of-sequence token unless `eod_token` names another; likewise `pad_token`.
"""

from __future__ import annotations

import hashlib
import importlib
import os

import numpy as np

from scaling.core.errors import SourceError
from scaling.lm.data.shards import file_sha256
from scaling.lm.data.vocab import BYTE_VOCAB, EOD, N_RESERVED, PAD, Vocabulary

BYTE = "byte"
KINDS = ("byte", "sentencepiece", "huggingface")
_HF_EOD = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "[SEP]", "<|eot_id|>")
_HF_PAD = ("<pad>", "[PAD]", "<|padding|>", "<|pad|>", "<|finetune_right_pad_id|>")
_EXTRA = 'pip install -e ".[tokenizers]"'


class Tokenizer:
  """Common interface; subclasses set the attributes in __init__ and implement `_encode`."""

  kind: str
  path: str
  sha256: str
  vocab_size: int
  eod_id: int
  pad_id: int
  special_ids: np.ndarray

  def encode(self, texts) -> list[np.ndarray]:
    """Token ids of each text (str or UTF-8 bytes), without special tokens."""
    return [np.asarray(x, np.int64) for x in self._encode(list(texts))]

  def _encode(self, texts: list) -> list:
    raise NotImplementedError

  def vocabulary(self) -> Vocabulary:
    """The id space: content ids (the task-symbol pool) are all ids but the special ones."""
    ids = np.arange(self.vocab_size)
    return Vocabulary(self.vocab_size, self.pad_id, self.eod_id, ids[~np.isin(ids, self.special_ids)],
                      pool_fix="use a tokenizer with a larger vocabulary")

  def describe(self) -> dict:
    """What a prepared corpus's manifest records about its tokenizer."""
    return {"kind": self.kind, "path": os.path.abspath(self.path) if self.path != BYTE else BYTE,
            "sha256": self.sha256, "vocab_size": int(self.vocab_size), "eod_id": int(self.eod_id),
            "pad_id": int(self.pad_id), "special_ids": [int(i) for i in self.special_ids]}


class ByteTokenizer(Tokenizer):
  kind, path = "byte", BYTE
  sha256 = hashlib.sha256(b"scaling byte tokenizer: byte b -> id b + 2, PAD 0, EOD 1").hexdigest()
  vocab_size, eod_id, pad_id = BYTE_VOCAB, EOD, PAD
  special_ids = np.array([PAD, EOD])

  def _encode(self, texts: list) -> list:
    return [np.frombuffer(t.encode("utf-8") if isinstance(t, str) else bytes(t), np.uint8).astype(np.int64)
            + N_RESERVED for t in texts]


def _text(t) -> str:
  return t if isinstance(t, str) else bytes(t).decode("utf-8", errors="replace")


def _open(module: str, path: str, what: str, opener):
  """opener(the imported `module`) -> the library's tokenizer object; failures become one-line SourceErrors."""
  try:
    lib = importlib.import_module(module)
  except ImportError:
    raise SourceError(f"tokenizer {path!r} needs the {module!r} package; {_EXTRA}") from None
  try:
    return opener(lib)
  except Exception as e:  # noqa: BLE001 - the bindings raise RuntimeError, OSError or plain Exception
    raise SourceError(f"tokenizer {path!r} is not a readable {what} ({(str(e).splitlines() or [''])[0][:160]})") \
        from None


class SentencePieceTokenizer(Tokenizer):
  kind = "sentencepiece"

  def __init__(self, path: str, eod_token: str = "", pad_token: str = ""):
    self.path = path
    self._sp = sp = _open("sentencepiece", path, "SentencePiece model",
                          lambda spm: spm.SentencePieceProcessor(model_file=path, num_threads=1))
    self.vocab_size = sp.get_piece_size()
    self.special_ids = np.array([i for i in range(self.vocab_size)
                                 if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i)], np.int64)
    self.eod_id = self._id(eod_token, sp.eos_id(), "eod")
    self.pad_id = self._id(pad_token, sp.pad_id(), "pad", fallback=self.eod_id)

  def _id(self, token: str, default: int, what: str, fallback: int | None = None) -> int:
    if token:
      i = self._sp.piece_to_id(token)
      if i == self._sp.unk_id() and token != self._sp.id_to_piece(i):
        raise SourceError(f"{what}_token={token!r} is not a piece of tokenizer {self.path!r}")
      return int(i)
    if default >= 0:
      return int(default)
    if fallback is not None:
      return fallback
    raise SourceError(f"tokenizer {self.path!r} has no end-of-sequence token; name one with --{what}_token")

  def _encode(self, texts: list) -> list:
    return self._sp.encode([_text(t) for t in texts])


class HuggingFaceTokenizer(Tokenizer):
  kind = "huggingface"

  def __init__(self, path: str, eod_token: str = "", pad_token: str = ""):
    self.path = path
    self._tok = tok = _open("tokenizers", path, "Hugging Face tokenizer.json",
                            lambda lib: lib.Tokenizer.from_file(path))
    self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
    specials = {i: t.content for i, t in tok.get_added_tokens_decoder().items() if t.special}
    self.special_ids = np.array(sorted(specials), np.int64)
    self.eod_id = self._id(eod_token, [t for t in _HF_EOD if t in specials.values()], "eod")
    pads = [t for t in _HF_PAD if t in specials.values()]
    self.pad_id = self._id(pad_token, pads, "pad") if (pad_token or pads) else self.eod_id

  def _id(self, token: str, candidates: list[str], what: str) -> int:
    name = token or (candidates[0] if candidates else "")
    i = self._tok.token_to_id(name) if name else None
    if i is None:
      if token:
        raise SourceError(f"{what}_token={token!r} is not a token of tokenizer {self.path!r}")
      raise SourceError(f"tokenizer {self.path!r} has no special end-of-document token (looked for "
                        f"{', '.join(_HF_EOD)}); name one with --eod_token")
    return int(i)

  def _encode(self, texts: list) -> list:
    return [e.ids for e in self._tok.encode_batch([_text(t) for t in texts], add_special_tokens=False)]


def kind_of(spec: str) -> str:
  if spec == BYTE:
    return "byte"
  if spec.endswith(".json"):
    return "huggingface"
  if spec.endswith(".model"):
    return "sentencepiece"
  raise SourceError(f"tokenizer {spec!r}: cannot tell its kind; give 'byte', a SentencePiece .model file or a "
                    "Hugging Face tokenizer.json file")


def check_file(spec: str) -> str:
  """The tokenizer's kind after checking the file is there (cheap: no loading)."""
  kind = kind_of(spec)
  if kind != "byte" and not os.path.isfile(os.path.expanduser(spec)):
    raise SourceError(f"tokenizer file {spec!r} does not exist; give the path of a SentencePiece .model or a "
                      "Hugging Face tokenizer.json (or 'byte')")
  return kind


def load(spec: str, eod_token: str = "", pad_token: str = "") -> Tokenizer:
  kind = check_file(spec)
  if kind == "byte":
    if eod_token or pad_token:
      raise SourceError("the byte tokenizer's EOD and PAD are fixed (ids 1 and 0); drop --eod_token/--pad_token")
    return ByteTokenizer()
  path = os.path.expanduser(spec)
  tok = (SentencePieceTokenizer if kind == "sentencepiece" else HuggingFaceTokenizer)(path, eod_token, pad_token)
  tok.sha256 = file_sha256(path)
  return tok


def sha256_of(spec: str) -> str:
  """The digest `load(spec).sha256` would have, without loading the tokenizer."""
  return ByteTokenizer.sha256 if check_file(spec) == "byte" else file_sha256(os.path.expanduser(spec))

