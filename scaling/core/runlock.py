"""One writer per run directory: an exclusive `flock` on `<run dir>/.lock`, held for the life of the run.

The kernel drops the lock when the holding process dies (SIGKILL, OOM, a lost node on a filesystem with
working locks), so a stale lock never blocks a rerun. The holder writes `{"host", "pid", "started"}` into the file
so a refused second process can say who holds it, and empties it on release. Process i > 0 of a multi-process run locks `.lock.p<i>`
(every process writes into the run dir; each slot has one owner), the launcher probes slot 0.

Within one process the lock is re-entrant: the command line (scaling/core/cli.py) takes it around the whole
run and the training loop may take it again; the inner call is a no-op. `holder(path)` probes without keeping
the lock (a shared, non-blocking flock for a moment): None when free. A trainer whose exclusive attempt meets
such a probe retries for `wait_s` (probes last microseconds; a real holder keeps the lock).

Filesystems without flock (some FUSE mounts) raise ENOLCK/ENOTSUP: the run goes on unlocked with a warning.
On NFS, Linux emulates flock with POSIX locks, which work across hosts; Lustre needs the `flock` mount option.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import time

from scaling.core.errors import ConfigError, RunDirLocked

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
_UNSUPPORTED = (errno.ENOLCK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)
_held: dict[str, list] = {}  # lock path -> [fd, depth], for re-entrancy within this process


def lock_path(run_dir: str, slot: int = 0) -> str:
  return os.path.join(run_dir, LOCK_FILE if slot == 0 else f"{LOCK_FILE}.p{slot}")


def _describe(info: dict | None) -> str:
  if not info:
    return "another process (holder unknown)"
  return f"pid {info.get('pid', '?')} on {info.get('host', '?')} (since {info.get('started', '?')})"


def _read_info(fd_or_path) -> dict | None:
  try:
    if isinstance(fd_or_path, int):
      raw = os.pread(fd_or_path, 4096, 0)
    else:
      with open(fd_or_path, "rb") as f:
        raw = f.read(4096)
    info = json.loads(raw.decode(errors="replace") or "null")
    return info if isinstance(info, dict) else None
  except (OSError, ValueError):
    return None


def holder(run_dir: str, slot: int = 0) -> dict | None:
  """{"host", "pid", "started"} of the live process holding the lock, or None when it is free (or absent).

  Creates nothing. A lock held by this very process counts as held."""
  path = lock_path(run_dir, slot)
  if os.path.abspath(path) in _held:
    return _read_info(_held[os.path.abspath(path)][0]) or {"pid": os.getpid(), "host": socket.gethostname()}
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return None
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
  except BlockingIOError:
    return _read_info(fd) or {}
  except OSError:
    return None  # no flock on this filesystem: nothing can be told
  else:
    fcntl.flock(fd, fcntl.LOCK_UN)
    return None
  finally:
    os.close(fd)


def _check_dir(run_dir: str) -> bool:
  """Creates the run dir if needed; True when this call created it."""
  if os.path.exists(run_dir) and not os.path.isdir(run_dir):
    raise ConfigError(f"--workdir {run_dir} exists and is not a directory — pass a directory (new or a run dir)")
  created = not os.path.exists(run_dir)
  try:
    os.makedirs(run_dir, exist_ok=True)
  except OSError as e:
    raise ConfigError(f"--workdir {run_dir}: cannot create it ({e.strerror}) — pass a writable location") from None
  return created


def _acquire(path: str, wait_s: float) -> int | None:
  """The fd holding an exclusive flock on path; None when the filesystem has no flock."""
  deadline = time.monotonic() + wait_s
  while True:
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise ConfigError(f"--workdir {os.path.dirname(path)} is not writable ({e.strerror}) — fix its "
                        "permissions or pass another --workdir") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      info = _read_info(fd)
      os.close(fd)
      if time.monotonic() < deadline:  # maybe a probe (microseconds); a real holder keeps it past the deadline
        time.sleep(0.05)
        continue
      raise RunDirLocked(f"{os.path.dirname(path)} is in use by {_describe(info)} — wait for that run to end or "
                         "stop it (two writers would interleave metrics and checkpoints)") from None
    except OSError as e:
      os.close(fd)
      if e.errno in _UNSUPPORTED:
        log.warning("%s: this filesystem has no flock (%s); running without the run-dir lock", path, e.strerror)
        return None
      raise
    try:
      same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
      same = False
    if not same:  # the file was replaced between open and flock: lock the one now at the path
      os.close(fd)
      continue
    return fd


@contextlib.contextmanager
def hold(run_dir: str, slot: int = 0, wait_s: float = 2.0):
  """Context manager: the exclusive lock of `run_dir` (created if missing) for the block's duration.

  Raises RunDirLocked naming the holder when another live process has it, and ConfigError when run_dir is a
  file or cannot be written. When the block leaves nothing but the lock file this call created, that file (and
  the folder, if this call created it) is removed again: a refused or failed start leaves no trace."""
  run_dir = os.path.abspath(run_dir)
  path = lock_path(run_dir, slot)
  if path in _held:
    _held[path][1] += 1
    try:
      yield
    finally:
      _held[path][1] -= 1
    return
  created = _check_dir(run_dir)
  new_file = not os.path.exists(path)
  try:
    fd = _acquire(path, wait_s)
  except BaseException:
    _remove_if_empty(run_dir, created, path, new_file)
    raise
  if fd is not None:
    info = {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    _held[path] = [fd, 1]
  try:
    yield
  finally:
    if fd is not None:
      _held.pop(path, None)
      _remove_if_empty(run_dir, created, path, new_file)
      os.ftruncate(fd, 0)  # holder info present <=> held (a process killed while holding leaves it, unlocked)
      fcntl.flock(fd, fcntl.LOCK_UN)
      os.close(fd)


def _remove_if_empty(run_dir: str, created_dir: bool, path: str, created_file: bool) -> None:
  """A hold that wrote nothing leaves nothing: its lock file (when it made it) and its folder (likewise)."""
  if not created_file:
    return
  with contextlib.suppress(OSError):
    if set(os.listdir(run_dir)) <= {os.path.basename(path)}:
      with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
      if created_dir:
        os.rmdir(run_dir)
