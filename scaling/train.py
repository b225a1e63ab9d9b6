"""`python -m scaling.train`: the language-model trainer's command (scaling/lm/train.py)."""

import sys

from scaling.lm.train import main

if __name__ == "__main__":
  sys.exit(main())
