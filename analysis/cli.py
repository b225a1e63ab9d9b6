"""What the analysis command lines share: an argument parser whose errors are one `error:` line (exit 2)."""

from __future__ import annotations

import argparse


class Parser(argparse.ArgumentParser):
  """argparse without the usage dump: a bad flag is `error: <what> (see --help)` and exit code 2."""

  def error(self, message):
    self.exit(2, f"error: {message} (see --help)\n")


def add_sweep_dirs(p: argparse.ArgumentParser) -> None:
  p.add_argument("--sweep_dir", action="append", required=True, help="a sweep dir (repeat for several)")
