"""Fine-tuning sweep -> a table, the issue-13 claims as lines, and two figures.

  python -m analysis.finetune --sweep_dir sweeps/finetune [--out DIR]

Reads every finished fine-tune run dir (config.json experiment "finetune", scaling/lm/finetune.py) under the sweep
dir: its config (size, method, rank, learning rate, fine-tune seed), the first metrics record (step 0: the
pretrained model, including its k-shot accuracies) and the last (with the forget/... deltas). Writes into --out
(default <sweep_dir>/finetune):

  finetune.csv                    one row per run
  finetune.md                     per size and method the best run (highest target accuracy after, over learning
                                  rate and rank; seeds averaged first), and the claims:
                                  - sizes where full fine-tuning ends below the frozen model on the background loss
                                    or on the other tasks' accuracy ("negative transfer");
                                  - per size whether LoRA or DoRA reaches the higher target accuracy;
                                  - per size whether the best k-shot accuracy of the pretrained model beats the best
                                    fine-tuned target accuracy
  finetune_gain_vs_forgetting.png target accuracy gain vs background loss increase, size as colour, method as marker
  finetune_gain_vs_params.png     target accuracy gain vs trainable parameters (log axis)
"""

from __future__ import annotations

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")  # headless: before pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import cli as analysis_cli  # noqa: E402
from analysis.figures import base  # noqa: E402
from analysis.load import discover  # noqa: E402
from scaling.core import cli, rundir  # noqa: E402
from scaling.core.errors import LoadError, RunDirError  # noqa: E402

METHODS = ("frozen", "full", "lora", "dora")
MARKERS = {"frozen": "s", "full": "o", "lora": "^", "dora": "v"}


def run_row(path: str) -> dict | None:
  """One finished fine-tune run as a flat row (None for anything else)."""
  run = rundir.RunDir(path)
  cfg = run.read_config()
  status = run.read_status() or {}
  if cfg["experiment"] != "finetune" or status.get("state") != "done":
    return None
  records = run.read_metrics()
  c, first, last = cfg["config"], records[0], records[-1]
  ft = c["finetune"]
  target = ft["target"]
  shots = {k: v for k, v in first.items() if k.startswith(f"eval/{target}_") and k.endswith("shot/accuracy")}
  return {
      "run": os.path.basename(path), "size": c["model"]["size"], "n_params": cfg["summary"].get("n_params"),
      "method": ft["method"], "rank": ft["rank"] if ft["method"] in ("lora", "dora") else 0,
      "lr": c["train"]["learning_rate"], "seed": ft["seed"], "target": target,
      "trainable": last.get("finetune/trainable_params", np.nan),
      "target_before": first.get(f"eval/{target}/accuracy", np.nan),
      "target_after": last.get(f"eval/{target}/accuracy", np.nan),
      "target_n": last.get(f"eval/{target}/n", np.nan),
      "gain": last.get("forget/target_delta_accuracy", np.nan),
      "background_delta_loss": last.get("forget/background_delta_loss", np.nan),
      "other_delta_accuracy": last.get("forget/other_delta_accuracy", np.nan),
      "best_kshot_before": max(shots.values()) if shots else np.nan,
      "best_kshot": max(shots, key=shots.get).split("/")[1] if shots else "",
  }


def table(sweep_dir: str) -> pd.DataFrame:
  if not os.path.isdir(sweep_dir):
    raise LoadError(f"--sweep_dir {sweep_dir}: no such directory — give a fine-tuning sweep dir")
  rows = [r for p in discover(sweep_dir) if (r := run_row(p)) is not None]
  if not rows:
    raise LoadError(f"{sweep_dir}: no finished fine-tune runs — run python launch/sweep.py "
                    "--config=configs/sweeps/finetune.py first")
  return pd.DataFrame(rows).sort_values(["n_params", "method", "rank", "lr", "seed"], kind="stable")


def best(df: pd.DataFrame) -> pd.DataFrame:
  """Per (size, method) the setting with the highest seed-mean target accuracy after fine-tuning."""
  keys = ["size", "n_params", "method", "rank", "lr"]
  mean = df.groupby(keys, as_index=False).mean(numeric_only=True)
  mean["seeds"] = df.groupby(keys).size().to_numpy()
  idx = mean.groupby(["size", "method"])["target_after"].idxmax()
  return mean.loc[idx].sort_values(["n_params", "method"], kind="stable")


def resolved(p: float, q: float, n: float) -> bool:
  """Whether accuracies p and q on n held-out queries each differ by more than 2 binomial standard errors."""
  return abs(p - q) > 2 * np.sqrt((p * (1 - p) + q * (1 - q)) / max(n, 1))


def claims(b: pd.DataFrame) -> list[str]:
  """The claims as lines; an accuracy difference within 2 binomial standard errors is reported as unresolved."""
  out = []
  for size, g in b.groupby("size", sort=False):
    m = g.set_index("method")
    if "frozen" in m.index and "full" in m.index:
      f, z = m.loc["full"], m.loc["frozen"]
      # Other-task accuracies: the s.e. bound at p = 1/2 on as many queries as the target's test set.
      other_worse = f.other_delta_accuracy < z.other_delta_accuracy and resolved(
          0.5 + f.other_delta_accuracy, 0.5 + z.other_delta_accuracy, f.target_n)
      below = [what for what, bad in (("background loss", f.background_delta_loss > z.background_delta_loss),
                                      ("other tasks' accuracy", other_worse)) if bad]
      verdict = f"below the frozen model on {' and '.join(below)}" if below else "not below the frozen model"
      out.append(f"- {size}: full fine-tuning ends {verdict} (background Δloss {f.background_delta_loss:+.3f} vs "
                 f"{z.background_delta_loss:+.3f}; other Δacc {f.other_delta_accuracy:+.3f} vs "
                 f"{z.other_delta_accuracy:+.3f})")
    if "lora" in m.index and "dora" in m.index:
      lo, do, n = m.loc["lora"].target_after, m.loc["dora"].target_after, m.loc["lora"].target_n
      winner = ("LoRA" if lo > do else "DoRA") if resolved(lo, do, n) else "neither (within 2 s.e.)"
      out.append(f"- {size}: {winner} reaches the higher target accuracy (LoRA {lo:.3f}, DoRA {do:.3f})")
    tuned = g[g.method != "frozen"]
    if len(tuned) and "frozen" in m.index:
      top, k, n = tuned.target_after.max(), m.loc["frozen"].best_kshot_before, m.loc["frozen"].target_n
      verdict = ("beats" if k > top else "does not beat") if resolved(k, top, n) else "ties (within 2 s.e.)"
      out.append(f"- {size}: in-context (best k-shot of the pretrained model, {k:.3f}) {verdict} the best "
                 f"fine-tune ({top:.3f})")
  return out


FIGURES = (("gain_vs_forgetting", "background_delta_loss", "background Δloss (nats; > 0 worse)", False),
           ("gain_vs_params", "trainable", "trainable parameters", True))


def draw(df: pd.DataFrame, x: str, xlabel: str, logx: bool):
  """One figure: target accuracy gain against `x`, size as colour (the report's size palette), method as marker;
  the legend below the plot."""
  base.style()
  palette = base.size_palette(df["n_params"])
  fig, ax = plt.subplots(figsize=(5.5, 4.2))
  for (_, size, method), g in df.groupby(["n_params", "size", "method"], sort=True):
    xs = g[x].clip(lower=0.5) if logx else g[x]
    ax.scatter(xs, g["gain"], color=palette[float(g["n_params"].iloc[0])], marker=MARKERS.get(method, "o"),
               label=f"{size} {method}")
  ax.set(xlabel=xlabel, ylabel="target accuracy gain", xscale="log" if logx else "linear",
         title=f"Fine-tuning on {df['target'].iloc[0]}: gain vs {xlabel.split(' (')[0]}")
  if logx:
    base.log_axes(ax, x=True, y=False)
  ax.axhline(0, color="grey", lw=0.5)
  fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=4, fontsize=6, frameon=False)
  return fig


def figure_stem(name: str) -> str:
  return f"finetune_{name}"


def figures(df: pd.DataFrame, out: str, formats=("png",)) -> list[str]:
  paths = []
  for name, x, xlabel, logx in FIGURES:
    paths += base.save(draw(df, x, xlabel, logx), out, figure_stem(name), formats)
  return paths


COLUMNS = ["size", "method", "rank", "lr", "seeds", "trainable", "target_before", "target_after", "gain",
           "background_delta_loss", "other_delta_accuracy", "best_kshot_before"]


def section(doc, sweep_dirs, fig_dir: str, formats=("png",)) -> list[str]:
  """The report's fine-tuning section (table of the best settings, the claims, both figures) for the fine-tune
  runs under `sweep_dirs`; returns the figures' files ([] and nothing added when there are no such runs)."""
  frames = [df for d in sweep_dirs if (df := _table_or_none(d)) is not None]
  if not frames:
    return []
  df = pd.concat(frames, ignore_index=True)
  b = best(df)
  doc.h(2, f"Fine-tuning (target {', '.join(sorted(df['target'].unique()))})")
  doc.p("Per pretrained size and method, the setting with the highest seed-mean target test accuracy after "
        "fine-tuning (over learning rate and rank); gain = after − before; background Δloss > 0 is forgetting. "
        "An accuracy difference within 2 binomial standard errors is reported as unresolved.")
  doc.table(COLUMNS, [[_cell(v) for v in row] for row in b[COLUMNS].itertuples(index=False)])
  doc.ul([c.removeprefix("- ") for c in claims(b)])
  doc.p(f"Figures: {' and '.join(figure_stem(name) for name, *_ in FIGURES)} (under Figures).")
  return figures(df, fig_dir, formats)


def _table_or_none(sweep_dir: str) -> pd.DataFrame | None:
  try:
    return table(sweep_dir)
  except LoadError:
    return None


def _cell(v) -> str:
  return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)


def markdown(df: pd.DataFrame) -> str:
  lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
  lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
  return "\n".join(lines)


def write(df: pd.DataFrame, out: str) -> list[str]:
  os.makedirs(out, exist_ok=True)
  b = best(df)
  csv = os.path.join(out, "finetune.csv")
  df.to_csv(csv, index=False)
  md = os.path.join(out, "finetune.md")
  with open(md, "w") as f:
    f.write(f"# Fine-tuning: best setting per size and method (target {df.target.iloc[0]})\n\n")
    f.write(markdown(b[COLUMNS]) + "\n\n## Claims\n\n" + "\n".join(claims(b)) + "\n")
  return [csv, md, *figures(df, out)]


def main(argv=None) -> int:
  p = analysis_cli.Parser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--sweep_dir", required=True, help="a fine-tuning sweep dir (configs/sweeps/finetune.py)")
  p.add_argument("--out", default=None, help="output folder (default <sweep_dir>/finetune)")
  args = p.parse_args(argv)

  def body() -> int:
    df = table(args.sweep_dir)
    for path in write(df, args.out or os.path.join(args.sweep_dir, "finetune")):
      print(path)
    return 0

  return cli.guarded(body, bad_input=(LoadError, RunDirError), then="rerun the report")


if __name__ == "__main__":
  sys.exit(main())
