"""Running a command line's `main(argv)` in-process and checking the bad-input contract on the result.

The contract (COMMON.md, issue 15): exit code 2 for bad input (1 for a failed run, 130 for a stop request), exactly
one line on stderr (`error: <what> — <fix>`), no traceback, and every file that existed before byte-identical
after. In-process runs keep the battery fast (no interpreter start, jax imported once); stop handlers, logging
handlers and the current directory are restored after each call so one case cannot leak into the next.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import errno
import hashlib
import importlib
import io
import logging
import os
import shutil
import signal
import subprocess
import sys

from tests import helpers

# name -> (module with main(argv), whether argv[0] is the program name as absl expects). Other branches add their
# command lines here (analysis.plan, prepare, finetune) together with their rows in cases.py.
CLIS = {
    "train": ("scaling.lm.train", True),
    "toy": ("scaling.toy.train", True),
    "sweep": ("launch.sweep", False),
    "report": ("analysis.report", False),
    "powerlaw": ("analysis.powerlaw", False),
    "repair": ("scaling.core.repair", False),
    "finetune": ("scaling.lm.finetune", True),
}


@dataclasses.dataclass
class Result:
  code: int
  out: str
  err: str

  @property
  def err_lines(self) -> list[str]:
    return [ln for ln in self.err.splitlines() if ln.strip()]


def run_main(cli: str, argv: list[str]) -> Result:
  module, with_prog = CLIS[cli]
  main = importlib.import_module(module).main
  out, err = io.StringIO(), io.StringIO()
  handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
  root = logging.getLogger()
  saved = (list(root.handlers), root.level)
  cwd = os.getcwd()
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      try:
        code = main([module, *argv] if with_prog else list(argv))
      except SystemExit as e:  # argparse's exit for a bad flag
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
  finally:
    for s, h in handlers.items():
      signal.signal(s, h)
    root.handlers[:], root.level = saved
    os.chdir(cwd)
  return Result(code, out.getvalue(), err.getvalue())


def snapshot(root: str) -> dict[str, str]:
  """relative path -> sha256 of every file under root (the run-dir lock file, rewritten on purpose, excluded)."""
  out = {}
  for d, _, files in os.walk(root):
    for name in files:
      if name.startswith(".lock"):
        continue
      path = os.path.join(d, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
  return out


def problems(result: Result, code: int, needle: str, before: dict, after: dict, allow_new: bool = False,
             prefix: str = "error: ") -> list[str]:
  """Every way the result breaks the contract (empty: it holds)."""
  out = []
  if result.code != code:
    out.append(f"exit code {result.code}, expected {code}")
  lines = result.err_lines
  if len(lines) != 1:
    out.append(f"{len(lines)} stderr lines, expected 1")
  if "Traceback" in result.err:
    out.append("a traceback on stderr")
  if lines and not lines[0].startswith(prefix):
    out.append(f"stderr does not start with {prefix!r}")
  if needle not in result.err:
    out.append(f"{needle!r} not in stderr")
  changed = sorted(k for k in before if before[k] != after.get(k))
  if changed:
    out.append(f"pre-existing files changed or removed: {changed[:5]}")
  new = sorted(set(after) - set(before))
  if new and not allow_new:
    out.append(f"new files: {new[:5]}")
  if out:
    out.append(f"stderr was: {result.err[-1500:]!r}")
  return out


@contextlib.contextmanager
def read_only(path: str):
  """Makes every write under `path` fail with EACCES in this process (chmod does not stop root)."""
  path = os.path.abspath(path)
  inside = lambda p: isinstance(p, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(p)).startswith(path)
  real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

  def deny(p):
    raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(p))

  def fake_open(file, mode="r", *a, **k):
    if inside(file) and any(c in mode for c in "wax+"):
      deny(file)
    return real_open(file, mode, *a, **k)

  def fake_os_open(p, flags, *a, **k):
    if inside(p) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
      deny(p)
    return real_os_open(p, flags, *a, **k)

  def fake_mkdir(p, *a, **k):
    if inside(p):
      deny(p)
    return real_mkdir(p, *a, **k)

  builtins.open, os.open, os.mkdir = fake_open, fake_os_open, fake_mkdir
  try:
    yield
  finally:
    builtins.open, os.open, os.mkdir = real_open, real_os_open, real_mkdir


@contextlib.contextmanager
def lock_held_elsewhere(run_dir: str):
  """Another process holds run_dir's lock (as a live trainer would) for the duration of the block."""
  os.makedirs(run_dir, exist_ok=True)
  code = ("import fcntl, json, os, sys, time\n"
          "fd = os.open(os.path.join(sys.argv[1], '.lock'), os.O_RDWR | os.O_CREAT)\n"
          "fcntl.flock(fd, fcntl.LOCK_EX)\n"
          "os.pwrite(fd, json.dumps({'host': 'elsewhere', 'pid': os.getpid(), 'started': 'now'}).encode(), 0)\n"
          "print('held', flush=True)\n"
          "time.sleep(120)\n")
  proc = subprocess.Popen([sys.executable, "-c", code, run_dir], stdout=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline().strip() == "held"
    yield proc.pid
  finally:
    proc.kill()
    proc.wait()


def fill(text: str, d: str) -> str:
  return text.replace("{run}", os.path.join(d, "run")).replace("{d}", d)


def run_case(case, d: str, lm_run: str | None = None) -> tuple[Result, list[str]]:
  """Sets up one cases.Case in the empty folder d (lm_run: the finished run to copy for {run}), runs it, and
  returns the result with every contract violation found."""
  if case.uses_run:
    shutil.copytree(lm_run, os.path.join(d, "run"), symlinks=True)
  if case.setup is not None:
    case.setup(d)
  before = snapshot(d)
  with contextlib.ExitStack() as stack:
    if case.read_only:
      stack.enter_context(read_only(fill(case.read_only, d)))
    if case.lock_held:
      stack.enter_context(lock_held_elsewhere(fill(case.lock_held, d)))
    result = run_main(case.cli, [fill(a, d) for a in case.argv])
  found = problems(result, case.code, fill(case.needle, d), before, snapshot(d), allow_new=case.allow_new)
  return result, found


REPO = helpers.REPO
