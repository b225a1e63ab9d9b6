"""The finished tiny LM run that battery rows resuming a run start from (trained once per session)."""

import os

import pytest

from tests.badinput import cases, harness


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory) -> str:
  """A finished 20-step run dir (checkpoints 10 and 20), trained in-process with cases.LM."""
  path = str(tmp_path_factory.mktemp("battery") / "lm_run")
  result = harness.run_main("train", [*cases.LM, f"--workdir={path}"])
  assert result.code == 0, result.err[-3000:]
  assert sorted(os.listdir(os.path.join(path, "checkpoints"))) == ["10", "20"]
  return path
