"""The command line shared by the trainers (scaling/lm/train.py, scaling/toy/train.py).

`--config=FILE[:arg]` (loaded by scaling/core/configfile.py) with `--config.<key>=<value>` overrides (applied by
ml_collections' config_flags), `--workdir`, `--dry_run`, `--[no]progress`, `--extend`. Exit codes:

  0    done (or already done)
  1    the run failed (status.json says why), or the machine failed it (full disk, I/O error: one line)
  2    bad flags, config or run dir: one line `error: <what> — <fix>`, nothing on disk touched
  130  stopped by SIGINT/SIGTERM, at any phase: the stop handler is installed before anything else (before the
       trainer module is even imported, see `entry`), so start-up is covered too; rerun to resume

The run dir's lock (scaling/core/runlock.py) is held around the whole run, so a second trainer on the same
--workdir exits 2 at once naming the holder. Logging and the persistent XLA compilation cache are set up here.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from scaling.core import configfile, failure, hostmem, rundir
from scaling.core.errors import ConfigError, Interrupted, RunDirError, ScalingError, UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 130


# ---- stop signals -------------------------------------------------------------------------------------------
# Signals whose Interrupted may have been swallowed: Python ignores (prints) an exception raised inside a weakref
# callback or finalizer, e.g. importlib's module-lock callback while a module imports.
_RECEIVED: list[str] = []


def _raise_interrupted(signum, _frame):
  _RECEIVED.append(signal.Signals(signum).name)
  raise Interrupted(_RECEIVED[-1])


def _unraisable_stop(previous):
  """An unraisable hook that keeps an Interrupted quiet (it is in _RECEIVED and re-raised by `raise_received`)."""

  def hook(u):
    if not isinstance(u.exc_value, Interrupted):
      previous(u)

  return hook


def raise_received() -> None:
  """Raises Interrupted if a stop signal arrived whose exception Python may have swallowed."""
  if _RECEIVED:
    raise Interrupted(_RECEIVED[-1])


def _exit_at_once(signum, _frame):
  """A stop signal while a command still imports its modules: nothing is written yet, and an exception raised into
  a C extension's initialisation (jaxlib's, say) can crash the interpreter, so the one line and exit 130 now."""
  os.write(2, f"stopped by {signal.Signals(signum).name} — rerun the same command to start or resume the run\n"
           .encode())
  os._exit(EXIT_STOPPED)


def install_stop_handler(handler=_raise_interrupted) -> None:
  """SIGINT/SIGTERM raise errors.Interrupted (a KeyboardInterrupt) until the training loop installs its own (or
  call `handler`, e.g. _exit_at_once while a command imports)."""
  if threading.current_thread() is threading.main_thread():
    for s in (signal.SIGINT, signal.SIGTERM):
      signal.signal(s, handler)


def stopped_line(e: BaseException, then: str = "start or resume the run") -> str:
  """The one line a stopped command prints; the stop counts as handled."""
  _RECEIVED.clear()
  sig = str(e) if isinstance(e, Interrupted) and str(e) else "SIGINT"
  return f"stopped by {sig} — rerun the same command to {then}"


def guarded(body: Callable[[], int], *, bad_input: tuple[type[BaseException], ...], then: str) -> int:
  """A command line without a training run (sweep, report, fits): body() under the stop handler; a bad_input
  error or an OSError becomes one `error:` line (exit 2, or 1 for a machine failure), a stop request exit 130."""
  install_stop_handler()
  try:
    raise_received()
    return body()
  except bad_input as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_USAGE
  except KeyboardInterrupt as e:
    print(stopped_line(e, then), file=sys.stderr)
    return EXIT_STOPPED
  except OSError as e:
    print(f"error: {failure.describe(e)}", file=sys.stderr)
    return failure.exit_code(e)


def entry(module: str) -> int:
  """`python -m scaling.train`: the stop handler first, then the (slow) import of the trainer, then its main()."""
  install_stop_handler(_exit_at_once)
  sys.unraisablehook = _unraisable_stop(sys.unraisablehook)  # for the command's lifetime
  try:
    if os.environ.get("SCALING_HOST_MALLOC", "retain") != "default":
      hostmem.retain_freed_memory()  # before JAX starts its threads (scaling/core/hostmem.py)
    main_fn = importlib.import_module(module).main
    install_stop_handler()  # from here on a stop raises Interrupted, which the trainer turns into a clean stop
    raise_received()
  except KeyboardInterrupt as e:
    print(stopped_line(e), file=sys.stderr)
    return EXIT_STOPPED
  return main_fn()


# ---- flags --------------------------------------------------------------------------------------------------
_CONFIG_ARG = re.compile(r"^--?config(=|$)")
_OVERRIDE = re.compile(r"^--?(no)?config\.([^=]+)(=.*)?$")


def _take_config_spec(argv: list[str]) -> tuple[str | None, list[str]]:
  """(the --config value, argv without it): the file is loaded here, only the overrides go to config_flags."""
  spec, rest, i = None, [], 0
  while i < len(argv):
    m = _CONFIG_ARG.match(argv[i])
    if m and m.group(1) == "=":
      spec = argv[i].split("=", 1)[1]
    elif m:
      if i + 1 >= len(argv):
        raise UsageError("--config needs a value — e.g. --config=configs/lm.py")
      spec, i = argv[i + 1], i + 1
    else:
      rest.append(argv[i])
    i += 1
  return spec, rest


def _check_override_keys(config, argv: Sequence[str]) -> None:
  """Unknown --config.<key> paths as one line with the nearest key (config_flags says "'foo'")."""
  for arg in argv:
    m = _OVERRIDE.match(arg)
    if not m:
      continue
    path = m.group(2)
    node, done = config, []
    for part in path.split("."):
      keys = list(node.keys()) if hasattr(node, "keys") else None
      if keys is None:
        raise UsageError(f"--config.{path}: {'.'.join(done)} is a value, not a group of settings — "
                         f"set --config.{'.'.join(done)}=<value>")
      if part not in keys:
        where = f"config.{'.'.join(done)}" if done else "the config"
        close = difflib.get_close_matches(part, keys, n=1)
        hint = (f"did you mean --config.{'.'.join([*done, close[0]])}?" if close else
                f"{where} has: {', '.join(sorted(keys)[:15])}{' ...' if len(keys) > 15 else ''}")
        raise UsageError(f"--config.{path}: no setting {part!r} in {where} — {hint}")
      node, done = node[part], [*done, part]
    if hasattr(node, "keys") and m.group(3):
      raise UsageError(f"--config.{path} is a group of settings, not a value — set its keys, e.g. "
                       f"--config.{path}.{sorted(node.keys())[0]}=<value>")


def _kind(path: str, config) -> tuple[str, object]:
  """("an integer" / "a number" / ..., default) of a config field, placeholders (None with a type) included."""
  from ml_collections.config_flags import config_path  # noqa: PLC0415 - see parse_flags
  try:
    default = config_path.get_value(path, config)
    kind = config_path.get_type(path, config)
  except (KeyError, AttributeError, TypeError, ValueError):
    return "a valid value", None
  names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
           tuple: "a tuple, e.g. '(1, 2)'"}
  return names.get(kind, "a valid value"), default


def _value_error(config, e: Exception) -> str:
  msg = failure.first_line(e)
  m = re.match(r"flag --config\.([\w.]+)=(.*?): (.*)", msg)
  if m:
    path, value = m.group(1), m.group(2)
    kind, default = _kind(path, config)
    noun = "a boolean" if kind == "true or false" else kind.split(",")[0]
    return f"--config.{path}={value}: not {noun} — give {kind} (default: {default!r})"
  m = re.match(r"Missing value for flag --(\S+)", msg)
  if m:
    return f"--{m.group(1)} needs a value — write --{m.group(1)}=<value>"
  m = re.match(r"Unknown command line flag '([^']+)'(?:\. Did you mean: ([^?]+?) \?)?", msg)
  if m:
    hint = f"did you mean --{m.group(2).split(',')[0].strip()}?" if m.group(2) else "see --help"
    return f"unknown flag --{m.group(1)} — {hint}"
  return msg


def _check_tuple_elements(before, after, prefix: str = "") -> None:
  """A tuple of numbers overridden with words (config_flags keeps `--config.toy.betas=abc` as ('abc',))."""
  for key in before.keys():
    a, b = before[key], after[key]
    if hasattr(a, "keys") and hasattr(b, "keys"):
      _check_tuple_elements(a, b, f"{prefix}{key}.")
    elif isinstance(a, tuple) and a and isinstance(b, tuple) and a != b:
      numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in a)
      bad = [x for x in b if numeric and not (isinstance(x, (int, float)) and not isinstance(x, bool))]
      if bad:
        raise UsageError(f"--config.{prefix}{key}: {bad[0]!r} is not a number — give numbers, e.g. "
                         f"--config.{prefix}{key}='{tuple(a)}'")


def parse_flags(argv: Sequence[str], *, example: str, workdir_help: str, dry_run_help: str):
  """absl FlagValues with .config (an unlocked ConfigDict), .workdir, .dry_run, .progress, .extend."""
  from absl import flags  # noqa: PLC0415 - keep `import scaling.core.cli` light (the stop handler comes first)
  from ml_collections import config_flags  # noqa: PLC0415 - same reason (it imports absl and ml_collections)
  argv = list(argv)
  spec, rest = _take_config_spec(argv[1:])
  if not spec:
    raise UsageError(f"--config is required — e.g. --config={example}")
  config = configfile.load(spec)
  if not hasattr(config, "keys") or not hasattr(config, "to_dict"):
    raise UsageError(f"{spec}: get_config returned {type(config).__name__}, not an ml_collections.ConfigDict")
  pristine = config.copy_and_resolve_references() if hasattr(config, "copy_and_resolve_references") else config
  _check_override_keys(config, rest)
  fv = flags.FlagValues()
  argv = [argv[0] if argv else "trainer", *rest]
  try:
    config_flags.DEFINE_config_dict("config", config, f"Config file, e.g. {example}.", flag_values=fv,
                                    lock_config=False, sys_argv=argv)
    flags.DEFINE_string("workdir", None, workdir_help, flag_values=fv)
    flags.DEFINE_bool("dry_run", False, dry_run_help, flag_values=fv)
    flags.DEFINE_bool("progress", True, "Show a progress bar.", flag_values=fv)
    flags.DEFINE_bool("extend", False, "Allow changing train.steps of an existing run (recorded in config.json "
                      "history); without it a change the LR schedule depends on is refused.", flag_values=fv)
    positional = fv(argv)[1:]
    _ = fv.config  # config_flags applies the overrides lazily: make their errors happen here
  except (flags.Error, ValueError, KeyError, AttributeError, TypeError) as e:
    raise UsageError(_value_error(config, e)) from None
  if positional:
    raise UsageError(f"unexpected argument {positional[0]!r} — flags take the form --name=value (see --help)")
  _check_tuple_elements(pristine, fv.config)
  return fv


# ---- running ------------------------------------------------------------------------------------------------
def process_slot(config) -> int | None:
  """This process's index in a multi-process run as far as config and environment tell before jax.distributed
  starts (0 for a single process); None when only jax.distributed can tell (the loop locks then)."""
  dist = config.get("distributed") if hasattr(config, "get") else None
  if dist is None or dist.get("mode") == "off":
    return 0
  if dist.get("coordinator_address"):
    pid = dist.get("process_id")
    return int(pid) if isinstance(pid, int) and pid >= 0 else None
  if "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:
    return int(os.environ.get("SLURM_PROCID", "0") or 0)
  if len([h for h in os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1 or dist.get("mode") == "on":
    return None
  return 0


def _train_kwargs(train: Callable, fv) -> dict:
  kwargs = {"progress": fv.progress}
  if fv.extend:
    if "extend" not in inspect.signature(train).parameters:
      raise UsageError("--extend: this trainer does not support it yet — rerun without --extend")
    kwargs["extend"] = True
  return kwargs


def _run(argv: list[str], example: str, workdir_help: str, dry_run_help: str, describe: Callable,
         train: Callable) -> int:
  fv = parse_flags(argv, example=example, workdir_help=workdir_help, dry_run_help=dry_run_help)
  enable_compilation_cache()
  setup_logging()
  if fv.dry_run:
    print(describe(fv.config))
    return EXIT_OK
  if not fv.workdir:
    raise UsageError("--workdir is required — the directory to create or resume")
  kwargs = _train_kwargs(train, fv)
  slot = process_slot(fv.config)
  lock = rundir.RunDir(fv.workdir).lock(slot) if slot is not None else contextlib.nullcontext()
  with lock:
    result = train(fv.config, fv.workdir, **kwargs)
  if result.get("interrupted"):
    return EXIT_STOPPED
  return EXIT_OK if result["state"] == "done" else EXIT_FAILED


def main(argv: Sequence[str] | None, *, example: str, workdir_help: str, dry_run_help: str,
         describe: Callable[..., str], train: Callable[..., dict]) -> int:
  """A trainer's whole command line (exit codes: module docstring). describe(config) is the --dry_run text;
  train(config, workdir, progress=[, extend=]) returns the final status dict."""
  program = argv is None
  with _background_errors_held() as held, _stop_handler(restore=not program):
    try:
      raise_received()
      code = _run(list(sys.argv if argv is None else argv), example, workdir_help, dry_run_help, describe, train)
    except KeyboardInterrupt as e:
      print(stopped_line(e), file=sys.stderr)
      code = EXIT_STOPPED
    except (ConfigError, RunDirError) as e:
      print(f"error: {e}", file=sys.stderr)
      code = EXIT_USAGE
    except ScalingError as e:
      print(f"error: {e}", file=sys.stderr)
      code = EXIT_FAILED
    except Exception as e:
      if not failure.is_environmental(e):
        raise
      print(f"error: {failure.describe(e)}", file=sys.stderr)
      held["drop"] = True  # the consequences of the machine failure in orbax's and tensorstore's threads
      code = EXIT_FAILED
  if program and code in (EXIT_FAILED, EXIT_STOPPED):
    quiet_shutdown()
  return code


@contextlib.contextmanager
def _stop_handler(restore: bool):
  """install_stop_handler for the block; restore: put the caller's handlers back after (in-process callers)."""
  main_thread = threading.current_thread() is threading.main_thread()
  old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
  install_stop_handler()
  try:
    yield
  finally:
    if restore:
      for s, h in old.items():
        signal.signal(s, h)


@contextlib.contextmanager
def _background_errors_held():
  """Holds tracebacks that background threads print (threading.excepthook; sys.unraisablehook and sys.excepthook,
  which tensorstore's C++ threads reach through PyErr_WriteUnraisable / PyErr_Print) until the command ends: dropped when it reports a machine failure in one line,
  printed as they came otherwise (so a bug still shows)."""
  held, state = [], {"drop": False}
  old = sys.excepthook, threading.excepthook, sys.unraisablehook
  sys.excepthook = lambda *a: held.append((old[0], a))
  threading.excepthook = lambda a: held.append((old[1], (a,)))
  sys.unraisablehook = lambda u: held.append((old[2], (u,)))
  try:
    yield state
  finally:
    sys.excepthook, threading.excepthook, sys.unraisablehook = old
    if not state["drop"]:
      for hook, args in held:
        hook(*args)


def quiet_shutdown() -> None:
  """After a reported failure, keep interpreter teardown silent: orbax's unfinished async writes otherwise print
  hundreds of 'Exception ignored' lines (and tracebacks from its threads) after our one line."""
  sys.stdout.flush()
  sys.stderr.flush()
  sys.unraisablehook = lambda _u: None
  threading.excepthook = lambda _a: None
  logging.disable(logging.CRITICAL)


class _MachineFailureFilter(logging.Filter):
  """Drops log records about a full disk: the command line reports it once, in one line, at the end."""

  def filter(self, record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    if exc is not None and failure.is_disk_full(exc):
      return False
    return failure.text_errno(record.getMessage()) not in failure.DISK_FULL


def setup_logging() -> None:
  # force: absl installs a root handler at import, which would make basicConfig a no-op.
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
  for handler in logging.getLogger().handlers:
    handler.addFilter(_MachineFailureFilter())
  for noisy in ("absl", "orbax", "jax._src"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


def enable_compilation_cache() -> None:
  """Persistent XLA cache: sweeps recompile identical programs (same size, other seed/frequency) many times.

  $JAX_COMPILATION_CACHE_DIR wins; else ~/.cache/scaling/jax; SCALING_JAX_CACHE=off disables it.
  """
  if os.environ.get("SCALING_JAX_CACHE", "").lower() == "off" or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return
  import jax  # noqa: PLC0415 - called by entry points after the stop handler, so SIGTERM in start-up is caught
  path = os.environ.get("SCALING_JAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "scaling", "jax")
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
