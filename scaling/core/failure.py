"""Telling failures of the machine (full disk, permissions, I/O errors) from bugs, and saying them in one line.

Python reports these as `OSError` with an errno; tensorstore (orbax's array store) reports them inside a
`ValueError` whose text carries the errno (`[os_error_code='28']`) or a status name (`PERMISSION_DENIED`). Both
forms are recognised anywhere in an exception's cause/context chain, so an error raised while handling another
one (e.g. writing status.json on a full disk after a checkpoint write failed) is still classified.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# Errors of the environment rather than of the data: retrying later (or fixing permissions) can succeed.
ENVIRONMENT = DISK_FULL | frozenset({
    errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN, errno.ENOMEM,
    errno.EMFILE, errno.ENFILE, errno.EBUSY, errno.ENOLCK, errno.ENOTCONN, errno.EHOSTDOWN, errno.EHOSTUNREACH,
    errno.ECONNRESET, errno.ECONNREFUSED, errno.EINTR})
# A path given by the user that is missing, of the wrong kind or not accessible: bad input (exit 2) for CLIs.
PATH_ERRORS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EACCES, errno.EPERM,
                         errno.EROFS})
_TS_ERRNO = re.compile(r"os_error_code='?(\d+)")
_TS_PATH = re.compile(r'"(/[^"]+)"')
_TS_STATUS = {"PERMISSION_DENIED": errno.EACCES, "UNAVAILABLE": errno.EAGAIN, "DEADLINE_EXCEEDED": errno.ETIMEDOUT}
_TEXT = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT, "File too large": errno.EFBIG,
         "Permission denied": errno.EACCES, "Read-only file system": errno.EROFS, "Input/output error": errno.EIO}


def chain(e: BaseException) -> Iterator[BaseException]:
  """e, then its __cause__ / __context__ ancestors (each once)."""
  seen: set[int] = set()
  todo = [e]
  while todo:
    x = todo.pop(0)
    if x is None or id(x) in seen:
      continue
    seen.add(id(x))
    yield x
    todo += [x.__cause__, x.__context__]


def text_errno(text: str) -> int | None:
  """The errno a message quotes (tensorstore's os_error_code, a status name or strerror text), else None."""
  m = _TS_ERRNO.search(text)
  if m:
    return int(m.group(1))
  for name, code in {**_TS_STATUS, **_TEXT}.items():
    if name in text:
      return code
  return None


def _errno_of(x: BaseException) -> int | None:
  if isinstance(x, OSError) and x.errno:
    return x.errno
  return text_errno(str(x))


def os_errno(e: BaseException) -> int | None:
  """The first errno found in e's chain (OSError.errno or one quoted by tensorstore), else None."""
  for x in chain(e):
    code = _errno_of(x)
    if code is not None:
      return code
  return None


def is_disk_full(e: BaseException) -> bool:
  return os_errno(e) in DISK_FULL


def exit_code(e: BaseException) -> int:
  """2 when an OSError is about a path the user gave (missing, wrong kind, no access), else 1."""
  return 2 if os_errno(e) in PATH_ERRORS else 1


def is_environmental(e: BaseException) -> bool:
  """A full disk, a permission problem or an I/O error: not corruption of the data, not a bug."""
  return os_errno(e) in ENVIRONMENT


def first_line(e: BaseException, limit: int = 300) -> str:
  lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
  return (lines[0] if lines else type(e).__name__)[:limit]


def _culprit(e: BaseException) -> BaseException:
  for x in chain(e):
    if _errno_of(x) is not None:
      return x
  return e


def describe(e: BaseException) -> str:
  """One line for an environmental failure: what happened, on which file, and what to do."""
  x = _culprit(e)
  code = os_errno(e)
  if isinstance(x, OSError):
    where = f" ({x.filename})" if x.filename else ""
    what = x.strerror or first_line(x, 200)
  else:  # tensorstore: the errno and the file are inside the message
    paths = _TS_PATH.findall(str(x))
    where = f" ({paths[-1]})" if paths else ""
    what = os.strerror(code) if code else first_line(x, 200)
  if code in DISK_FULL:
    return (f"disk full: {what}{where} — free space (or raise the quota / file-size limit) and rerun the same "
            "command; it resumes from the last complete checkpoint")
  if code in (errno.EACCES, errno.EPERM, errno.EROFS):
    return f"permission denied: {what}{where} — make it readable and writable by this user (or pass another path)"
  if code in PATH_ERRORS:
    return f"{what}{where} — pass an existing path of the right kind"
  return f"I/O error: {what}{where} — check the filesystem, then rerun the same command to resume"
