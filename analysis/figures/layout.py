"""Layout checks of a drawn figure, from matplotlib's own bounding boxes (display pixels after a draw).

`problems(fig)` lists, one line each, what a reader would see as a layout fault:
  outside     a title, legend, axis label or tick label that reaches past the figure's edge; a note written in
              axes coordinates that runs out of its axes
  overlap     two of {figure title, axes titles, legends} intersecting; an axes title or a legend over the
              plotting area of an axes other than its own; tick labels of one axis running into each other
  covers      a legend inside its own axes lying over data points of that axes (line vertices, scatter markers)
  placement   a legend beside the plots (legends go inside their axes or below the plots: a side legend squeezes
              every axes of the row)
  unreadable  a tick label written as a product with a power (matplotlib's `4 × 10^0` on short log axes), or a
              log axis with fewer than two labelled ticks
An empty list is a clean figure. The report's figures (analysis/figures) are checked by tests/analysis/
test_figure_layout.py; `save` logs what it finds.
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import PathCollection

TOLERANCE_PX = 1.0  # boxes that touch within a pixel do not overlap


def _overlap(a, b, tol=TOLERANCE_PX) -> bool:
  return (min(a.x1, b.x1) - max(a.x0, b.x0) > tol) and (min(a.y1, b.y1) - max(a.y0, b.y0) > tol)


def _inside(inner, outer, tol=TOLERANCE_PX) -> bool:
  return (inner.x0 >= outer.x0 - tol and inner.y0 >= outer.y0 - tol and inner.x1 <= outer.x1 + tol
          and inner.y1 <= outer.y1 + tol)


def _visible_text(t) -> bool:
  return t.get_visible() and bool(t.get_text().strip())


def _name(ax, what: str) -> str:
  title = ax.get_title() or ax.get_ylabel() or "axes"
  return f"{what} of '{title[:40]}'"


def _labelled(fig, renderer):
  """(name, owner axes or None, bbox, kind) for every title and legend; kind: title | legend."""
  out = []
  if fig._suptitle is not None and _visible_text(fig._suptitle):  # noqa: SLF001 - no public getter in mpl 3.x
    out.append(("figure title", None, fig._suptitle.get_window_extent(renderer), "title"))  # noqa: SLF001
  for lg in fig.legends:
    out.append(("figure legend", None, lg.get_window_extent(renderer), "legend"))
  for ax in _axes(fig):
    for loc in ("left", "center", "right"):
      t = ax.get_title(loc)
      if t.strip():
        artist = {"left": ax._left_title, "center": ax.title, "right": ax._right_title}[loc]  # noqa: SLF001
        out.append((_name(ax, "title"), ax, artist.get_window_extent(renderer), "title"))
    lg = ax.get_legend()
    if lg is not None and lg.get_visible():
      out.append((_name(ax, "legend"), ax, lg.get_window_extent(renderer), "legend"))
  return out


def _data_points(ax, legend):
  """Display coordinates of the data points drawn in `ax` (line vertices and scatter markers), (n, 2)."""
  pts = []
  for line in ax.get_lines():
    if line.get_visible() and line not in legend.get_lines() and line.get_label() != "_nolegend_":
      xy = np.column_stack(line.get_data()).astype(float) if len(line.get_xdata()) else np.empty((0, 2))
      if len(xy) and (line.get_marker() not in (None, "None", "", " ") or line.get_linestyle() not in ("None", "")):
        pts.append(line.get_transform().transform(xy))
  for coll in ax.collections:
    if isinstance(coll, PathCollection) and coll.get_visible():
      off = np.asarray(coll.get_offsets(), float)
      if off.size:
        pts.append(coll.get_offset_transform().transform(off))
  pts = [p[np.all(np.isfinite(p), axis=1)] for p in pts]
  return np.concatenate(pts) if pts else np.empty((0, 2))


def _covers(ax, renderer) -> str | None:
  lg = ax.get_legend()
  if lg is None or not lg.get_visible():
    return None
  box = lg.get_window_extent(renderer)
  if not _overlap(box, ax.get_window_extent(renderer)):
    return None  # outside its axes (below it, beside it): nothing of the axes to cover
  pts = _data_points(ax, lg)
  hit = ((pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1)).sum()
  return f"covers: {_name(ax, 'legend')} lies over {hit} data point(s)" if hit else None


def _drawn_ticklabels(axis, minor: bool = False) -> list:
  """The tick labels matplotlib draws: visible, non-empty, at a tick inside the view limits."""
  lo, hi = sorted(axis.get_view_interval())
  span = (hi - lo) * 1e-9
  locs, labels = ((axis.get_minorticklocs(), axis.get_minorticklabels()) if minor
                  else (axis.get_majorticklocs(), axis.get_majorticklabels()))
  return [t for loc, t in zip(locs, labels) if lo - span <= loc <= hi + span and _visible_text(t)]


def _axes(fig) -> list:
  return [ax for ax in fig.axes if ax.get_visible() and ax.axison]


def _ticks_collide(ax, renderer) -> list[str]:
  out = []
  for axis, name in ((ax.xaxis, "x"), (ax.yaxis, "y")):
    boxes = [t.get_window_extent(renderer) for t in _drawn_ticklabels(axis)]
    for i in range(len(boxes) - 1):
      if any(_overlap(boxes[i], b) for b in boxes[i + 1:]):
        out.append(f"overlap: {name} tick labels of '{(ax.get_title() or 'axes')[:40]}' run into each other")
        break
  return out


def _placement(fig, renderer) -> list[str]:
  """Legends must sit inside their axes or below the plots."""
  out = []
  boxes = [ax.get_window_extent(renderer) for ax in _axes(fig)]
  for ax in _axes(fig):
    lg = ax.get_legend()
    if lg is None or not lg.get_visible():
      continue
    box, own = lg.get_window_extent(renderer), ax.get_window_extent(renderer)
    if not (_inside(box, own, tol=4) or box.y1 <= own.y0 + TOLERANCE_PX):
      out.append(f"placement: {_name(ax, 'legend')} sits beside its axes (put it inside or below)")
  for lg in fig.legends:
    box = lg.get_window_extent(renderer)
    if boxes and box.y1 > min(b.y0 for b in boxes) + TOLERANCE_PX:
      out.append("placement: the figure legend is not below the plots (put it inside an axes or below)")
  return out


def _annotations(ax, renderer) -> list[str]:
  """Text placed in axes coordinates (notes, reasons) must stay inside its axes."""
  own = ax.get_window_extent(renderer)
  return [f"outside: note '{t.get_text()[:40]}' runs out of {_name(ax, 'axes')}" for t in ax.texts
          if _visible_text(t) and t.get_transform() == ax.transAxes and not _inside(t.get_window_extent(renderer),
                                                                                     own, tol=4)]


def _unreadable(ax) -> list[str]:
  out = []
  for axis, name in ((ax.xaxis, "x"), (ax.yaxis, "y")):
    bad = [t.get_text() for t in _drawn_ticklabels(axis) + _drawn_ticklabels(axis, minor=True) if "\\times" in t.get_text() or "×" in t.get_text()]
    if bad:
      out.append(f"unreadable: {name} tick labels of '{(ax.get_title() or 'axes')[:40]}' like {bad[0]!r}")
    labels_on = any(t.get_visible() for t in axis.get_majorticklabels())  # off: a shared axis, on purpose
    if axis.get_scale() == "log" and labels_on and len(_drawn_ticklabels(axis)) < 2:
      out.append(f"unreadable: log {name} axis of '{(ax.get_title() or 'axes')[:40]}' has fewer than 2 labelled "
                 "ticks")
  return out


def _outside(fig, renderer) -> list[str]:
  figbox = fig.bbox
  out = []
  for ax in _axes(fig):
    texts = [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]  # noqa: SLF001
    texts += _drawn_ticklabels(ax.xaxis) + _drawn_ticklabels(ax.yaxis)
    for t in texts:
      if _visible_text(t) and not _inside(t.get_window_extent(renderer), figbox):
        out.append(f"outside: '{t.get_text()[:40]}' ({_name(ax, 'text')}) reaches past the figure's edge")
    lg = ax.get_legend()
    if lg is not None and lg.get_visible() and not _inside(lg.get_window_extent(renderer), figbox):
      out.append(f"outside: {_name(ax, 'legend')} reaches past the figure's edge")
  for lg in fig.legends:
    if not _inside(lg.get_window_extent(renderer), figbox):
      out.append("outside: the figure legend reaches past the figure's edge")
  return out


def problems(fig) -> list[str]:
  """Layout faults of `fig` (drawn here), one line each; [] when clean."""
  fig.canvas.draw()
  renderer = fig.canvas.get_renderer()
  out = _outside(fig, renderer) + _placement(fig, renderer)
  items = _labelled(fig, renderer)
  for i, (na, _, ba, _) in enumerate(items):
    for nb, _, bb, _ in items[i + 1:]:
      if _overlap(ba, bb):
        out.append(f"overlap: {na} and {nb}")
  for name, owner, box, _ in items:
    for ax in _axes(fig):
      if ax is not owner and ax.get_visible() and _overlap(box, ax.get_window_extent(renderer)):
        out.append(f"overlap: {name} over the plotting area of {_name(ax, 'axes')}")
  for ax in _axes(fig):
    out += _ticks_collide(ax, renderer) + _unreadable(ax) + _annotations(ax, renderer)
    msg = _covers(ax, renderer)
    if msg:
      out.append(msg)
  return out

