"""The trainer's data interface: a Grain pipeline of per-process batches with a checkpointable state.

Batch `i` is a pure function of (config, seed, i): the dataset is a Grain `MapDataset` over global batch indices,
each mapped to this process's rows of that batch (scaling/lm/data/mixture.py builds them: background rows from
scaling/lm/data/sources.py with injected task instances). The iterator's state therefore only records the next batch
index ({"next_index": i}, the layout of Grain's own single-process state); it is the same on every process, so it is
saved once (by process 0) and restored on every process, on any number of processes with the same global batch,
and with any number of Grain worker processes (see BatchIterator).

A batch is a dict of numpy arrays for this process's `batch_size // process_count` rows:
  inputs     (b, L) int32    tokens fed to the model
  targets    (b, L) int32    next tokens
  weights    (b, L) float32  loss mask (1 = counted; task tokens included)
  task_mask  (b, L) int32    0 = non-task target, t + 1 = target inside task t's instance (mixture.py)
  task_ids   (b,)   int32    task id of the row's instance, −1 for a background row
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import absl.flags
import grain
import numpy as np

from scaling.lm.data import mixture, sources

# Indices are lazy; this only bounds how far a run can go (2^40 batches).
_MAX_BATCHES = 1 << 40


def local_rows(batch_size: int, process_index: int, process_count: int) -> range:
  per = batch_size // process_count
  return range(process_index * per, (process_index + 1) * per)


def _sequences_to_batch(seqs_BxL1: np.ndarray) -> dict[str, np.ndarray]:
  return {"inputs": seqs_BxL1[:, :-1], "targets": seqs_BxL1[:, 1:],
          "weights": np.ones(seqs_BxL1[:, 1:].shape, np.float32)}


def _batch(source, mix: mixture.Mixture, rows: range, index: int) -> dict[str, np.ndarray]:
  return mix.batch(source, index, rows)


class BatchIterator:
  """Iterator of local batches with a JSON state {"next_index": global batch index of the next batch}.

  The state is kept here, not taken from the Grain iterator, because Grain's state layout changes with the number
  of worker processes (mp_prefetch); this one does not, so a run can resume with other `data.worker_count` or
  `data.prefetch_threads` (and it equals Grain's own single-process state). Restoring rebuilds the Grain pipeline
  from that index; the underlying iterator (and any worker process) starts lazily at the first `next`.
  """

  def __init__(self, batch_fn: Callable[[int], dict[str, np.ndarray]], read_threads: int, worker_count: int):
    self._fn, self._threads, self._workers = batch_fn, max(int(read_threads), 1), int(worker_count)
    self._next_index, self._iter = 0, None

  def _start(self):
    ds = grain.MapDataset.range(self._next_index, _MAX_BATCHES).map(self._fn)
    iter_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=self._threads,
                                                   prefetch_buffer_size=2 * self._threads))
    if self._workers > 0:
      # Grain's workers read absl flags and crash when they are unparsed (README, Known traps 3); the trainer parses
      # its own FlagValues, not the global ones, so mark those parsed (their defaults are what Grain wants).
      if not absl.flags.FLAGS.is_parsed():
        absl.flags.FLAGS.mark_as_parsed()
      iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self._workers))
    return iter(iter_ds)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._iter is None:
      self._iter = self._start()
    batch = next(self._iter)
    self._next_index += 1
    return batch

  def get_state(self) -> dict[str, Any]:
    return {"next_index": self._next_index}

  def set_state(self, state: dict[str, Any]) -> None:
    if not isinstance(state, dict) or not isinstance(state.get("next_index"), int) or state["next_index"] < 0:
      raise ValueError(f"data iterator state {state!r} is not {{'next_index': int >= 0}}; the checkpoint was "
                       "written by an incompatible version")
    self.close()
    self._next_index = state["next_index"]

  def close(self) -> None:
    """Stops prefetching (and worker processes); iteration restarts lazily from the current state."""
    if self._iter is not None:
      close = getattr(self._iter, "close", None)
      if close:
        close()
      self._iter = None


def make_train_iterator(config, process_index: int = 0, process_count: int = 1) -> BatchIterator:
  """The training stream for `config` (configs/lm.py layout)."""
  source = sources.make_source(config.data, config.seed)
  mix = mixture.Mixture.from_config(config)
  rows = local_rows(config.train.batch_size, process_index, process_count)
  return BatchIterator(functools.partial(_batch, source, mix, rows), config.data.prefetch_threads,
                       config.data.worker_count)


def eval_background(config, batch_size: int | None = None) -> list[dict[str, np.ndarray]]:
  """The fixed held-out background set: `data.eval_sequences` sequences from the eval split, in batches."""
  source = sources.make_source(config.data, config.seed)
  n = config.data.eval_sequences
  bs = batch_size or config.train.batch_size
  return [_sequences_to_batch(source.sequences(np.arange(start, min(start + bs, n)), "eval"))
          for start in range(0, n, bs)]


def eval_tasks(config, batch_size: int | None = None) -> dict[str, list[dict[str, np.ndarray]]]:
  """Per injected task its test split (`<task>`) and train probe (`<task>_train`); weights mark the LABEL."""
  d = config.data
  return mixture.Mixture.from_config(config).eval_sets(batch_size or config.train.batch_size,
                                                       d.get("task_eval_limit", 0), d.get("task_train_probe", 0))
