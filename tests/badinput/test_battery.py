"""Bad input to every command line: exit 2, one `error:` line, no traceback, nothing on disk changed.

The rows are in cases.py; this file only runs them (in-process, see harness.py). A row whose `needs` names a part
of the project still to change is a strict xfail: it fails today, and the mark must go when that part lands.
"""

import pytest

from tests.badinput import cases, harness


def _param(case):
  marks = [pytest.mark.xfail(strict=True, reason=f"needs: {case.needs}")] if case.needs else []
  return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in cases.CASES])
def test_bad_input(case, tmp_path, request):
  lm_run = request.getfixturevalue("lm_run") if case.uses_run else None
  _, found = harness.run_case(case, str(tmp_path), lm_run)
  assert not found, "\n".join(found)


def test_the_battery_is_big_and_its_ids_distinct():
  ids = [c.id for c in cases.CASES]
  assert len(ids) == len(set(ids))
  assert len(ids) >= 100
  assert {c.cli for c in cases.CASES} == set(harness.CLIS)
