"""Stand-in for analysis.report in launcher tests: fails when <sweep_dir>/FAIL exists."""

import argparse
import os
import sys

if __name__ == "__main__":
  p = argparse.ArgumentParser()
  p.add_argument("--sweep_dir", required=True)
  a = p.parse_args()
  if os.path.exists(os.path.join(a.sweep_dir, "FAIL")):
    print("Traceback (most recent call last):\nValueError: boom", file=sys.stderr)
    sys.exit(3)
  print(f"wrote {a.sweep_dir}/report.md")
