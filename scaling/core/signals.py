"""Stop requests: SIGINT/SIGTERM set a flag that the training loop checks between steps.

A command installs the handlers first thing (`scaling.core.cli.main`), so a stop during start-up is seen too; the
loop then saves a checkpoint at the next segment boundary and the command exits with code 130 (SLURM requeues
it). A second SIGINT interrupts at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(Exception):
  """Raised at a safe point after a stop was requested; the message names the signal or the reason."""


class StopFlag:
  """The process-wide stop request: `reason` is None until a signal (or a test's stop_after) sets it."""

  def __init__(self):
    self.reason: str | None = None

  def request(self, reason: str) -> None:
    self.reason = reason

  def clear(self) -> None:
    self.reason = None

  def check(self) -> None:
    """Raises StopRequested when a stop was requested (for phases without a checkpoint to save)."""
    if self.reason is not None:
      raise StopRequested(self.reason)


FLAG = StopFlag()


def _handler(signum, _frame) -> None:
  if FLAG.reason is not None and signum == signal.SIGINT:
    raise KeyboardInterrupt
  FLAG.request(signal.Signals(signum).name)


@contextlib.contextmanager
def handle_stop_signals() -> Iterator[StopFlag]:
  """Installs the handlers for the duration (no-op off the main thread, where Python cannot install them)."""
  if threading.current_thread() is not threading.main_thread():
    yield FLAG
    return
  old = {s: signal.signal(s, _handler) for s in SIGNALS}
  try:
    yield FLAG
  finally:
    for s, h in old.items():
      signal.signal(s, h)
