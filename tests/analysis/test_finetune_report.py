"""analysis/finetune.py on hand-made fine-tune run dirs: the best row per method, the claims, the files."""

import os

import pytest

from analysis import finetune as report
from scaling.core import rundir
from scaling.core.errors import LoadError


def _run(root: str, name: str, method: str, after: float, bg: float, other: float, kshot: float, lr: float = 1e-3):
  run = rundir.RunDir(os.path.join(root, "runs", name))
  cfg = {"model": {"size": "50K"}, "train": {"learning_rate": lr},
         "finetune": {"method": method, "rank": 8, "seed": 0, "target": "add"}}
  run.write_config("finetune", cfg, {"n_params": 1000})
  before = {"step": 0, "eval/add/accuracy": 0.01, "eval/add_0shot/accuracy": 0.01, "eval/add_3shot/accuracy": kshot}
  last = {"step": 10, "eval/add/accuracy": after, "eval/add/n": 1000, "forget/target_delta_accuracy": after - 0.01,
          "forget/background_delta_loss": bg, "forget/other_delta_accuracy": other,
          "finetune/trainable_params": {"frozen": 0, "full": 1000}.get(method, 100)}
  run.append_metrics([before, last])
  run.write_status("done", 10, 10)


def test_best_rows_claims_and_files(tmp_path):
  root = str(tmp_path)
  _run(root, "frozen", "frozen", 0.01, 0.0, 0.0, 0.05)
  _run(root, "full-a", "full", 0.30, 2.0, -0.2, 0.05)  # -0.2 on 1000 queries: far beyond 2 s.e.
  _run(root, "full-b", "full", 0.10, 0.5, 0.0, 0.05, lr=3e-4)  # the worse full run is not the one reported
  _run(root, "lora", "lora", 0.20, 0.1, 0.0, 0.05)
  _run(root, "dora", "dora", 0.25, 0.1, 0.0, 0.05)
  df = report.table(root)
  assert len(df) == 5 and df.best_kshot.iloc[0] == "add_3shot"
  best = report.best(df)
  assert list(best.method) == ["dora", "frozen", "full", "lora"]
  assert best.set_index("method").loc["full", "lr"] == 1e-3
  lines = report.claims(best)
  assert any("full fine-tuning ends below the frozen model on background loss and other tasks' accuracy" in ln
             for ln in lines)
  assert any("DoRA reaches the higher target accuracy (LoRA 0.200, DoRA 0.250)" in ln for ln in lines)
  assert any("in-context (best k-shot of the pretrained model, 0.050) does not beat the best fine-tune (0.300)" in ln
             for ln in lines)
  # 0.20 vs 0.21 on 1000 queries is within 2 standard errors (0.036): not a win either way.
  close = best.copy()
  close.loc[close.method == "dora", "target_after"] = 0.21
  assert any("neither (within 2 s.e.) reaches" in ln for ln in report.claims(close))
  small = best.copy()
  small.loc[small.method == "full", "other_delta_accuracy"] = -0.01  # within 2 s.e.: not counted as worse
  assert any("below the frozen model on background loss (" in ln for ln in report.claims(small))
  paths = report.write(df, str(tmp_path / "out"))
  assert all(os.path.getsize(p) > 0 for p in paths) and len(paths) == 4


def test_no_finished_runs_is_one_line(tmp_path, capsys):
  with pytest.raises(LoadError, match="no finished fine-tune runs"):
    report.table(str(tmp_path))
  assert report.main(["--sweep_dir", str(tmp_path / "nope")]) == 2
  assert capsys.readouterr().err.count("\n") == 1


def _sweep(root: str) -> None:
  _run(root, "frozen", "frozen", 0.01, 0.0, 0.0, 0.05)
  _run(root, "full", "full", 0.30, 2.0, -0.2, 0.05)
  _run(root, "lora", "lora", 0.20, 0.1, 0.0, 0.05)
  _run(root, "dora", "dora", 0.25, 0.1, 0.0, 0.05)


def test_figures_lay_out_cleanly():
  import matplotlib.pyplot as plt  # noqa: PLC0415
  import pandas as pd  # noqa: PLC0415

  from analysis.figures import layout  # noqa: PLC0415

  df = pd.DataFrame([{"size": s, "n_params": n, "method": m, "gain": g, "background_delta_loss": b,
                      "trainable": t, "target": "add"}
                     for s, n in (("20K", 2e4), ("200K", 2e5))
                     for m, g, b, t in (("frozen", 0, 0, 0), ("full", .3, .5, n), ("lora", .2, .1, n / 20),
                                        ("dora", .25, .1, n / 18))])
  for _, x, xlabel, logx in report.FIGURES:
    fig = report.draw(df, x, xlabel, logx)
    fig.canvas.draw()
    assert layout.problems(fig) == [], x
    plt.close(fig)


def test_the_sweep_report_has_a_fine_tuning_section(tmp_path):
  """launch/sweep.py's report step (analysis.report) on a fine-tune sweep: the table, the claims, both figures."""
  from analysis import report as sweep_report  # noqa: PLC0415

  _sweep(str(tmp_path))
  assert sweep_report.main(["--sweep_dir", str(tmp_path), "--no_progress", "--no_pdf"]) == 0
  text = (tmp_path / "report.md").read_text()
  assert "## Fine-tuning (target add)" in text and "fine-tuning: 4 runs" in text
  assert "DoRA reaches the higher target accuracy (LoRA 0.200, DoRA 0.250)" in text
  for name in ("finetune_gain_vs_forgetting", "finetune_gain_vs_params"):
    assert f"figures/{name}.png" in text and (tmp_path / "figures" / f"{name}.png").stat().st_size > 0
