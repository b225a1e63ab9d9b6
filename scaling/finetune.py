"""`python -m scaling.finetune`: the fine-tuning trainer's command (scaling/lm/finetune.py).

The stop handler is installed before the trainer (and jax) is imported, so SIGTERM during start-up exits 130.
"""

import sys

from scaling.core import cli

if __name__ == "__main__":
  sys.exit(cli.entry("scaling.lm.finetune"))
