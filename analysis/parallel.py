"""Independent analysis jobs (bootstrapped fits, figures) in worker processes, with one progress bar.

Large inputs (the tidy table) are not pickled per job: the parent stores them in `_SHARED` before the workers
fork, and jobs name them with `Ref(key)`. Where fork is unavailable the refs are resolved in the parent and the
values pickled instead (correct, only slower).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

_SHARED: dict[str, Any] = {}


class Ref:
  """A placeholder for a value registered with `run(..., shared={key: value})`."""

  def __init__(self, key: str):
    self.key = key


def _resolve(x, table):
  return table[x.key] if isinstance(x, Ref) else x


def _call(job, table=None):
  fn, args, kw = job
  table = _SHARED if table is None else table
  return fn(*[_resolve(a, table) for a in args], **{k: _resolve(v, table) for k, v in kw.items()})


def run(jobs: list[tuple[Callable, tuple, dict]], *, workers: int | None = None, shared: dict | None = None,
        progress: bool = True, desc: str = "analysis") -> list:
  """Runs (fn, args, kwargs) jobs, returns their results in order. fn must be a module-level function."""
  shared = shared or {}
  workers = min(workers or os.cpu_count() or 1, len(jobs))
  bar = tqdm(total=len(jobs), desc=desc, disable=not progress, leave=False)
  results: list = [None] * len(jobs)
  try:
    if workers <= 1:
      for i, job in enumerate(jobs):
        results[i] = _call(job, shared)
        bar.update()
      return results
    fork = "fork" in mp.get_all_start_methods()
    _SHARED.clear()
    _SHARED.update(shared)
    if not fork:
      jobs = [(fn, tuple(_resolve(a, shared) for a in args), {k: _resolve(v, shared) for k, v in kw.items()})
              for fn, args, kw in jobs]
    # fork: no threads or JAX in this process, and the children inherit _SHARED without pickling it.
    ctx = mp.get_context("fork") if fork else None
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
      futs = {ex.submit(_call, job): i for i, job in enumerate(jobs)}
      for fut in cf.as_completed(futs):
        results[futs[fut]] = fut.result()
        bar.update()
    return results
  finally:
    _SHARED.clear()
    bar.close()
