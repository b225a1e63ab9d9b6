"""One page that reproduces the paper figure by figure: `python -m analysis.reproduce --sweeps_root DIR`.

For each of Figs 2–9 whose sweep dir exists under DIR (fig2, fig3, fig4, fig5, fig6a, fig6b, fig7, fig8, fig9, as
written by `python launch/sweep.py --config=configs/sweeps/paper_{toy,lm}.py:fig=X --sweep_dir=DIR/figX`; Fig 8
falls back to the fig9 dir, whose runs are Fig 8's plus interference), it draws our figure (PNG under
--fig_dir, default docs/figures/), checks the paper's claim (analysis/claims.py) and writes one page (--out,
default docs/REPRODUCTION.md): the claim in one line, the figure, the exact commands (the sweep config read from
the dir's manifest.json), the runs' measured wall time, the numbers and the verdict. A figure without its sweep
dir is listed as not run, with the command that runs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import shutil
import sys
import tempfile
from collections.abc import Callable

from analysis import claims as claims_lib
from analysis import figures as figs
from analysis import load as load_lib
from analysis import predictions as pr
from analysis.loadreport import LoadError
from launch import manifest as manifest_lib

FIG_BYTES_WARN = 5 * 2 ** 20  # the committed PNGs stay under 5 MB in all


def _toy_comps(loaded):
  return pr.toy_comparisons(load_lib.final(loaded.df), loaded.configs, paths=loaded.paths)[0]


def _draw_fig2(loaded, out):
  comps = _toy_comps(loaded)
  return [("fig2a_toy_phase", figs.fig2a_toy_phase, (comps, pr.toy_retention(loaded), out)),
          ("fig2b_toy_loss_vs_width", figs.fig2b_toy_loss_vs_width, (comps, out))]


FIGURE_FNS: dict[str, Callable] = {
    "2": _draw_fig2,
    "3": lambda loaded, out: [("fig3_signal", figs.fig3_signal, (loaded.df, _toy_comps(loaded), out))],
    "4": lambda loaded, out: [("fig4_withhold", figs.fig4_withhold, (loaded.df, out))],
    "5": lambda loaded, out: [("fig5_heatmaps", figs.fig5_heatmaps, (load_lib.final(loaded.df), out))],
    "6a": lambda loaded, out: [("fig6a_task_loss", figs.fig6_task_loss_over_steps, (loaded.df, out))],
    "6b": lambda loaded, out: [("fig6b_bursts", figs.fig6_task_loss_over_steps, (loaded.df, out))],
    "7": lambda loaded, out: [("fig7_probes", figs.fig7_probes, (loaded.df, out))],
    "8": lambda loaded, out: [("fig8_injections", figs.fig8_injections, (loaded.df, out))],
    "9": lambda loaded, out: [("fig9_interference", figs.fig9_interference, (loaded.df, out))],
}


@dataclasses.dataclass(frozen=True)
class Figure:
  key: str
  title: str
  config: str  # the sweep config that makes it (full grid)
  paper: str  # the paper's claim, one line
  dirs: tuple[str, ...]  # sweep dir names under the root, first found wins


TOY, LM = "configs/sweeps/paper_toy.py", "configs/sweeps/paper_lm.py"
# The paper's claim per figure, in one line.
PAPER = {
    "2": "A width-N encoder keeps exactly Theorem 3's top-N features (largest π_k λ_kj); the loss follows the "
         "analytic curve at every β.",
    "3": "A rare task starts learning only once the frequent residual δ_F falls below δ_F*(N_r^crit), and only at "
         "widths ≥ N_r^crit (Prop. 6).",
    "4": "Withholding the rare task for G steps (same long-run frequency) erases it in a narrow model, far less in "
         "a wide one; the frequent tasks are unaffected.",
    "5": "Only larger models at high enough frequency learn the tasks; T_ADD is learned only by the larger models.",
    "6a": "Task loss falls sooner and lower the more often the task appears.",
    "6b": "At the same average frequency, larger gaps between injections hurt: final task loss rises with N.",
    "7": "The T_CMP order feature and T_ADD's Fourier modes appear with test accuracy, sooner in larger models and "
         "at higher frequency.",
    "8": "Each injection lowers the task loss; larger models retain the drop over the 100 batches without the "
         "task, smaller ones forget it.",
    "9": "cos(g, g_r) at injections is higher in larger models (0.08 ± 0.02 at 1B vs 0.04 ± 0.04 at 300M); the "
         "non-task gradient interferes in small models (cos(g_nt, g_r) 0.10 ± 0.09 at 20M) and not in large ones "
         "(≈ 0 at 1B).",
}
# (key, title, sweep config of the full grid, sweep dir names under the root: the first found is used)
_TABLE = [
    ("2", "Toy phase diagram and loss vs width", TOY, ("fig2",)),
    ("3", "Toy: rare vs frequent signal against δ_F", TOY, ("fig3",)),
    ("4", "Toy: withhold gap G × width at matched frequency", TOY, ("fig4",)),
    ("5", "Transformer: size × frequency for T_CMP and T_ADD", LM, ("fig5",)),
    ("6a", "Transformer: task loss over steps per frequency", LM, ("fig6a",)),
    ("6b", "Transformer: N instances every N batches (matched frequency)", LM, ("fig6b",)),
    ("7", "Transformer: probes vs size and frequency", LM, ("fig7",)),
    ("8", "Transformer: loss around burst injections", LM, ("fig8", "fig9")),
    ("9", "Transformer: gradient interference", LM, ("fig9",)),
]
FIGURES = tuple(Figure(k, title, f"{cfg}:fig={k}", PAPER[k], dirs) for k, title, cfg, dirs in _TABLE)


def parse_args(argv):
  p = argparse.ArgumentParser(prog="python -m analysis.reproduce", description=__doc__.split("\n\n")[0])
  p.add_argument("--sweeps_root", required=True, help="folder holding fig2/ … fig9/ sweep dirs")
  p.add_argument("--out", default="docs/REPRODUCTION.md", help="the page (default docs/REPRODUCTION.md)")
  p.add_argument("--fig_dir", default=None, help="PNG folder (default: figures/ beside --out)")
  p.add_argument("--note", default="", help="a paragraph added under the title (e.g. the machine and its load)")
  p.add_argument("--only", default="", help="comma-separated figure keys (2,3,4,5,6a,6b,7,8,9); default all")
  return p.parse_args(argv)


def _wall(manifest: dict | None) -> tuple[int, float] | None:
  """(runs with a finished job, summed wall seconds of their jobs) from manifest.json."""
  if not manifest:
    return None
  total, n = 0.0, 0
  for rec in manifest.get("runs", []):
    jobs = [j for j in rec.get("jobs", []) if j.get("started") and j.get("ended")]
    if not jobs:
      continue
    n += 1
    for j in jobs:
      t0, t1 = (datetime.datetime.fromisoformat(j[k]) for k in ("started", "ended"))
      total += (t1 - t0).total_seconds()
  return n, total


def _draw(fig: Figure, loaded, fig_dir: str) -> tuple[list[str], list[str]]:
  """PNG paths (moved into fig_dir as fig<key>_*.png) and skip reasons."""
  paths, skips = [], []
  with tempfile.TemporaryDirectory() as tmp:
    for name, fn, args in FIGURE_FNS[fig.key](loaded, tmp):
      got, why = figs.make(name, fn, *args, formats=("png",))
      if why:
        skips.append(f"{name}: {why}")
      for p in got:
        dst = os.path.join(fig_dir, f"{name}.png")
        shutil.move(p, dst)
        paths.append(dst)
  return paths, skips


def _numbers(nums: dict, indent: str = "") -> list[str]:
  out = []
  for k, v in nums.items():
    if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
      out.append(f"{indent}- {k}:")
      out += [f"{indent}  - {r}: " + ", ".join(f"{c}: {x}" for c, x in row.items()) for r, row in v.items()]
    elif isinstance(v, dict):
      out.append(f"{indent}- {k}: " + ", ".join(f"{a}: {b}" for a, b in v.items()))
    else:
      out.append(f"{indent}- {k}: {v}")
  return out


def section(fig: Figure, root: str, out_md: str, fig_dir: str) -> tuple[list[str], dict]:
  """Markdown lines of one figure, and its summary row."""
  head = [f"## Fig {fig.key}: {fig.title}", "", f"**Paper:** {fig.paper}", ""]
  found = next((d for d in fig.dirs if os.path.isdir(os.path.join(root, d))), None)
  run_cmd = f"python launch/sweep.py --config={fig.config} --sweep_dir={root}/fig{fig.key}"
  if found is None:
    return head + ["**Verdict: not run.** Run it with", "", f"    {run_cmd}", ""], \
        {"fig": fig.key, "verdict": "not run", "ran": "—"}
  sweep_dir = os.path.join(root, found)
  try:
    manifest = manifest_lib.read_manifest(sweep_dir, error=LoadError, require_schema=False)
  except LoadError:
    manifest = None
  spec = (manifest or {}).get("config", fig.config)
  try:
    loaded = load_lib.load(sweep_dir)
  except LoadError as e:
    return head + [f"**Verdict: not run** (the sweep dir has no usable runs: {e}).", "", f"    {run_cmd}", ""], \
        {"fig": fig.key, "verdict": "not run", "ran": spec}
  loaded = claims_lib.finished(loaded)
  claim = claims_lib.CHECKS[fig.key](loaded)
  paths, skips = _draw(fig, loaded, fig_dir)
  wall = _wall(manifest)
  lines = head + [f"**Verdict: {claim.verdict}.** {claim.reason}.", ""]
  lines += [f"![Fig {fig.key}]({os.path.relpath(p, os.path.dirname(os.path.abspath(out_md)))})" for p in paths]
  lines += [f"(figure skipped: {s})" for s in skips]
  ran = f"{int(loaded.runs['usable'].sum())} usable run dirs of {len(loaded.runs)}" + (
      f"; {wall[0]} launcher runs took {wall[1] / 60:.1f} min of wall time summed over runs" if wall and wall[0] else "")
  rep = loaded.report
  gaps = [f"{r} ({w})" for r, w in rep.failed + rep.unfinished + rep.missing + rep.excluded]
  if gaps:
    ran += f". Not counted: {'; '.join(gaps[:5])}" + (f" and {len(gaps) - 5} more" if len(gaps) > 5 else "")
  lines += ["", "**Commands** (what ran; the full-grid config is `" + fig.config + "`):", "",
            f"    python launch/sweep.py --config={spec} --sweep_dir={sweep_dir}",
            f"    python -m analysis.reproduce --sweeps_root {root}", "", f"**Runs:** {ran}."
            + (f" Fig {fig.key} reads the `{found}` sweep (the same runs plus more measurements)."
               if found != f"fig{fig.key}" else ""), "", "**Numbers:**", ""]
  lines += _numbers(claim.numbers) + [""]
  recs = (manifest or {}).get("runs") or []
  n_done = sum(r.get("status") == "done" for r in recs)
  partial = f" ({n_done} of {len(recs)} sweep runs finished)" if n_done < len(recs) else ""
  return lines, {"fig": fig.key, "verdict": claim.verdict + partial, "ran": spec}


def build(args) -> str:
  root = args.sweeps_root.rstrip("/")
  fig_dir = args.fig_dir or os.path.join(os.path.dirname(os.path.abspath(args.out)), "figures")
  os.makedirs(fig_dir, exist_ok=True)
  only = {k.strip() for k in args.only.split(",") if k.strip()}
  body, rows = [], []
  for fig in FIGURES:
    if only and fig.key not in only:
      continue
    print(f"Fig {fig.key} …", file=sys.stderr, flush=True)
    lines, row = section(fig, root, args.out, fig_dir)
    body += lines
    rows.append(row)
  head = ["# Reproduction: the paper's Figs 2–9 at laptop scale", "",
          "Generated by `python -m analysis.reproduce --sweeps_root " + root + "` (analysis/reproduce.py); the claim "
          "checks are analysis/claims.py, the sweep configs configs/sweeps/paper_toy.py and paper_lm.py. Sizes "
          "here are 20K–200K non-embedding parameters on a synthetic language (the paper: 4M–4B on Dolma), one seed "
          "unless stated; a verdict is about this scale only. `quick` in a config means a sub-grid of the full "
          "sweep.", ""] + ([args.note, ""] if args.note else []) + [
          "| figure | verdict | sweep config that ran |", "|---|---|---|"]
  head += [f"| {r['fig']} | {r['verdict']} | `{r['ran']}` |" if r["ran"] != "—" else
           f"| {r['fig']} | {r['verdict']} | — |" for r in rows]
  text = "\n".join(head + [""] + body)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    f.write(text)
  size = sum(os.path.getsize(os.path.join(fig_dir, p)) for p in os.listdir(fig_dir) if p.endswith(".png"))
  if size > FIG_BYTES_WARN:
    print(f"warning: the PNGs in {fig_dir} total {size / 2 ** 20:.1f} MB (over 5 MB)", file=sys.stderr)
  return text


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if not os.path.isdir(args.sweeps_root):
    print(f"error: --sweeps_root {args.sweeps_root} is not a folder — pass the folder holding fig2/ … fig9/",
          file=sys.stderr)
    return 2
  build(args)
  print(f"wrote {args.out}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
