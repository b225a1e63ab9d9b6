"""What loading a sweep found besides good runs (`LoadReport`), the one error it raises (`LoadError`), and the
cross-check of run dirs against launch/sweep.py's manifest.json."""

from __future__ import annotations

import dataclasses
import os

from scaling.core.errors import LoadError

__all__ = ["MANIFEST", "LoadError", "LoadReport", "check_manifest"]
MANIFEST = "manifest.json"


@dataclasses.dataclass
class LoadReport:
  """What was found besides good runs. Each entry is (run or manifest id, reason)."""

  n_run_dirs: int = 0
  n_manifest_runs: int = 0
  missing: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  unfinished: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  malformed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  excluded: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  warnings: list[str] = dataclasses.field(default_factory=list)

  def problems(self) -> list[str]:
    """One line per gap, for logs and the report."""
    out = []
    for name, items in (("missing", self.missing), ("failed", self.failed), ("unfinished", self.unfinished),
                        ("malformed", self.malformed), ("excluded", self.excluded)):
      out += [f"{name}: {run}: {why}" for run, why in items]
    return out + [f"warning: {w}" for w in self.warnings]

  def to_dict(self):
    return dataclasses.asdict(self)


def check_manifest(manifest: dict, sweep: str, found: set[str], rep: LoadReport) -> dict[str, str]:
  """Records manifest runs without a run dir as missing; returns workdir -> note for runs the manifest says
  failed or running (its reason, e.g. "interrupted: killed", which the run's own status.json cannot know)."""
  rep.n_manifest_runs += len(manifest["runs"])
  listed, notes = set(), {}
  for rec in manifest["runs"]:
    rid, wd = rec.get("id", "?"), os.path.normpath(rec.get("workdir") or f"runs/{rec.get('id')}")
    listed.add(wd)
    has = [r for r in found if r == wd or r.startswith(wd + os.sep)]
    status, reason = rec.get("status"), rec.get("reason")
    if not has:
      why = {"pending": "never started", "running": "running, no config.json yet",
             "failed": f"failed before writing config.json: {reason}"}.get(status, f"manifest status {status!r}")
      rep.missing.append((f"{sweep}/{rid}", f"no run dir at {wd} ({why})"))
    elif status in ("failed", "running"):
      notes[wd] = f" (manifest: {status}{': ' + reason if reason else ''})"
  extra = [r for r in found if not any(r == w or r.startswith(w + os.sep) for w in listed)]
  if extra:
    rep.warnings.append(f"{sweep}: {len(extra)} run dir(s) not in {MANIFEST} (loaded anyway): "
                        + ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else ""))
  return notes
