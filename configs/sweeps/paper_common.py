"""What configs/sweeps/paper_toy.py and paper_lm.py share (a helper module, not a sweep): the `:fig=X[,quick]`
argument and the sweep ConfigDict built from one figure's (overrides, axes)."""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

from scaling.core.configtools import parse_arg

PRESETS = {"fig": "", "quick": False}


def figure_sweep(arg: str, figures: dict[str, Callable], *, file: str, entrypoint: str, base: str,
                 default: str, seeds: tuple[int, ...] = ()) -> ml_collections.ConfigDict:
  """The sweep config of figure `fig` (default `default`): figures[fig](quick) -> (overrides, axes); one run at a
  time on the local backend (a run uses both cores of a small CPU). seeds: a product axis over `seed` (the toy
  trains its seeds as members of one run instead, toy.seeds)."""
  opts = parse_arg(arg, {**PRESETS, "fig": default}, f"{file}:fig={default},quick")
  if opts["fig"] not in figures:
    raise ValueError(f"{file} fig={opts['fig']!r} is not one of {tuple(figures)}")
  overrides, axes = figures[opts["fig"]](opts["quick"])
  c = ml_collections.ConfigDict()
  c.name = f"paper_fig{opts['fig']}" + ("_quick" if opts["quick"] else "")
  c.entrypoint = entrypoint
  c.base = base
  c.overrides = overrides
  c.axes = axes
  if seeds:
    c.seeds = list(seeds)
  c.backend = {"local": {"max_parallel": 1}}
  return c
