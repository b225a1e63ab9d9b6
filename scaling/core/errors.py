"""Every error the library raises on purpose. Imports nothing, so any module can use it.

Each message is one line that names the problem and the fix; command lines print it as `error: <message>` and
exit 2 for bad input (a `ConfigError`, a `RunDirError` or any subclass) or 1 for a run that failed.
"""


class ScalingError(Exception):
  """Base class: an expected failure with a one-line message (never a bug)."""


class ConfigError(ScalingError, ValueError):
  """A bad experiment config, flag or input file; exit code 2."""


class UsageError(ConfigError):
  """A bad command-line flag or config file."""


class ShardingError(ConfigError):
  """A mesh or sharding problem; the message names the config key to change."""


class SourceError(ConfigError):
  """A bad data-source config or corpus."""


class MixtureError(ConfigError):
  """A bad data mixture (tasks, frequencies, schedules)."""


class ScheduleError(ConfigError):
  """A task schedule that cannot be realised."""


class TaskError(ConfigError):
  """A task that cannot be built as configured."""


class ProbeError(ConfigError):
  """Bad arguments to the probe command line."""


class SweepError(ConfigError):
  """A bad sweep config, command line or sweep folder."""


class RunDirError(ScalingError, ValueError):
  """A run directory that is missing, malformed or inconsistent; exit code 2 (the message names the repair)."""


class MetricsError(RunDirError):
  """metrics.jsonl that does not match the checkpoints (torn middle line, missing records, steps out of order)."""


class RunDirLocked(ConfigError):
  """Another live process holds the run directory's lock; the message names its host and pid."""


class ForeignCheckpoint(ConfigError):
  """The run directory's checkpoints belong to another model or config (tree, shapes or dtypes differ)."""


class CorruptCheckpoint(ScalingError, RuntimeError):
  """A checkpoint step whose restored values do not match what was saved."""


class CheckpointUnreadable(ScalingError, RuntimeError):
  """A checkpoint that could not be read for a reason outside the checkpoint (permissions, I/O error, full
  disk); nothing was moved. Exit code 1: fix the cause and rerun."""


class Interrupted(KeyboardInterrupt):
  """SIGINT/SIGTERM outside the training loop (e.g. during start-up); exit code 130."""


class FitError(ConfigError):
  """Data that cannot be fitted or analysed as asked (too few sizes, a bad column, a malformed sweep)."""


class LoadError(ConfigError):
  """A sweep folder with nothing usable to analyse; the message names the path and the fix."""
