"""`python -m scaling.toy_train`: the toy trainer's command (scaling/toy/train.py)."""

import sys

from scaling.toy.train import main

if __name__ == "__main__":
  sys.exit(main())
