"""Test setup: 4 fake CPU devices for every test (sharding tests use all 4, others a 1-device mesh).

XLA_FLAGS must be set before JAX initialises its backend, so this runs at import, before any test module.
The collective timeouts make a hung fake-device collective fail in seconds instead of stalling CI
(../shared/STACK.md trap 1).
"""

import os
import sys

N_FAKE_DEVICES = 4
os.environ["XLA_FLAGS"] = " ".join([
    os.environ.get("XLA_FLAGS", ""),
    f"--xla_force_host_platform_device_count={N_FAKE_DEVICES}",
    "--xla_cpu_collective_call_terminate_timeout_seconds=120",
]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import absl.flags  # noqa: E402

# grain's mp_prefetch reads absl flags; unparsed flags crash it (STACK.md trap 3).
absl.flags.FLAGS.mark_as_parsed()

import pytest  # noqa: E402

from tests import helpers  # noqa: E402,F401


@pytest.fixture
def tiny_config():
  return helpers.tiny_config()
