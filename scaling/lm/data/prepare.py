"""Tokenize a corpus once, in parallel, into shards that training streams at any size (`data.source="prepared"`).

  python -m scaling.lm.data.prepare --source=local_text --glob='~/corpus/**/*.txt' --tokenizer=tok.model --out=DIR
  python -m scaling.lm.data.prepare --source=tfds --tfds_name=my_corpus --tfds_data_dir=~/tfds \\
      --tokenizer=tokenizer.json --out=DIR
  python -m scaling.lm.data.prepare --verify=DIR                  # re-hash every shard against the manifest

local_text: files matched by `--glob` (sorted), read as UTF-8; `--documents` says what one document is: `file`
(default), `line` (every non-empty line) or `paragraph` (blank-line separated). The trailing `--eval_fraction` of
the bytes (cut at a line end) is the eval split, as for `data.source="local_text"`. Files are cut into jobs of
about `--chunk_bytes` at line ends (a document longer than that is tokenized in pieces cut at line ends).
tfds: a TFDS dataset already prepared in array_record format (never downloaded); every record's `--tfds_feature`
is one document; `--tfds_split` / `--tfds_eval_split` (TFDS slicing works) give the two splits.

Jobs run in `--workers` processes (results are written in job order, so the output is the same for any worker
count), with a progress bar showing tokens/s. Output (shards.py): DIR/manifest.json, DIR/token_counts.npy and
DIR/{train,eval}/shard-*. It is written to DIR.partial-<pid> and renamed to DIR when complete, so DIR is either
whole or absent; an existing DIR is never touched. Exit codes: 0 done, 2 bad input (one `error:` line).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence

import numpy as np

from scaling.core.errors import ConfigError, SourceError
from scaling.lm.data import shards, tokenizers
from scaling.lm.data.text import matching_files, read_records

DOCUMENTS = ("file", "line", "paragraph")
_SEPARATOR = {"file": b"\n", "line": b"\n", "paragraph": b"\n\n"}
_PARAGRAPH = re.compile(rb"\n[ \t\r]*\n")
_TOKENIZER: tokenizers.Tokenizer | None = None  # per worker process
_TFDS: dict = {}  # per worker process: opened TFDS data sources


# ---------------------------------------------------------------------------------------------------------------
# Planning: a job is a piece of input a worker tokenizes on its own.
# ---------------------------------------------------------------------------------------------------------------
def _align(path: str, pos: int, size: int, sep: bytes) -> int:
  """The first position >= pos just past a separator (or the file's end)."""
  if pos <= 0 or pos >= size:
    return min(max(pos, 0), size)
  with open(path, "rb") as f:
    f.seek(pos)
    while True:
      block = f.read(1 << 20)
      if not block:
        return size
      i = block.find(sep)
      if i >= 0:
        return pos + i + len(sep)
      pos += len(block) - len(sep) + 1
      f.seek(pos)


def plan_local_text(pattern: str, documents: str, eval_fraction: float, chunk_bytes: int) -> tuple[dict, int]:
  """({"train": jobs, "eval": jobs}, total bytes); a job is ("local", path, start, end, documents, ends_doc)."""
  paths = matching_files(pattern)
  if not paths:
    raise SourceError(f"--glob={pattern!r} matches no files; give a glob of text files")
  if not 0 < eval_fraction < 1:
    raise SourceError(f"--eval_fraction={eval_fraction} must be in (0, 1)")
  sizes = [os.path.getsize(p) for p in paths]
  total = sum(sizes)
  sep = _SEPARATOR[documents]
  cut_at, jobs, before = round(total * (1 - eval_fraction)), {"train": [], "eval": []}, 0
  for path, size in zip(paths, sizes):
    local_cut = _align(path, cut_at - before, size, sep) if before < cut_at < before + size else None
    cuts = sorted({_align(path, k, size, sep) for k in range(chunk_bytes, size, chunk_bytes)} | {0, size}
                  | ({local_cut} if local_cut is not None else set()))
    for start, end in zip(cuts[:-1], cuts[1:]):
      split = "train" if before + start < cut_at else "eval"
      jobs[split].append(("local", path, start, end, documents, end == size or end == local_cut))
    before += size
  if not jobs["train"] or not jobs["eval"]:
    raise SourceError(f"--glob={pattern!r} holds {total} bytes: too little to split into train and eval "
                      f"(--eval_fraction={eval_fraction}); add text")
  return jobs, total


def _tfds_source(name: str, split: str, data_dir: str | None):
  if (name, split, data_dir) not in _TFDS:
    import tensorflow_datasets as tfds  # noqa: PLC0415 - only this input needs it
    try:
      _TFDS[name, split, data_dir] = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # noqa: BLE001 - tfds raises many types; all mean "not readable here"
      msg = (str(e).splitlines() or [type(e).__name__])[0][:200]
      raise SourceError(f"--tfds_name={name!r} split={split!r} is not readable from --tfds_data_dir={data_dir!r} "
                        f"({msg}); prepare the TFDS dataset there first (array_record format)") from None
  return _TFDS[name, split, data_dir]


def plan_tfds(name: str, splits: dict[str, str], feature: str, data_dir: str, chunk_docs: int) -> tuple[dict, int]:
  """({"train": jobs, "eval": jobs}, total records); a job is ("tfds", name, split, data_dir, feature, a, b)."""
  if not name:
    raise SourceError("--source=tfds needs --tfds_name (a TFDS dataset prepared in --tfds_data_dir)")
  jobs, total = {}, 0
  for ours, theirs in splits.items():
    ds = _tfds_source(name, theirs, data_dir or None)
    if len(ds) == 0:
      raise SourceError(f"--tfds_name={name!r} split={theirs!r} is empty")
    if feature not in ds[0]:
      raise SourceError(f"--tfds_feature={feature!r} is not a feature of {name!r}; it has {sorted(ds[0])}")
    jobs[ours] = [("tfds", name, theirs, data_dir or None, feature, a, min(a + chunk_docs, len(ds)))
                  for a in range(0, len(ds), chunk_docs)]
    total += len(ds)
  return jobs, total


# ---------------------------------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------------------------------
def _init_worker(spec: str, eod_token: str, pad_token: str, threads: bool) -> None:
  global _TOKENIZER
  if not threads:  # one process per core already: keep the tokenizer libraries single-threaded
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"
  _TOKENIZER = tokenizers.load(spec, eod_token, pad_token)


def _documents(job) -> tuple[list, bool, int]:
  """(documents as bytes, whether the last one ends here, input units consumed)."""
  if job[0] == "tfds":
    _, name, split, data_dir, feature, a, b = job
    recs = read_records(_tfds_source(name, split, data_dir), list(range(a, b)))
    docs = [r[feature] for r in recs]
    docs = [d.item() if isinstance(d, np.ndarray) else d for d in docs]
    return [d for d in docs if len(d)], True, b - a
  _, path, start, end, documents, ends_doc = job
  with open(path, "rb") as f:
    f.seek(start)
    data = f.read(end - start)
  if documents == "file":
    return ([data] if data else []), ends_doc, end - start
  parts = data.split(b"\n") if documents == "line" else _PARAGRAPH.split(data)
  return [p for p in parts if p.strip()], True, end - start


def tokenize_job(job, count: bool = True):
  """(ids, positions of document-ending EODs, id histogram or None, input units) for one job."""
  docs, last_ends, units = _documents(job)
  tok = _TOKENIZER
  dtype = shards.token_dtype(tok.vocab_size)
  pieces = tok.encode(docs)
  ends_doc = np.ones(len(pieces), bool)
  if len(pieces):
    ends_doc[-1] = last_ends
  lengths = np.array([len(p) for p in pieces], np.int64) + ends_doc
  ids = np.full(int(lengths.sum()), tok.eod_id, dtype)
  starts = np.cumsum(lengths) - lengths
  for p, s in zip(pieces, starts.tolist()):
    ids[s:s + len(p)] = p
  doc_ends = (starts + lengths - 1)[ends_doc]
  counts = np.bincount(ids, minlength=tok.vocab_size) if count else None
  return ids, doc_ends, counts, units


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------
def _results(jobs: list, count: bool, pool) -> Iterator:
  if pool is None:
    yield from (tokenize_job(j, count) for j in jobs)
  else:
    yield from pool.imap(_tokenize_counted if count else _tokenize_uncounted, jobs, chunksize=1)


def _tokenize_counted(job):
  return tokenize_job(job, True)


def _tokenize_uncounted(job):
  return tokenize_job(job, False)


def write_corpus(tmp: str, jobs: dict, tok: tokenizers.Tokenizer, args, units: int, unit: str) -> dict:
  """Runs the jobs and writes shards, token counts and the manifest under `tmp`; returns the manifest."""
  from tqdm.auto import tqdm  # noqa: PLC0415 - start-up time of the --help path
  fmt, rec = args.format, args.record_tokens
  dtype = shards.token_dtype(tok.vocab_size)
  counts = np.zeros(tok.vocab_size, np.int64)
  init_args = (args.tokenizer, args.eod_token, args.pad_token, args.workers <= 1)
  pool = None
  if args.workers > 1:
    pool = multiprocessing.get_context("spawn").Pool(args.workers, _init_worker, init_args)
  else:
    _init_worker(*init_args)
  splits, written, t0 = {}, 0, time.perf_counter()
  bar = tqdm(total=units, unit=unit, unit_scale=unit == "B", desc="prepare", dynamic_ncols=True,
             mininterval=0.5 if sys.stderr.isatty() else 30.0)
  try:
    for split in shards.SPLIT_NAMES:
      w = shards.SplitWriter(tmp, split, fmt, dtype, rec, max(args.shard_tokens // rec, 1), tok.pad_id)
      for ids, doc_ends, c, n in _results(jobs[split], split == "train", pool):
        w.add(ids, doc_ends)
        if c is not None:
          counts += c
        written += len(ids)
        bar.update(n)
        bar.set_postfix(tokens=f"{written:,}", tok_s=f"{written / max(time.perf_counter() - t0, 1e-9):,.0f}")
      splits[split] = w.close()
  finally:
    bar.close()
    if pool is not None:
      pool.terminate()
  np.save(os.path.join(tmp, shards.TOKEN_COUNTS), counts)
  manifest = {"version": shards.VERSION, "format": fmt, "dtype": dtype.str, "record_tokens": rec,
              "shard_records": max(args.shard_tokens // rec, 1), "tokenizer": tok.describe(), "splits": splits,
              "token_counts": shards.TOKEN_COUNTS, "source": _describe_source(args),
              "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
  with open(os.path.join(tmp, shards.MANIFEST), "w") as f:
    json.dump(manifest, f, indent=1)
  return manifest


def _describe_source(args) -> dict:
  if args.source == "tfds":
    return {"source": "tfds", "name": args.tfds_name, "split": args.tfds_split, "eval_split": args.tfds_eval_split,
            "feature": args.tfds_feature, "data_dir": args.tfds_data_dir}
  return {"source": "local_text", "glob": args.glob, "documents": args.documents,
          "eval_fraction": args.eval_fraction}


def prepare(args) -> dict:
  """Plans, tokenizes and writes (see the module docstring); raises SourceError on bad input before writing."""
  out = os.path.abspath(os.path.expanduser(args.out or ""))
  if not args.out:
    raise SourceError("--out is required (a new directory for the prepared corpus)")
  if os.path.exists(out):
    raise SourceError(f"--out={args.out!r} already exists; give a new directory (a prepared corpus is never "
                      "overwritten)")
  for name in ("record_tokens", "shard_tokens", "chunk_bytes", "chunk_docs", "workers"):
    if getattr(args, name) < 1:
      raise SourceError(f"--{name}={getattr(args, name)} must be a positive integer")
  tok = tokenizers.load(args.tokenizer, args.eod_token, args.pad_token)
  if args.source == "local_text":
    jobs, units = plan_local_text(args.glob, args.documents, args.eval_fraction, args.chunk_bytes)
    unit = "B"
  else:
    jobs, units = plan_tfds(args.tfds_name, {"train": args.tfds_split, "eval": args.tfds_eval_split},
                            args.tfds_feature, args.tfds_data_dir, args.chunk_docs)
    unit = "doc"
  tmp = f"{out}.partial-{os.getpid()}"
  try:
    manifest = write_corpus(tmp, jobs, tok, args, units, unit)
    os.rename(tmp, out)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return manifest


def verify(root: str) -> dict:
  m = shards.read_manifest(root, key="--verify")
  shards.check_shards(os.path.abspath(root), m, full=True, key="--verify")
  return m


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m scaling.lm.data.prepare", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--source", choices=("local_text", "tfds"), default="local_text")
  p.add_argument("--tokenizer", default="byte", help="byte | a SentencePiece .model | a Hugging Face tokenizer.json")
  p.add_argument("--eod_token", default="", help="the end-of-document token (default: the tokenizer's eos)")
  p.add_argument("--pad_token", default="", help="the pad token (default: the tokenizer's pad, else EOD)")
  p.add_argument("--out", default="", help="new directory for the prepared corpus")
  p.add_argument("--format", choices=shards.FORMATS, default="array_record")
  p.add_argument("--record_tokens", type=int, default=2048, help="token ids per record")
  p.add_argument("--shard_tokens", type=int, default=1 << 27, help="token ids per shard file (about)")
  p.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 16), help="tokenizer processes")
  p.add_argument("--glob", default="", help="local_text: files to read, e.g. '~/corpus/**/*.txt'")
  p.add_argument("--documents", choices=DOCUMENTS, default="file", help="local_text: what one document is")
  p.add_argument("--eval_fraction", type=float, default=0.01, help="local_text: trailing share held out")
  p.add_argument("--chunk_bytes", type=int, default=16 << 20, help="local_text: bytes per job (about)")
  p.add_argument("--tfds_name", default="")
  p.add_argument("--tfds_split", default="train")
  p.add_argument("--tfds_eval_split", default="validation")
  p.add_argument("--tfds_feature", default="text")
  p.add_argument("--tfds_data_dir", default="")
  p.add_argument("--chunk_docs", type=int, default=4096, help="tfds: records per job")
  p.add_argument("--verify", default="", help="re-hash the shards of this prepared directory, then exit")
  return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    if args.verify:
      m = verify(args.verify)
      n = sum(len(m["splits"][s]["shards"]) for s in shards.SPLIT_NAMES)
      print(f"ok: {args.verify}: {n} shards match their sha256 ({m['splits']['train']['tokens']:,} train tokens)")
      return 0
    t0 = time.perf_counter()
    m = prepare(args)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  tr, ev = m["splits"]["train"], m["splits"]["eval"]
  dt = time.perf_counter() - t0
  print(f"prepared {args.out}: train {tr['tokens']:,} tokens / {tr['documents']:,} documents in "
        f"{len(tr['shards'])} shards, eval {ev['tokens']:,} tokens; {(tr['tokens'] + ev['tokens']) / dt:,.0f} "
        f"tokens/s; train with --config.data.source=prepared --config.data.prepared.dir={args.out} "
        f"--config.data.tokenizer={args.tokenizer} --config.data.vocab_size={m['tokenizer']['vocab_size']} (or more)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
