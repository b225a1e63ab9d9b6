"""Test setup: 4 fake CPU devices for every test (sharding tests use all 4, others a 1-device mesh).

XLA_FLAGS must be set before JAX initialises its backend, so this runs at import, before any test module.
The collective timeouts make a hung fake-device collective fail in seconds instead of stalling CI
(README, Known traps 1).
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
# numpy linear algebra on 2 shared cores: one BLAS thread is several times faster than two contending.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One persistent compilation cache for the whole session (subprocesses inherit it through the env): tests
# compile the same tiny programs many times, and a cached executable is the identical program.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.environ.get("TMPDIR", "/tmp"), f"scaling-test-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import absl.flags  # noqa: E402

# grain's mp_prefetch reads absl flags; unparsed flags crash it (README, Known traps 3).
absl.flags.FLAGS.mark_as_parsed()

import pytest  # noqa: E402

from tests import helpers  # noqa: E402,F401


@pytest.fixture
def tiny_config():
  return helpers.tiny_config()
