"""The command line shared by the trainers (scaling/lm/train.py, scaling/toy/train.py).

`--config=FILE[:arg]` with `--config.<key>=<value>` overrides, `--workdir`, `--dry_run`, `--[no]progress`; a flag
or config-file error becomes one line; logging and the persistent XLA compilation cache are set up the same way.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence

from scaling.core.errors import UsageError


def main(argv: Sequence[str] | None, *, example: str, workdir_help: str, dry_run_help: str,
         describe: Callable[..., str], train: Callable[..., dict]) -> int:
  """A trainer's whole command line. Exit codes: 0 done, 1 failed, 2 bad flags or config (one `error:` line),
  130 interrupted after a checkpoint. describe(config) is the --dry_run text; train(config, workdir, progress=)
  returns the final status dict."""
  from scaling.lm.config import ConfigError  # noqa: PLC0415
  try:
    fv = parse_flags(list(sys.argv if argv is None else argv), example=example, workdir_help=workdir_help,
                     dry_run_help=dry_run_help)
  except UsageError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  enable_compilation_cache()
  setup_logging()
  try:
    if fv.dry_run:
      print(describe(fv.config))
      return 0
    if not fv.workdir:
      print("error: --workdir is required (the directory to create or resume)", file=sys.stderr)
      return 2
    result = train(fv.config, fv.workdir, progress=fv.progress)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if result.get("interrupted"):
    return 130
  return 0 if result["state"] == "done" else 1




def parse_flags(argv: Sequence[str], *, example: str, workdir_help: str, dry_run_help: str):
  """absl FlagValues with .config (an unlocked ConfigDict), .workdir, .dry_run, .progress."""
  from absl import flags  # noqa: PLC0415
  from ml_collections import config_flags  # noqa: PLC0415
  fv = flags.FlagValues()
  # sys_argv: ml_collections registers the --config.<key> override flags from this argv (default: sys.argv).
  config_flags.DEFINE_config_file("config", None, f"Config file, e.g. {example}.", flag_values=fv,
                                  lock_config=False, sys_argv=list(argv))
  flags.DEFINE_string("workdir", None, workdir_help, flag_values=fv)
  flags.DEFINE_bool("dry_run", False, dry_run_help, flag_values=fv)
  flags.DEFINE_bool("progress", True, "Show a progress bar.", flag_values=fv)
  try:
    fv(list(argv))
  except (flags.Error, ValueError, KeyError, AttributeError, TypeError, FileNotFoundError) as e:
    raise UsageError(_one_line(e)) from None
  if fv.config is None:
    raise UsageError(f"--config is required (e.g. --config={example})")
  return fv


def _one_line(e: Exception) -> str:
  """An exception raised inside a config file arrives wrapped with its traceback; keep its own message."""
  lines = [ln for ln in str(e).splitlines() if ln.strip()]
  if not lines:
    return type(e).__name__
  if "Error whilst parsing config file" in lines[0] and len(lines) > 1:
    return lines[-1]
  return lines[0]


def setup_logging() -> None:
  # force: absl installs a root handler at import, which would make basicConfig a no-op.
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
  for noisy in ("absl", "orbax", "jax._src"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


def enable_compilation_cache() -> None:
  """Persistent XLA cache: sweeps recompile identical programs (same size, other seed/frequency) many times.

  $JAX_COMPILATION_CACHE_DIR wins; else ~/.cache/scaling/jax; SCALING_JAX_CACHE=off disables it.
  """
  if os.environ.get("SCALING_JAX_CACHE", "").lower() == "off" or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return
  import jax  # noqa: PLC0415
  path = os.environ.get("SCALING_JAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "scaling", "jax")
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
