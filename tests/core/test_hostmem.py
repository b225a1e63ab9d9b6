"""hostmem.retain_freed_memory: a large block freed by a worker thread is reused without new page faults."""

import json
import subprocess
import sys

import pytest

from tests import helpers

# Allocate, free and re-allocate a 64 MiB block on a worker thread (as XLA:CPU's temporary buffer is), counting
# the minor page faults of the second allocation. Runs in a fresh process: the setting is process-global.
PROBE = """
import json, resource, sys, threading
import numpy as np
from scaling.core import hostmem
applied = hostmem.retain_freed_memory() if sys.argv[1] == "retain" else None
out = {}
def work():
  a = np.ones(64 * 2**20 // 8); del a
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  b = np.ones(64 * 2**20 // 8); del b
  out["faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
t = threading.Thread(target=work); t.start(); t.join()
print(json.dumps({"applied": applied, "faults": out["faults"]}))
"""


def _probe(mode: str) -> dict:
  out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=helpers.REPO, capture_output=True, text=True,
                       check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt; elsewhere it is a no-op")
def test_freed_block_is_reused_without_page_faults():
  default, retained = _probe("default"), _probe("retain")
  assert retained["applied"] is True
  assert default["faults"] > 0  # glibc's default maps the block afresh each time (so the test can fail)
  assert retained["faults"] == 0
