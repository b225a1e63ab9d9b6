"""The bad-input battery as a table: one row per case, every command line of the project.

A row says which command line (harness.CLIS), its arguments, what to put on disk first, the exit code and a
phrase the one error line must contain. In argv, `{d}` is the case's own empty folder and `{run}` a copy of a
finished tiny LM run (20 steps, checkpoints at 10 and 20) made once per session. To add a command line (e.g.
analysis.plan from another branch): register it in harness.CLIS and append its rows here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable

from tests import helpers
from tests.launch import sweeputil

# The tiny LM run the `{run}` fixture was trained with (cases resuming it must pass the same flags).
LM = (*helpers.TINY_FLAGS, "--config.train.steps=20", "--config.checkpoint.every=10",
      "--config.checkpoint.async_save=false", "--config.train.eval_every=10")
TOY = ("--config=configs/toy.py", "--config.toy.betas=(1.0,)", "--config.toy.seeds=(0,)", "--noprogress")
LM_FILE = "--config=configs/lm.py:size=50K"


@dataclasses.dataclass(frozen=True)
class Case:
  id: str
  cli: str
  argv: tuple[str, ...]
  needle: str  # a phrase the error line must contain
  code: int = 2
  setup: Callable[[str], None] | None = None  # writes into the case folder {d} (the {run} copy is made first)
  uses_run: bool = False  # {run} is needed
  read_only: str | None = None  # a path (with {d}) every write under which fails with EACCES
  lock_held: str | None = None  # a run dir (with {d}) whose lock another process holds
  allow_new: bool = False
  needs: str | None = None  # the part of the project that must change first: the row is a strict xfail until then


def write(rel: str, text: str | bytes) -> Callable[[str], None]:
  def setup(d: str) -> None:
    path = os.path.join(d, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(text, bytes) else "w") as f:
      f.write(text)
  return setup


def both(*fns) -> Callable[[str], None]:
  def setup(d: str) -> None:
    for fn in fns:
      fn(d)
  return setup


def edit_json(rel: str, fn: Callable[[dict], object]) -> Callable[[str], None]:
  def setup(d: str) -> None:
    path = os.path.join(d, rel)
    with open(path) as f:
      obj = json.load(f)
    fn(obj)
    with open(path, "w") as f:
      json.dump(obj, f)
  return setup


def edit_lines(rel: str, fn: Callable[[list[str]], list[str]]) -> Callable[[str], None]:
  def setup(d: str) -> None:
    path = os.path.join(d, rel)
    with open(path) as f:
      lines = f.read().splitlines(keepends=True)
    with open(path, "w") as f:
      f.write("".join(fn(lines)))
  return setup


def remove(rel: str) -> Callable[[str], None]:
  return lambda d: os.remove(os.path.join(d, rel))


def sweep_file(**kw) -> Callable[[str], None]:
  """{d}/sweep_t.py: the launcher tests' tiny sweep with `kw` changes (tests/launch/sweeputil.py)."""
  return lambda d: sweeputil.write_sweep(d, name="t", **kw)


SWEEP = ("--config={d}/sweep_t.py", "--sweep_dir={d}/sweep", "--noprogress")
CONFIG_PY = "import ml_collections\n\ndef get_config(arg=''):\n  c = ml_collections.ConfigDict()\n{body}  return c\n"


def _trainer_rows() -> list[Case]:
  t = "train"
  w = "--workdir={d}/w"
  return [
      Case("train-no-config", t, (w,), "--config is required"),
      Case("train-config-missing-file", t, ("--config={d}/nope.py", w), "not found"),
      Case("train-config-is-a-directory", t, ("--config={d}", w), "not found"),
      Case("train-config-empty-value", t, ("--config=", w), "--config is required"),
      Case("train-config-syntax-error", t, ("--config={d}/c.py", w), "line 1: invalid syntax",
           setup=write("c.py", "def get_config(:\n")),
      Case("train-config-without-get_config", t, ("--config={d}/c.py", w), "has no get_config()",
           setup=write("c.py", "x = 1\n")),
      Case("train-config-import-error", t, ("--config={d}/c.py", w), "ModuleNotFoundError",
           setup=write("c.py", "import no_such_module_xyz\n")),
      Case("train-config-get_config-raises", t, ("--config={d}/c.py", w), "get_config failed (RuntimeError: boom)",
           setup=write("c.py", "def get_config(arg=''):\n  raise RuntimeError('boom')\n")),
      Case("train-config-returns-a-list", t, ("--config={d}/c.py", w), "not an ml_collections.ConfigDict",
           setup=write("c.py", "def get_config(arg=''):\n  return [1]\n")),
      Case("train-config-bad-preset", t, ("--config=configs/lm.py:sise=1M", w), "unknown preset 'sise'"),
      Case("train-override-typo-nearest-key", t, (LM_FILE, "--config.train.stepz=10", w),
           "did you mean --config.train.steps?"),
      Case("train-override-unknown-top-level", t, (LM_FILE, "--config.foo=1", w), "no setting 'foo' in the config"),
      Case("train-override-not-an-integer", t, (LM_FILE, "--config.train.steps=abc", w), "not an integer"),
      Case("train-override-float-for-int", t, (LM_FILE, "--config.model.d_model=1.5", w), "not an integer"),
      Case("train-override-not-a-number", t, (LM_FILE, "--config.train.learning_rate=fast", w), "not a number"),
      Case("train-override-not-a-bool", t, (LM_FILE, "--config.checkpoint.async_save=maybe", w), "not a boolean"),
      Case("train-override-without-value", t, (LM_FILE, w, "--config.train.steps"), "needs a value"),
      Case("train-override-below-a-value", t, (LM_FILE, "--config.train.steps.x=3", w), "is a value, not a group"),
      Case("train-override-a-group-with-a-value", t, (LM_FILE, "--config.train=3", w), "is a group of settings"),
      Case("train-unknown-flag", t, (LM_FILE, "--workdirr={d}/w"), "did you mean --workdir?"),
      Case("train-positional-argument", t, (LM_FILE, w, "extra"), "unexpected argument 'extra'"),
      Case("train-no-workdir", t, (LM_FILE,), "--workdir is required"),
      Case("train-workdir-is-a-file", t, (*LM, "--workdir={d}/f"), "exists and is not a directory",
           setup=write("f", "x")),
      Case("train-workdir-under-a-file", t, (*LM, "--workdir={d}/f/w"), "cannot create it", setup=write("f", "x")),
      Case("train-workdir-read-only", t, (*LM, "--workdir={d}/ro"), "is not writable", read_only="{d}/ro",
           setup=write("ro/keep", "x")),
      Case("train-workdir-in-read-only-folder", t, (*LM, "--workdir={d}/ro/w"), "cannot create it (Permission "
           "denied)", read_only="{d}/ro", setup=write("ro/keep", "x")),
      Case("train-coordinator-without-process-keys", t, (*LM, "--config.distributed.coordinator_address=h:1234", w),
           "distributed.num_processes (got 0) and distributed.process_id (got -1) must be set too"),
      Case("train-coordinator-not-host-port", t, (*LM, "--config.distributed.coordinator_address=nohost", w),
           "must be host:port"),
      Case("train-process-id-out-of-range", t, (*LM, "--config.distributed.coordinator_address=h:1",
                                                "--config.distributed.num_processes=2",
                                                "--config.distributed.process_id=2", w), "must be below"),
      Case("train-distributed-mode-unknown", t, (*LM, "--config.distributed.mode=sometimes", w),
           "distributed.mode='sometimes' is not one of"),
      Case("train-local-device-count-negative", t, (*LM, "--config.distributed.local_device_count=-1", w),
           "must be an integer >= 0"),
      Case("train-warmup-exceeds-steps", t, (*LM, "--config.train.warmup_steps=50", w), "exceeds train.steps"),
      Case("train-schedule-unknown", t, (*LM, "--config.train.schedule=linear", w), "is not one of"),
      Case("train-steps-zero", t, (*LM, "--config.train.steps=0", w), "train.steps=0 must be positive"),
      Case("train-batch-negative", t, (*LM, "--config.train.batch_size=-8", w), "must be positive"),
      Case("train-unknown-size", t, ("--config=configs/lm.py:size=3M", w), "3M"),
      Case("train-toy-config-on-lm-trainer", t, ("--config=configs/toy.py", w), "toy configs run with"),
      Case("train-mesh-does-not-fit-the-devices", t, (*LM, "--config.mesh.data=64", w), "devices but"),
  ]


def _trainer_run_dir_rows() -> list[Case]:
  t = "train"
  return [
      Case("train-garbage-status-json", t, (*LM, "--workdir={run}"), "status.json: not valid JSON", uses_run=True,
           setup=write("run/status.json", "{garbage")),
      Case("train-bogus-state-status-json", t, (*LM, "--workdir={run}"), "state 'paused' is not one of",
           uses_run=True, setup=write("run/status.json", '{"state": "paused", "step": 3, "total_steps": 20}')),
      Case("train-status-json-is-a-list", t, (*LM, "--workdir={run}"), "is not one of", uses_run=True,
           setup=write("run/status.json", "[1, 2]")),
      Case("train-status-json-step-not-int", t, (*LM, "--workdir={run}"), "'step' is 'ten', not an integer",
           uses_run=True, setup=write("run/status.json", '{"state": "running", "step": "ten", "total_steps": 20}')),
      Case("train-truncated-config-json", t, (*LM, "--workdir={run}"), "scaling.core.repair", uses_run=True,
           setup=edit_lines("run/config.json", lambda ls: ls[: len(ls) // 2])),
      Case("train-config-json-not-an-object", t, (*LM, "--workdir={run}"), "not a JSON object", uses_run=True,
           setup=write("run/config.json", "[]")),
      Case("train-config-json-missing-key", t, (*LM, "--workdir={run}"), "missing key 'summary'", uses_run=True,
           setup=edit_json("run/config.json", lambda c: c.pop("summary"))),
      Case("train-config-json-other-schema", t, (*LM, "--workdir={run}"), "schema 99", uses_run=True,
           setup=edit_json("run/config.json", lambda c: c.update(schema=99))),
      Case("train-resume-with-other-config", t, (*LM, "--config.train.learning_rate=0.01", "--workdir={run}"),
           "different config", uses_run=True),
      Case("train-run-dir-in-use", t, (*LM, "--workdir={run}"), "is in use by pid", uses_run=True,
           lock_held="{run}"),
      Case("train-torn-middle-metrics-line", t, (*LM, "--workdir={run}"), "line 2: not valid JSON", uses_run=True,
           setup=both(edit_lines("run/metrics.jsonl", lambda ls: [ls[0], ls[1][:9] + "\n", *ls[2:]]),
                      edit_json("run/status.json", lambda s: s.update(state="failed")))),
      Case("train-metrics-steps-out-of-order", t, (*LM, "--workdir={run}"), "does not increase", uses_run=True,
           setup=both(edit_lines("run/metrics.jsonl", lambda ls: [ls[0], ls[2], ls[1], *ls[3:]]),
                      edit_json("run/status.json", lambda s: s.update(state="failed")))),
      Case("train-metrics-deleted-beside-checkpoints", t, (*LM, "--workdir={run}"), "missing although the run has "
           "a checkpoint", uses_run=True, setup=both(remove("run/metrics.jsonl"),
                                                       edit_json("run/status.json", lambda s: s.update(state="failed")))),
      Case("train-foreign-checkpoint", t, (*LM, "--config.model.d_ff=96", "--workdir={run}"),
           "holds a checkpoint of another model or config", uses_run=True,
           setup=both(remove("run/config.json"), edit_json("run/status.json", lambda s: s.update(state="failed")))),
  ]


def _toy_rows() -> list[Case]:
  t = "toy"
  w = "--workdir={d}/w"
  return [
      Case("toy-no-config", t, (w,), "--config is required"),
      Case("toy-betas-not-numbers", t, ("--config=configs/toy.py", "--config.toy.betas=abc", w), "'abc' is not a number"),
      Case("toy-betas-one-word", t, ("--config=configs/toy.py", "--config.toy.betas=(1,abc)", w), "is not a number"),
      Case("toy-K-zero", t, (*TOY, "--config.toy.K=0", w), "toy.K=0"),
      Case("toy-width-above-d", t, (*TOY, "--config.toy.width=100000", w), "must be an integer in 1..d"),
      Case("toy-mass-above-one", t, (*TOY, "--config.toy.mass=2.0", w), "toy.mass=2.0 must be in (0, 1]"),
      Case("toy-schedule-unknown", t, (*TOY, "--config.train.schedule=linear", w), "train.schedule='linear'"),
      Case("toy-negative-seed", t, ("--config=configs/toy.py", "--config.toy.seeds=(-1,)", w), "must be integers >= 0"),
      Case("toy-repeated-beta", t, ("--config=configs/toy.py", "--config.toy.betas=(1.0,1.0)", w), "repeat a value"),
      Case("toy-model-variant-unknown", t, (*TOY, "--config.model.variant=weird", w), "model.variant='weird'"),
      Case("toy-lm-config-on-toy-trainer", t, ("--config=configs/lm.py", w), "language-model configs run with"),
      Case("toy-rare-tasks-not-integers", t, ("--config=configs/toy.py", "--config.toy.rare_tasks=(1.5,)", w),
           "toy.rare_tasks=(1.5,) must be a tuple of integers"),
      Case("toy-workdir-is-a-file", t, (*TOY, "--workdir={d}/f"), "exists and is not a directory",
           setup=write("f", "x")),
      Case("toy-lam-norm-unknown", t, (*TOY, "--config.toy.lam_norm=bad", w), "toy.lam_norm='bad'"),
      Case("toy-steps-zero", t, (*TOY, "--config.train.steps=0", w), "train.steps=0 must be an integer >= 1"),
      Case("toy-inject-task-out-of-range", t, (*TOY, "--config.toy.inject.task=99", w), "toy.inject.task=99"),
      Case("toy-override-typo", t, (*TOY, "--config.toy.widht=8", w), "did you mean --config.toy.width?"),
      Case("toy-garbage-program-status", t, (*TOY, w), "status.json: not valid JSON", setup=write("w/status.json", "{")),
      Case("toy-truncated-member-config", t, (*TOY, w), "beta=1.0_seed=0/config.json: not valid JSON",
           setup=write("w/beta=1.0_seed=0/config.json", '{"schema": 1, "exp')),
  ]


def _sweep_rows() -> list[Case]:
  s = "sweep"
  return [
      Case("sweep-no-config", s, ("--sweep_dir={d}/sweep",), "the following arguments are required: --config"),
      Case("sweep-config-missing", s, ("--config={d}/nope.py", "--sweep_dir={d}/sweep"), "not found"),
      Case("sweep-config-syntax-error", s, SWEEP, "invalid syntax", setup=write("sweep_t.py", "def get_config(:\n")),
      Case("sweep-config-without-get_config", s, SWEEP, "has no get_config()", setup=write("sweep_t.py", "x = 1\n")),
      Case("sweep-unknown-setting", s, SWEEP, "unknown sweep setting 'axis'",
           setup=write("sweep_t.py", CONFIG_PY.format(body="  c.name = 'x'\n  c.base = 'configs/lm.py'\n"
                                                           "  c.axis = [{'seed': [0]}]\n"))),
      Case("sweep-axis-key-typo", s, SWEEP, "unknown config key 'train.stepz'",
           setup=sweep_file(axes=[{"train.stepz": [1]}])),
      Case("sweep-empty-axis", s, SWEEP, "is empty", setup=sweep_file(axes=[{"train.steps": []}])),
      Case("sweep-companions-not-a-list", s, SWEEP, "companions=3 must be a list of sweep config specs",
           setup=write("sweep_t.py", CONFIG_PY.format(body="  c.name = 'x'\n  c.base = 'configs/lm.py'\n"
                                                        "  c.companions = 3\n"))),
      Case("sweep-companion-missing", s, SWEEP, "not found",
           setup=write("sweep_t.py", CONFIG_PY.format(body="  c.name = 'x'\n  c.base = 'configs/lm.py'\n"
                                                        "  c.companions = ['nope/none.py']\n"))),
      Case("sweep-zip-unequal", s, SWEEP, "zips keys of unequal lengths",
           setup=sweep_file(axes=[{"train.steps": [10, 20], "seed": [0]}])),
      Case("sweep-unknown-backend-flag", s, (*SWEEP, "--backend=k8s"), "unknown backend 'k8s'", setup=sweep_file()),
      Case("sweep-unknown-backend-setting", s, SWEEP, "unknown backend 'k8s' in backend settings",
           setup=sweep_file(backend={"k8s": {}})),
      Case("sweep-slurm-setting-typo", s, (*SWEEP, "--backend=slurm"), "did you mean: partition?",
           setup=sweep_file(backend={"slurm": {"partitoin": "gpu"}})),
      Case("sweep-axis-value-wrong-type", s, SWEEP, "cannot set train.steps='ten'",
           setup=sweep_file(axes=[{"train.steps": ["ten"]}])),
      Case("sweep-warmup-exceeds-steps", s, SWEEP, "exceeds train.steps",
           setup=sweep_file(overrides={"train.warmup_steps": 50})),
      Case("sweep-duplicate-runs", s, SWEEP, "have the same overrides",
           setup=sweep_file(axes=[{"model.size": ["50K", "50K"]}])),
      Case("sweep-dry-run-and-list", s, (*SWEEP, "--dry_run", "--list"), "do not combine", setup=sweep_file()),
      Case("sweep-sweep-dir-is-a-file", s, SWEEP, "is not a directory",
           setup=both(sweep_file(), write("sweep", "x"))),
      Case("sweep-garbage-manifest", s, SWEEP, "manifest.json: not valid JSON",
           setup=both(sweep_file(), write("sweep/manifest.json", "{"))),
      Case("sweep-manifest-of-another-sweep", s, SWEEP, "holds sweep 'other'",
           setup=both(sweep_file(), write("sweep/manifest.json", json.dumps(
               {"schema": 1, "sweep": "other", "runs": []})))),
      Case("sweep-manifest-other-schema", s, SWEEP, "schema 99",
           setup=both(sweep_file(), write("sweep/manifest.json", json.dumps({"schema": 99, "runs": []})))),
      Case("sweep-manifest-without-runs", s, SWEEP, "no 'runs' list",
           setup=both(sweep_file(), write("sweep/manifest.json", json.dumps({"schema": 1, "sweep": "t"})))),
      Case("sweep-manifest-malformed-record", s, SWEEP, "malformed record",
           setup=both(sweep_file(), write("sweep/manifest.json", json.dumps(
               {"schema": 1, "sweep": "t", "runs": [{"id": "r", "status": "weird"}]})))),
      Case("sweep-max-parallel-negative", s, (*SWEEP, "--max_parallel=-1"), "must be a non-negative integer",
           setup=sweep_file()),
      Case("sweep-max-parallel-not-int", s, (*SWEEP, "--max_parallel=abc"), "invalid int value", setup=sweep_file()),
      Case("sweep-unknown-flag", s, (*SWEEP, "--foo"), "unrecognized arguments: --foo", setup=sweep_file()),
      Case("sweep-entrypoint-not-importable", s, SWEEP, "is not an importable module",
           setup=write("sweep_t.py", CONFIG_PY.format(body="  c.name = 'x'\n  c.base = 'configs/lm.py'\n"
                                                           "  c.entrypoint = 'no.such.module'\n"))),
      Case("sweep-base-config-missing", s, SWEEP, "not found", setup=sweep_file(base="configs/nope.py")),
      Case("sweep-local-processes-zero", s, SWEEP, "backend.local.processes=0 must be a positive integer",
           setup=sweep_file(backend={"local": {"processes": 0}})),
      Case("sweep-local-python-missing", s, SWEEP, "is not an executable",
           setup=sweep_file(backend={"local": {"python": "/no/such/python"}})),
      Case("sweep-dotted-overrides-hint", s, SWEEP, "allow_dotted_keys=True",
           setup=write("sweep_t.py", CONFIG_PY.format(body="  c.name = 'x'\n  c.base = 'configs/lm.py'\n"
                                                           "  c.overrides = {'train.steps': 3}\n"))),
  ]


def _analysis_rows() -> list[Case]:
  r, p = "report", "powerlaw"
  csv = lambda rows: write("t.csv", "N,L,D,S\n" + "".join(f"{n},{l},{d},{s}\n" for n, l, d, s in rows))
  good = [(1e6 * 2 ** i, 3.0 - 0.05 * i, 1e9, i % 2) for i in range(6)]
  fit = ("--csv={d}/t.csv", "--n=N", "--loss=L", "--no_progress")
  return [
      Case("report-no-sweep-dir", r, (), "the following arguments are required: --sweep_dir"),
      Case("report-sweep-dir-missing", r, ("--sweep_dir={d}/nope",), "no such directory"),
      Case("report-sweep-dir-empty", r, ("--sweep_dir={d}",), "no run dirs"),
      Case("report-sweep-dir-is-a-file", r, ("--sweep_dir={d}/f",), "no such directory", setup=write("f", "x")),
      Case("report-negative-bootstrap", r, ("--sweep_dir={d}", "--bootstrap=-1"), "must be >= 0"),
      Case("report-jobs-zero", r, ("--sweep_dir={d}", "--jobs=0"), "--jobs must be >= 1"),
      Case("report-out-is-a-file", r, ("--sweep_dir={d}", "--out={d}/f"), "exists and is not a directory",
           setup=write("f", "x")),
      Case("report-garbage-manifest", r, ("--sweep_dir={d}",), "manifest.json: not valid JSON",
           setup=write("manifest.json", "{")),
      Case("report-manifest-without-runs", r, ("--sweep_dir={d}",), "no 'runs' list",
           setup=write("manifest.json", "{}")),
      Case("report-run-without-metrics", r, ("--sweep_dir={d}", "--no_progress"), "no usable runs",
           setup=both(write("r/config.json", json.dumps({"schema": 1, "experiment": "lm", "summary": {"seed": 0},
                                                          "config": {}})),
                      write("r/status.json", '{"state": "done", "step": 0, "total_steps": 0}'))),
      Case("report-model-unknown", r, ("--sweep_dir={d}", "--model=cubic"), "invalid choice: 'cubic'"),
      Case("report-unknown-flag", r, ("--sweep_dir={d}", "--outt=x"), "unrecognized arguments"),
      Case("powerlaw-no-csv", p, ("--n=N", "--loss=L"), "the following arguments are required: --csv"),
      Case("powerlaw-csv-missing", p, fit, "no such file"),
      Case("powerlaw-csv-is-a-directory", p, ("--csv={d}", "--n=N", "--loss=L"), "no such file"),
      Case("powerlaw-csv-empty", p, fit, "not a readable CSV", setup=write("t.csv", "")),
      Case("powerlaw-csv-binary", p, fit, "not a readable CSV", setup=write("t.csv", b"\xff\xfe\x00\x81garbage")),
      Case("powerlaw-n-column-missing", p, ("--csv={d}/t.csv", "--n=size", "--loss=L"), "column 'size'",
           setup=csv(good)),
      Case("powerlaw-loss-column-missing", p, ("--csv={d}/t.csv", "--n=N", "--loss=loss"), "column 'loss'",
           setup=csv(good)),
      Case("powerlaw-non-numeric-values", p, fit, "NaN/non-numeric", setup=csv([*good[:5], ("big", 2.0, 1e9, 0)])),
      Case("powerlaw-values-not-positive", p, fit, "values <= 0", setup=csv([*good[:5], (-1, 2.0, 1e9, 0)])),
      Case("powerlaw-exclude-everything", p, (*fit, "--exclude_top=6"), "would drop all 6 rows", setup=csv(good)),
      Case("powerlaw-logistic-with-d", p, (*fit, "--model=logistic", "--d=D"), "--model logistic takes neither",
           setup=csv(good)),
      Case("powerlaw-negative-bootstrap", p, (*fit, "--bootstrap=-1"), "must be >= 0", setup=csv(good)),
      Case("powerlaw-ci-above-one", p, (*fit, "--bootstrap=2", "--ci=1.5"), "must be in (0, 1)", setup=csv(good)),
      Case("powerlaw-delta-negative", p, (*fit, "--delta=-1"), "--delta -1.0 must be a number > 0", setup=csv(good)),
      Case("powerlaw-delta-zero", p, (*fit, "--delta=0"), "must be a number > 0", setup=csv(good)),
      Case("powerlaw-fix-E-negative", p, (*fit, "--fix_E=-3"), "must be a finite number >= 0", setup=csv(good)),
      Case("powerlaw-too-few-sizes", p, fit, "needs >= 5 distinct sizes", setup=csv(good[:3])),
      Case("powerlaw-seed-col-missing", p, (*fit, "--seed_col=seed"), "column 'seed'", setup=csv(good)),
      Case("powerlaw-d-and-d-from-flops", p, (*fit, "--d=D", "--d_from_flops=D"), "not allowed with argument",
           setup=csv(good)),
      Case("powerlaw-bootstrap-not-int", p, (*fit, "--bootstrap=many"), "invalid int value", setup=csv(good)),
      Case("repair-no-workdir", "repair", (), "the following arguments are required: --workdir"),
      Case("repair-workdir-missing", "repair", ("--workdir={d}/nope",), "no such directory"),
      Case("repair-run-dir-in-use", "repair", ("--workdir={d}/w",), "is in use by pid", lock_held="{d}/w",
           setup=write("w/status.json", "{")),
  ]


# Fine-tuning (scaling/lm/finetune.py): vocab 256 leaves room for both tasks' symbols; {run} was pretrained at 128.
FT = ("--config=configs/finetune.py:size=50K,steps=4", "--config.data.vocab_size=256", "--config.data.seq_len=32",
      "--noprogress")


def _pretrained_at_256(extra: Callable[[dict], object] = lambda c: None) -> Callable[[str], None]:
  """{run} edited into a run the fine-tune config matches (vocab 256), then `extra` applied to its config.json."""
  def edit(c: dict) -> None:
    c["config"]["data"]["vocab_size"] = c["config"]["model"]["vocab_size"] = 256
    extra(c)
  return edit_json("run/config.json", edit)


def _finetune_rows() -> list[Case]:
  f = "finetune"
  w = "--workdir={d}/w"
  run = "--init_from={run}"
  no_checkpoints = lambda d: shutil.rmtree(os.path.join(d, "run", "checkpoints"))
  return [
      Case("finetune-no-init-from", f, (*FT, w), "--init_from is required"),
      Case("finetune-init-from-missing", f, (*FT, "--init_from={d}/nope", w), "no such directory"),
      Case("finetune-init-from-a-file", f, (*FT, "--init_from={d}/f", w), "a file, not a run dir",
           setup=write("f", "x")),
      Case("finetune-init-from-not-a-run-dir", f, (*FT, "--init_from={d}/e", w), "not a run dir (no config.json)",
           setup=write("e/keep", "x")),
      Case("finetune-init-from-without-value", f, (*FT, w, "--init_from"), "--init_from needs a value"),
      Case("finetune-init-from-garbage-config-json", f, (*FT, run, w), "config.json: not valid JSON", uses_run=True,
           setup=write("run/config.json", "{")),
      Case("finetune-init-from-other-vocab", f, (*FT, run, w), "was trained with a different model.vocab_size",
           uses_run=True),
      Case("finetune-init-from-other-size", f, ("--config=configs/finetune.py:size=200K", *FT[1:], run, w),
           "was trained with a different model.d_model", uses_run=True, setup=_pretrained_at_256()),
      Case("finetune-init-from-other-seed", f, (*FT, "--config.seed=3", run, w), "different seed", uses_run=True,
           setup=_pretrained_at_256()),
      Case("finetune-init-from-toy-run", f, (*FT, run, w), "is a 'toy' run", uses_run=True,
           setup=_pretrained_at_256(lambda c: c.update(experiment="toy"))),
      Case("finetune-init-from-no-checkpoint", f, (*FT, run, w), "holds no checkpoint", uses_run=True,
           setup=both(_pretrained_at_256(), no_checkpoints)),
      Case("finetune-workdir-inside-init-from", f, (*FT, run, "--workdir={run}/ft"), "is never written to",
           uses_run=True, setup=_pretrained_at_256()),
      Case("finetune-method-unknown-preset", f, ("--config=configs/finetune.py:method=sgd", w),
           "method='sgd' is not one of full, lora, dora, frozen"),
      Case("finetune-method-unknown", f, (*FT, "--config.finetune.method=sgd", w),
           "finetune.method='sgd' is not one of"),
      Case("finetune-target-module-unknown", f, (*FT, "--config.finetune.targets=q,qq", w),
           "unknown target module 'qq'"),
      Case("finetune-rank-zero", f, (*FT, "--config.finetune.rank=0", w), "finetune.rank=0 must be an integer in"),
      Case("finetune-save-frozen-not-bool", f, (*FT, "--config.finetune.save_frozen=3", w),
           "--config.finetune.save_frozen=3: not a boolean"),
      Case("finetune-rank-above-d-model", f, (*FT, "--config.finetune.rank=49", w), "[1, d_model=48]"),
      Case("finetune-target-task-unknown", f, ("--config=configs/finetune.py:size=50K,target=mul", *FT[1:], w),
           "finetune.target='mul' is not a registered task"),
      Case("finetune-target-never-seen", f, (*FT, "--config.data.tasks.add.frequency=0", w), "would never see it"),
      Case("finetune-shots-beyond-seq-len", f, (*FT, "--config.finetune.shots=0,9", w),
           "a 9-shot query needs 38 positions"),
      Case("finetune-loss-tokens-unknown", f, (*FT, "--config.finetune.loss_tokens=some", w),
           "finetune.loss_tokens='some' is not one of"),
      Case("finetune-lm-config", f, ("--config=configs/lm.py:size=50K", w),
           "scaling.finetune runs configs/finetune.py"),
  ]


CASES: list[Case] = [*_trainer_rows(), *_trainer_run_dir_rows(), *_toy_rows(), *_sweep_rows(), *_analysis_rows(),
                     *_finetune_rows()]
