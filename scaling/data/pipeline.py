"""The trainer's data interface: a Grain pipeline of per-process batches with a checkpointable state.

Batch `i` is a pure function of (config, seed, i): the dataset is a Grain `MapDataset` over global batch indices,
each mapped to this process's rows of that batch. The iterator's state (Grain's own `get_state()`) therefore only
records the next batch index; it is the same on every process, so it is saved once (by process 0) and restored
on every process, on any number of processes with the same global batch.

A batch is a dict of numpy arrays for this process's `batch_size // process_count` rows:
  inputs  (b, L) int32    tokens fed to the model
  targets (b, L) int32    next tokens
  weights (b, L) float32  loss mask (1 = counted)
"""

from __future__ import annotations

import functools
from typing import Any, Iterator

import grain
import numpy as np

from scaling.data import sources

# Indices are lazy; this only bounds how far a run can go (2^40 batches).
_MAX_BATCHES = 1 << 40


def local_rows(batch_size: int, process_index: int, process_count: int) -> range:
  per = batch_size // process_count
  return range(process_index * per, (process_index + 1) * per)


def _sequences_to_batch(seqs_BxL1: np.ndarray) -> dict[str, np.ndarray]:
  return {"inputs": seqs_BxL1[:, :-1], "targets": seqs_BxL1[:, 1:],
          "weights": np.ones(seqs_BxL1[:, 1:].shape, np.float32)}


def background_batch(source, batch_size: int, rows: range, index: int) -> dict[str, np.ndarray]:
  seqs = np.stack([source.sequence(index * batch_size + r, "train") for r in rows])
  return _sequences_to_batch(seqs)


class BatchIterator:
  """Iterator of local batches with `get_state`/`set_state` (JSON-serialisable)."""

  def __init__(self, dataset: grain.MapDataset, read_threads: int, worker_count: int):
    iter_ds = dataset.to_iter_dataset(grain.ReadOptions(num_threads=max(read_threads, 1),
                                                        prefetch_buffer_size=max(2 * read_threads, 2)))
    if worker_count > 0:
      iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    self._iter = iter(iter_ds)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._iter)

  def get_state(self) -> dict[str, Any]:
    return self._iter.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    self._iter.set_state(state)


def make_train_iterator(config, process_index: int = 0, process_count: int = 1) -> BatchIterator:
  """The training stream for `config` (configs/lm.py layout)."""
  source = sources.make_source(config.data, config.seed)
  rows = local_rows(config.train.batch_size, process_index, process_count)
  fn = functools.partial(background_batch, source, config.train.batch_size, rows)
  ds = grain.MapDataset.range(_MAX_BATCHES).map(fn)
  return BatchIterator(ds, config.data.prefetch_threads, config.data.worker_count)


def eval_background(config, batch_size: int | None = None) -> list[dict[str, np.ndarray]]:
  """The fixed held-out background set: `data.eval_sequences` sequences from the eval split, in batches."""
  source = sources.make_source(config.data, config.seed)
  n = config.data.eval_sequences
  bs = batch_size or config.train.batch_size
  out = []
  for start in range(0, n, bs):
    seqs = np.stack([source.sequence(i, "eval") for i in range(start, min(start + bs, n))])
    out.append(_sequences_to_batch(seqs))
  return out
