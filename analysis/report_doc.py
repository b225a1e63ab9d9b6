"""The report's document model (blocks rendered to Markdown and to self-contained HTML) and number formats."""

from __future__ import annotations

import html
import math

import numpy as np


def fmt(v, digits=4) -> str:
  if v is None:
    return "–"
  if isinstance(v, (bool, np.bool_)):
    return "yes" if v else "no"
  if isinstance(v, str):
    return v
  try:
    v = float(v)
  except (TypeError, ValueError):
    return str(v)
  if math.isnan(v):
    return "nan"
  if math.isinf(v):
    return "∞" if v > 0 else "-∞"
  if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
    return f"{v:.{digits - 1}e}"
  return f"{v:.{digits}g}"


def fmt_nstar(ns) -> str:
  """N* with its CI; nan (the curve is below the threshold at every size) reads as what it means."""
  if ns is None:
    return "–"
  if math.isnan(ns.n_star):
    return "learned at every size"
  return fmt_ci(ns.n_star, ns.ci)



def fmt_ci(v, ci=None) -> str:
  s = fmt(v)
  if ci is not None and len(ci) == 2:
    s += f" [{fmt(ci[0], 3)}, {fmt(ci[1], 3)}]"
  return s


class Doc:
  """Blocks rendered to both Markdown and HTML."""

  def __init__(self):
    self.blocks = []
    self.n_gaps = 0

  def h(self, level, text):
    self.blocks.append(("h", level, text))

  def p(self, text):
    self.blocks.append(("p", text))

  def ul(self, items):
    if items:
      self.blocks.append(("ul", list(items)))

  def table(self, headers, rows):
    if rows:
      self.blocks.append(("table", headers, rows))

  def img(self, rel_png, caption, rel_pdf=None):
    self.blocks.append(("img", rel_png, caption, rel_pdf))

  def markdown(self) -> str:
    out = []
    for b in self.blocks:
      if b[0] == "h":
        out.append("#" * b[1] + " " + b[2])
      elif b[0] == "p":
        out.append(b[1])
      elif b[0] == "ul":
        out.append("\n".join(f"- {x}" for x in b[1]))
      elif b[0] == "table":
        cell = lambda x: str(x).replace("|", "\\|").replace("\n", " ")
        lines = ["| " + " | ".join(cell(h) for h in b[1]) + " |", "|" + "---|" * len(b[1])]
        lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in b[2]]
        out.append("\n".join(lines))
      elif b[0] == "img":
        out.append(f"![{b[2]}]({b[1]})" + (f"  \n*{b[2]}* ([PDF]({b[3]}))" if b[3] else f"  \n*{b[2]}*"))
    return "\n\n".join(out) + "\n"

  def html(self, title) -> str:
    e = html.escape
    body = []
    for b in self.blocks:
      if b[0] == "h":
        body.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
      elif b[0] == "p":
        body.append(f"<p>{e(b[1])}</p>")
      elif b[0] == "ul":
        body.append("<ul>" + "".join(f"<li>{e(str(x))}</li>" for x in b[1]) + "</ul>")
      elif b[0] == "table":
        head = "".join(f"<th>{e(str(h))}</th>" for h in b[1])
        rows = "".join("<tr>" + "".join(f"<td>{e(str(x))}</td>" for x in r) + "</tr>" for r in b[2])
        body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
      elif b[0] == "img":
        pdf = f' (<a href="{e(b[3])}">PDF</a>)' if b[3] else ""
        body.append(f'<figure><img src="{e(b[1])}" alt="{e(b[2])}"><figcaption>{e(b[2])}{pdf}</figcaption>'
                    "</figure>")
    css = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
           "table{border-collapse:collapse;font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;"
           "padding:2px 6px;text-align:left}th{background:#f3f3f3}img{max-width:100%}"
           "figure{margin:1em 0}figcaption{font-size:12px;color:#555}h1,h2,h3{color:#234}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{e(title)}</title><style>{css}</style>"
            f"</head><body>\n" + "\n".join(body) + "\n</body></html>\n")
